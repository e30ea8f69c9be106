"""What warm starts across related grid cells buy: the same small grid searched cold (each grid cell's
Optuna search on its own) and warm (`deepdiff_study.warmstart`), with the same seeds, R repetitions.

    python benchmarks/bench_warmstart.py [--pairs 4] [--variants raw,raw_aux,raw_aux_siamese]
        [--aux regression] [--margins 1,2] [--samples 10] [--epochs 2] [--genes 300]
        [--bins 20] [--reps 3] [--out /tmp/bench_warmstart.csv]

The search is the study's own: `GridCellSearcher` (per-grid-cell Optuna with the published setting
first, warm starts on or off), asked for one trial at a time and told its result before the next is
asked (no Ray: the study's searcher and plans, trained in this process on one thread with
`deepdiff.train.fit`). No ASHA: every trial trains all its epochs (ASHA would cut both arms' trials).
Data: one calibrated synthetic pair per pair number (`deepdiff.synthetic`, signal "realistic"), each
with its own seed, `--genes` genes of `--bins` bins, 40/30/30 % train/valid/test; the search space is
the paper's with smaller hidden sizes and batch choices (`GRID`). A trial already trained (the same
pair and configuration, e.g. the published setting and the proposals before the first warm start,
which both arms share) is not trained again: its measured result and seconds are reused.

Printed, per grid cell and in total, from each repetition's cold and warm search: the trials and
trial-seconds to reach within `TOLERANCE` of the best valid PCC the cold search reached with its full
budget (an unreached target counts the whole budget and is marked), and the final best valid and test
PCC (mean over repetitions, and the cold repetitions' standard deviation). Every trial's row goes to
--out (CSV). Asserts nothing. The machine's load is printed: say what else ran on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.01  # "reached": within this of the cold search's final best valid PCC
SEED_BASE = 1000  # pair N's synthetic data is generated with seed SEED_BASE + N
# The paper's grid, sized for one CPU thread: hidden sizes and batch choices scaled down; the published
# setting is the paper's (lr 1e-4, batch 10, dropout 0.5) at the smaller sizes.
GRID = """
pairs: {1: [E123, E003], 2: [E116, E003], 3: [E123, E116], 4: [E003, E005], 5: [E003, E006], 6: [E006, E007]}
variants: [raw_d, raw_c, raw, aux, raw_aux, aux_siamese, raw_aux_siamese]
aux_modes: [regression, classification]
margins: [0.5, 1, 2, 4]
published: {lr: 1.0e-4, batch_size: 10, dropout: 0.5, level1_hidden: 8, level2_hidden: 4, input_transform: raw,
            aux_weight: 1.0, gamma: 4.0}
search_space:
  lr:              {kind: log_uniform, low: 1.0e-4, high: 3.0e-2}
  batch_size:      {kind: choice, values: [10, 20, 50]}
  dropout:         {kind: uniform, low: 0.0, high: 0.7}
  level1_hidden:   {kind: choice, values: [4, 8, 16]}
  level2_hidden:   {kind: choice, values: [4, 8]}
  input_transform: {kind: choice, values: [raw, log1p]}
  aux_weight:      {kind: log_uniform, low: 0.1, high: 10.0, applies_to: aux}
  gamma:           {kind: log_uniform, low: 0.5, high: 16.0, applies_to: siamese}
presets:
  bench: {pairs: all, samples: 10, max_epochs: 2, grace_period: 2, reduction_factor: 2, synthetic_genes: 300}
"""


def make_pairs(cells, folder: Path, genes: int, bins: int) -> dict:
    """pair number -> PairData: one synthetic pair per pair number, seeded by it."""
    from deepdiff.data import load_pair
    from deepdiff.synthetic import write_synthetic_pair

    data = {}
    for pair in sorted({c.pair for c in cells}, key=lambda p: p.number):
        where = folder / f"pair{pair.number}"
        write_synthetic_pair(where, genes=genes, seed=SEED_BASE + pair.number, cell_a=pair.epigenome_a,
                             cell_b=pair.epigenome_b, n_bins=bins, split_fractions=(0.4, 0.3), imitates=pair.imitates)
        data[pair.number] = load_pair(where, pair.epigenome_a, pair.epigenome_b, n_bins=bins)
    return data


def train(config: dict, pairs: dict) -> dict:
    """One trial: its best valid and test PCC, seconds (the sum of its epochs') and status."""
    from deepdiff.train import fit
    from deepdiff_study.records import decode_trial_config, pair_of

    model_cfg, train_cfg = decode_trial_config(config)
    epochs = list(fit(model_cfg, train_cfg, pairs[pair_of(config)], device="cpu"))
    last, seconds = epochs[-1], sum(e.seconds for e in epochs)
    failed = last.status in ("nan", "diverged")
    return {"best_valid_pcc": math.nan if failed else last.best_valid_pcc,
            "best_test_pcc": math.nan if failed else last.best_test_pcc,
            "seconds": seconds, "status": "failed" if failed else "completed", "epoch_status": str(last.status)}


def search(plans, pairs: dict, *, seed: int, warm: bool, cache: dict, progress) -> list[dict]:
    """One whole search of the grid: every grid cell's trials, one at a time; a row per trial."""
    from ray.tune.search import Searcher

    from deepdiff_study.records import META_KEYS, grid_cell_of, pair_of, warm_start_of
    from deepdiff_study.searcher import GridCellSearcher

    searcher = GridCellSearcher(plans, seed=seed, warm_starts=warm)
    rows, index = [], 0
    while (config := searcher.suggest(f"t{index:05d}")) != Searcher.FINISHED:
        trial_id = f"t{index:05d}"
        key = (pair_of(config), tuple(sorted((k, str(v)) for k, v in config.items() if k not in META_KEYS)))
        if key not in cache:
            cache[key] = train(config, pairs)
        result = cache[key]
        searcher.on_trial_complete(trial_id, {"best_valid_pcc": result["best_valid_pcc"], "status": result["epoch_status"]})
        rows.append({"arm": "warm" if warm else "cold", "rep": seed, "trial_id": trial_id, "order": index,
                     "grid_cell": grid_cell_of(config), "warm_start_from": warm_start_of(config) or "", **result})
        index += 1
        progress.update(1)
    return rows


def summarize(rows, samples: int) -> None:
    """The tables: per grid cell and in total (see the module docstring)."""
    import pandas as pd

    from deepdiff_study.search_cost import search_cost

    trials = pd.DataFrame(rows)
    reps = sorted(trials["rep"].unique())
    per = {}  # (arm, rep) -> search_cost with the cold search's best - TOLERANCE as the target
    for rep in reps:
        cold = trials[(trials["arm"] == "cold") & (trials["rep"] == rep)]
        targets = {k: v - TOLERANCE for k, v in search_cost(cold).set_index("grid_cell")["best_valid_pcc"].items()}
        for arm in ("cold", "warm"):
            mine = trials[(trials["arm"] == arm) & (trials["rep"] == rep)]
            cost = search_cost(mine, targets).set_index("grid_cell")
            best_test = mine.sort_values("order").groupby("grid_cell").apply(
                lambda g: g.loc[g["best_valid_pcc"].idxmax(), "best_test_pcc"] if g["best_valid_pcc"].notna().any() else math.nan,
                include_groups=False)
            cost["best_test_pcc"] = best_test
            unreached = cost["trials_to_target"].isna()
            cost["to_target_trials"] = cost["trials_to_target"].fillna(cost["trials"])  # unreached: the whole budget
            cost["to_target_seconds"] = (cost["hours_to_target"].where(~unreached, cost["trial_hours"])) * 3600
            cost["unreached"] = unreached
            per[(arm, rep)] = cost
    cells = list(per[("cold", reps[0])].index)
    mean = lambda arm, col, key: statistics.fmean(per[(arm, r)].loc[key, col] for r in reps)
    sd = lambda arm, col, key: statistics.pstdev([per[(arm, r)].loc[key, col] for r in reps]) if len(reps) > 1 else math.nan
    print(f"\nper grid cell, mean over {len(reps)} repetitions (cold | warm); target: the cold search's final best valid "
          f"PCC - {TOLERANCE} (same repetition); '!' = the target was not reached in some repetition (counted as "
          "the whole budget)")
    header = (f"{'grid cell':<34} {'warm':>4} {'trials to target':>17} {'trial-s to target':>19} {'ratio':>6} "
              f"{'best valid PCC':>16} {'cold sd':>7} {'best test PCC':>15}")
    print(header)
    for key in cells:
        warm_n = mean("warm", "warm_starts", key)
        miss = {arm: any(per[(arm, r)].loc[key, "unreached"] for r in reps) for arm in ("cold", "warm")}
        t_c, t_w = mean("cold", "to_target_trials", key), mean("warm", "to_target_trials", key)
        s_c, s_w = mean("cold", "to_target_seconds", key), mean("warm", "to_target_seconds", key)
        print(f"{key:<34} {warm_n:>4.1f} {t_c:>7.1f} | {t_w:>5.1f}{'!' if miss['warm'] else ' '} "
              f"{s_c:>8.1f} | {s_w:>7.1f} {s_w / s_c:>6.2f} "
              f"{mean('cold', 'best_valid_pcc', key):>7.3f} | {mean('warm', 'best_valid_pcc', key):.3f} "
              f"{sd('cold', 'best_valid_pcc', key):>7.3f} "
              f"{mean('cold', 'best_test_pcc', key):>6.3f} | {mean('warm', 'best_test_pcc', key):.3f}")
    print("\ntotals per repetition (all grid cells):")
    print(f"{'rep':>4} {'trial-s to target cold | warm':>30} {'ratio':>6} {'trials to target cold | warm':>29} "
          f"{'unreached warm':>14} {'whole budget trial-s cold | warm':>33} {'warm starts':>11}")
    ratios = []
    for r in reps:
        c, w = per[("cold", r)], per[("warm", r)]
        ratios.append(w["to_target_seconds"].sum() / c["to_target_seconds"].sum())
        print(f"{r:>4} {c['to_target_seconds'].sum():>14.0f} | {w['to_target_seconds'].sum():<13.0f} {ratios[-1]:>6.2f} "
              f"{c['to_target_trials'].sum():>14.0f} | {w['to_target_trials'].sum():<12.0f} {int(w['unreached'].sum()):>14} "
              f"{c['trial_hours'].sum() * 3600:>16.0f} | {w['trial_hours'].sum() * 3600:<14.0f} {int(w['warm_starts'].sum()):>11}")
    diffs = [per[("warm", r)].loc[k, "best_valid_pcc"] - per[("cold", r)].loc[k, "best_valid_pcc"] for r in reps for k in cells]
    test_diffs = [per[("warm", r)].loc[k, "best_test_pcc"] - per[("cold", r)].loc[k, "best_test_pcc"] for r in reps for k in cells]
    spread = statistics.fmean(sd("cold", "best_valid_pcc", k) for k in cells) if len(reps) > 1 else math.nan
    halves = sum(mean("warm", "to_target_seconds", k) <= 0.5 * mean("cold", "to_target_seconds", k) for k in cells)
    print(f"\ntrial-seconds to target, warm / cold: {statistics.fmean(ratios):.2f} (mean over repetitions; "
          f"{min(ratios):.2f}-{max(ratios):.2f}); grid cells at or under half: {halves} of {len(cells)}")
    print(f"final best valid PCC, warm - cold: mean {statistics.fmean(diffs):+.4f} over {len(diffs)} grid cell x repetitions "
          f"(the cold repetitions' sd per grid cell, averaged: {spread:.4f}); best test PCC, warm - cold: "
          f"mean {_nanmean(test_diffs):+.4f}")


def _nanmean(values) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=4, help="pairs 1..N, each its own synthetic data")
    p.add_argument("--variants", default="raw,raw_aux,raw_aux_siamese")
    p.add_argument("--aux", default="regression")
    p.add_argument("--margins", default="1,2")
    p.add_argument("--samples", type=int, default=10, help="trials per grid cell, the published one included")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every trial")
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--bins", type=int, default=20)
    p.add_argument("--reps", type=int, default=3, help="repetitions; repetition r uses study seed r in both arms")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bench_warmstart.csv"), help="every trial's row (CSV)")
    args = p.parse_args()

    import optuna
    import pandas as pd
    import torch
    from tqdm import tqdm

    from deepdiff_study.grid import load_grid
    from deepdiff_study.plan import plan_grid_cells
    from deepdiff_study.schema import RunSizes
    from deepdiff_study.warmstart import warm_start_limit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    with tempfile.TemporaryDirectory(prefix="bench-warmstart-") as tmp:
        folder = Path(tmp)
        (folder / "grid.yaml").write_text(GRID)
        grid = load_grid(folder / "grid.yaml")
        cells = grid.grid_cells(",".join(str(n) for n in range(1, args.pairs + 1)), args.variants, args.aux, args.margins)
        cells = [dataclasses.replace(c, pair=c.pair.synthetic()) for c in cells]
        print(f"commit {commit}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch on 1 thread; "
              f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{len(cells)} grid cells ({args.pairs} pairs x {args.variants}; aux {args.aux}; margins {args.margins}) x "
              f"{args.samples} trials, {args.epochs} epochs each, no ASHA; {args.genes} genes x {args.bins} bins per pair; "
              f"{args.reps} repetitions x cold/warm; at most {warm_start_limit(args.samples)} warm starts per grid cell")
        pairs = make_pairs(cells, folder, args.genes, args.bins)
        cache: dict = {}
        rows: list[dict] = []
        started = time.monotonic()
        with tqdm(total=2 * args.reps * len(cells) * args.samples, desc="trials", mininterval=30, file=sys.stderr) as progress:
            for rep in range(args.reps):
                sizes = RunSizes(samples=args.samples, max_epochs=args.epochs, grace_period=args.epochs, reduction_factor=2.0)
                plans = plan_grid_cells(grid, cells, sizes, seed=rep, fixed={"n_bins": args.bins, "precision": "float32"})
                for warm in (False, True) if rep % 2 == 0 else (True, False):  # each arm first as often: load drifts
                    rows += search(plans, pairs, seed=rep, warm=warm, cache=cache, progress=progress)
                    pd.DataFrame(rows).to_csv(args.out, index=False)  # so far, should the run be stopped
        trained = len(cache)
    print(f"{len(rows)} trials, {trained} trained (the rest repeated a configuration already trained); wall "
          f"{time.monotonic() - started:.0f} s; load average after: {os.getloadavg()[0]:.2f}; rows in {args.out}")
    summarize(rows, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
