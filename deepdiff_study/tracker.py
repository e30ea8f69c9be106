"""The MLflow writer: a Ray Tune callback logging the study from the driver (one writer, so SQLite
needs no locking). What it writes, and the names, are defined in `deepdiff_study.records`; how it
continues after a restart is told in `deepdiff_study.resume`.

Its writes run in the background, in order (`deepdiff_study.writer`): a Tune hook only snapshots what it
needs of the trial and returns, so the driver's event loop is not held up by the store (a remote MLflow
server, an S3 artifact upload of the best model). The first step of a session waits for its reconcile
(`resume.reconcile`), the end of the experiment for every write; a store failure in a write is raised
by the next hook, as before. ``background=False`` writes in the hook itself (the benchmark's baseline,
`benchmarks/bench_tracker.py`). A driver killed outright loses the writes still queued (usually none or
a few); a resume rebuilds what matters from Tune's state: every ended trial's status, last epoch and
the grid cells' best trials.

- A grid-cell run per grid cell, created when its first trial starts and ended at its last trial's end
  (its MLflow duration is its trials' span, not the study's); after every ended trial its
  best_valid_pcc / best_test_pcc (the best scored trial's), n_<status> counts and best_trial_id; when
  all its planned trials have ended it is FINISHED and gets the best trial's config as params and its
  model as the artifact ``model/best.pt``: the ``best.pt`` (model at the best valid-PCC epoch) of the
  trial's last checkpoint (Tune's record of it; after a driver was killed, when that one is older, the
  newest in the trial's folder that holds it), read through the checkpoint's own filesystem (a folder
  or a URI storage), checked to be the model of the trial's recorded best epoch, one file per grid cell. When it cannot be
  stored (no scored trial, no checkpoint, an older checkpoint, a storage or artifact-store error) the
  tag ``model_missing`` says why and the study goes on; a resumed study tries again and never logs a
  stored model twice.
- A trial run per trial, a child of its grid-cell run: the config fields that apply to its variant as
  params, every epoch's metrics with ``step=epoch``, on a warm start the tag warm_start_from (the
  trial whose configuration it ran, `deepdiff_study.warmstart`), the tag compute_dtype (what its training steps
  computed in on the worker, e.g. bfloat16 on a recent GPU under precision=auto; a change, when a
  resumed trial went on on another kind of device, is appended), and at the end tags status / status_reason /
  epoch_status, the MLflow status of `records.MLFLOW_RUN_STATUS`, and for a pruned trial a
  description saying why it stopped.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from deepdiff_study.records import (
    EPOCH_METRICS,
    MLFLOW_RUN_STATUS,
    MODEL_ARTIFACT,
    MODEL_DIR,
    NOTE_TAG,
    PARENT_TAG,
    Kind,
    RunStatus,
    Tag,
    TrialStatus,
    compute_dtype_tag,
    encode_params,
    epoch_status_tag,
    ensure_experiment,
    error_reason,
    grid_cell_of,
    outcome_of,
    study_runs,
    warm_start_of,
)
from deepdiff_study import ray_private
from deepdiff_study.resume import reconcile
from deepdiff_study.writer import Writer


class PicklesSettings:
    """For a Tune callback writing MLflow: Tune pickles its callbacks into tuner.pkl, so only the
    attributes named in `SETTINGS` travel; the subclass's `_reset` rebuilds the connection and caches after
    unpickling (as its ``__init__`` does)."""

    SETTINGS: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.SETTINGS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()


def now_ms() -> int:
    """The time in MLflow's unit (ms since the epoch)."""
    return int(time.time() * 1000)


class MlflowTracker(PicklesSettings, Callback):
    """A Tune callback writing the study to MLflow; see the module docstring.

    grid_cells: grid cell key -> its tags (`records.grid_cell_tags` plus ``data``). planned: grid cell
    key -> trials planned for it.
    """

    SETTINGS = ("tracking_uri", "experiment", "grid_cells", "planned", "artifact_location", "background")

    def __init__(
        self, tracking_uri: str, experiment: str, grid_cells: dict[str, dict[str, str]], planned: dict[str, int],
        *, artifact_location: str | None = None, background: bool = True,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.grid_cells = grid_cells
        self.planned = planned
        self.artifact_location = artifact_location
        self.background = background  # writes on a thread of their own (False: in the hook, on Tune's loop)
        self._reset()

    def _reset(self) -> None:
        self._writer = Writer("mlflow-tracker") if getattr(self, "background", True) else None
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parents: dict[str, str] = {}  # grid cell -> its run id
        self._finished_parents: set[str] = set()  # grid cells whose run got its final params
        self._children: dict[str, str] = {}  # trial id -> its run id
        self._logged_epoch: dict[str, int] = {}  # trial id -> last epoch logged
        self._dtypes: dict[str, str] = {}  # trial id -> its compute_dtype tag
        self._ended: dict[str, dict[str, dict[str, Any]]] = {}  # grid cell -> trial id -> outcome
        self._models: set[str] = set()  # grid cells whose best model is stored
        self._models_missing: set[str] = set()  # grid cells tagged model_missing
        self._tune_trials: dict[str, Any] = {}  # trial id -> Tune trial seen in this session
        self._trial_list: list = []  # Tune's list of every trial of the run (restored ones included)
        self._reconciled = False

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
            self._experiment_id = ensure_experiment(self._client, self.experiment, self.artifact_location)
            self._load_existing()
        return self._client

    def _load_existing(self) -> None:
        """Index the runs a previous session of this study left (resume)."""
        for run in study_runs(self._client, self._experiment_id, Kind.GRID_CELL):
            key = run.data.tags[Tag.GRID_CELL]
            self._parents.setdefault(key, run.info.run_id)
            if run.data.params:
                self._finished_parents.add(key)
            if Tag.MODEL in run.data.tags:
                self._models.add(key)
            elif Tag.MODEL_MISSING in run.data.tags:
                self._models_missing.add(key)
        for run in study_runs(self._client, self._experiment_id, Kind.TRIAL):
            tags, trial_id = run.data.tags, run.data.tags[Tag.TRIAL_ID]
            self._children[trial_id] = run.info.run_id
            self._logged_epoch[trial_id] = int(run.data.metrics.get("epoch", 0))
            if Tag.COMPUTE_DTYPE in tags:
                self._dtypes[trial_id] = tags[Tag.COMPUTE_DTYPE]
            status = TrialStatus(tags.get(Tag.STATUS, TrialStatus.RUNNING))
            if status.ended:
                self._record_end(tags[Tag.GRID_CELL], trial_id, status, run.info.run_id, run.data.metrics,
                                 run.info.end_time)

    # ---- Tune hooks: each hands its write to the writer (what it reads of the trial, read now) ----------

    def _write(self, call, *args) -> None:
        if self._writer is None:
            call(*args)
        else:
            self._writer.submit(call, *args)

    def flush(self) -> None:
        """Wait until every write handed over so far is done (raising a store failure of one of them)."""
        if self._writer is not None:
            self._writer.flush()

    def setup(self, **info) -> None:
        self._write(self._connect)  # connect (and create the experiment) before the first trial starts

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self._trial_list = trials  # Tune's own list (it only grows): read by the writer when a model is stored
        if not self._reconciled:
            self._reconciled = True
            self._write(self._reconcile, list(trials))
            self.flush()  # once a session, the loop held (the trials unchanged): the record agrees with Tune's

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(self._start, trial, now_ms())  # times taken here: a backlog of writes does not shift them

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._write(self._log_result, trial, dict(result), now_ms())

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(self._finish, trial, *outcome_of(trial), dict(trial.last_result or {}), now_ms())

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(self._finish, trial, TrialStatus.FAILED, error_reason(trial), dict(trial.last_result or {}),
                    now_ms())

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._write(self._recover, trial, trial.num_failures, error_reason(trial))

    def on_experiment_end(self, trials: list, **info) -> None:
        self._trial_list = trials
        self._write(self._end, list(trials))
        if self._writer is not None:
            self._writer.close()  # every write done before Tune returns (and the summary reads MLflow)

    # ---- the writes (on the writer's thread) -------------------------------------------------------

    def _connect(self) -> None:
        self.client  # noqa: B018

    def _reconcile(self, trials: list) -> None:
        reconcile(self.client, self._experiment_id, trials, finish=self._finish, forget=self._forget)

    def _start(self, trial, at: int | None = None) -> None:
        if self._has_ended(trial):
            return  # a trial that ended before a restart, handed back by the trainable: keep its record
        run_id = self._child(trial, at)
        self.client.update_run(run_id, status=RunStatus.RUNNING)
        self.client.set_tag(run_id, Tag.STATUS, TrialStatus.RUNNING)

    def _log_result(self, trial, result: dict, at: int | None = None) -> None:
        epoch = result.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._logged_epoch.get(trial.trial_id, 0):
            return  # not an epoch result, or an epoch repeated after a resume from an older checkpoint
        run_id = self._child(trial, at)
        now = at or now_ms()
        metrics = [
            Metric(key, float(value), now, epoch) for key, value in result.items()
            if key in EPOCH_METRICS and isinstance(value, (int, float))
        ]
        metrics.append(Metric("epoch", float(epoch), now, epoch))
        tags = []
        if isinstance(result.get(Tag.COMPUTE_DTYPE), str):
            dtype = compute_dtype_tag(self._dtypes.get(trial.trial_id), result[Tag.COMPUTE_DTYPE], epoch)
            if dtype != self._dtypes.get(trial.trial_id):
                tags.append(RunTag(Tag.COMPUTE_DTYPE, dtype))
        self.client.log_batch(run_id, metrics=metrics, tags=tags, synchronous=True)
        self._logged_epoch[trial.trial_id] = epoch
        if tags:
            self._dtypes[trial.trial_id] = tags[0].value

    def _recover(self, trial, failures: int, reason: str) -> None:
        if self._has_ended(trial):
            return
        run_id = self._child(trial)
        self.client.log_batch(run_id, tags=[RunTag(Tag.RETRIES, str(failures)), RunTag(Tag.LAST_ERROR, reason)])

    def _end(self, trials: list) -> None:
        for key in {grid_cell_of(t.config) for t in trials}:
            if key in self._parents:
                self._update_parent(key)

    # ---- runs --------------------------------------------------------------------------------------

    def _parent(self, key: str, at: int | None = None) -> str:
        if key not in self._parents:
            tags = {**self.grid_cells[key], Tag.KIND: Kind.GRID_CELL, Tag.PLANNED_TRIALS: str(self.planned.get(key, 0))}
            run = self.client.create_run(self._experiment_id, tags=tags, run_name=key, start_time=at)
            self._parents[key] = run.info.run_id
        return self._parents[key]

    def _child(self, trial, at: int | None = None) -> str:
        if trial.trial_id in self._children:
            return self._children[trial.trial_id]
        key = grid_cell_of(trial.config)
        parent = self._parent(key, at)
        tags = {**self.grid_cells[key], Tag.KIND: Kind.TRIAL, Tag.TRIAL_ID: trial.trial_id, PARENT_TAG: parent,
                Tag.STATUS: TrialStatus.RUNNING}
        if warm_start_of(trial.config) is not None:
            tags[Tag.WARM_START_FROM] = warm_start_of(trial.config)
        run = self.client.create_run(self._experiment_id, tags=tags, run_name=f"{key}-{trial.trial_id}",
                                     start_time=at)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in encode_params(trial.config).items()]
        self.client.log_batch(run_id, params=params, synchronous=True)
        self._children[trial.trial_id] = run_id
        return run_id

    def _forget(self, trial_id: str) -> None:
        self._children.pop(trial_id, None)
        self._logged_epoch.pop(trial_id, None)
        self._dtypes.pop(trial_id, None)
        for ended in self._ended.values():
            ended.pop(trial_id, None)

    def _has_ended(self, trial) -> bool:
        self.client  # noqa: B018 - loads the record of a resumed study
        return trial.trial_id in self._ended.get(grid_cell_of(trial.config), {})

    def _record_end(self, key: str, trial_id: str, status: TrialStatus, run_id: str, metrics: dict,
                    end_time: int | None) -> None:
        self._ended.setdefault(key, {})[trial_id] = {
            "status": status, "run_id": run_id, "end_time": end_time,
            "best_valid_pcc": metrics.get("best_valid_pcc", math.nan) if status.scored else math.nan,
            "best_test_pcc": metrics.get("best_test_pcc", math.nan) if status.scored else math.nan,
            "best_epoch": metrics.get("best_epoch"),
        }

    def _finish(self, trial, status: TrialStatus, reason: str, last: dict | None = None, at: int | None = None) -> None:
        """Close a trial's run; `last`: its last result as it was when it ended (default: Tune's now); `at`: when
        it ended, in ms (default now)."""
        self._tune_trials[trial.trial_id] = trial
        if self._has_ended(trial):
            return  # closed already (a resumed study hands back trials that ended before the kill)
        run_id = self._child(trial)
        last = (trial.last_result or {}) if last is None else last
        self._log_result(trial, last, at)  # its last epoch, if the run never got it (no-op otherwise)
        tags = [
            RunTag(Tag.STATUS, status), RunTag(Tag.STATUS_REASON, reason),
            RunTag(Tag.EPOCH_STATUS, epoch_status_tag(status, last)),
        ]
        if status is TrialStatus.PRUNED:
            tags.append(RunTag(NOTE_TAG, f"Pruned (not a failure): {reason}."))
        self.client.log_batch(run_id, tags=tags)
        end_time = at or now_ms()
        self.client.set_terminated(run_id, MLFLOW_RUN_STATUS[status], end_time=end_time)
        key = grid_cell_of(trial.config)
        self._record_end(key, trial.trial_id, status, run_id, last, end_time)
        self._update_parent(key)

    def _update_parent(self, key: str) -> None:
        parent = self._parent(key)
        ended = self._ended.get(key, {})
        now, step = now_ms(), len(ended)
        metrics = [Metric(f"n_{s}", float(sum(1 for o in ended.values() if o["status"] is s)), now, step)
                   for s in TrialStatus if s.ended]
        tags = [RunTag(Tag.TRIALS_ENDED, str(step))]
        scored = [(tid, o) for tid, o in ended.items() if math.isfinite(o["best_valid_pcc"])]
        best = max(scored, key=lambda item: item[1]["best_valid_pcc"]) if scored else None
        if best is not None:
            trial_id, outcome = best
            metrics += [Metric("best_valid_pcc", outcome["best_valid_pcc"], now, step),
                        Metric("best_test_pcc", outcome["best_test_pcc"], now, step)]
            tags += [RunTag(Tag.BEST_TRIAL_ID, trial_id), RunTag(Tag.BEST_RUN_ID, outcome["run_id"])]
        self.client.log_batch(parent, metrics=metrics, tags=tags, synchronous=True)
        if step < self.planned.get(key, math.inf):
            self.client.update_run(parent, status=RunStatus.RUNNING)
            return
        if best is not None and key not in self._finished_parents:
            # Params are write-once in MLflow: the grid cell's run gets its best trial's config when no
            # trial of it can change the winner any more.
            params = self.client.get_run(best[1]["run_id"]).data.params
            self.client.log_batch(parent, params=[Param(k, v) for k, v in params.items()], synchronous=True)
            self._finished_parents.add(key)
        if key not in self._models:
            self._log_model(key, parent, best)
        # Its time is its trials' time: it started with its first trial, it ends with its last one's end.
        ends = [o["end_time"] for o in ended.values() if o.get("end_time")]
        self.client.set_terminated(parent, RunStatus.FINISHED, end_time=max(ends) if ends else None)

    # ---- the grid cell's best model ------------------------------------------------------------------

    def _log_model(self, key: str, parent: str, best: tuple[str, dict[str, Any]] | None) -> None:
        """Store the best trial's best.pt as the grid-cell run's MODEL_ARTIFACT, or tag why not."""
        try:
            reason = self._store_model(parent, best)
        except Exception as err:  # noqa: BLE001 - a model that cannot be stored never stops the study
            reason = f"storing it failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no message'})"
        if reason is None:
            self.client.set_tag(parent, Tag.MODEL, MODEL_ARTIFACT)
            if key in self._models_missing:
                self.client.delete_tag(parent, Tag.MODEL_MISSING)
                self._models_missing.discard(key)
            self._models.add(key)
        else:
            self.client.set_tag(parent, Tag.MODEL_MISSING, reason[:500])
            self._models_missing.add(key)

    def _store_model(self, parent: str, best: tuple[str, dict[str, Any]] | None) -> str | None:
        """Log the model; None when stored, else why it is absent."""
        if best is None:
            return "no trial of this grid cell was scored (all failed): no model to keep"
        trial_id, outcome = best
        trial = self._tune_trials.get(trial_id) or next((t for t in self._trial_list if t.trial_id == trial_id), None)
        if trial is None:
            return f"its best trial {trial_id} is not in this Tune run"
        first_reason = None
        for fs, folder in _checkpoints_of(trial):  # Tune's record, then (if that fails) its folder's, newest first
            reason = self._store_from(parent, trial_id, outcome, fs, folder)
            if reason is None:
                return None
            first_reason = first_reason or reason
        return first_reason or f"its best trial {trial_id} has no checkpoint in the study's storage"

    def _store_from(self, parent: str, trial_id: str, outcome: dict[str, Any], fs, folder: str) -> str | None:
        """Log the best.pt of checkpoint `folder` if it holds the trial's best epoch; else why not."""
        import pyarrow.fs

        from deepdiff.errors import ConfigError
        from deepdiff.train import BEST_CHECKPOINT, load_checkpoint

        source, where = f"{folder.rstrip('/')}/{BEST_CHECKPOINT}", f"its best trial {trial_id} ({folder})"
        if fs.get_file_info(source).type != pyarrow.fs.FileType.File:
            return f"the checkpoint of {where} holds no {BEST_CHECKPOINT}"
        with tempfile.TemporaryDirectory(prefix="deepdiff-model-") as tmp:
            local = Path(tmp) / BEST_CHECKPOINT
            try:
                with fs.open_input_stream(source) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                epoch = load_checkpoint(local)["epoch"]
            except ConfigError as err:  # damaged or truncated (a node died writing it): try the next one
                return f"the {BEST_CHECKPOINT} of {where} is {str(err).removeprefix(f'{local}: ')}"
            except (OSError, pyarrow.ArrowException) as err:  # unreadable in the storage
                return f"the {BEST_CHECKPOINT} of {where} could not be read ({type(err).__name__})"
            expected = outcome.get("best_epoch")
            if expected is not None and int(expected) != int(epoch):
                return f"the checkpoint of {where} holds the model of epoch {epoch}, not of its best epoch {int(expected)}"
            self.client.log_artifact(parent, str(local), artifact_path=MODEL_DIR)
        return None


def _checkpoints_of(trial):
    """(filesystem, folder) of the checkpoints of a trial that may hold its best model, lazily, likeliest
    first: Tune's own record of its latest, then the checkpoints in its folder in the study's storage,
    newest first (the same order `StudyStorage.prune_checkpoints` keeps by), Tune's skipped.

    The folder matters after a driver was killed: a trial that ended just before, whose end Tune's last
    snapshot missed, is handed back on resume without training (`resume.hand_back`), so Tune knows no
    checkpoint of it, or only an older one than the last it wrote. The caller checks each one's epoch.
    """
    import pyarrow.fs

    known = None
    if trial.checkpoint is not None:
        known = trial.checkpoint.path.rstrip("/")
        yield trial.checkpoint.filesystem, trial.checkpoint.path
    folder = ray_private.trial_folder(trial)
    if folder is None:
        return
    fs, path = folder
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except (OSError, pyarrow.ArrowException):
        return
    checkpoints = sorted((i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                          and i.base_name.startswith("checkpoint_")), reverse=True)
    for checkpoint in checkpoints:
        if checkpoint.rstrip("/") != known:
            yield fs, checkpoint
