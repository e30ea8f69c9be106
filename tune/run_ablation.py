"""Run the DeepDiff paper's ablation study on Ray Tune (Optuna + ASHA per cell), logged to MLflow.

    python tune/run_ablation.py                      # quick start: every cell shape, one synthetic pair
    python tune/run_ablation.py --pairs all --data DIR   # the paper's 230 cells on the real files
    python tune/run_ablation.py --pairs 1,3 --variants raw,aux --dry-run

Cells come from ablations/paper.yaml (--grid); --pairs/--variants/--aux/--margins select a sub-grid.
Without --pairs the `quick` preset applies, with it the `paper` preset (--preset to choose); any flag
given wins over the preset. Results: Tune's files under --storage/--experiment, MLflow at --mlflow-uri.
Kill it at any time and rerun with --resume to finish the study.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

TUNE_DIR = Path(__file__).resolve().parent
REPO_ROOT = TUNE_DIR.parent
sys.path.insert(1, str(REPO_ROOT))  # `deepdiff` and `ablations` without installing (tune/ is sys.path[0])

from deepdiff.errors import ConfigError, DeepDiffError  # noqa: E402

from ablations.grid import PAPER_GRID, Cell, Grid, Pair, load_grid  # noqa: E402

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the grid")
    g.add_argument("--grid", default=str(PAPER_GRID), metavar="FILE", help="grid and search space (default ablations/paper.yaml)")
    g.add_argument("--preset", help="run sizes from the grid file: quick (default without --pairs) or paper (default with --pairs)")
    g.add_argument("--pairs", help="all, pair numbers or names, comma-separated: all | 1,3 | E123-E003")
    g.add_argument("--variants", help="comma-separated variants (default all seven)")
    g.add_argument("--aux", help="aux modes for the aux variants: regression,classification (default both)")
    g.add_argument("--margins", help="contrastive margins for the siamese variants, e.g. 0.5,1,2,4")
    g.add_argument("--dry-run", action="store_true", help="print the cells and planned trials; train nothing")
    s = p.add_argument_group("search and ASHA")
    s.add_argument("--samples", type=int, help="trials per cell, the published setting first")
    s.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped early")
    s.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped")
    s.add_argument("--reduction-factor", type=float, help="ASHA: keep the best 1/N at every rung")
    s.add_argument("--seed", type=int, default=0, help="seeds the samplers and every trial's training (default 0)")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="DIR", help="folder with the paper's files (E123.train.csv ...); default: synthetic pairs")
    d.add_argument("--synthetic-genes", type=int, help="genes per synthetic pair")
    r = p.add_argument_group("where results go")
    r.add_argument("--storage", default="tune_results", metavar="DIR", help="Tune results folder (default ./tune_results)")
    r.add_argument("--experiment", default=None, help="study name: Tune run and MLflow experiment (default deepdiff-ablation)")
    r.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    r.add_argument("--resume", action="store_true", help="finish the study saved under --storage/--experiment")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join this Ray cluster (default: start a local one)")
    c.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    c.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default 0.25 if the cluster has GPUs, else 0)")
    c.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial from its last checkpoint (default 1)")
    return p


# ---- resolving flags --------------------------------------------------------------------------------

def resolve(args: argparse.Namespace, grid: Grid) -> tuple[list[Cell], dict]:
    """The selected cells and the run sizes (flags over the preset)."""
    preset_name = args.preset or ("paper" if args.pairs is not None else "quick")
    if preset_name not in grid.presets:
        raise ConfigError(f"--preset {preset_name!r}: not in {grid.source}; expected one of {', '.join(grid.presets)}")
    preset = grid.presets[preset_name]
    pick = lambda flag, key: getattr(args, flag) if getattr(args, flag) is not None else preset.get(key)  # noqa: E731
    sizes = {
        "preset": preset_name,
        "samples": pick("samples", "samples"), "max_epochs": pick("max_epochs", "max_epochs"),
        "grace_period": pick("grace_period", "grace_period"), "reduction_factor": pick("reduction_factor", "reduction_factor"),
        "synthetic_genes": pick("synthetic_genes", "synthetic_genes"),
    }
    for key in ("samples", "max_epochs", "grace_period", "synthetic_genes"):
        if not isinstance(sizes[key], int) or sizes[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')}: expected a whole number >= 1 (set it or add it to preset {preset_name})")
    if sizes["synthetic_genes"] < 20:
        raise ConfigError("--synthetic-genes: expected at least 20 (a few genes per split)")
    if not isinstance(sizes["reduction_factor"], (int, float)) or sizes["reduction_factor"] <= 1:
        raise ConfigError("--reduction-factor: expected a number > 1")
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.max_failures < 0:
        raise ConfigError("--max-failures: expected a whole number >= 0")
    cells = grid.cells(pick("pairs", "pairs"), args.variants, args.aux, pick("margins", "margins"))
    return cells, sizes


def print_plan(cells: list[Cell], sizes: dict, stream=None) -> None:
    stream = stream or sys.stdout
    rungs = []
    t = min(sizes["grace_period"], sizes["max_epochs"])
    while t < sizes["max_epochs"]:
        rungs.append(round(t, 2))
        t *= sizes["reduction_factor"]
    print(f"{'cell':<40} {'variant':<16} {'pair':<14} {'aux mode':<15} {'margin':>6} {'trials':>6}", file=stream)
    for cell in cells:
        print(f"{cell.key:<40} {cell.variant:<16} {f'{cell.pair.number} {cell.pair.name}':<14} "
              f"{cell.aux_mode or '-':<15} {'-' if cell.margin is None else f'{cell.margin:g}':>6} {sizes['samples']:>6}", file=stream)
    print(f"\n{len(cells)} cells x {sizes['samples']} trials = {len(cells) * sizes['samples']} trials "
          f"(preset {sizes['preset']}), at most {sizes['max_epochs']} epochs each; ASHA rungs at epochs "
          f"{', '.join(map(str, rungs)) or 'none'} (reduction factor {sizes['reduction_factor']:g})", file=stream)


# ---- running ----------------------------------------------------------------------------------------

def start_ray(address: str | None) -> None:
    """Join `address` or start a local Ray using every core; workers import tune/ and the repo root."""
    import ray

    if ray.is_initialized():
        return
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(TUNE_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}}
    quiet = {"logging_level": logging.WARNING, "logging_config": ray.LoggingConfig(log_level="WARNING")}
    if address:
        ray.init(address=address, runtime_env=runtime_env, **quiet)
    else:
        # "local": always a fresh local instance, never silently joining one found on this machine.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env, **quiet)


def quiet_logs() -> None:
    """Our progress lines replace Tune's tables; keep library chatter at warnings."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's legacy output engine honours verbose=0 (silent)
    # Every checkpoint of a trial forces an experiment snapshot (num_to_keep=1): intended, see study.py.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's default loggers include TensorBoard files; the study adds the JSON/CSV ones it needs.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    for name in ("ray.tune", "ray.train", "ray.air", "alembic", "mlflow", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Tuner.restore reads every trial's results and warns about trials that had not reported yet.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # A failing trial's traceback is in its error.txt; the progress line and MLflow carry its last line.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(args: argparse.Namespace, *, train_fn=None) -> int:
    """The study the flags describe (or the saved one, with --resume); `train_fn`: the trial function
    (default `trainable.train_cell`)."""
    import study
    import tracking

    experiment = args.experiment or tracking.DEFAULT_EXPERIMENT
    storage = Path(args.storage).resolve()
    exp_dir = storage / experiment
    manifest_path = exp_dir / study.MANIFEST
    saved = (exp_dir / "tuner.pkl").is_file()

    if args.resume:
        if not saved or not manifest_path.is_file():
            raise ConfigError(f"--resume: no study to resume in {exp_dir}; run without --resume to start it")
        manifest = study.read_manifest(manifest_path)
        print(f"resuming study {experiment!r} ({len(manifest['cells'])} cells) from {exp_dir}; "
              "its grid and sizes are those it started with")
    else:
        if saved or manifest_path.exists():
            raise ConfigError(f"--experiment {experiment!r}: a study is already saved in {exp_dir}; "
                              "rerun with --resume to finish it, or choose another --experiment or --storage")
        grid = load_grid(args.grid)
        cells, sizes = resolve(args, grid)
        settings = study.StudySettings(sizes["samples"], sizes["max_epochs"], sizes["grace_period"],
                                       float(sizes["reduction_factor"]), seed=args.seed)
        plans = study.plan_cells(grid, cells, settings)
        manifest = {
            "experiment": experiment, "mlflow_uri": args.mlflow_uri or tracking.default_mlflow_uri(),
            "grid": str(Path(args.grid).resolve()), "sizes": sizes, "seed": args.seed,
            "data": str(Path(args.data).resolve()) if args.data else None,
            "pairs": sorted({(c.pair.number, c.pair.cell_a, c.pair.cell_b) for c in cells}),
            "cells": [c.key for c in cells],
        }
    quiet_logs()
    mlflow_uri = manifest["mlflow_uri"]
    pairs = [Pair(*p) for p in manifest["pairs"]]

    # Data first: a missing file is one clear error before Ray, MLflow or Tune start.
    import study_data

    sources = study_data.pair_sources(pairs, data_dir=manifest["data"], synthetic_root=storage / "synthetic",
                                      genes=manifest["sizes"]["synthetic_genes"], seed=manifest["seed"])
    study_data.check_files(sources)
    if not args.resume:
        from mlflow.tracking import MlflowClient

        existing = MlflowClient(mlflow_uri).get_experiment_by_name(experiment)
        if existing is not None and tracking.study_runs(MlflowClient(mlflow_uri), existing.experiment_id, tracking.ROLE_CELL):
            raise ConfigError(f"--experiment {experiment!r}: MLflow at {mlflow_uri} already holds runs of a study of "
                              "that name; choose another --experiment (or --resume the study it belongs to)")
    started = time.monotonic()
    print(f"preparing data for {len(pairs)} pair(s)" + ("" if manifest["data"] else
          f" (synthetic, {manifest['sizes']['synthetic_genes']} genes each, in {storage / 'synthetic'})"), flush=True)
    pair_data = study_data.load_sources(sources, cache_dir=storage / "cache")

    start_ray(args.address)
    import ray

    import trainable
    from progress_line import ProgressLine

    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    refs = {number: ray.put(data) for number, data in pair_data.items()}
    del pair_data
    ended = tracking.ended_trials(mlflow_uri, experiment) if args.resume else {}
    bound = trainable.bind(train_fn or trainable.train_cell, refs, cpus=args.cpus_per_trial, gpus=gpus, ended=ended)

    if args.resume:
        tuner = study.restore_tuner(bound, storage=storage, name=experiment)
    else:
        by_number = {s.pair.number: s for s in sources}
        cell_tags = {
            c.key: {**c.tags(), "data": tracking.data_tag(by_number[c.pair.number].dir, c.pair.cell_a, c.pair.cell_b,
                                                           by_number[c.pair.number].synthetic)}
            for c in cells
        }
        tracker = tracking.MlflowTracker(mlflow_uri, experiment, cell_tags, {p.key: p.samples for p in plans},
                                         artifact_location=tracking.artifact_location(mlflow_uri))
        total = sum(p.samples for p in plans)
        study.write_manifest(manifest_path, manifest)
        tuner = study.make_tuner(bound, plans, settings, storage=storage, name=experiment,
                                 callbacks=[tracker, ProgressLine(total)], max_failures=args.max_failures)
        print_plan(cells, sizes)
    print(f"\nrunning on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"{args.cpus_per_trial:g} CPU + {gpus:g} GPU per trial); MLflow: {mlflow_uri}", flush=True)
    tuner.fit()
    wall = time.monotonic() - started
    return report(mlflow_uri, experiment, exp_dir, wall)


def report(mlflow_uri: str, experiment: str, exp_dir: Path, wall: float) -> int:
    """The closing summary: best PCC per cell, trial counts, where everything is, how to look at it."""
    from mlflow.tracking import MlflowClient

    import tracking
    from export import best_trials, format_table

    client = MlflowClient(mlflow_uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    statuses = [r.data.tags.get("status") for r in tracking.study_runs(client, exp_id, tracking.ROLE_TRIAL)]
    counts = {s: statuses.count(s) for s in ("completed", "pruned", "failed", "running")}
    print(f"\nstudy {experiment!r}: {len(statuses)} trials: {counts['completed']} completed, "
          f"{counts['pruned']} stopped early by ASHA, {counts['failed']} failed"
          + (f", {counts['running']} unfinished" if counts["running"] else "")
          + f"; wall time {int(wall) // 60}:{int(wall) % 60:02d}\n")
    print(format_table(best_trials(mlflow_uri, experiment)))
    db = mlflow_uri[len("sqlite:///"):] if mlflow_uri.startswith("sqlite:///") else None
    print(f"\nMLflow:        {mlflow_uri}" + (f"  (database file {db})" if db else ""))
    print(f"Tune results:  {exp_dir}  (rerun with --resume to finish an interrupted study)")
    print(f"Look at it:    mlflow ui --backend-store-uri {mlflow_uri}   then open http://127.0.0.1:5000,")
    print(f"               experiment {experiment!r}: expand a cell's run to see its trials; tick runs and press")
    print("               Compare for the parallel-coordinates and metric views (valid_pcc by step = epoch).")
    print(f"Export:        python tune/export_best.py --experiment {experiment} --out best_configs"
          + ("" if mlflow_uri == tracking.default_mlflow_uri() else f" --mlflow-uri {mlflow_uri}"))
    return 0 if counts["running"] == 0 else EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dry_run:
            cells, sizes = resolve(args, load_grid(args.grid))
            print_plan(cells, sizes)
            return 0
        return run(args)
    except DeepDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted; rerun with --resume to finish the study", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
