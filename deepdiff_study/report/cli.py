"""The report's command line: ``deepdiff-report`` and ``python ablations/report.py`` (`main`)."""

from __future__ import annotations

import argparse

from deepdiff.command import OneLineParser, run_command, shell_command
from deepdiff.errors import ConfigError
from deepdiff_study.records import DEFAULT_EXPERIMENT, default_mlflow_uri
from deepdiff_study.report.write import write_report

# Flags of the report's old --seeds (it trained replicates); training moved to the study command.
MOVED_FLAGS = ("seeds", "address", "cpus_per_trial", "gpus_per_trial", "replicate_storage")


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    p = OneLineParser(prog="deepdiff-report", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"the study's MLflow experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, the tables and figures")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    p.add_argument("--no-log", action="store_true", help="do not log the files as a kind=report run in the experiment")
    p.add_argument("--attention-pair", type=int, metavar="N",
                   help="draw the attention of pair N's best stored model (default: the first pair with one)")
    p.add_argument("--seeds", type=int, metavar="K", help="moved: deepdiff-ablation --replicates K --experiment E "
                   "retrains every grid cell's best configuration with K other seeds, then writes this report")
    for name in MOVED_FLAGS[1:]:  # the rest of --seeds' flags: accepted only to say where they went
        p.add_argument(f"--{name.replace('_', '-')}", help=argparse.SUPPRESS)
    return p


def moved(args: argparse.Namespace) -> str | None:
    """The one-line pointer to the study command when a flag of the old --seeds is given."""
    given = [name for name in MOVED_FLAGS if getattr(args, name) is not None]
    if not given:
        return None
    k = args.seeds if args.seeds is not None else "K"
    flag = "--" + given[0].replace("_", "-")
    command = shell_command("deepdiff-ablation", "--replicates", str(k), "--experiment", args.experiment)
    return f"deepdiff-report {flag} moved to the study command: {command} (it retrains, then writes this report)"


def main(argv: list[str] | None = None) -> int:
    from deepdiff_study.report import __doc__ as description  # the package's docstring is the --help text

    args = build_parser(description).parse_args(argv)

    def body() -> int:
        pointer = moved(args)
        if pointer:
            raise ConfigError(pointer)
        index = write_report(args.mlflow_uri or default_mlflow_uri(), args.experiment, args.out, log=not args.no_log,
                             attention_pair=args.attention_pair)
        print(f"report: {index}")
        return 0

    return run_command(body)
