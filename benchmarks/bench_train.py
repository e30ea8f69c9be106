"""Training speed: s/epoch per variant for each way of running Level I, batch sweep, and the reference.

    python benchmarks/bench_train.py --profile raw [--profile-batch 10]   # where an epoch's time goes
    python benchmarks/bench_train.py [--quick] [--variants raw_d,raw,raw_aux_siamese] [--threads 1]
        [--sweep-variant raw --batches 10,32,64,128,256] [--reference MIRROR_GITDIR --reference-python PY]
        [--reference-threads 2,1]

Level I ways (`--impls`, the last one the baseline of the ratios): "fused" (the compiled C kernel of
deepdiff/cpu_kernel.py, what a CPU runs), "grouped" (torch ops, what a GPU runs), "per_channel" (one
nn.LSTM per channel, PyTorch's oneDNN/cuDNN kernels, the reference's way). Prints, for the device it
runs on (never asserts anything):
0. CPU time (process time, so other load on the machine matters less) per training step and per
   inference batch of each variant, the Level I ways alternating in one process, batches 10 and 64.
1. s/epoch at batch 10 of every variant with each Level I way, alternating, repeated
   (`--repeats`), median; an epoch is what `deepdiff train` runs: the training pass plus the valid and
   test evaluation (`deepdiff.train.fit`). With `--reference`, the reference (DeepDiffChrome, run by
   /work/shared/tools/refbench) runs the same variant and epochs in the same rounds, and the ratios
   reference / ours are printed (its epoch: training pass + valid pass + a torch.save; no test pass).
   `--reference-threads 2,1` runs it at each thread count every round and counts the round's fastest
   (on this 2-core machine its batch-10 epoch is as fast on 1 thread as on 2 at best, and steadier).
2. A batch sweep of one variant: training genes/s (training pass only) per batch size and Level I
   way, peak resident memory (and CUDA max allocated on a GPU) of a process running only that setting.
3. Valid PCC after the same number of gene-updates (`--updates-epochs` epochs of the training split)
   at the fastest batch vs batch 10, with the learning rate scaled by sqrt(batch / 10).

Every measurement runs in a fresh child process (so peak memory is its own); the Level I way is forced
there by replacing `deepdiff.model.level1_impl`, the one place it is chosen. Default data: the real
DeepDiffChrome sample pair (Cell1 Cell2, 200 genes per split).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import math
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "deepdiffchrome-sample"
REFBENCH = ROOT.parent / "shared" / "tools" / "refbench" / "run-reference.sh"
IMPLS = ("fused", "grouped", "per_channel")  # deepdiff.model.LEVEL1_IMPLS; "fused" needs the C kernel
ALL_VARIANTS = ("raw_d", "raw_c", "raw", "aux", "raw_aux", "aux_siamese", "raw_aux_siamese")


def _child(job: dict) -> dict:
    """Run `fit` for one setting in this (fresh) process; return per-epoch times, PCCs and peak memory."""
    sys.path.insert(0, str(ROOT))
    import torch

    import deepdiff.model
    from deepdiff.config import ModelConfig, TrainConfig
    from deepdiff.data import load_pair
    from deepdiff.device import pick_device
    from deepdiff.train import fit

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    deepdiff.model.level1_impl = lambda device, batch: job["impl"]  # force the way Level I runs, nothing else
    device = pick_device(job["device"])
    pair = load_pair(job["data"], *job["pair"])
    n_train = len(pair.train)
    marks: dict[str, float] = {}

    def on_batch(done: int, total: int) -> None:
        if done == total:
            marks["train_end"] = time.perf_counter()

    cfg = TrainConfig(epochs=job["epochs"], batch_size=job["batch"], lr=job["lr"], seed=job.get("seed", 0))
    epochs, train_s = [], []
    last = time.perf_counter()
    for result in fit(ModelConfig(variant=job["variant"]), cfg, pair, device=device, on_batch=on_batch):
        if device.type == "cuda":
            torch.cuda.synchronize()
        epochs.append(result.seconds)
        train_s.append(marks["train_end"] - last)  # epoch 1 includes model build and data transfer
        last = time.perf_counter()
        valid = result.valid_pcc
    return {
        "epoch_s": epochs,
        "train_s": train_s,
        "n_train": n_train,
        "valid_pcc": valid,
        "best_valid_pcc": result.best_valid_pcc,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_max_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def _profile_child(job: dict) -> str:
    """torch.profiler table of the second epoch of `fit` (the first warms up), by self CPU time."""
    sys.path.insert(0, str(ROOT))
    import torch
    from torch.profiler import ProfilerActivity, profile

    import deepdiff.model
    from deepdiff.config import ModelConfig, TrainConfig
    from deepdiff.data import load_pair
    from deepdiff.device import pick_device
    from deepdiff.train import fit

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    deepdiff.model.level1_impl = lambda device, batch: job["impl"]
    device = pick_device(job["device"])
    pair = load_pair(job["data"], *job["pair"])
    runs = fit(ModelConfig(variant=job["variant"]), TrainConfig(epochs=2, batch_size=job["batch"]), pair, device=device)
    next(runs)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        result = next(runs)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=job["rows"], max_name_column_width=40)
    return f"{job['variant']} {job['impl']} batch {job['batch']} on {device}: epoch {result.seconds:.2f} s\n{table}"


def _steps_child(job: dict) -> dict:
    """CPU seconds (process time: robust to other load) per training step (forward, backward, clip,
    Adam) on random count-like inputs, both Level I ways alternating in this process; median per way."""
    sys.path.insert(0, str(ROOT))
    import torch

    import deepdiff.model
    from deepdiff.config import ModelConfig
    from deepdiff.model import DeepDiff
    from deepdiff.train import make_optimizer

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant=job["variant"]))
    optimizer = make_optimizer(model, 1e-4)
    x_a, x_b = (torch.poisson(torch.rand(job["batch"], 5, 200) * 4) for _ in range(2))

    def step() -> None:
        out = model(x_a, x_b)
        loss = out.prediction.square().mean() + sum(a.float().square().mean() for a in out.aux.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def infer() -> None:
        with torch.no_grad():
            model(x_a, x_b)

    times: dict[str, list[float]] = {}
    for _ in range(job["rounds"]):
        for impl in job["impls"]:
            deepdiff.model.level1_impl = lambda device, batch: impl
            for name, fn in (("train", step), ("infer", infer)):
                fn()
                started = time.process_time()
                for _ in range(job["steps"]):
                    fn()
                times.setdefault(f"{impl} {name}", []).append((time.process_time() - started) / job["steps"])
    return {k: statistics.median(v) for k, v in times.items()}


def run_child(**job) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(job.pop("_worker", _child), job).result()


def steady(times: list[float]) -> float:
    """Median over epochs, the first left out when there are others (it includes start-up work)."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def run_reference(args, variant: str, threads: int = 0) -> dict | None:
    """The reference's RESULT line for `variant` as numbers (seconds_per_epoch, epoch_seconds as a list,
    test_seconds, n_train, threads ...), or None if the harness failed. threads: its OMP_NUM_THREADS (0:
    --threads, or torch's default if that is 0 too)."""
    env = dict(os.environ, REFBENCH_QUIET="1")
    if threads or args.threads:
        env["OMP_NUM_THREADS"] = str(threads or args.threads)
    cmd = ["bash", str(REFBENCH), args.reference, variant, str(args.epochs), args.reference_data or args.data,
           args.reference_python]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"  reference {variant}: no RESULT line (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return None
    fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    out: dict = {k: float(v) for k, v in fields.items() if re.fullmatch(r"-?[0-9.]+", v)}
    out["epoch_seconds"] = [float(x) for x in fields["epoch_seconds"].split(",")]
    return out


def reference_round(args, variant: str, log: dict[int, list[float]], key) -> dict | None:
    """One round of the reference: a run at each of --reference-threads (one run at --threads without
    it), each run's key(result) appended to log[its thread count]; the fastest run (least
    seconds_per_epoch), or None if none gave a result."""
    counts = [int(t) for t in args.reference_threads.split(",")] if args.reference_threads else [0]
    runs = [out for out in (run_reference(args, variant, n) for n in counts) if out is not None]
    for out in runs:
        log.setdefault(int(out["threads"]), []).append(key(out))
    return min(runs, key=lambda out: out["seconds_per_epoch"]) if runs else None


def per_threads(log: dict[int, list[float]], unit: str) -> str:
    """The reference's figures per thread count, when it ran at more than one."""
    if len(log) < 2:
        return ""
    return "; reference by threads: " + "; ".join(f"{n} thread(s) {statistics.median(v):.2f} {unit} ({fmt(v)})"
                                                  for n, v in sorted(log.items()))


def reference_train_rate(ref: dict) -> float:
    """The reference's training genes/s at batch 10: its epoch (train pass + valid pass + torch.save) less
    one evaluation pass of the same size (its test pass on as many genes, timed with the model's load)."""
    return ref["n_train"] / (steady(ref["epoch_seconds"]) - ref["test_seconds"] * ref["n_valid"] / ref["n_test"])


def load_now() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--pair", nargs=2, default=("Cell1", "Cell2"))
    parser.add_argument("--variants", default="raw_d,raw,raw_aux_siamese", help="comma list, or 'all'")
    parser.add_argument("--impls", default="fused,per_channel", help=f"Level I ways to compare, the last is the baseline (of {','.join(IMPLS)})")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run (the first is left out)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument("--sweep-variant", default="raw")
    parser.add_argument("--batches", default="10,32,64,128,256")
    parser.add_argument("--updates-epochs", type=int, default=10, help="gene-updates = this many training epochs")
    parser.add_argument("--pcc-batches", default="", help="batch sizes of part 3 (default: 10 and the sweep's fastest)")
    parser.add_argument("--pcc-seeds", default="0", help="comma list of training seeds of part 3 (each batch once per seed)")
    parser.add_argument("--lr-scaling", choices=("sqrt", "linear"), default="sqrt",
                        help="part 3's learning rate: 1e-4 x (batch/10)^0.5 or x batch/10")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); also OMP_NUM_THREADS of the reference")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reference", metavar="MIRROR_GITDIR", help="bare git dir of QData/DeepDiffChrome")
    parser.add_argument("--reference-python", default="python3", metavar="PY", help="a Python with the reference's deps")
    parser.add_argument("--reference-threads", default="", metavar="LIST",
                        help="comma list of the reference's OMP_NUM_THREADS, each run every round; a round counts its "
                        "fastest (at batch 10 it is often faster and always steadier on 1 thread than on 2)")
    parser.add_argument("--reference-data", metavar="DIR", help="data of the reference's runs (default --data; its "
                        "loader wants the paper's own files: a large synthetic pair fails there)")
    parser.add_argument("--quick", action="store_true", help="1 round, 2 epochs, sweep 10,64,256, 4 update-epochs")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: steps,epochs,sweep,pcc")
    parser.add_argument("--step-batches", default="10,64", help="batch sizes of part 0 (CPU time per step)")
    parser.add_argument("--profile", metavar="VARIANT", help="only print a torch.profiler table of one epoch per Level I way")
    parser.add_argument("--profile-batch", type=int, default=10)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.epochs, args.batches, args.updates_epochs = 1, 2, "10,64,256", 4
    variants = ALL_VARIANTS if args.variants == "all" else tuple(args.variants.split(","))
    impls = tuple(args.impls.split(","))
    if not impls or any(i not in IMPLS for i in impls):
        parser.error(f"--impls {args.impls}: expected a comma list of {', '.join(IMPLS)}")
    base = impls[-1]
    skip = set(filter(None, args.skip.split(",")))
    job = dict(data=args.data, pair=tuple(args.pair), threads=args.threads, device=args.device, lr=1e-4)

    if args.profile:
        print(load_now())
        for impl in impls:
            print(run_child(**job, _worker=_profile_child, variant=args.profile, impl=impl, batch=args.profile_batch, rows=22))
        print(load_now())
        return
    probe = run_child(**job, _worker=_probe_child)
    print(f"device={probe['device']} threads={probe['threads']} Level I kernel: {probe['kernel']}")
    print(f"data={args.data} ({probe['n_train']} train genes; our epoch = training pass + valid and test "
          f"evaluation) epochs/run={args.epochs} rounds={args.repeats}; xR = {base} time / this one's")
    print(f"start: {load_now()}")

    if "steps" not in skip:
        print("\n0. CPU ms per training step (fwd+bwd+clip+Adam) and per inference batch, process time, median of 5 rounds x 3")
        for variant in variants:
            for batch in (int(b) for b in args.step_batches.split(",")):
                t = run_child(**job, _worker=_steps_child, variant=variant, batch=batch, rounds=5, steps=3, impls=impls)
                cells = [f"{kind} " + "  ".join(
                    f"{impl} {1e3 * t[f'{impl} {kind}']:7.1f}" + ("" if impl == base else f" (x{t[f'{base} {kind}'] / t[f'{impl} {kind}']:4.2f})")
                    for impl in impls) for kind in ("train", "infer")]
                print(f"  {variant:16s} batch {batch:4d}: " + " | ".join(cells))

    if "epochs" not in skip:
        print("\n1. s/epoch at batch 10, median over rounds of the median epoch (the first epoch of a run left out)")
        if args.reference:
            print("   reference (DeepDiffChrome via refbench) epoch = training pass + valid pass + a torch.save; "
                  "ours also evaluates the test split every epoch")
        for variant in variants:
            runs: dict[str, list[float]] = {impl: [] for impl in impls}
            ref: list[float] = []
            by_threads: dict[int, list[float]] = {}
            for _ in range(args.repeats):
                for impl in impls:
                    runs[impl].append(steady(run_child(**job, variant=variant, impl=impl, batch=10, epochs=args.epochs)["epoch_s"]))
                if args.reference:
                    out = reference_round(args, variant, by_threads, lambda o: o["seconds_per_epoch"])
                    if out is not None:
                        ref.append(out["seconds_per_epoch"])
            med = {impl: statistics.median(v) for impl, v in runs.items()}
            line = f"  {variant:16s} " + "  ".join(f"{impl} {med[impl]:6.2f}" + ("" if impl == base else f" (x{med[base] / med[impl]:4.2f})")
                                                  for impl in impls)
            if ref:
                r = statistics.median(ref)
                line += f"  reference {r:6.2f}  " + "  ".join(f"reference/{impl} x{r / med[impl]:4.2f}" for impl in impls)
            rounds = "; ".join(f"{impl} {fmt(v)}" for impl, v in runs.items()) + (f"; ref {fmt(ref)}" if ref else "")
            print(f"{line}   (rounds: {rounds}{per_threads(by_threads, 's')})")

    rates: dict[int, float] = {}
    if "sweep" not in skip:
        # Rounds alternate our runs with the reference's: this machine's speed drifts by up to 2x within
        # minutes (other tenants of the host), so a ratio is only fair between runs close in time.
        batches = [int(b) for b in args.batches.split(",")]
        rounds = max(1, args.repeats)
        print(f"\n2. batch sweep, {args.sweep_variant}: training genes/s (training pass only), peak memory; "
              f"{rounds} rounds, each all batches then one reference run; medians")
        seen: dict[tuple[int, str], list[float]] = {}
        mems: dict[tuple[int, str], str] = {}
        ref_rates: list[float] = []
        ref_by_threads: dict[int, list[float]] = {}
        per_round: list[tuple[int, float]] = []  # (best batch, its rate / the reference's) in each round
        for _ in range(rounds):
            here: dict[int, float] = {}
            for batch in batches:
                for impl in impls:
                    out = run_child(**job, variant=args.sweep_variant, impl=impl, batch=batch, epochs=args.epochs)
                    rate = out["n_train"] / steady(out["train_s"])
                    seen.setdefault((batch, impl), []).append(rate)
                    here[batch] = max(here.get(batch, 0.0), rate)
                    mems[batch, impl] = f"rss {out['peak_rss_mb']:.0f} MB" + (
                        f", cuda {out['cuda_max_mb']:.0f} MB" if out["cuda_max_mb"] is not None else "")
            ref = reference_round(args, args.sweep_variant, ref_by_threads, reference_train_rate) if args.reference else None
            if ref is not None:
                ref_rates.append(reference_train_rate(ref))
                top = max(here, key=here.get)
                per_round.append((top, here[top] / ref_rates[-1]))
        for batch in batches:
            cells = [f"{impl} {statistics.median(seen[batch, impl]):6.1f} genes/s ({mems[batch, impl]})" for impl in impls]
            rates[batch] = max(statistics.median(seen[batch, impl]) for impl in impls)
            print(f"  batch {batch:4d}: " + "; ".join(cells))
        best = max(rates, key=rates.get)
        print(f"  fastest batch: {best} ({rates[best]:.1f} genes/s, x{rates[best] / rates.get(10, math.nan):.2f} batch 10)")
        if ref_rates:
            ref_rate = statistics.median(ref_rates)
            print(f"  reference at batch 10: {ref_rate:.1f} training genes/s (its epoch less one evaluation pass; "
                  f"per round {', '.join(f'{r:.1f}' for r in ref_rates)}{per_threads(ref_by_threads, 'genes/s')})")
            print(f"  ours at the fastest batch / the reference, per round: "
                  f"{', '.join(f'x{x:.2f} (batch {b})' for b, x in per_round)}; median x{statistics.median(x for _, x in per_round):.2f}")

    if "pcc" not in skip:
        best = max(rates, key=rates.get) if rates else 64
        batches = sorted({int(b) for b in args.pcc_batches.split(",")} if args.pcc_batches else {10, best})
        power = 0.5 if args.lr_scaling == "sqrt" else 1.0
        print(f"\n3. valid PCC after {args.updates_epochs} epochs of gene-updates, {args.sweep_variant}; "
              f"lr = 1e-4 * (batch / 10)^{power:g}")
        seeds = [int(v) for v in args.pcc_seeds.split(",")]
        for batch in batches:
            lr = 1e-4 * (batch / 10) ** power
            outs = [run_child(**{**job, "lr": lr, "seed": seed}, variant=args.sweep_variant, impl=impls[0], batch=batch,
                              epochs=args.updates_epochs) for seed in seeds]
            for seed, out in zip(seeds, outs):
                print(f"  batch {batch:4d} lr {lr:.2e} seed {seed}: last valid PCC {out['valid_pcc']:.4f}, "
                      f"best {out['best_valid_pcc']:.4f}, {sum(out['epoch_s']):.1f} s")
            if len(outs) > 1:
                print(f"  batch {batch:4d} mean over {len(outs)} seeds: last {statistics.mean(o['valid_pcc'] for o in outs):.4f}, "
                      f"best {statistics.mean(o['best_valid_pcc'] for o in outs):.4f}")
    print(f"\nend: {load_now()}")


def _probe_child(job: dict) -> dict:
    """The device, threads, training genes and the Level I kernel's status of a child process."""
    sys.path.insert(0, str(ROOT))
    import torch

    from deepdiff import cpu_kernel
    from deepdiff.data import load_pair
    from deepdiff.device import pick_device

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    return {"device": str(pick_device(job["device"])), "threads": torch.get_num_threads(), "kernel": cpu_kernel.status(),
            "n_train": len(load_pair(job["data"], *job["pair"]).train)}


def fmt(values: list[float]) -> str:
    return ",".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
