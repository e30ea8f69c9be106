"""Where mixed precision keeps PCC: valid PCC after a fixed number of epochs per training precision.

    python benchmarks/bench_amp.py [--variant raw] [--epochs 10] [--batch 64] [--lr 6.4e-4]
        [--precisions float32,bfloat16,float16] [--seeds 0,1] [--genes 1000 | --data DIR --pair A B]
        [--impl grouped] [--device auto] [--threads 1]

Trains the same configuration once per (seed, precision) with `deepdiff.train.fit` (its
`TrainConfig.precision`: autocast of the training steps, a GradScaler for float16, evaluation in
float32) and prints, for the device it ran on, the last and best valid PCC of each run, their
difference from the float32 run of the same seed, and float32's own spread over the seeds (what a
difference has to be measured against). Level I runs the way `--impl` says (default "grouped", the
torch-ops recurrence a GPU runs, whose low-precision products are what is measured; forced by
replacing `deepdiff.model.level1_impl`, the one place it is chosen). On a CPU the seconds per epoch
are printed but say nothing of a GPU: bfloat16 and float16 are emulated or slow there, and CPU autocast
is not CUDA's. Default data: a synthetic pair calibrated on the real sample (`deepdiff synth`'s
default), written to a temporary folder. Never asserts anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import deepdiff.model  # noqa: E402
from deepdiff import cpu_kernel  # noqa: E402
from deepdiff.config import PRECISIONS, ModelConfig, TrainConfig  # noqa: E402
from deepdiff.data import load_pair  # noqa: E402
from deepdiff.device import autocast_dtype, pick_device, precision_label  # noqa: E402
from deepdiff.synthetic import write_synthetic_pair  # noqa: E402
from deepdiff.train import fit  # noqa: E402
from deepdiff.variants import VARIANTS  # noqa: E402


def run(pair, variant: str, precision: str, seed: int, args, device: torch.device) -> dict:
    """One training run; its last and best valid PCC and median seconds per epoch (the first left out)."""
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=seed, precision=precision)
    results = list(fit(ModelConfig(variant=variant), train_cfg, pair, device=device))
    seconds = [r.seconds for r in results]
    last = results[-1]
    return {"last": last.valid_pcc, "best": last.best_valid_pcc, "status": str(last.status),
            "epochs": last.epoch, "s_per_epoch": statistics.median(seconds[1:] or seconds)}


def cpu_name() -> str:
    """The CPU's model name (Linux), else its architecture."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return os.uname().machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="raw", choices=tuple(VARIANTS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=6.4e-4, help="default: the published 1e-4 scaled linearly to batch 64")
    parser.add_argument("--precisions", default="float32,bfloat16,float16", help="comma list; float32 first is the baseline")
    parser.add_argument("--seeds", default="0,1", help="comma list of seeds (init, dropout, batch order)")
    parser.add_argument("--genes", type=int, default=1000, help="genes of the synthetic pair (without --data)")
    parser.add_argument("--data", metavar="DIR", help="a pair's folder instead of the synthetic pair")
    parser.add_argument("--pair", nargs=2, default=("Cell1", "Cell2"))
    parser.add_argument("--impl", default="grouped", choices=deepdiff.model.LEVEL1_IMPLS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if any(p not in PRECISIONS for p in precisions) or precisions[0] != "float32":
        parser.error(f"--precisions {args.precisions}: expected a comma list of {', '.join(PRECISIONS)} starting with float32")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    deepdiff.model.level1_impl = lambda device, batch: args.impl  # force the way Level I runs, nothing else
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            pair, source = load_pair(args.data, *args.pair), f"{args.data} {' '.join(args.pair)}"
        else:
            write_synthetic_pair(tmp, genes=args.genes, seed=1)
            pair, source = load_pair(tmp, "Cell1", "Cell2"), f"synthetic (realistic, {args.genes} genes, seed 1)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"device={device} ({name}) threads={torch.get_num_threads()} torch {torch.__version__} Level I: {args.impl}"
          + ("" if args.impl != "fused" else f" ({cpu_kernel.status()})"))
    print(f"data: {source}: {len(pair.train)} train / {len(pair.valid)} valid genes; {args.variant}, {args.epochs} epochs, "
          f"batch {args.batch}, lr {args.lr:g}, seeds {args.seeds}")
    print("precision: " + "; ".join(f"{p} -> {precision_label(autocast_dtype(device, p))}" for p in precisions))
    out: dict[tuple[str, int], dict] = {}
    for seed in seeds:
        for precision in precisions:
            started = time.perf_counter()
            r = out[precision, seed] = run(pair, args.variant, precision, seed, args, device)
            base = out["float32", seed]
            print(f"  seed {seed} {precision:9s} valid PCC last {r['last']:.4f} best {r['best']:.4f}  "
                  f"(vs float32: {r['last'] - base['last']:+.5f}, {r['best'] - base['best']:+.5f})  "
                  f"{r['s_per_epoch']:.2f} s/epoch  {r['status']} after {r['epochs']} epochs  "
                  f"[{time.perf_counter() - started:.0f} s]", flush=True)
    print("summary over seeds (mean difference from float32 of the same seed; float32's own range over seeds):")
    for kind in ("last", "best"):
        values = [out["float32", s][kind] for s in seeds]
        cells = [f"float32 {statistics.mean(values):.4f} (range {max(values) - min(values):.4f})"]
        for precision in precisions[1:]:
            diffs = [out[precision, s][kind] - out["float32", s][kind] for s in seeds]
            cells.append(f"{precision} {statistics.mean(diffs):+.5f} (max |d| {max(abs(d) for d in diffs):.5f})")
        print(f"  {kind} valid PCC: " + ", ".join(cells))


if __name__ == "__main__":
    main()
