"""MLflow tracking of the study, logged from the Tune driver (one writer, so SQLite needs no locking).

- One MLflow experiment per study; one **parent run per cell** (tags: cell, variant, pair, pair_name,
  cell_a, cell_b, aux_mode, margin, data; metrics: best_valid_pcc and best_test_pcc = the test PCC at
  the best epoch of the cell's best trial, plus trial counts) and one **child run per trial** (params:
  the full resolved ModelConfig + TrainConfig; metrics per epoch with ``step=epoch``: train_loss,
  valid_pcc, valid_mse, test_pcc, test_mse and the other `EpochResult` fields; tag ``status`` =
  completed / pruned / failed with ``status_reason``).
- MLflow statuses: completed -> FINISHED, pruned (stopped early by the cell's ASHA) -> KILLED,
  failed (NaN loss or an exception) -> FAILED.
- Resume-safe: every run carries its ``trial_id`` (children) or ``cell`` (parents) tag and is looked up
  before one is created, so a resumed study continues its runs instead of duplicating them; epochs
  already logged are not logged again. At the first step after a restart, runs left RUNNING by a
  killed driver are closed with their trial's true status; a run whose trial Tune never saved
  (started less than one experiment checkpoint before the kill; Tune starts it again under a new id)
  is deleted, so each Tune trial id appears exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from deepdiff.config import configs_from_flat, flat_config
from deepdiff.train import STATUS_NAN, EpochResult

from study import META_KEYS

DEFAULT_EXPERIMENT = "deepdiff-ablation"
DEFAULT_DB = "mlruns.db"  # in the working directory; artifacts go to mlartifacts/ beside it
STATUS_COMPLETED, STATUS_PRUNED, STATUS_FAILED, STATUS_RUNNING = "completed", "pruned", "failed", "running"
MLFLOW_STATUS = {STATUS_COMPLETED: "FINISHED", STATUS_PRUNED: "KILLED", STATUS_FAILED: "FAILED"}
ROLE_CELL, ROLE_TRIAL = "cell", "trial"
PARENT_TAG = "mlflow.parentRunId"
SKIP_METRICS = {"epoch"}  # logged as the step, and once as a metric (the last epoch logged)


def default_mlflow_uri(folder: str | Path | None = None) -> str:
    """``sqlite:///<folder>/mlruns.db`` with an absolute path (folder: the working directory)."""
    return f"sqlite:///{(Path(folder or Path.cwd()) / DEFAULT_DB).resolve()}"


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a local SQLite database (``mlartifacts/``); a tracking server decides its own."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) if it does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def study_runs(client: MlflowClient, experiment_id: str, role: str) -> list:
    """All live runs of the study with tag role = `role` (cell parents or trial children)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.role = '{role}'", run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000, page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def trial_outcome(trial) -> tuple[str, str]:
    """(status, reason) of a trial that Tune ended without an error, from its last reported result."""
    last = trial.last_result or {}
    epoch, planned = last.get("epoch"), trial.config.get("epochs")
    if last.get("status") == STATUS_NAN:
        return STATUS_FAILED, f"training loss became NaN at epoch {epoch}; lower lr or use input_transform log1p"
    if last.get("status") in ("completed", "early_stopped") or epoch is None or (planned and epoch >= planned):
        return STATUS_COMPLETED, f"trained {epoch} of {planned} epochs"
    return STATUS_PRUNED, (
        f"stopped by its cell's ASHA at epoch {epoch} of {planned}: best valid PCC "
        f"{last.get('best_valid_pcc', math.nan):.4f} was below the rung cutoff of its cell"
    )


def error_reason(trial) -> str:
    """The last line of a trial's error (the exception type and message).

    Tune writes the error to the trial's folder on the driver first and syncs it to storage later,
    so the local file is read first.
    """
    local = Path(trial.error_file) if trial.error_file else None
    if local is not None and local.is_file():
        text = local.read_text(errors="replace")
    else:
        error = trial.get_error()
        text = str(error) if error is not None else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "the trial raised an error (no message)")[:500]


class MlflowTracker(Callback):
    """A Tune callback writing the study to MLflow; see the module docstring.

    cells: cell key -> tags of the cell (`ablations.grid.Cell.tags()` plus ``data``: where its pair's
    files are, as JSON). planned: cell key -> trials planned for the cell.
    """

    def __init__(
        self, tracking_uri: str, experiment: str, cells: dict[str, dict[str, str]], planned: dict[str, int],
        *, artifact_location: str | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.cells = cells
        self.planned = planned
        self.artifact_location = artifact_location
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parents: dict[str, str] = {}  # cell -> parent run id
        self._children: dict[str, str] = {}  # trial id -> child run id
        self._logged_epoch: dict[str, int] = {}  # trial id -> last epoch logged
        self._ended: dict[str, dict[str, dict[str, Any]]] = {}  # cell -> trial id -> outcome
        self._reconciled = False

    # Pickled into Tune's tuner.pkl at the start: keep the settings, drop the connection and caches.
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("tracking_uri", "experiment", "cells", "planned", "artifact_location")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
            self._experiment_id = ensure_experiment(self._client, self.experiment, self.artifact_location)
            self._load_existing()
        return self._client

    def _load_existing(self) -> None:
        """Index the runs a previous session of this study left (resume)."""
        for run in study_runs(self._client, self._experiment_id, ROLE_CELL):
            self._parents.setdefault(run.data.tags["cell"], run.info.run_id)
        for run in study_runs(self._client, self._experiment_id, ROLE_TRIAL):
            tags, trial_id = run.data.tags, run.data.tags["trial_id"]
            self._children[trial_id] = run.info.run_id
            self._logged_epoch[trial_id] = int(run.data.metrics.get("epoch", 0))
            if tags.get("status") in MLFLOW_STATUS:
                self._ended.setdefault(tags["cell"], {})[trial_id] = {
                    "status": tags["status"], "run_id": run.info.run_id,
                    "best_valid_pcc": run.data.metrics.get("best_valid_pcc", math.nan),
                    "best_test_pcc": run.data.metrics.get("best_test_pcc", math.nan),
                }

    # ---- Tune hooks --------------------------------------------------------------------------------

    def setup(self, **info) -> None:
        self.client  # connect (and create the experiment) before the first trial starts

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if not self._reconciled:
            self._reconciled = True
            self._reconcile(trials)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        if self._has_ended(trial):
            return  # a trial that ended before a restart, handed back by the trainable: keep its record
        run_id = self._child(trial)
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "status", STATUS_RUNNING)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        epoch = result.get("epoch")
        if not isinstance(epoch, int) or epoch <= self._logged_epoch.get(trial.trial_id, 0):
            return  # not an epoch result, or an epoch repeated after a resume from an older checkpoint
        run_id = self._child(trial)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch) for key, value in result.items()
            if key in _EPOCH_METRICS and key not in SKIP_METRICS and isinstance(value, (int, float))
        ]
        metrics.append(Metric("epoch", float(epoch), now, epoch))
        self.client.log_batch(run_id, metrics=metrics, synchronous=True)
        self._logged_epoch[trial.trial_id] = epoch

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, *trial_outcome(trial))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, STATUS_FAILED, error_reason(trial))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        if self._has_ended(trial):
            return
        run_id = self._child(trial)
        self.client.log_batch(run_id, tags=[
            RunTag("retries", str(trial.num_failures)), RunTag("last_error", error_reason(trial)),
        ])

    def on_experiment_end(self, trials: list, **info) -> None:
        for key in {t.config.get("cell") for t in trials}:
            if key in self._parents:
                self._update_parent(key)

    # ---- runs --------------------------------------------------------------------------------------

    def _parent(self, key: str) -> str:
        if key not in self._parents:
            tags = {**self.cells[key], "role": ROLE_CELL, "planned_trials": str(self.planned.get(key, 0))}
            run = self.client.create_run(self._experiment_id, tags=tags, run_name=key)
            self._parents[key] = run.info.run_id
        return self._parents[key]

    def _child(self, trial) -> str:
        if trial.trial_id in self._children:
            return self._children[trial.trial_id]
        key = trial.config["cell"]
        parent = self._parent(key)
        tags = {**self.cells[key], "role": ROLE_TRIAL, "trial_id": trial.trial_id, PARENT_TAG: parent,
                "status": STATUS_RUNNING}
        run = self.client.create_run(self._experiment_id, tags=tags, run_name=f"{key}-{trial.trial_id}")
        run_id = run.info.run_id
        model_cfg, train_cfg = configs_from_flat({k: v for k, v in trial.config.items() if k not in META_KEYS})
        params = [Param(k, str(v)) for k, v in flat_config(model_cfg, train_cfg).items()]
        self.client.log_batch(run_id, params=params, synchronous=True)
        self._children[trial.trial_id] = run_id
        return run_id

    def _has_ended(self, trial) -> bool:
        self.client  # noqa: B018 - loads the record of a resumed study
        return trial.trial_id in self._ended.get(trial.config["cell"], {})

    def _finish(self, trial, status: str, reason: str) -> None:
        key = trial.config["cell"]
        if self._has_ended(trial):
            return  # closed already (a resumed study hands back trials that ended before the kill)
        run_id = self._child(trial)
        last = trial.last_result or {}
        self.client.log_batch(run_id, tags=[
            RunTag("status", status), RunTag("status_reason", reason),
            RunTag("epoch_status", str(last.get("status", "error" if status == STATUS_FAILED else ""))),
        ])
        self.client.set_terminated(run_id, MLFLOW_STATUS[status])
        self._ended.setdefault(key, {})[trial.trial_id] = {
            "status": status, "run_id": run_id,
            "best_valid_pcc": last.get("best_valid_pcc", math.nan) if status != STATUS_FAILED else math.nan,
            "best_test_pcc": last.get("best_test_pcc", math.nan) if status != STATUS_FAILED else math.nan,
        }
        self._update_parent(key)

    def _update_parent(self, key: str) -> None:
        parent = self._parent(key)
        ended = self._ended.get(key, {})
        counts = {s: sum(1 for o in ended.values() if o["status"] == s) for s in MLFLOW_STATUS}
        now, step = int(time.time() * 1000), len(ended)
        metrics = [Metric(f"n_{s}", float(n), now, step) for s, n in counts.items()]
        tags = [RunTag("trials_ended", str(step))]
        scored = [(tid, o) for tid, o in ended.items() if math.isfinite(o["best_valid_pcc"])]
        if scored:
            trial_id, best = max(scored, key=lambda item: item[1]["best_valid_pcc"])
            metrics += [Metric("best_valid_pcc", best["best_valid_pcc"], now, step),
                        Metric("best_test_pcc", best["best_test_pcc"], now, step)]
            tags += [RunTag("best_trial_id", trial_id), RunTag("best_run_id", best["run_id"])]
        self.client.log_batch(parent, metrics=metrics, tags=tags, synchronous=True)
        if step >= self.planned.get(key, math.inf):
            self.client.set_terminated(parent, "FINISHED")
        else:
            self.client.update_run(parent, status="RUNNING")

    def _reconcile(self, trials: list) -> None:
        """Close the runs a killed driver left RUNNING: true status from Tune, or delete if Tune lost the trial."""
        self.client  # noqa: B018 - connects and indexes the existing runs
        by_id = {t.trial_id: t for t in trials}
        for run in study_runs(self._client, self._experiment_id, ROLE_TRIAL):
            if run.info.status != "RUNNING":
                continue
            trial_id = run.data.tags["trial_id"]
            trial = by_id.get(trial_id)
            if trial is None:
                self._client.delete_run(run.info.run_id)
                self._children.pop(trial_id, None)
                self._logged_epoch.pop(trial_id, None)
            elif trial.status == "TERMINATED":
                self._finish(trial, *trial_outcome(trial))
            elif trial.status == "ERROR":
                self._finish(trial, STATUS_FAILED, error_reason(trial))


# EpochResult fields logged per epoch (every numeric field; names are stable across runs).
_EPOCH_METRICS = {f.name for f in dataclasses.fields(EpochResult)} - {"status"}


def ended_trials(tracking_uri: str, experiment: str) -> dict[str, dict[str, Any]]:
    """Trials the study's MLflow record shows as ended: trial id -> {status, reason, last}.

    `last` is the trial's last epoch result as reported (the latest value of every epoch metric, the
    epoch, and the trainer's ``status``). A resumed study hands it back to Tune instead of training
    again: Tune's own saved state can be a few seconds older than the record (see trainable.py).
    """
    client = MlflowClient(tracking_uri)
    experiment_obj = client.get_experiment_by_name(experiment)
    if experiment_obj is None:
        return {}
    ended = {}
    for run in study_runs(client, experiment_obj.experiment_id, ROLE_TRIAL):
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("status") not in MLFLOW_STATUS:
            continue
        last: dict[str, Any] = {k: v for k, v in metrics.items() if k in _EPOCH_METRICS}
        if "epoch" in metrics:
            last["epoch"] = int(metrics["epoch"])
        last["status"] = tags.get("epoch_status", "")
        ended[tags["trial_id"]] = {"status": tags["status"], "reason": tags.get("status_reason", ""), "last": last}
    return ended


def data_tag(data_dir: str | Path, cell_a: str, cell_b: str, synthetic: dict[str, Any] | None) -> str:
    """The ``data`` tag of a cell: the data section `deepdiff train --config` needs, as JSON."""
    section: dict[str, Any] = {"dir": str(Path(data_dir).resolve()), "cell_a": cell_a, "cell_b": cell_b}
    if synthetic:
        section["synthetic"] = dict(synthetic)
    return json.dumps(section, sort_keys=True)
