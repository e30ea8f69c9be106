"""The Level I kernel beside this machine's floor: its time per gene next to what its matrix products alone
would take at the CPU's multiply-add peak, both measured in the same run.

    python benchmarks/bench_kernel.py [--batches 10,64,256] [--threads 1,2] [--repeats 5] [--channels 15] [--hidden 32]

1. **Peak**: a small C program, built by the kernel's compiler with the kernel's flags, runs 16
   independent chains of 16-float multiply-adds (the kernel's vector width); one copy per thread at
   once, so two threads measure two cores together. Printed as GFLOP/s (2 flops a multiply-add).
2. **The kernel** (`deepdiff.cpu_kernel.fused_level1` as training runs it: the input needs no
   gradient) at each batch and thread count: forward and backward microseconds per gene (medians of
   `--repeats`), and the share of the peak its three matrix products reach: forward [h_{t-1}, x_t, 1]
   @ W ((H + 2) x 4H per step and direction), backward dW += [h_{t-1}, x_t, 1]^T da (the same size)
   and dh_{t-1} = da @ W_hh^T (4H x H), each for 2K groups x T steps per gene. Everything else (the
   gates' nonlinearities, the cell update, the attention, loads and stores) is what the share leaves.

`raw` has K = 15 channels, H = 32, T = 200. Prints the device it ran on; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from deepdiff import cpu_kernel  # noqa: E402

PEAK_SOURCE = r"""
#include <stdio.h>
#include <time.h>
typedef float vf __attribute__((vector_size(64)));
int main(void) {
    volatile float unknown[3] = {0.9999999f, 1e-7f, 1e-3f}; /* values the compiler cannot fold the loop with */
    vf a[16];
    const vf m = (vf){0} + unknown[0], c = (vf){0} + unknown[1];
    for (int i = 0; i < 16; i++) a[i] = (vf){0} + (1.0f + i * unknown[2]);
    const long n = 100000000L;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 16; i++) a[i] = a[i] * m + c;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float r = 0.0f;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) r += a[i][j]; /* every lane of every chain is used */
    const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("%.6e %g\n", n * 16 * 16 * 2 / s, r); /* flops per second; r keeps the loop */
    return 0;
}
"""


def peak_flops(threads: int) -> float:
    """Multiply-add flops per second of `threads` cores together (one copy of the program each)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(PEAK_SOURCE)
        flags = [f for f in cpu_kernel.FLAGS if f not in ("-shared", "-fPIC")]
        subprocess.run([cpu_kernel._compiler(), *flags, "-ffp-contract=fast", "-o", str(exe), str(src)], check=True)
        runs = [subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True) for _ in range(threads)]
        return sum(float(run.communicate()[0].split()[0]) for run in runs)


def product_flops(k: int, hid: int, steps: int) -> tuple[float, float]:
    """Flops per gene of the kernel's matrix products: (forward, backward)."""
    per_step = (hid + 2) * 4 * hid
    groups = 2 * k * steps
    return 2.0 * groups * per_step, 2.0 * groups * (per_step + 4 * hid * hid)


def time_kernel(n: int, k: int, hid: int, steps: int, repeats: int) -> tuple[float, float]:
    """Median seconds per gene of one forward and one backward of the kernel at batch n."""
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.rand(n, k, steps, generator=gen) * 4, generator=gen)
    w = ((torch.rand(2 * k, hid + 2, 4 * hid, generator=gen) - 0.5) * 0.2).requires_grad_()
    context = (torch.rand(k, 2 * hid, generator=gen) - 0.5).requires_grad_()
    calls = max(1, 256 // n)  # about 256 genes a sample
    forward, backward = [], []
    for i in range(repeats + 1):  # the first warms the workspace up and is left out
        fw = bw = 0.0
        for _ in range(calls):
            w.grad = context.grad = None
            t0 = time.perf_counter()
            m, alpha = cpu_kernel.fused_level1(x, w, context)
            t1 = time.perf_counter()
            (m.sum() + (alpha * alpha).sum()).backward()
            bw += time.perf_counter() - t1
            fw += t1 - t0
        if i:
            forward.append(fw / (calls * n))
            backward.append(bw / (calls * n))
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="10,64,256")
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels", type=int, default=15, help="K (raw: 15)")
    parser.add_argument("--hidden", type=int, default=32, help="H per direction (the paper: 32)")
    parser.add_argument("--bins", type=int, default=200)
    args = parser.parse_args()
    if not cpu_kernel.available():
        sys.exit(f"the C kernel is not available here: {cpu_kernel.status()}")
    batches = [int(b) for b in args.batches.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    k, hid, steps = args.channels, args.hidden, args.bins
    fw_flops, bw_flops = product_flops(k, hid, steps)
    print(f"device=cpu ({os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable) kernel: {cpu_kernel.status()}")
    print(f"K={k} H={hid} T={steps}: products {fw_flops / 1e6:.1f} MFLOP forward, {bw_flops / 1e6:.1f} MFLOP backward per gene; "
          f"load average {os.getloadavg()[0]:.2f}")
    before = torch.get_num_threads()
    try:
        for threads in thread_counts:
            peak = peak_flops(threads)
            print(f"\n{threads} thread(s): multiply-add peak {peak / 1e9:.0f} GFLOP/s "
                  f"({peak / 32e9 / threads:.2f} G vector multiply-adds a second per core)")
            print(f"  {'batch':>5} {'fwd us/gene':>12} {'bwd us/gene':>12} {'genes/s':>8} {'fwd % peak':>10} {'bwd % peak':>10} "
                  f"{'products at peak':>17}")
            torch.set_num_threads(threads)
            for n in batches:
                fw, bw = time_kernel(n, k, hid, steps, args.repeats)
                floor = (fw_flops + bw_flops) / peak
                print(f"  {n:>5} {fw * 1e6:>12.0f} {bw * 1e6:>12.0f} {1 / (fw + bw):>8.0f} "
                      f"{fw_flops / fw / peak:>10.0%} {bw_flops / bw / peak:>10.0%} "
                      f"{1 / floor:>8.0f} genes/s")
    finally:
        torch.set_num_threads(before)
    print(f"\nend: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
