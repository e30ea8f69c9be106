"""The Ray a study runs on and its one Tuner: a local Ray sized to this process's CPUs (or a cluster
joined), library logs kept at warnings, the trials' GPUs, and the Tuner with per-grid-cell Optuna
(`deepdiff_study.searcher`) and per-grid-cell ASHA (`deepdiff_study.scheduler`). Ray, Optuna at call time."""

from __future__ import annotations

import logging
import os

from deepdiff.errors import ConfigError
from deepdiff_study.schema import RunSizes
from deepdiff_study.storage import StudyStorage


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


def trial_gpus(gpus_per_trial: float | None) -> float:
    """`gpus_per_trial`, or 0.25 when the (connected) cluster has GPUs, else 0."""
    import ray

    if gpus_per_trial is not None:
        return gpus_per_trial
    return 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def trial_dirname(trial) -> str:
    """Trial folders named by grid cell and trial id (Tune's default spells out the whole config)."""
    from deepdiff_study.records import grid_cell_of

    return f"{grid_cell_of(trial.config)}-{trial.trial_id}"


def make_tuner(trainable, plans, sizes: RunSizes, *, seed: int, storage: StudyStorage, name: str, callbacks: list,
               max_failures: int, warm_starts: bool = False):
    """One Tuner for the whole study: per-grid-cell Optuna behind `GridCellSearcher` (seeded with `seed`; with
    warm starts across related grid cells if `warm_starts`), per-grid-cell ASHA behind `GridCellScheduler`."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from deepdiff_study.scheduler import GridCellScheduler
    from deepdiff_study.searcher import GridCellSearch, GridCellSearcher, SearcherSync

    searcher = GridCellSearcher(plans, seed=seed, warm_starts=warm_starts)
    scheduler = GridCellScheduler(
        [p.key for p in plans], max_t=sizes.max_epochs, grace_period=min(sizes.grace_period, sizes.max_epochs),
        reduction_factor=sizes.reduction_factor,
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
