"""Run the DeepDiff paper's ablation study on Ray Tune (Optuna + ASHA per grid cell), logged to MLflow.

    python tune/run_ablation.py                      # quick start: every cell shape, one synthetic pair
    python tune/run_ablation.py --pairs all --data DIR   # the paper's 230 cells on the real files
    python tune/run_ablation.py --pairs 1,3 --variants raw,aux --dry-run

Grid cells come from ablations/paper.yaml (--grid); --pairs/--variants/--aux/--margins select a sub-grid.
Without --pairs the `quick` preset applies, with it the `paper` preset (--preset to choose); any flag
given wins over the preset. Results: Tune's files under --storage/--experiment, MLflow at --mlflow-uri.
Kill it at any time and rerun with --resume to finish the study.

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
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

from deepdiff.synthetic import check_synthetic_genes
from deepdiff.command import OneLineParser, run_command
from deepdiff.config import PRECISIONS
from deepdiff.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_STORE,
    ConfigError,
    DeepDiffError,
    check_input_dir,
    check_output_dir,
    path_problem,
)
from deepdiff_study.grid import PAPER_GRID, Grid, GridCell, Pair, load_grid
from deepdiff_study.plan import StudySettings, plan_grid_cells
from deepdiff_study.storage import StudyStorage
from deepdiff_study.store import DEFAULT_EXPERIMENT, default_mlflow_uri

MIN_STUDY_GENES = 20  # a synthetic pair with a few genes in every split
ADDRESS_TIMEOUT_S = 5  # a Ray head that does not accept a connection this fast is not there


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="run_ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the grid")
    g.add_argument("--grid", default=str(PAPER_GRID), metavar="FILE", help="grid and search space (default ablations/paper.yaml)")
    g.add_argument("--preset", help="run sizes from the grid file: quick (default without --pairs) or paper (default with --pairs)")
    g.add_argument("--pairs", help="all, pair numbers or names, comma-separated: all | 1,3 | E123-E003")
    g.add_argument("--variants", help="comma-separated variants (default all seven)")
    g.add_argument("--aux", help="aux modes for the aux variants: regression,classification (default both)")
    g.add_argument("--margins", help="contrastive margins for the siamese variants, e.g. 0.5,1,2,4")
    g.add_argument("--dry-run", action="store_true", help="print the grid cells and planned trials; train nothing "
                   "(with --address: also trials at once and GPU/CPU-hours from a short calibration on the cluster)")
    s = p.add_argument_group("search and ASHA")
    s.add_argument("--samples", type=int, help="trials per grid cell, the published setting first")
    s.add_argument("--max-epochs", type=int, help="epochs of a trial that is never stopped early")
    s.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped")
    s.add_argument("--reduction-factor", type=float, help="ASHA: keep the best 1/N at every rung")
    s.add_argument("--seed", type=int, default=0, help="seeds the samplers and every trial's training (default 0)")
    s.add_argument("--warm-starts", action="store_true",
                   help="give each grid cell, before its own proposals, up to a third of its trials of the best configurations "
                        "related grid cells found (same variant, other pairs, aux modes or margins); off by default: "
                        "it saved no trial-hours in benchmarks/bench_warmstart.py (see docs/warm-starts.md)")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="DIR", help="folder with the paper's files (E123.train.csv ...); default: synthetic pairs")
    d.add_argument("--synthetic-genes", type=int, help="genes per synthetic pair")
    r = p.add_argument_group("where results go")
    r.add_argument("--storage", default="tune_results", metavar="DIR|URI",
                   help="Tune results: a folder (default ./tune_results) or a URI every node reaches, e.g. s3://bucket/prefix")
    r.add_argument("--experiment", default=None, help="study name: Tune run and MLflow experiment (default deepdiff-ablation)")
    r.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    r.add_argument("--resume", action="store_true", help="finish the study saved under --storage/--experiment")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join this Ray cluster (default: start a local one)")
    c.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    c.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default 0.25 if the cluster has GPUs, else 0)")
    c.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial from its last checkpoint (default 1)")
    c.add_argument("--precision", choices=PRECISIONS,
                   help="what every trial's training steps compute in (default auto: bfloat16 or float16 mixed precision "
                        "on CUDA GPUs, float32 on CPUs); evaluation is float32 always")
    return p


# ---- resolving flags --------------------------------------------------------------------------------

def resolve(args: argparse.Namespace, grid: Grid) -> tuple[list[GridCell], StudySettings, dict]:
    """The selected grid cells, the run settings and the sizes as recorded (flags over the preset).

    Every number is checked here, before anything is written or started.
    """
    preset_name = args.preset if args.preset is not None else "paper" if args.pairs is not None else "quick"
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
        if not isinstance(sizes[key], int) or isinstance(sizes[key], bool) or sizes[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')} {sizes[key]!r}: expected a whole number >= 1 "
                              f"(set it or add it to preset {preset_name})")
    check_synthetic_genes(sizes["synthetic_genes"], "--synthetic-genes", MIN_STUDY_GENES)
    if not 0 <= args.seed < 2**32:  # it seeds the synthetic pairs and the baselines' folds (numpy, scikit-learn)
        raise ConfigError(f"--seed {args.seed}: expected an integer in [0, 2**32)")
    factor = sizes["reduction_factor"]
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 1:
        raise ConfigError(f"--reduction-factor: expected a finite number > 1, got {factor!r}")
    if not math.isfinite(args.cpus_per_trial) or args.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial: expected a finite number > 0, got {args.cpus_per_trial!r}")
    if args.gpus_per_trial is not None and (not math.isfinite(args.gpus_per_trial) or args.gpus_per_trial < 0):
        raise ConfigError(f"--gpus-per-trial: expected a finite number >= 0, got {args.gpus_per_trial!r}")
    if args.max_failures < 0:
        raise ConfigError("--max-failures: expected a whole number >= 0")
    cells = grid.grid_cells(pick("pairs", "pairs"), args.variants, args.aux, pick("margins", "margins"))
    variants = ", ".join(dict.fromkeys(c.variant for c in cells))
    for flag, given, used, what in (("--aux", args.aux, any(c.aux_mode for c in cells), "an auxiliary task"),
                                    ("--margins", args.margins, any(c.margin is not None for c in cells), "a contrastive loss")):
        if given is not None and not used:
            print(f"note: {flag} ignored: none of the selected variants ({variants}) has {what}", file=sys.stderr)
    if args.data is None:  # synthetic data stands in for each selected pair, under a name of its own
        cells = [dataclasses.replace(c, pair=c.pair.synthetic()) for c in cells]
    fixed = {} if args.precision is None else {"precision": args.precision}  # else each trial's default, auto
    settings = StudySettings(sizes["samples"], sizes["max_epochs"], sizes["grace_period"], float(factor), seed=args.seed,
                             fixed=fixed)
    return cells, settings, sizes


def check_flags(args: argparse.Namespace) -> None:
    """The flags naming places (grid, data, storage, store, study name, cluster), checked before anything is
    read, written or started: one `ConfigError` naming the flag and what was expected."""
    if args.experiment is not None:
        check_experiment_name(args.experiment)
    if not args.resume:
        problem = path_problem(args.grid, "grid file")
        if problem is not None:
            raise ConfigError(f"--grid {args.grid}: {problem}" + ("" if problem.endswith("not found") else "; expected a grid file (YAML)"))
        if args.data is not None:
            check_input_dir(args.data, "--data", "a folder with the paper's files (E123.train.csv ...)")
    if args.storage.strip() == "":
        raise ConfigError("--storage '': expected a folder or a URI such as s3://bucket/prefix")
    if "://" not in args.storage:
        check_output_dir(args.storage, "--storage")
    if args.mlflow_uri is not None and not args.resume:
        from deepdiff_study import store

        store.check_uri(args.mlflow_uri, write=not args.dry_run)
    if args.address is not None:
        check_address(args.address)
    check_trial_resources(args)


def check_trial_resources(args: argparse.Namespace) -> None:
    """Resources a trial can get: Ray takes fractions of one GPU or whole GPUs only; a local Ray has this
    machine's CPUs and GPUs and no autoscaler, so a trial needing more would wait for ever."""
    gpus = args.gpus_per_trial or 0.0
    if not (math.isfinite(gpus) and math.isfinite(args.cpus_per_trial)):
        return  # `resolve` says what is expected
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(f"--gpus-per-trial {gpus:g}: expected a fraction of one GPU or a whole number of GPUs")
    if args.address is not None:  # a cluster may add nodes that fit
        return
    cpus = usable_cpus()
    if args.cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial:g}: this process may use {cpus} CPUs, all a local Ray gets; "
                          f"ask for at most {cpus}, or join a cluster with --address")
    if gpus > 0:
        import torch

        have = torch.cuda.device_count()
        if gpus > have:
            raise ConfigError(f"--gpus-per-trial {gpus:g}: this machine has {have} GPU(s), all a local Ray gets; "
                              "drop the flag (trials then run on the CPU) or join a cluster with --address")


def given_study_flags(args: argparse.Namespace) -> dict[str, object]:
    """The flags that define a study (its manifest keeps them), as given: None where not given."""
    defaults = build_parser().parse_args([])
    names = ("grid", "preset", "pairs", "variants", "aux", "margins", "samples", "max_epochs", "grace_period",
             "reduction_factor", "seed", "data", "synthetic_genes", "mlflow_uri", "precision", "warm_starts")
    return {f"--{name.replace('_', '-')}": (None if getattr(args, name) == getattr(defaults, name) else getattr(args, name))
            for name in names}


def check_experiment_name(name: str) -> None:
    """A study name is an MLflow experiment and a folder under --storage: one plain folder name."""
    if name.strip() != name or name in ("", ".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ConfigError(f"--experiment {name!r}: expected a study name that is also a folder name (no '/', "
                          "not empty, '.' or '..', no surrounding spaces), e.g. deepdiff-ablation-2")


def check_address(address: str) -> None:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``; a HOST:PORT must accept a connection within
    a few seconds (Ray itself retries an address that does not answer for ever)."""
    import socket

    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT of a Ray cluster's head")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({err.strerror or type(err).__name__}); "
                          "start one (ray start --head) or drop --address to run on a local Ray") from None


def print_plan(cells: list[GridCell], settings: StudySettings, preset: str, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"{'grid cell':<40} {'variant':<16} {'pair':<14} {'aux mode':<15} {'margin':>6} {'trials':>6}", file=stream)
    for cell in cells:
        print(f"{cell.key:<40} {cell.variant:<16} {f'{cell.pair.number} {cell.pair.name}':<14} "
              f"{cell.aux_mode or '-':<15} {'-' if cell.margin is None else f'{cell.margin:g}':>6} {settings.samples:>6}", file=stream)
    print(f"\n{len(cells)} grid cells x {settings.samples} trials = {len(cells) * settings.samples} trials "
          f"(preset {preset}), at most {settings.max_epochs} epochs each; ASHA rungs at epochs "
          f"{', '.join(f'{r:g}' for r in settings.rungs()) or 'none'} (reduction factor {settings.reduction_factor:g})", file=stream)


# ---- running ----------------------------------------------------------------------------------------

def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the system has one (a batch scheduler's
    cpuset, `taskset`), else every core. A local Ray given the machine's count on a node where the job
    holds 8 of 64 cores would start 64 trials on 8 cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def start_ray(address: str | None) -> None:
    """Join `address` or start a local Ray using the CPUs this process may use (`usable_cpus`). Workers
    import the installed packages."""
    import ray

    from deepdiff_study import ray_private, trainable

    if ray.is_initialized():
        return
    quiet = {"logging_level": logging.WARNING, "logging_config": ray.LoggingConfig(log_level="WARNING"),
             # workers on every node of a cluster
             "runtime_env": {"env_vars": {**ray_private.worker_env(), **trainable.WORKER_ENV}}}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError) as err:  # e.g. auto without a cluster on this machine
            raise ConfigError(f"--address {address}: {str(err).strip().splitlines()[0]}") from None
    else:
        # "local": always a fresh local instance, never silently joining one found on this machine.
        ray.init(address="local", num_cpus=usable_cpus(), include_dashboard=False, **quiet)


def quiet_logs() -> None:
    """Our progress lines replace Tune's tables; keep library chatter at warnings."""
    from deepdiff_study import ray_private

    ray_private.apply_tune_env()
    from deepdiff_study import store

    for name in ("ray.tune", "ray.train", "ray.air", "alembic", "mlflow", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in store.NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name, level in ray_private.TUNE_INTERNAL_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def trial_dirname(trial) -> str:
    """Trial folders named by grid cell and trial id (Tune's default spells out the whole config)."""
    from deepdiff_study.records import grid_cell_of

    return f"{grid_cell_of(trial.config)}-{trial.trial_id}"


def make_tuner(trainable, plans, settings: StudySettings, *, storage: StudyStorage, name: str, callbacks: list, max_failures: int,
               warm_starts: bool = False):
    """One Tuner for the whole study: per-grid-cell Optuna behind `GridCellSearcher` (with warm starts across
    related grid cells if `warm_starts`), per-grid-cell ASHA behind `GridCellScheduler`."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from deepdiff_study.scheduler import GridCellScheduler
    from deepdiff_study.searcher import GridCellSearch, GridCellSearcher, SearcherSync

    searcher = GridCellSearcher(plans, seed=settings.seed, warm_starts=warm_starts)
    scheduler = GridCellScheduler(
        [p.key for p in plans], max_t=settings.max_epochs, grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=GridCellSearch(searcher), scheduler=scheduler, num_samples=searcher.total_samples, reuse_actors=True,
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            # result.json is what the scheduler replays after a resume; progress.csv is for people. SearcherSync
            # holds the same searcher as search_alg (one pickle, tuner.pkl, holds both): on --resume it makes
            # the restored searcher agree with the restored trials before Tune asks it for more.
            name=name, **storage.tune_kwargs(), verbose=0,
            callbacks=[*callbacks, SearcherSync(searcher), JsonLoggerCallback(), CSVLoggerCallback()],
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # Every checkpoint is kept while the study runs (`StudyStorage.prune_checkpoints` keeps each trial's
            # last one once all have ended). Tune's own num_to_keep=1 deletes a trial's previous checkpoint
            # when it registers a new one, before its next experiment snapshot is uploaded: a kill in
            # between left a snapshot naming a deleted checkpoint, and --resume failed that trial ("Could
            # not recover from checkpoint as it does not exist on storage anymore"). It also forced a
            # snapshot and its upload after every checkpoint.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def trial_gpus(args: argparse.Namespace) -> float:
    """--gpus-per-trial, or 0.25 when the (connected) cluster has GPUs, else 0."""
    import ray

    if args.gpus_per_trial is not None:
        return args.gpus_per_trial
    return 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def estimate_cost(args: argparse.Namespace, grid: Grid, cells: list[GridCell], settings: StudySettings, sizes: dict) -> None:
    """--dry-run --address: trials at once on the cluster and the GPU-/CPU-hours of the study, from a short
    calibration run there (`deepdiff_study.calibrate`)."""
    from deepdiff_study import calibrate

    plans = plan_grid_cells(grid, cells, settings)
    genes = calibrate.study_genes(args.data, plans, sizes["synthetic_genes"])
    start_ray(args.address)
    import ray

    gpus = trial_gpus(args)
    print(f"\ncalibrating on the cluster at {args.address}: {len({p.cell.variant for p in plans})} variant(s), "
          f"{calibrate.CALIBRATION_EPOCHS} epochs each (waits for the autoscaler if no node fits a trial yet)", flush=True)
    measured = calibrate.calibrate(plans, min(genes, calibrate.CALIBRATION_GENES_MAX), cpus=args.cpus_per_trial,
                                   gpus=gpus, seed=args.seed)
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    calibrate.print_estimate(plans, settings, measured, genes=genes, nodes=nodes, cpus=args.cpus_per_trial, gpus=gpus)


def check_sources(manifest: dict, storage: StudyStorage) -> list:
    """The data files and the MLflow store of a study (new or resumed): a missing file or a store that
    cannot be used is one clear error before anything is written and before Ray or Tune start."""
    from deepdiff_study import pairs as pair_files
    from deepdiff_study import store

    sources = pair_files.pair_sources([Pair(*p) for p in manifest["pairs"]], data_dir=manifest["data"],
                                      synthetic_root=storage.local_dir / "synthetic",
                                      genes=manifest["sizes"]["synthetic_genes"], seed=manifest["seed"])
    pair_files.check_files(sources)
    store.check_store(manifest["mlflow_uri"])
    return sources


def check_name_free(mlflow_uri: str, experiment: str, exp_dir) -> None:
    """A new study may not take a name MLflow already holds a study of (their runs would mix)."""
    from mlflow.tracking import MlflowClient

    from deepdiff_study import records

    client = MlflowClient(mlflow_uri)
    existing = client.get_experiment_by_name(experiment)
    if existing is not None and records.study_runs(client, existing.experiment_id, records.Kind.GRID_CELL):
        raise ConfigError(f"--experiment {experiment!r}: MLflow at {mlflow_uri} already holds runs of a study of "
                          f"that name (its Tune folder {exp_dir} is not there); choose another --experiment, or "
                          "pass the --storage it ran with and --resume")


def run(args: argparse.Namespace, *, train_fn=None) -> int:
    """The study the flags describe (or the saved one, with --resume); `train_fn`: the trial function
    (default `deepdiff_study.trainable.train_trial`). The study's lock is released when it returns or
    raises (an in-process caller may run the study again, e.g. with --resume)."""
    held: list = []
    try:
        return _run(args, train_fn, held)
    finally:
        for handle in held:
            if handle is not None:
                handle.close()


def _run(args: argparse.Namespace, train_fn, held: list) -> int:
    from deepdiff_study import pairs as pair_files
    from deepdiff_study import records, resume, store

    check_flags(args)
    quiet_logs()
    experiment = DEFAULT_EXPERIMENT if args.experiment is None else args.experiment
    storage = StudyStorage.parse(args.storage)
    exp_dir = storage.experiment_dir(experiment)
    manifest_path = exp_dir / resume.MANIFEST
    if not args.resume:  # every flag, the data and the store are checked before anything is written
        grid = load_grid(args.grid)
        cells, settings, sizes = resolve(args, grid)
        plans = plan_grid_cells(grid, cells, settings)
        manifest = {
            "experiment": experiment, "mlflow_uri": default_mlflow_uri() if args.mlflow_uri is None else args.mlflow_uri,
            "grid": str(Path(args.grid).resolve()), "sizes": sizes, "seed": args.seed,
            "data": str(Path(args.data).resolve()) if args.data is not None else None,
            "pairs": sorted({(c.pair.number, c.pair.epigenome_a, c.pair.epigenome_b, c.pair.imitates) for c in cells}),
            "cells": [c.key for c in cells],
        }
        sources = check_sources(manifest, storage)
        resume.check_start(exp_dir, experiment, resume=False)  # both before a lock file is written, and again under it
        check_name_free(manifest["mlflow_uri"], experiment, exp_dir)
    if args.resume and storage.is_local and not Path(storage.root).is_dir():  # refused without creating the folder
        resume.check_start(exp_dir, experiment, resume=True)
    held.append(resume.lock_study(args.storage, experiment))
    resume.check_start(exp_dir, experiment, resume=args.resume)
    if args.resume:
        manifest = resume.read_manifest(manifest_path)
        resume.check_saved_state(storage, experiment)
        print(f"resuming study {experiment!r} ({len(manifest['cells'])} grid cells) from {exp_dir}; "
              "its grid and sizes are those it started with")
        ignored = [flag for flag, value in given_study_flags(args).items() if value is not None]
        if ignored:
            print(f"note: {', '.join(ignored)} ignored with --resume: the study keeps the settings it started with "
                  f"(in {manifest_path})", file=sys.stderr)
        sources = check_sources(manifest, storage)
    held.append(resume.lock_store(manifest["mlflow_uri"], experiment))
    mlflow_uri = manifest["mlflow_uri"]
    pairs = [Pair(*p) for p in manifest["pairs"]]
    store.apply_http_defaults()
    if not args.resume:  # checked again under the store's lock: another driver may have started meanwhile
        check_name_free(mlflow_uri, experiment, exp_dir)
    started = time.monotonic()
    print(f"preparing data for {len(pairs)} pair(s)" + ("" if manifest["data"] else
          f" (synthetic, {manifest['sizes']['synthetic_genes']} genes each, in {storage.local_dir / 'synthetic'})"), flush=True)
    pair_data = pair_files.load_sources(sources, cache_dir=storage.local_dir / "cache")
    from deepdiff_study.baseline_runs import study_baselines  # linear, svr, svr2 per pair: once, on the driver

    study_baselines(mlflow_uri, experiment, pairs, pair_data, grid_file=manifest["grid"], seed=manifest["seed"])

    start_ray(args.address)
    import ray

    from deepdiff_study import trainable
    from deepdiff_study.progress import ProgressLine
    from deepdiff_study.tracker import MlflowTracker

    gpus = trial_gpus(args)
    refs = {number: ray.put(data) for number, data in pair_data.items()}
    del pair_data
    ended = records.ended_trials(mlflow_uri, experiment) if args.resume else {}
    bound = trainable.bind(train_fn or trainable.train_trial, refs, cpus=args.cpus_per_trial, gpus=gpus, ended=ended)

    if args.resume:
        tuner = resume.restore_tuner(bound, storage=storage, name=experiment)
    else:
        by_number = {s.pair.number: s for s in sources}
        tags = {
            c.key: {**records.grid_cell_tags(c), records.Tag.DATA: records.data_tag(
                by_number[c.pair.number].dir, c.pair.epigenome_a, c.pair.epigenome_b, by_number[c.pair.number].synthetic)}
            for c in cells
        }
        tracker = MlflowTracker(mlflow_uri, experiment, tags, {p.key: p.samples for p in plans},
                                artifact_location=records.artifact_location(mlflow_uri))
        total = sum(p.samples for p in plans)
        resume.write_manifest(manifest_path, manifest)
        tuner = make_tuner(bound, plans, settings, storage=storage, name=experiment,
                           callbacks=[tracker, ProgressLine(total)], max_failures=args.max_failures,
                           warm_starts=args.warm_starts)
        print_plan(cells, settings, sizes["preset"])
    print(f"\nrunning on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"{args.cpus_per_trial:g} CPU + {gpus:g} GPU per trial); MLflow: {mlflow_uri}", flush=True)
    # SIGTERM (`ray job stop`, a scheduler ending the job, `kill`) stops the study as Ctrl-C does: Tune
    # saves its state and the closing summary says what is unfinished (Ray's own handler just dies).
    trainable.quiet_interrupts_in_callbacks()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        results = tuner.fit()
    except DeepDiffError:
        raise
    except Exception as err:
        reason = store.store_failure(err)
        if reason is None:
            raise
        raise store.StoreError(f"the study stopped: its MLflow store or storage failed ({reason}); what ran so far "
                               "is saved: fix the cause and rerun the same command with --resume") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.monotonic() - started
    # Trials Tune failed; one that never reached MLflow was dropped by Tune before it started (no callback).
    # (After Ctrl-C or SIGTERM Tune marks the trials it stops TERMINATED in memory, so statuses in
    # `results` cannot tell a finished study from an interrupted one; MLflow's records can.)
    tune_errors = {Path(r.path).name.rsplit("-", 1)[-1] for r in results if r.error is not None}
    status = report(mlflow_uri, experiment, exp_dir, wall, manifest, tune_errors=tune_errors)
    if status != EXIT_INTERRUPTED:  # every trial ended: Tune's last snapshot names each one's last checkpoint
        storage.prune_checkpoints(experiment)
    return status


def trial_shortfall(runs: list, planned: int, tune_errors: set[str]) -> tuple[int, int]:
    """(unfinished, lost) of a study's `planned` trials, from its MLflow trial runs: unfinished ones
    (running, or never started: an interrupted study) are finished by --resume; lost ones Tune failed
    before they reached MLflow."""
    from deepdiff_study.records import Tag, TrialStatus

    ended = sum(1 for r in runs if TrialStatus(r.data.tags.get(Tag.STATUS, TrialStatus.RUNNING)).ended)
    lost = len(tune_errors - {r.data.tags[Tag.TRIAL_ID] for r in runs})
    return max(0, planned - ended - lost), lost


def report(mlflow_uri: str, experiment: str, exp_dir, wall: float, manifest: dict, *, tune_errors: frozenset[str] | set[str] = frozenset()) -> int:
    """The closing summary: best PCC per grid cell in plan order (the winner of each variant and pair
    marked), trial counts, the data, where everything is and how to look at it. `tune_errors`: ids of
    the trials Tune failed. Returns the driver's exit status."""
    from mlflow.tracking import MlflowClient

    from deepdiff_study.export import format_table, winners
    from deepdiff_study.progress import clock
    from deepdiff_study.records import Kind, Tag, TrialStatus, best_trials, study_runs

    client = MlflowClient(mlflow_uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    runs = study_runs(client, exp_id, Kind.TRIAL)
    statuses = [r.data.tags.get(Tag.STATUS) for r in runs]
    counts = {s: statuses.count(s) for s in TrialStatus}
    print(f"\nstudy {experiment!r}: {len(statuses)} trials: {counts[TrialStatus.COMPLETED]} completed, "
          f"{counts[TrialStatus.PRUNED]} stopped early by ASHA, {counts[TrialStatus.FAILED]} failed"
          + (f", {counts[TrialStatus.RUNNING]} unfinished" if counts[TrialStatus.RUNNING] else "")
          + f"; wall time {clock(wall)}\n")
    order = {key: i for i, key in enumerate(manifest["cells"])}
    rows = sorted(best_trials(mlflow_uri, experiment), key=lambda r: order.get(r["grid_cell"], len(order)))
    for pair in (Pair(*p) for p in manifest["pairs"]):
        data = next((r["data"] for r in rows if r["pair"] == pair.number and r["data"]), None) or {}
        where = (f"synthetic data standing in for {pair.imitates} ({data['synthetic']['genes']} genes, seed "
                 f"{data['synthetic']['seed']}) in {data['dir']}" if data.get("synthetic")
                 else f"the files in {data.get('dir', manifest['data'])}")
        print(f"pair {pair.number} {pair.name}: {where}")
    print()
    print(format_table(rows, winners=winners(rows)))
    print("* best grid cell of its variant and pair (by valid PCC)")
    db = mlflow_uri[len("sqlite:///"):] if mlflow_uri.startswith("sqlite:///") else None
    print(f"\nMLflow:        {mlflow_uri}" + (f"  (database file {db})" if db else ""))
    print(f"Tune results:  {exp_dir}  (rerun with --resume to finish an interrupted study)")
    if mlflow_uri.startswith(("http://", "https://")):  # a tracking server (on a cluster: reached through a tunnel)
        print(f"Look at it:    open {mlflow_uri} (the head's server: `ray attach cluster.yaml -p 5000`, then http://127.0.0.1:5000),")
    else:
        print(f"Look at it:    mlflow ui --backend-store-uri {mlflow_uri}   then open http://127.0.0.1:5000,")
    print("               switch to 'Model training' (top left) if MLflow opens its GenAI view, click experiment")
    print(f"               {experiment!r}; tick grid-cell runs and press Compare (params = each one's best trial).")
    print(f"Export:        python tune/export_best.py --experiment {experiment} --out best_configs"
          + ("" if mlflow_uri == default_mlflow_uri() else f" --mlflow-uri {mlflow_uri}"))
    write_study_report(mlflow_uri, experiment, exp_dir)
    planned = len(manifest["cells"]) * manifest["sizes"]["samples"]
    unfinished, lost = trial_shortfall(runs, planned, set(tune_errors))
    if unfinished:
        print(f"\ninterrupted: {unfinished} of the {planned} trials unfinished; rerun the same command with --resume "
              "to finish the study", file=sys.stderr)
        return EXIT_INTERRUPTED
    if lost:  # Tune ended some without a callback: they never reached MLflow
        print(f"error: {lost} of the {planned} planned trials have no record in MLflow (Tune "
              f"ended them before they started; see the error.txt files in {exp_dir}); the table above lacks them",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def write_study_report(mlflow_uri: str, experiment: str, exp_dir) -> None:
    """`deepdiff_study.report` into <study folder>/report (./report-<experiment> for remote storage);
    a failure of the report never fails the study: one warning line."""
    out = exp_dir / "report" if isinstance(exp_dir, Path) else Path(f"report-{experiment}")
    try:
        from deepdiff_study.report import write_report

        print(f"Report:        {write_report(mlflow_uri, experiment, out)}  (open it in a browser)")
    except Exception as err:  # noqa: BLE001
        print(f"warning: the study report was not written ({type(err).__name__}: {err}); "
              f"try python ablations/report.py --experiment {experiment} --out {out} --mlflow-uri {mlflow_uri}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: dry_run(args) if args.dry_run else run(args),
        # the storage failing (disk full, read-only) while the driver writes its files
        os_error=(EXIT_STORE, "; fix it and rerun the same command (with --resume once the study started)"),
        interrupted="\ninterrupted; rerun the same command to continue (with --resume once the study started: "
                    "its folder holds tuner.pkl)",
    )


def dry_run(args: argparse.Namespace) -> int:
    """--dry-run: the grid cells and planned trials (with --address: the cost, from a short calibration)."""
    check_flags(args)
    grid = load_grid(args.grid)
    cells, settings, sizes = resolve(args, grid)
    if args.data is not None:  # the same check as the real start, so a dry run vouches for the data
        from deepdiff_study import pairs as pair_files

        chosen = sorted({c.pair for c in cells}, key=lambda p: p.number)
        pair_files.check_files(pair_files.pair_sources(chosen, data_dir=args.data, synthetic_root=".", genes=0))
    print_plan(cells, settings, sizes["preset"])
    if args.address:
        estimate_cost(args, grid, cells, settings, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
