"""Run the DeepDiff paper's ablation study on Ray Tune (Optuna + ASHA per grid cell), logged to MLflow.

    python tune/run_ablation.py                      # quick start: every cell shape, one synthetic pair
    python tune/run_ablation.py --pairs all --data DIR   # the paper's 230 cells on the real files
    python tune/run_ablation.py --pairs 1,3 --variants raw,aux --dry-run
    python tune/run_ablation.py --replicates 3 --experiment NAME   # a finished study's winners, 3 more seeds

Grid cells come from ablations/paper.yaml (--grid); --pairs/--variants/--aux/--margins select a sub-grid.
Without --pairs the `quick` preset applies, with it the `paper` preset (--preset to choose); any flag
given wins over the preset. Results: Tune's files under --storage/--experiment, MLflow at --mlflow-uri.
Kill it at any time and rerun with --resume to finish the study. With --replicates K, the finished
study --experiment has each grid cell's best configuration trained again with K other seeds (those
MLflow holds are reused), then its report is written again.

Every error is one line ``error: ...`` on stderr, without a traceback. Exit status:
0 the study (or dry run) ended with every planned trial recorded; 1 it ended, but trials Tune planned
never reached MLflow (see the error line); 2 a flag, the grid file, the data, the study folder or
manifest, Tune's saved state, the MLflow URI or the Ray address is wrong: nothing was written or
started; 75 the MLflow store does not answer, or it or the storage failed during the study: what ran
is saved, fix the cause and rerun (with --resume once the study started); 130 interrupted (Ctrl-C,
SIGTERM) or trials left unfinished: rerun the same command with --resume.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Iterator

from pydantic.fields import FieldInfo

from deepdiff.command import OneLineParser, run_command
from deepdiff.errors import EXIT_STORE, ConfigError
from deepdiff_study import study
from deepdiff_study.schema import FLAG_GROUPS, GRID, RESULTS, RunSizes
from deepdiff_study.spec import StudySpec, flag
from deepdiff_study.summary import write_study_report  # noqa: F401 (the report's tests call it from here)
from deepdiff_study.tuner import quiet_logs, usable_cpus  # noqa: F401 (tests/ray_session.py, benchmarks/bench_tune.py)

REPLICATES = "replicates (retraining a finished study)"


def spec_fields() -> Iterator[tuple[str, FieldInfo]]:
    """Every field of a `StudySpec` that is a flag, the run sizes in their place."""
    for name, info in StudySpec.model_fields.items():
        yield from RunSizes.model_fields.items() if name == "sizes" else [(name, info)]


def _value_type(annotation: object) -> tuple[type, tuple | None]:
    """(argparse type, choices) of a field's type: int and float as such, a Literal as its choices, else str."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    first = options[0] if len(options) == 1 else str
    if typing.get_origin(first) is typing.Annotated:
        first = typing.get_args(first)[0]
    if typing.get_origin(first) is typing.Literal:
        return str, typing.get_args(first)
    return (first, None) if first in (int, float) else (str, None)


def build_parser() -> argparse.ArgumentParser:
    """The flags: one per `StudySpec` field (its description the help), plus what the command does with
    them (--dry-run, --resume, --replicates)."""
    p = OneLineParser(prog="run_ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {title: p.add_argument_group(title) for title in FLAG_GROUPS}
    for name, info in spec_fields():
        extra = info.json_schema_extra
        kind, choices = _value_type(info.annotation)
        options = {"metavar": extra["metavar"]} if extra["metavar"] else {}
        if info.annotation is bool:  # a switch: given or not (None: not given, the spec's default)
            groups[extra["flag_group"]].add_argument(flag(name), dest=name, action="store_const", const=True,
                                                     help=info.description)
            continue
        groups[extra["flag_group"]].add_argument(flag(name), dest=name, type=kind, choices=choices,
                                                 help=info.description, **options)
        if name == "margins":
            groups[GRID].add_argument("--dry-run", action="store_true", help="print the grid cells and planned trials; "
                                      "train nothing (with --address: also trials at once and GPU/CPU-hours from a short "
                                      "calibration on the cluster)")
        elif name == "mlflow_uri":
            groups[RESULTS].add_argument("--resume", action="store_true",
                                         help="finish the study saved under --storage/--experiment")
    r = p.add_argument_group(REPLICATES)
    r.add_argument("--replicates", type=int, metavar="K", help="retrain every grid cell's best configuration of the "
                   "finished study --experiment with K other seeds (replicates already in MLflow are reused), then write "
                   "its report again (into --storage/--experiment/report); --address, --cpus-per-trial and "
                   "--gpus-per-trial apply")
    r.add_argument("--replicate-storage", metavar="DIR|URI", help="with --replicates: where Tune keeps its files "
                   "(default a temporary folder, removed after; on a multi-node cluster one every node reaches)")
    return p


def spec_from_flags(args: argparse.Namespace) -> StudySpec:
    """The `StudySpec` the flags describe (a flag not given leaves the spec's default, or the preset's)."""
    given = {name: getattr(args, name) for name, _ in spec_fields() if getattr(args, name) is not None}
    sizes = {name: given.pop(name) for name in RunSizes.model_fields if name in given}
    return StudySpec(**given, sizes=sizes)


def invoked_as() -> list[str]:
    """The words that start this command as it was started: ``python3 tune/run_ablation.py`` or the
    console script ``deepdiff-ablation`` (also when `main` is called from Python)."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "run_ablation.py":
        return [os.path.basename(sys.executable) or "python3", script]
    return ["deepdiff-ablation"]


def run(args: argparse.Namespace, *, train_fn=None, argv: list[str] | None = None) -> int:
    """What the parsed flags ask for: a dry run, replicates of a finished study, or the study (resumed
    with --resume); `train_fn`: the trial function (default `deepdiff_study.trainable.train_trial`);
    `argv`: the flags as given (for the resume command a fault prints)."""
    spec = spec_from_flags(args)
    if args.replicates is not None:
        return replicate(args, spec, train_fn=train_fn)
    if args.replicate_storage is not None:
        raise ConfigError("--replicate-storage: applies only with --replicates K")
    if args.dry_run:
        return study.dry_run(spec)
    command = None if argv is None else [*invoked_as(), *argv]
    return study.run(spec, resume=args.resume, train_fn=train_fn, command=command)


def replicate(args: argparse.Namespace, spec: StudySpec, *, train_fn=None) -> int:
    """--replicates K (`deepdiff_study.replicates.retrain`); the study's own settings are MLflow's."""
    for name in ("resume", "dry_run"):
        if getattr(args, name):
            raise ConfigError(f"--replicates {args.replicates}: retrains a finished study; drop {flag(name)}")
    ignored = [f for f in spec.saved_settings_set() if f != "--mlflow-uri"]
    if ignored:
        print(f"note: {', '.join(ignored)} ignored with --replicates: each grid cell's best configuration is "
              "retrained as MLflow records it", file=sys.stderr)
    from deepdiff_study.replicates import retrain  # Ray

    retrain(spec, args.replicates, storage=args.replicate_storage, train_fn=train_fn)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    again = ("the replicates MLflow holds are not trained again" if args.replicates is not None else
             "with --resume once the study started: its folder holds tuner.pkl")
    return run_command(
        lambda: run(args, argv=argv),
        # the storage failing (disk full, read-only) while the driver writes its files
        os_error=(EXIT_STORE, "; fix it and rerun the same command (with --resume once the study started)"),
        interrupted=f"\ninterrupted; rerun the same command to continue ({again})",
    )


if __name__ == "__main__":
    sys.exit(main())
