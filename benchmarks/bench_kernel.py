"""The Level I kernel beside this machine's floor: its time per gene next to what its matrix products alone
would take at the CPU's multiply-add peak, both measured in the same run.

    python benchmarks/bench_kernel.py [--batches 10,64,256] [--threads 1,2] [--repeats 5] [--channels 15] [--hidden 32]

1. **Peak**: a small C program, built by the kernel's compiler with the kernel's flags, runs 16
   independent chains of vector multiply-adds at the kernel's vector width (16 floats with AVX-512, 8
   with AVX, else 4: generic vectors wider than the registers are emulated); one copy per thread at
   once, so two threads measure two cores together. Printed as GFLOP/s (2 flops a multiply-add).
   Beside it the same for AVX512-BF16's bfloat16 pair dot products (vdpbf16ps, 4 flops a lane), what a
   lower-precision kernel's products would run on, where the CPU has them.
2. **The kernel** (`deepdiff.cpu_kernel.fused_level1` as training runs it: the input needs no
   gradient) at each batch and thread count: forward and backward microseconds per gene (medians of
   `--repeats`), and the share of the peak its three matrix products reach: forward [h_{t-1}, x_t, 1]
   @ W ((H + 2) x 4H per step and direction), backward dW += [h_{t-1}, x_t, 1]^T da (the same size)
   and dh_{t-1} = da @ W_hh^T (4H x H), each for 2K groups x T steps per gene. Everything else (the
   gates' nonlinearities, the cell update, the attention, loads and stores) is what the share leaves.

3. **Where the time goes** (`--parts`): the kernel built again with one part left out, or replaced by a
   cheap stand-in (`-DDD_OMIT`, see `lstm_kernel.c`: the forward's recurrent product, its gate
   nonlinearities, its stores of the saves; the backward's gate gradients from the saves, dW,
   dh_{t-1}; the attention both ways), each build timed against the full one round by round in this
   process (denormals flushed in all of them, as a stand-in's values may drift). A part's share is
   the time the full kernel loses without it; what no part accounts for is the rest (the loops' own
   loads and stores, the cell update, weight padding). The stand-ins' results are wrong by design:
   only their time is used. `--parts-only` skips 1 and 2.
4. **Vector widths** (`--widths 4,8,16`): the kernel built at each width (`-DDD_VW`) timed round by
   round beside this CPU's own build (its registers' width): what a kernel written for another
   machine's width costs here.

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
/* VW: the kernel's vector width (-DVW=, from its dd_vector_width) */
typedef float vf __attribute__((vector_size(4 * VW)));
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
        for (int j = 0; j < VW; j++) r += a[i][j]; /* every lane of every chain is used */
    const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("%.6e %g\n", n * 16 * VW * 2 / s, r); /* flops per second; r keeps the loop */
    return 0;
}
"""


# The same for bfloat16 pairs (AVX512-BF16's vdpbf16ps: per float lane acc += a0 b0 + a1 b1, 4 flops), the
# instruction a lower-precision kernel's products would use; prints 0 where the CPU has none.
BF16_PEAK_SOURCE = r"""
#include <stdio.h>
#include <time.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
int main(void) {
    volatile float unknown = 1e-3f;
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(1.0f + i * unknown);
    const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(unknown), _mm512_set1_ps(unknown));
    const long n = 50000000L;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbf16_ps(a[i], x, x);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    float r = 0.0f;
    for (int i = 0; i < 16; i++) r += _mm512_reduce_add_ps(a[i]);
    const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("%.6e %g\n", n * 16 * 16 * 4 / s, r);
    return 0;
}
#else
int main(void) { printf("0 none\n"); return 0; }
#endif
"""


def peak_flops(threads: int, source: str = PEAK_SOURCE) -> float:
    """Multiply-add flops per second of `threads` cores together (one copy of the program each)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(source)
        flags = [f for f in cpu_kernel.FLAGS if f not in ("-shared", "-fPIC")]
        subprocess.run([cpu_kernel._compiler(), *flags, "-ffp-contract=fast", f"-DVW={vector_floats()}", "-o", str(exe),
                        str(src)], check=True)
        runs = [subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True) for _ in range(threads)]
        return sum(float(run.communicate()[0].split()[0]) for run in runs)


def vector_floats() -> int:
    """Floats per vector of the kernel this process loaded (the CPU's own width)."""
    return cpu_kernel._load().dd_vector_width()


def product_flops(k: int, hid: int, steps: int) -> tuple[float, float]:
    """Flops per gene of the kernel's matrix products: (forward, backward)."""
    per_step = (hid + 2) * 4 * hid
    groups = 2 * k * steps
    return 2.0 * groups * per_step, 2.0 * groups * (per_step + 4 * hid * hid)


def kernel_inputs(n: int, k: int, hid: int, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.rand(n, k, steps, generator=gen) * 4, generator=gen)
    w = ((torch.rand(2 * k, hid + 2, 4 * hid, generator=gen) - 0.5) * 0.2).requires_grad_()
    context = (torch.rand(k, 2 * hid, generator=gen) - 0.5).requires_grad_()
    return x, w, context


def sample(x: torch.Tensor, w: torch.Tensor, context: torch.Tensor) -> tuple[float, float]:
    """Seconds per gene of the forward and the backward, over about 256 genes."""
    n = x.shape[0]
    calls = max(1, 256 // n)
    fw = bw = 0.0
    for _ in range(calls):
        w.grad = context.grad = None
        t0 = time.perf_counter()
        m, alpha = cpu_kernel.fused_level1(x, w, context)
        t1 = time.perf_counter()
        (m.sum() + (alpha * alpha).sum()).backward()
        bw += time.perf_counter() - t1
        fw += t1 - t0
    return fw / (calls * n), bw / (calls * n)


def time_kernel(n: int, k: int, hid: int, steps: int, repeats: int) -> tuple[float, float]:
    """Median seconds per gene of one forward and one backward of the kernel at batch n."""
    inputs = kernel_inputs(n, k, hid, steps)
    sample(*inputs)  # warms the workspace up
    rounds = [sample(*inputs) for _ in range(repeats)]
    return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


# name -> the DD_OMIT bits of lstm_kernel.c
PARTS = {
    "forward: recurrent product h @ W_hh": 1,
    "forward: gate sigmoids, tanh(c)": 2,
    "forward: stores of the saves": 4,
    "attention (both ways)": 64,
    "backward: gate gradients from the saves": 8,
    "backward: dW += [h, x, 1]^T da": 16,
    "backward: dh_{t-1} = da @ W_hh": 32,
}


def profile_parts(batches: list[int], thread_counts: list[int], k: int, hid: int, steps: int, repeats: int) -> None:
    """Each part's share of the kernel's time: full build vs the build without it, round by round."""
    full = cpu_kernel._load()
    flush = torch.set_flush_denormal(True)
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="deepdiff-parts-") as tmp:
        libs = {name: cpu_kernel.profiling_build(bits, Path(tmp)) for name, bits in PARTS.items()}
        try:
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for n in batches:
                    inputs = kernel_inputs(n, k, hid, steps)
                    times: dict[str | None, list[tuple[float, float]]] = {None: []} | {name: [] for name in libs}
                    for i in range(repeats + 1):  # round by round, so a change in the machine's speed hits all
                        for name, lib in [(None, full), *libs.items()]:
                            cpu_kernel._lib = lib
                            took = sample(*inputs)
                            if i:  # the first round warms the workspaces up
                                times[name].append(took)
                    cpu_kernel._lib = full
                    med = {name: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
                           for name, v in times.items()}
                    fw, bw = med[None]
                    print(f"\n{threads} thread(s), batch {n}: forward {fw * 1e6:.0f} us/gene, backward {bw * 1e6:.0f} us/gene "
                          f"(medians of {repeats} rounds; flush-denormal {'on' if flush else 'not supported'})")
                    print(f"  {'part left out':<42} {'forward saves':>13} {'backward saves':>14} {'of the kernel':>13}")
                    rest = [fw, bw]
                    for name in PARTS:
                        saved = (fw - med[name][0], bw - med[name][1])
                        rest = [rest[0] - saved[0], rest[1] - saved[1]]
                        print(f"  {name:<42} {saved[0] * 1e6:>8.0f} {saved[0] / fw:>4.0%} {saved[1] * 1e6:>9.0f} {saved[1] / bw:>4.0%} "
                              f"{sum(saved) / (fw + bw):>13.0%}")
                    print(f"  {'the rest (no part of the above)':<42} {rest[0] * 1e6:>8.0f} {rest[0] / fw:>4.0%} {rest[1] * 1e6:>9.0f} "
                          f"{rest[1] / bw:>4.0%} {sum(rest) / (fw + bw):>13.0%}   (us/gene, share of the pass)")
        finally:
            cpu_kernel._lib = full
            torch.set_num_threads(before)
            torch.set_flush_denormal(False)


def compare_widths(widths: list[int], batches: list[int], thread_counts: list[int], k: int, hid: int, steps: int,
                   repeats: int) -> None:
    """The kernel built at each vector width (-DDD_VW) beside the machine's own build, round by round."""
    own = cpu_kernel._load()
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="deepdiff-widths-") as tmp:
        libs = {f"{w} floats": cpu_kernel.profiling_build(0, Path(tmp), vector_width=w) for w in widths}
        libs[f"this CPU's own ({vector_floats()} floats)"] = own
        try:
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for n in batches:
                    inputs = kernel_inputs(n, k, hid, steps)
                    times: dict[str, list[float]] = {name: [] for name in libs}
                    for i in range(repeats + 1):  # round by round; the first warms the workspaces up
                        for name, lib in libs.items():
                            cpu_kernel._lib = lib
                            fw, bw = sample(*inputs)
                            if i:
                                times[name].append(fw + bw)
                    cpu_kernel._lib = own
                    base = statistics.median(times[next(reversed(libs))])
                    print(f"\n{threads} thread(s), batch {n}: forward + backward, us/gene (medians of {repeats} rounds), "
                          "x the own build's time")
                    for name, took in times.items():
                        med = statistics.median(took)
                        print(f"  {name:<28} {med * 1e6:>8.0f}  x{med / base:.2f}")
        finally:
            cpu_kernel._lib = own
            torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="10,64,256")
    parser.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels", type=int, default=15, help="K (raw: 15)")
    parser.add_argument("--hidden", type=int, default=32, help="H per direction (the paper: 32)")
    parser.add_argument("--bins", type=int, default=200)
    parser.add_argument("--parts", action="store_true", help="also time builds with a part left out (3 above)")
    parser.add_argument("--parts-only", action="store_true", help="only the parts (3 above)")
    parser.add_argument("--parts-batches", default="10,256")
    parser.add_argument("--parts-threads", default="1")
    parser.add_argument("--widths", default="", help="comma list of vector widths (4,8,16 floats) to time beside this "
                        "CPU's own build, at --batches and --threads (4 below); skips 1 and 2")
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
    if args.widths:
        compare_widths([int(w) for w in args.widths.split(",")], batches, thread_counts, k, hid, steps, args.repeats)
        return
    if args.parts_only:
        thread_counts = []
    before, width = torch.get_num_threads(), vector_floats()
    try:
        for threads in thread_counts:
            peak, bf16 = peak_flops(threads), peak_flops(threads, BF16_PEAK_SOURCE)
            print(f"\n{threads} thread(s): multiply-add peak {peak / 1e9:.0f} GFLOP/s "
                  f"({peak / (2e9 * width) / threads:.2f} G {width}-float multiply-adds a second per core); bfloat16 pairs "
                  + (f"(vdpbf16ps) {bf16 / 1e9:.0f} GFLOP/s, x{bf16 / peak:.2f} float32's" if bf16 else "not on this CPU"))
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
    if args.parts or args.parts_only:
        print("\nwhere the time goes: each part left out of a build, timed against the full build in the same rounds")
        profile_parts([int(b) for b in args.parts_batches.split(",")], [int(t) for t in args.parts_threads.split(",")],
                      k, hid, steps, args.repeats)
    print(f"\nend: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
