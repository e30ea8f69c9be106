"""``deepdiff-ablation --replicates K``: the best configuration of every grid cell of a finished study
retrained over K other seeds (`retrain`: train them, then write the study's report again).

One Ray Tune run, one trial per (grid cell, seed) that MLflow does not hold yet: the study's trainable
(`deepdiff_study.trainable.train_trial`) on the study's pairs (found again from the grid cells' ``data``
tags, `deepdiff_study.pairs.recorded_source`, and put in the object store once), a fixed list of
configs (`FixedConfigs`, a searcher that hands them out in order: no search; no scheduler, so no ASHA). A replicate's config is its grid cell's best trial's params (`records.decode_params`, the
planned epochs, not the epoch ASHA may have stopped it at) with ``seed`` = one of
`records.replicate_seeds`. `ReplicateLogger` (a Tune callback on the driver) records every ended trial
as an MLflow run tagged ``kind=replicate`` in the study's experiment, nested under its grid cell's run
beside the trials (layout in `deepdiff_study.records`).

Re-running reuses what MLflow holds: a (grid cell, seed) with a completed replicate of the grid cell's
current best trial (tag ``replicate_of``) is not trained again; a failed one is. Tune's own files go to
`storage` (default a temporary folder, removed at the end: MLflow is the record; on a multi-node
cluster pass a storage every node reaches, e.g. the study's ``s3://`` URI).

Imports Ray: the command line (`deepdiff_study.driver`) imports this module only for ``--replicates``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.search import Searcher

from deepdiff.config import flat_config
from deepdiff.errors import ConfigError, check_output_dir
from deepdiff_study.grid import Pair
from deepdiff_study.records import (
    EPOCH_METRICS,
    GRID_CELL_TAGS,
    MLFLOW_RUN_STATUS,
    PARENT_TAG,
    Kind,
    RunStatus,
    Tag,
    TrialStatus,
    best_trials,
    decode_params,
    encode_meta,
    encode_params,
    error_reason,
    experiment_id,
    grid_cell_of,
    open_store,
    outcome_of,
    replicate_seeds,
    study_runs,
)
from deepdiff_study.spec import StudySpec
from deepdiff_study.store import default_mlflow_uri
from deepdiff_study.untrusted import plain_name
from deepdiff_study.tracker import PicklesSettings

CELL_TAGS = (*GRID_CELL_TAGS, Tag.IMITATES, Tag.DATA)  # copied from the grid-cell run to its replicates


@dataclass(frozen=True)
class Replicate:
    """One (grid cell, seed) to train: its trial config and the tags its MLflow run gets."""

    grid_cell: str
    seed: int
    config: dict[str, Any]  # the trial config (`records` codec): fields + META_KEYS
    tags: dict[str, str]


def recorded(client: MlflowClient, exp_id: str) -> set[tuple[str, int, str]]:
    """(grid cell, seed, replicate_of) of every completed replicate run in the experiment."""
    return {
        (run.data.tags[Tag.GRID_CELL], int(run.data.tags[Tag.SEED]), run.data.tags.get(Tag.REPLICATE_OF, ""))
        for run in study_runs(client, exp_id, Kind.REPLICATE)
        if run.info.status == RunStatus.FINISHED and run.data.tags.get(Tag.STATUS) == TrialStatus.COMPLETED
    }


def plan(tracking_uri: str, experiment: str, k: int) -> tuple[list[Replicate], int, dict[int, tuple[Pair, dict]]]:
    """(replicates to train, how many are recorded already, pair number -> (pair, its data tag))."""
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    parents = {run.data.tags[Tag.GRID_CELL]: run for run in study_runs(client, exp_id, Kind.GRID_CELL)}
    done = recorded(client, exp_id)
    todo, reused, pairs = [], 0, {}
    for cell in best_trials(tracking_uri, experiment):
        best, tags = cell.run, parents[cell.grid_cell].data.tags
        if best is None:
            continue  # no scored trial: no configuration to retrain
        plain_name(cell.grid_cell, f"--experiment {experiment!r}: grid-cell tag {Tag.GRID_CELL}")  # names trial folders
        model_cfg, train_cfg = decode_params(best.data.params, source=f"MLflow run {best.info.run_id}")
        pair = Pair(cell.pair, cell.epigenome_a, cell.epigenome_b, tags.get(Tag.IMITATES))
        if cell.data:
            pairs.setdefault(pair.number, (pair, cell.data))
        cell_tags = {key: tags[key] for key in CELL_TAGS if key in tags}
        for seed in replicate_seeds(train_cfg.seed, k):
            if (cell.grid_cell, seed, best.info.run_id) in done:
                reused += 1
                continue
            config = {**flat_config(model_cfg, dataclasses.replace(train_cfg, seed=seed)),
                      **encode_meta(cell.grid_cell, cell.pair)}
            todo.append(Replicate(cell.grid_cell, seed, config, {
                **cell_tags, Tag.KIND: str(Kind.REPLICATE), Tag.SEED: str(seed), Tag.REPLICATE_OF: best.info.run_id,
                PARENT_TAG: parents[cell.grid_cell].info.run_id}))
    return todo, reused, pairs


class FixedConfigs(Searcher):
    """A Tune searcher that hands out a fixed list of trial configs, in order, then says it is finished."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__()
        self._todo = [dict(c) for c in configs]

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        return self._todo.pop(0) if self._todo else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing is learnt from a result

    def save(self, checkpoint_path: str) -> None:  # JSON, not a pickle: reading it back runs nothing
        Path(checkpoint_path).write_text(json.dumps(self._todo))

    def restore(self, checkpoint_path: str) -> None:
        self._todo = json.loads(Path(checkpoint_path).read_text())


class ReplicateLogger(PicklesSettings, Callback):
    """Records every ended replicate trial as one MLflow run (see the module docstring)."""

    SETTINGS = ("tracking_uri", "exp_id", "replicates")

    def __init__(self, tracking_uri: str, exp_id: str, replicates: list[Replicate]):
        self.tracking_uri, self.exp_id = tracking_uri, exp_id
        self.replicates = {(r.grid_cell, r.seed): r for r in replicates}
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._seconds: dict[str, float] = {}
        self.logged: list[str] = []

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if isinstance(result.get("seconds"), (int, float)):
            self._seconds[trial.trial_id] = self._seconds.get(trial.trial_id, 0.0) + float(result["seconds"])

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._log(trial, *outcome_of(trial))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._log(trial, TrialStatus.FAILED, error_reason(trial))

    def _log(self, trial, status: TrialStatus, reason: str) -> None:
        replicate = self.replicates[(grid_cell_of(trial.config), int(trial.config["seed"]))]
        tags = {**replicate.tags, Tag.TRIAL_ID: trial.trial_id, Tag.STATUS: str(status), Tag.STATUS_REASON: reason}
        run = self.client.create_run(self.exp_id, tags=tags, run_name=f"{replicate.grid_cell}-seed{replicate.seed}")
        now, last = int(time.time() * 1000), trial.last_result or {}
        metrics = [Metric(k, float(v), now, 0) for k, v in last.items()
                   if k in EPOCH_METRICS and k != "seconds" and isinstance(v, (int, float))]
        metrics.append(Metric("seconds", self._seconds.get(trial.trial_id, 0.0), now, 0))
        if isinstance(last.get("epoch"), int):
            metrics.append(Metric("epoch", float(last["epoch"]), now, 0))
        params = [Param(k, v) for k, v in encode_params(trial.config).items()]
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params, synchronous=True)
        self.client.set_terminated(run.info.run_id, MLFLOW_RUN_STATUS[status])
        self.logged.append(run.info.run_id)


def run_replicates(
    tracking_uri: str, experiment: str, k: int, *, address: str | None = None, cpus_per_trial: float = 1.0,
    gpus_per_trial: float | None = None, storage: str | None = None, train_fn=None,
    echo: Callable[[str], Any] = print,
) -> int:
    """Train every replicate of `plan` not recorded yet as one Tune run; returns how many were trained."""
    from deepdiff.data import default_cache_dir
    from deepdiff_study import pairs as pair_files, trainable
    from deepdiff_study.progress import ProgressLine
    from deepdiff_study.storage import StudyStorage
    from deepdiff_study.tuner import quiet_logs, start_ray, trial_gpus

    if k < 1:
        raise ConfigError(f"--replicates {k}: expected a whole number >= 1")
    if storage is not None and "://" not in storage:
        check_output_dir(storage, "--replicate-storage")
    todo, reused, pairs = plan(tracking_uri, experiment, k)
    echo(f"replicates: {len(todo)} to train ({k} seed(s) per grid cell), {reused} already in MLflow")
    if not todo:
        return 0
    needed = {r.config["pair"] for r in todo}
    sources = [pair_files.recorded_source(pairs[n][0], pairs[n][1], regenerate_root=default_cache_dir() / "synthetic")
               for n in sorted(needed)]
    data = pair_files.load_sources(sources, cache_dir=default_cache_dir())
    quiet_logs()
    start_ray(address)
    import ray
    from ray import tune

    refs = {number: ray.put(pair) for number, pair in data.items()}
    del data
    gpus = trial_gpus(gpus_per_trial)
    bound = trainable.bind(train_fn or trainable.train_trial, refs, cpus=cpus_per_trial, gpus=gpus)
    client = open_store(tracking_uri)
    logger = ReplicateLogger(tracking_uri, experiment_id(client, experiment), todo)
    scratch = None if storage else tempfile.mkdtemp(prefix="deepdiff-replicates-")
    where = StudyStorage.parse(storage or scratch)
    name = f"{experiment}-replicates-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        tuner = tune.Tuner(
            bound,
            tune_config=tune.TuneConfig(
                search_alg=FixedConfigs([r.config for r in todo]), num_samples=len(todo),
                reuse_actors=True, trial_dirname_creator=_dirname, trial_name_creator=_dirname,
            ),
            run_config=tune.RunConfig(
                name=name, **where.tune_kwargs(), callbacks=[logger, ProgressLine(len(todo))], verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        tuner.fit()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return len(todo)


def retrain(spec: StudySpec, k: int, *, storage: str | None = None, train_fn=None) -> Path | None:
    """``--replicates K``: every grid cell's best configuration of the finished study `spec` names
    (experiment, MLflow store) retrained with K other seeds on its cluster (address, CPUs and GPUs per
    trial; `storage`: Tune's files, default a temporary folder), then the study's report written again
    (`deepdiff_study.summary.write_study_report`). Returns the report's index.html, or None if it failed."""
    from deepdiff_study.storage import StudyStorage
    from deepdiff_study.summary import write_study_report

    uri = spec.mlflow_uri or default_mlflow_uri()
    run_replicates(uri, spec.experiment, k, address=spec.address, cpus_per_trial=spec.cpus_per_trial,
                   gpus_per_trial=spec.gpus_per_trial, storage=storage, train_fn=train_fn)
    return write_study_report(uri, spec.experiment, StudyStorage.parse(spec.storage).experiment_dir(spec.experiment))


def _dirname(trial) -> str:
    return f"{grid_cell_of(trial.config)}-seed{trial.config['seed']}-{trial.trial_id}"

