"""What ASHA buys: the same small study twice in one command, with the study's per-grid-cell ASHA and
without pruning (grace period = max epochs, so no trial stops early), on the real study path (driver,
Optuna per grid cell, scheduler, trainable, MLflow).

    python benchmarks/bench_asha.py [--variants raw_d,raw,aux_siamese] [--samples 8] [--max-epochs 12]
        [--grace-period 2] [--reduction-factor 2] [--genes 300]

Printed per grid cell and in total, read back from each study's MLflow record: epochs trained (the sum
over its trials of the epochs each ran), trial-seconds (the sum of the trials' epoch times), trials
pruned, and the best valid PCC of the grid cell with its test PCC. Both studies use the same seed, so
the first trial of every grid cell (the paper's setting) and Optuna's start-up proposals are the same;
later proposals differ where pruned trials told the sampler less. The data is one synthetic pair
(the calibrated generator). Prints tables; asserts nothing. Say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path


def run_study(name: str, folder: Path, args, grace: int) -> float:
    """Run one study through the driver (its output silenced); its wall seconds."""
    from deepdiff_study import driver

    flags = ["--pairs", "1", "--variants", args.variants, "--aux", "regression", "--margins", "2",
             "--samples", str(args.samples), "--max-epochs", str(args.max_epochs), "--grace-period", str(grace),
             "--reduction-factor", str(args.reduction_factor), "--synthetic-genes", str(args.genes),
             "--storage", str(folder / "results"), "--mlflow-uri", f"sqlite:///{folder / 'mlruns.db'}", "--experiment", name]
    started = time.monotonic()
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            code = driver.main(flags)
        finally:
            sys.stdout = stdout
    if code != 0:
        raise SystemExit(f"the study {name} ended with exit status {code}")
    return time.monotonic() - started


def read_study(folder: Path, name: str) -> dict[str, dict]:
    """grid cell -> epochs, trial-seconds, pruned trials, best valid PCC and its test PCC."""
    from mlflow.tracking import MlflowClient

    from deepdiff_study.records import Kind, Tag, TrialStatus, best_trials, experiment_id, study_runs

    uri = f"sqlite:///{folder / 'mlruns.db'}"
    client = MlflowClient(uri)
    cells: dict[str, dict] = {}
    for run in study_runs(client, experiment_id(client, name), Kind.TRIAL):
        cell = cells.setdefault(run.data.tags[Tag.GRID_CELL], {"epochs": 0, "seconds": 0.0, "pruned": 0, "trials": 0})
        cell["trials"] += 1
        cell["epochs"] += int(run.data.metrics.get("epoch", 0))
        cell["seconds"] += sum(m.value for m in client.get_metric_history(run.info.run_id, "seconds"))
        cell["pruned"] += run.data.tags.get(Tag.STATUS) == TrialStatus.PRUNED
    for best in best_trials(uri, name):
        cells[best.grid_cell].update(valid=best.best_valid_pcc, test=best.best_test_pcc)
    return cells


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="raw_d,raw,aux_siamese")
    p.add_argument("--samples", type=int, default=8, help="trials per grid cell")
    p.add_argument("--max-epochs", type=int, default=12)
    p.add_argument("--grace-period", type=int, default=2, help="ASHA's grace period in the ASHA study")
    p.add_argument("--reduction-factor", type=float, default=2)
    p.add_argument("--genes", type=int, default=300, help="genes of the synthetic pair")
    args = p.parse_args()
    import torch

    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}; {os.cpu_count()} CPUs; load average before: "
          f"{os.getloadavg()[0]:.2f}; {args.samples} trials per grid cell, at most {args.max_epochs} epochs, "
          f"ASHA grace {args.grace_period} and reduction factor {args.reduction_factor:g}")
    results, walls = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-asha-") as tmp:
        for name, grace in (("asha", args.grace_period), ("no-pruning", args.max_epochs)):
            folder = Path(tmp) / name
            folder.mkdir()
            walls[name] = run_study(name, folder, args, grace)
            results[name] = read_study(folder, name)
    a, b = results["asha"], results["no-pruning"]
    print(f"\n{'grid cell':34s} {'epochs':>15s} {'trial-s':>15s} {'pruned':>6s}  {'best valid PCC':>15s}  {'its test PCC':>15s}")
    print(f"{'':34s} {'ASHA / none':>15s} {'ASHA / none':>15s} {'ASHA':>6s}  {'ASHA / none':>15s}  {'ASHA / none':>15s}")
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, {}), b.get(key, {})
        print(f"{key:34s} {x.get('epochs', 0):6d} / {y.get('epochs', 0):6d} {x.get('seconds', 0):6.0f} / {y.get('seconds', 0):6.0f} "
              f"{x.get('pruned', 0):6d}  {x.get('valid', math.nan):6.3f} / {y.get('valid', math.nan):6.3f}  "
              f"{x.get('test', math.nan):6.3f} / {y.get('test', math.nan):6.3f}")
    total = {k: (sum(c["epochs"] for c in r.values()), sum(c["seconds"] for c in r.values())) for k, r in results.items()}
    print(f"\nepochs trained: ASHA {total['asha'][0]} vs {total['no-pruning'][0]} without pruning "
          f"(x{total['no-pruning'][0] / max(1, total['asha'][0]):.2f}); trial-seconds {total['asha'][1]:.0f} vs "
          f"{total['no-pruning'][1]:.0f} (x{total['no-pruning'][1] / max(1e-9, total['asha'][1]):.2f}); study wall "
          f"{walls['asha']:.0f} s vs {walls['no-pruning']:.0f} s (each incl. Ray start, baselines and report)")
    diffs = [a[k]["valid"] - b[k]["valid"] for k in a if k in b and math.isfinite(a[k].get("valid", math.nan))
             and math.isfinite(b[k].get("valid", math.nan))]
    if diffs:
        print(f"best valid PCC, ASHA minus none, per grid cell: mean {sum(diffs) / len(diffs):+.3f}, "
              f"min {min(diffs):+.3f}, max {max(diffs):+.3f} over {len(diffs)} grid cells")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
