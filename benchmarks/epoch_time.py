"""Seconds per training epoch of each variant, with ratios against raw_d measured in the same run.

    python benchmarks/epoch_time.py [--data DIR --pair A B] [--batch-size 10] [--variants raw,raw_aux_siamese]

Default data: the real DeepDiffChrome sample beside the repo (../shared/data/deepdiffchrome-sample,
200 train genes). An epoch here is the training pass plus the valid and test evaluation, as `fit`
runs it. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepdiff.config import ModelConfig, TrainConfig
from deepdiff.data import load_pair
from deepdiff.device import pick_device
from deepdiff.train import fit
from deepdiff.variants import VARIANTS

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepdiffchrome-sample"
BASELINE = "raw_d"


def seconds_per_epoch(variant: str, pair, batch_size: int, epochs: int, device) -> float:
    """Median wall time of `epochs` epochs (the first one included: there is no warm-up to hide)."""
    times = [r.seconds for r in fit(ModelConfig(variant=variant), TrainConfig(epochs=epochs, batch_size=batch_size), pair, device=device)]
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--pair", nargs=2, default=("Cell1", "Cell2"))
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    pair = load_pair(args.data, *args.pair)
    variants = [BASELINE] + [v for v in args.variants.split(",") if v != BASELINE]
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} train_genes={len(pair.train)} "
          f"valid+test genes={len(pair.valid) + len(pair.test)} epochs={args.epochs}")
    base = None
    for variant in variants:
        started = time.perf_counter()
        sec = seconds_per_epoch(variant, pair, args.batch_size, args.epochs, device)
        base = base or sec
        print(f"{variant:16s} {sec:7.2f} s/epoch  x{sec / base:5.2f} vs {BASELINE}  "
              f"({1000 * sec / len(pair.train):.1f} ms per train gene; total {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
