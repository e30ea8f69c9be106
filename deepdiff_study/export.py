"""Export the best trial of every grid cell of a study as `deepdiff train --config` files plus a summary.

    python tune/export_best.py --experiment deepdiff-ablation --out best/     (or: deepdiff-export ...)

writes best/configs/<grid cell>.yaml (one per grid cell) and best/summary.{csv,parquet} (one row per
grid cell: variant, pair, aux mode, margin, best valid PCC, its test PCC, trial id, run id, config file).

Reads only the study's MLflow record (`deepdiff_study.records`), never Tune's files, and imports
neither Ray, Optuna nor torch: the runs' params are the config fields that apply to the variant,
their grid cell's ``data`` tag names the pair's files (and how to regenerate a synthetic pair), and
the metric ``epoch`` is the last epoch trained. The exported config trains for the epochs the best
trial trained, so `deepdiff train --config` selects the same best epoch and reports the same PCCs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from deepdiff.config import save_config
from deepdiff.errors import ConfigError, DeepDiffError
from deepdiff_study.records import DEFAULT_EXPERIMENT, best_trials, decode_params, default_mlflow_uri

SUMMARY_COLUMNS = (
    "grid_cell", "variant", "pair", "pair_name", "epigenome_a", "epigenome_b", "aux_mode", "margin",
    "best_valid_pcc", "best_test_pcc", "best_epoch", "epochs_trained", "trial_status", "trials", "trial_id",
    "run_id", "config",
)
EXPORT_FILES = ("configs", "summary.csv", "summary.parquet")


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """`out` must be a folder (or not exist yet) without an earlier export, unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a folder for configs/ and summary.csv")
    earlier = [name for name in EXPORT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise ConfigError(f"--out {out}: already holds an export ({earlier[0]}); choose another --out or pass --overwrite")


def export_best(tracking_uri: str, experiment: str, out_dir: str | Path, *, overwrite: bool = False):
    """Write ``configs/<grid cell>.yaml`` per grid cell's best trial plus ``summary.csv`` and ``summary.parquet``."""
    import pandas as pd

    out = Path(out_dir)
    check_out_dir(out, overwrite=overwrite)
    rows = best_trials(tracking_uri, experiment)
    if not rows:
        raise ConfigError(f"--experiment {experiment!r}: no grid-cell runs in it at {tracking_uri}; nothing to export")
    try:
        for row in rows:
            run, data = row.pop("_run"), row.pop("data")
            row["config"] = None
            if run is None:
                continue
            model_cfg, train_cfg = decode_params(run.data.params, source=f"MLflow run {run.info.run_id}")
            if row["epochs_trained"]:
                train_cfg = dataclasses.replace(train_cfg, epochs=row["epochs_trained"])
            path = save_config(out / "configs" / f"{row['grid_cell']}.yaml", model_cfg, train_cfg, data)
            row["config"] = str(path.relative_to(out))
        table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "summary.csv", index=False)
        table.to_parquet(out / "summary.parquet", index=False)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror or type(err).__name__})") from None
    return table


def format_table(rows: list[dict[str, Any]], *, winners: set[str] = frozenset()) -> str:
    """A plain-text table of best PCC per grid cell, in the order given; grid cells in `winners` get a ``*``."""
    header = f"  {'grid cell':<40} {'valid PCC':>9} {'test PCC':>9} {'epoch':>5} {'trials':>6}  best trial"
    lines = [header, "-" * len(header)]
    for r in rows:
        valid, test = r["best_valid_pcc"], r["best_test_pcc"]
        mark = "* " if r["grid_cell"] in winners else "  "
        lines.append(
            f"{mark}{r['grid_cell']:<40} {valid:>9.4f} {test:>9.4f} {r['best_epoch'] or '-':>5} {r['trials']:>6}  "
            f"{r['trial_id'] or '-'}" if math.isfinite(valid) else
            f"{mark}{r['grid_cell']:<40} {'-':>9} {'-':>9} {'-':>5} {r['trials']:>6}  (no successful trial)"
        )
    return "\n".join(lines)


def winners(rows: list[dict[str, Any]]) -> set[str]:
    """The grid cell with the best valid PCC of every (pair, variant) that has more than one grid cell."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["pair"], r["variant"]), []).append(r)
    best = set()
    for group in groups.values():
        scored = [r for r in group if math.isfinite(r["best_valid_pcc"])]
        if len(group) > 1 and scored:
            best.add(max(scored, key=lambda r: r["best_valid_pcc"])["grid_cell"])
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export_best", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment of the study (default {DEFAULT_EXPERIMENT})")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for configs/ and summary.{csv,parquet}")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    args = parser.parse_args(argv)
    try:
        table = export_best(args.mlflow_uri or default_mlflow_uri(), args.experiment, args.out, overwrite=args.overwrite)
    except DeepDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(table.to_dict("records")))
    written = table["config"].dropna()
    print(f"\nwrote {len(written)} configs to {Path(args.out) / 'configs'} and "
          f"{Path(args.out) / 'summary.csv'} (+ .parquet)")
    if len(written):
        print(f"reproduce one:  deepdiff train --config {Path(args.out) / written.iloc[0]} --out run1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
