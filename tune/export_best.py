"""Export the best trial of every cell of a study as `deepdiff train --config` files plus a summary.

    python tune/export_best.py --experiment deepdiff-ablation --out best/

writes best/configs/<cell>.yaml (one per cell) and best/summary.{csv,parquet} (one row per cell:
variant, pair, aux mode, margin, best valid PCC, its test PCC, trial id, run id, config file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root: `deepdiff`, `ablations`

from deepdiff.errors import DeepDiffError  # noqa: E402

from export import export_best, format_table  # noqa: E402
from tracking import DEFAULT_EXPERIMENT, default_mlflow_uri  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment of the study (default {DEFAULT_EXPERIMENT})")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for configs/ and summary.{csv,parquet}")
    parser.add_argument("--mlflow-uri", default=None, help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    args = parser.parse_args(argv)
    try:
        table = export_best(args.mlflow_uri or default_mlflow_uri(), args.experiment, args.out)
    except DeepDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(table.to_dict("records")))
    print(f"\nwrote {int(table['config'].notna().sum())} configs to {Path(args.out) / 'configs'} and "
          f"{Path(args.out) / 'summary.csv'} (+ .parquet)")
    print(f"reproduce one:  deepdiff train --config {Path(args.out) / 'configs' / (table['cell'].iloc[0] + '.yaml')} --out run1"
          if len(table) else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
