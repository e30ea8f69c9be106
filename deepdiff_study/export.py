"""Export the best trial of every grid cell of a study as `deepdiff train --config` files plus a summary.

    python tune/export_best.py --experiment deepdiff-ablation --out best/     (or: deepdiff-export ...)

writes best/configs/<grid cell>.yaml (one per grid cell) and best/summary.{csv,parquet} (one row per
grid cell: variant, pair, aux mode, margin, best valid PCC, its test PCC, trial id, run id, config file).

Reads only the study's MLflow record (`deepdiff_study.records`), never Tune's files, and imports
neither Ray, Optuna nor torch: the runs' params are the config fields that apply to the variant,
their grid cell's ``data`` tag names the pair's files (and how to regenerate a synthetic pair), and
the metric ``epoch`` is the last epoch trained. The exported config trains for the epochs the best
trial trained, so `deepdiff train --config` selects the same best epoch and reports the same PCCs.

A grid cell's name (an MLflow tag: the store may be shared) becomes a file name only when it is one
plain name (`deepdiff_study.untrusted.plain_name`); a store holding another is refused, nothing written.

Exit status: 0 exported; 2 a bad flag, an earlier export in --out, no such study, a grid-cell name that is
not a plain file name (nothing written);
75 the MLflow store does not answer or failed while it was read (nothing written). ``--help`` imports
no MLflow (it answers at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any

from deepdiff.command import shell_command
from deepdiff.errors import ConfigError, check_output_dir
from deepdiff_study.store import DEFAULT_EXPERIMENT, StoreError, default_mlflow_uri, store_failure

SUMMARY_COLUMNS = (
    "grid_cell", "variant", "pair", "pair_name", "epigenome_a", "epigenome_b", "aux_mode", "margin",
    "best_valid_pcc", "best_test_pcc", "best_epoch", "epochs_trained", "trial_status", "trials", "trial_id",
    "run_id", "config",
)
EXPORT_FILES = ("configs", "summary.csv", "summary.parquet")


def check_out_dir(out: str | Path, *, overwrite: bool) -> None:
    """`out` must be a folder (or creatable as one) without an earlier export, unless `overwrite`."""
    check_output_dir(out, "--out")
    out = Path(out)
    earlier = [name for name in EXPORT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise ConfigError(f"--out {out}: already holds an export ({earlier[0]}); choose another --out or pass --overwrite")


def export_best(tracking_uri: str, experiment: str, out_dir: str | Path, *, overwrite: bool = False):
    """Write ``configs/<grid cell>.yaml`` per grid cell's best trial plus ``summary.csv`` and ``summary.parquet``.

    The export is written into a folder of its own beside `out_dir` and moved in whole: a failure
    (disk full) leaves `out_dir` as it was, and ``--overwrite`` leaves no config of an earlier export
    behind.
    """
    import shutil
    import tempfile

    import pandas as pd

    from deepdiff.config import save_config
    from deepdiff_study.records import Tag, best_trials, decode_params
    from deepdiff_study.untrusted import plain_name

    out = Path(out_dir)
    check_out_dir(out, overwrite=overwrite)
    cells = best_trials(tracking_uri, experiment)
    if not cells:
        raise ConfigError(f"--experiment {experiment!r}: no grid-cell runs in it at {tracking_uri}; nothing to export")
    for cell in cells:  # each names a file of the export: refused before anything is written
        plain_name(cell.grid_cell, f"--experiment {experiment!r}: grid-cell tag {Tag.GRID_CELL}")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
        try:
            rows = []
            for cell in cells:
                rows.append({**cell.row(), "config": None})
                if cell.run is None:
                    continue
                model_cfg, train_cfg = decode_params(cell.run.data.params, source=f"MLflow run {cell.run_id}")
                if cell.epochs_trained:
                    train_cfg = dataclasses.replace(train_cfg, epochs=cell.epochs_trained)
                path = save_config(staging / "configs" / f"{cell.grid_cell}.yaml", model_cfg, train_cfg, cell.data)
                rows[-1]["config"] = str(path.relative_to(staging))
            (staging / "configs").mkdir(exist_ok=True)
            table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
            table.to_csv(staging / "summary.csv", index=False)
            table.to_parquet(staging / "summary.parquet", index=False)
            old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=out))
            for name in EXPORT_FILES:  # the earlier export (--overwrite) moves aside whole, then goes
                if (out / name).exists():
                    os.replace(out / name, old / name)
                os.replace(staging / name, out / name)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        reason = os.strerror(err.errno) if err.errno else (err.strerror or type(err).__name__)
        raise ConfigError(f"--out {out}: cannot write there ({reason})") from None
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
    from deepdiff.command import OneLineParser, run_command

    parser = OneLineParser(prog="export_best", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment of the study (default {DEFAULT_EXPERIMENT})")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for configs/ and summary.{csv,parquet}")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    args = parser.parse_args(argv)
    uri = default_mlflow_uri() if args.mlflow_uri is None else args.mlflow_uri

    def read_failure(err: Exception) -> StoreError | None:  # the store failing while it is read: nothing written
        reason = store_failure(err)
        return None if reason is None else StoreError(
            f"--mlflow-uri {uri}: the MLflow store failed while read ({reason}); nothing was written")

    return run_command(lambda: _export(args, uri), os_error=None, translate=read_failure)


def _export(args: argparse.Namespace, uri: str) -> int:
    check_out_dir(args.out, overwrite=args.overwrite)  # before the store is asked anything
    from deepdiff_study.store import check_readable

    check_readable(uri)
    table = export_best(uri, args.experiment, args.out, overwrite=args.overwrite)
    print(format_table(table.to_dict("records")))
    written = table["config"].dropna()
    print(f"\nwrote {len(written)} configs to {Path(args.out) / 'configs'} and "
          f"{Path(args.out) / 'summary.csv'} (+ .parquet)")
    if len(written):
        print(f"reproduce one:  {shell_command('deepdiff', 'train', '--config', Path(args.out) / written.iloc[0], '--out', 'run1')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
