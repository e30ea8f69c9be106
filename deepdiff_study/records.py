"""The study's record in MLflow: names, kinds of run, statuses, the trial-config codec, and the readers.

Imports MLflow and deepdiff's torch-free modules only (never Ray, Optuna or torch), so exporting a
study's results and reporting on it need nothing of the training stack.

The layout (one MLflow experiment per study):

- one **grid-cell run** per grid cell (tag ``kind=grid_cell``): tags `GRID_CELL_TAGS` (grid_cell,
  variant, pair, pair_name, epigenome_a, epigenome_b, aux_mode, margin), data, cell_type_a / cell_type_b
  (where the grid file names them), search_space (`encode_search_space`), metrics best_valid_pcc
  and best_test_pcc (the best trial's) and n_<status> counts; once all its trials ended, its best
  trial's config as params, so the MLflow compare view of grid cells shows them, and the best trial's
  model at its best valid-PCC epoch as the artifact `MODEL_ARTIFACT` (tag ``model``; tag
  ``model_missing`` says why when it could not be stored);
- one **trial run** per Tune trial (tag ``kind=trial``), a child of its grid-cell run: tags trial_id,
  status (a `TrialStatus`), status_reason, epoch_status (`epoch_status_tag`: never "running" on an ended
  trial), and warm_start_from on a warm start (the trial whose configuration it ran,
  `deepdiff_study.warmstart`); params: the config fields that apply to its variant (`encode_params`);
  metrics: every `EpochResult` field per epoch with ``step=epoch``;
- one **baseline run** per pair and baseline of `deepdiff.baselines` (tag ``kind=baseline``;
  `deepdiff_study.baseline_runs`), and the **report run** (tag ``kind=report``) holding the study
  report's files as artifacts (`deepdiff_study.report`);
- with the study command's ``--replicates K``, one **replicate run** per (grid cell, seed) (tag
  ``kind=replicate``; `deepdiff_study.replicates`), a child of its grid-cell run: the grid cell's tags,
  ``seed`` (one of `replicate_seeds`), ``replicate_of`` (the run id of the best trial whose configuration
  it retrains), status and status_reason as a trial's; params the retrained config; metrics the last
  epoch's values (best_valid_pcc, best_test_pcc, ...) and ``seconds`` (summed over epochs).

`SCORE_METRICS` (best_valid_pcc, best_test_pcc) are "the model's score" on every kind of run: a grid cell's
best trial's, a trial's best epoch's so far, a replicate's, a baseline's (its valid and test PCC), so one
column of MLflow's runs table ranks them all. A grid-cell run's start and end are its first trial's start
and its last trial's end.

"Not applicable" is spelled ``-`` in tags (aux_mode of raw_d, margin of aux). Statuses are named once:
a trial's outcome in the study (`TrialStatus`), MLflow's run statuses (`RunStatus`) and Ray Tune's trial
statuses (`TuneStatus`), whose spellings are those libraries' own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from deepdiff.config import ModelConfig, TrainConfig, applicable_fields, configs_from_flat
from deepdiff.errors import ConfigError
from deepdiff.results import METRIC_NAMES, EpochStatus
from deepdiff.variants import VARIANTS
from deepdiff_study.grid import GridCell, Param
from deepdiff_study.store import DEFAULT_EXPERIMENT, check_readable, default_mlflow_uri, sqlite_path  # noqa: F401 (re-exported)

NOT_APPLICABLE = "-"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: nests a trial run under its grid-cell run
NOTE_TAG = "mlflow.note.content"  # MLflow's own: the run's description in the UI


class Kind(StrEnum):
    """What a run of the study's experiment stands for (tag ``kind``)."""

    GRID_CELL = "grid_cell"
    TRIAL = "trial"
    BASELINE = "baseline"  # one of deepdiff.baselines fitted once per pair of the study (no parent)
    REPORT = "report"  # the study report (deepdiff_study.report): its files are the run's artifacts
    REPLICATE = "replicate"  # a grid cell's best configuration retrained with another seed (--replicates)


class TrialStatus(StrEnum):
    """A trial's outcome in the study (tag ``status`` of its run)."""

    RUNNING = "running"  # training, or interrupted with the driver (a resume continues it)
    COMPLETED = "completed"  # trained to its last epoch, or stopped itself (patience)
    PRUNED = "pruned"  # stopped early by its grid cell's ASHA: the study working as designed
    FAILED = "failed"  # raised an exception, or its training diverged

    @property
    def ended(self) -> bool:
        return self is not TrialStatus.RUNNING

    @property
    def scored(self) -> bool:
        """Its best valid PCC is a result that counts (a pruned trial's best so far does)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.PRUNED)


class RunStatus(StrEnum):
    """MLflow's status of a run (`mlflow.entities.RunStatus`, by name), as the study writes and reads it."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class TuneStatus(StrEnum):
    """Ray Tune's status of a trial (``Trial.status``), as the study reads it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"  # ended without raising (completed, stopped by ASHA, or stopped with the study)
    ERROR = "ERROR"  # raised, retries spent


TUNE_ENDED = frozenset({TuneStatus.TERMINATED, TuneStatus.ERROR})  # a trial Tune will not run again

# The MLflow run status of an ended trial. A pruned trial is FINISHED (a green tick, not the red cross
# MLflow draws for KILLED): ASHA stopping it is a result; the tag status=pruned says which it was.
MLFLOW_RUN_STATUS = {TrialStatus.COMPLETED: RunStatus.FINISHED, TrialStatus.PRUNED: RunStatus.FINISHED,
                     TrialStatus.FAILED: RunStatus.FAILED}


class Tag:
    """Tag names of the study's runs (one spelling each)."""

    KIND = "kind"  # what the run stands for: a Kind
    GRID_CELL = "grid_cell"  # the grid cell's key, e.g. p1-aux_siamese-regression-m2
    VARIANT = "variant"
    PAIR = "pair"  # the paper's pair number
    PAIR_NAME = "pair_name"  # EPIGENOME_A-EPIGENOME_B
    EPIGENOME_A = "epigenome_a"  # cell type A by epigenome id; diff = B - A
    EPIGENOME_B = "epigenome_b"
    AUX_MODE = "aux_mode"
    MARGIN = "margin"
    IMITATES = "imitates"  # a synthetic pair: the real pair it stands in for
    DATA = "data"  # JSON: the data section of `deepdiff train --config` (dir, cell_a, cell_b, synthetic)
    PLANNED_TRIALS = "planned_trials"
    TRIALS_ENDED = "trials_ended"
    BEST_TRIAL_ID = "best_trial_id"
    BEST_RUN_ID = "best_run_id"
    TRIAL_ID = "trial_id"
    STATUS = "status"  # a TrialStatus
    STATUS_REASON = "status_reason"
    EPOCH_STATUS = "epoch_status"  # how the trainer's last epoch ended: an EpochStatus, EPOCH_ERROR or EPOCH_STOPPED
    RETRIES = "retries"
    LAST_ERROR = "last_error"
    BASELINE = "baseline"  # a baseline run's name in deepdiff.baselines.BASELINE_NAMES (linear, svr, svr2)
    SEED = "seed"  # a replicate run: the training seed it was retrained with
    REPLICATE_OF = "replicate_of"  # a replicate run: the run id of the best trial whose config it retrains
    MODEL = "model"  # a grid-cell run: the artifact path of its best trial's best.pt (MODEL_ARTIFACT)
    MODEL_MISSING = "model_missing"  # a grid-cell run without that artifact: why
    COMPUTE_DTYPE = "compute_dtype"  # a trial run: the dtype its training steps computed in (`compute_dtype_tag`)
    CELL_TYPE_A = "cell_type_a"  # a grid-cell run: cell type A's name (the grid file's cell_types), where known
    CELL_TYPE_B = "cell_type_b"  # a grid-cell run: cell type B's name, where known
    SEARCH_SPACE = "search_space"  # a grid-cell run: its searched params as JSON (records.encode_search_space)
    WARM_START_FROM = "warm_start_from"  # a trial run that was a warm start: its source, GRID_CELL/TRIAL_ID (`warmstart`)


SCORE_METRICS = ("best_valid_pcc", "best_test_pcc")  # the model's score, on every kind of run (module docstring)
GRID_CELL_TAGS = (Tag.GRID_CELL, Tag.VARIANT, Tag.PAIR, Tag.PAIR_NAME, Tag.EPIGENOME_A, Tag.EPIGENOME_B,
                  Tag.AUX_MODE, Tag.MARGIN)
EPOCH_METRICS = frozenset(METRIC_NAMES)  # logged per epoch with step=epoch (plus ``epoch`` itself)
EPOCH_ERROR = "error"  # Tag.EPOCH_STATUS of a trial that raised (no epoch status)
# Tag.EPOCH_STATUS of a pruned trial: its trainer's last epoch said "running" (more epochs were to follow)
# when ASHA stopped it; recorded as "stopped" so that no ended trial reads running (`epoch_status_tag`).
EPOCH_STOPPED = "stopped"
MODEL_DIR = "model"  # artifact folder of a grid-cell run holding its best model
MODEL_ARTIFACT = f"{MODEL_DIR}/best.pt"  # deepdiff.train's best.pt: `deepdiff evaluate --checkpoint` reads it


def grid_cell_tags(cell: GridCell, cell_names: tuple[str | None, str | None] = (None, None)) -> dict[str, str]:
    """The grid cell as string tags (`GRID_CELL_TAGS`; aux_mode / margin "-" where they do not apply;
    ``imitates`` on a synthetic pair; cell_type_a / cell_type_b where `cell_names` knows them)."""
    tags = {
        Tag.GRID_CELL: cell.key, Tag.VARIANT: cell.variant, Tag.PAIR: str(cell.pair.number),
        Tag.PAIR_NAME: cell.pair.name, Tag.EPIGENOME_A: cell.pair.epigenome_a, Tag.EPIGENOME_B: cell.pair.epigenome_b,
        Tag.AUX_MODE: cell.aux_mode or NOT_APPLICABLE,
        Tag.MARGIN: NOT_APPLICABLE if cell.margin is None else f"{cell.margin:g}",
    }
    if cell.pair.imitates:
        tags[Tag.IMITATES] = cell.pair.imitates
    for tag, name in zip((Tag.CELL_TYPE_A, Tag.CELL_TYPE_B), cell_names):
        if name:
            tags[tag] = name
    return tags


def encode_search_space(params: tuple[Param, ...]) -> str:
    """A grid cell's searched params as the ``search_space`` tag: a JSON list in the grid file's order,
    ``{"name", "kind", "low", "high"}`` (log_uniform, uniform) or ``{"name", "kind", "values"}`` (choice)."""
    return json.dumps([{"name": p.name, "kind": p.kind, "values": list(p.values)} if p.kind == "choice" else
                       {"name": p.name, "kind": p.kind, "low": p.low, "high": p.high} for p in params], sort_keys=True)


def replicate_seeds(study_seed: int, k: int) -> list[int]:
    """The K training seeds of a grid cell's replicates: the K after the seed its best trial trained with
    (so the replicates are new runs, and ``--seeds 3`` after ``--seeds 2`` adds one)."""
    return [study_seed + 1 + i for i in range(k)]


def data_tag(data_dir: str | Path, cell_a: str, cell_b: str, synthetic: dict[str, Any] | None) -> str:
    """The ``data`` tag of a grid cell: the data section `deepdiff train --config` needs, as JSON."""
    section: dict[str, Any] = {"dir": str(Path(data_dir).resolve()), "cell_a": cell_a, "cell_b": cell_b}
    if synthetic:
        section["synthetic"] = dict(synthetic)
    return json.dumps(section, sort_keys=True)


# ---- the trial-config codec ---------------------------------------------------------------------------
# A trial's config (what Tune passes to the trainable) is one flat dict: every ModelConfig/TrainConfig
# field plus META_KEYS. MLflow keeps the fields that apply to the variant as string params.

# The grid cell's key, the pair number, the epochs at which the trial must leave a checkpoint (its
# ASHA rungs: where it may be stopped), and on a warm start only, the trial it came from
# (`deepdiff_study.warmstart`): not config fields.
META_KEYS = ("grid_cell", "pair", "checkpoint_epochs", Tag.WARM_START_FROM)
_CONFIG_FIELDS = frozenset(f.name for cls in (ModelConfig, TrainConfig) for f in fields(cls))


def encode_meta(grid_cell: str, pair: int, checkpoint_epochs: tuple[int, ...] = ()) -> dict[str, Any]:
    """The META_KEYS entries of every trial config of a grid cell (its key, its pair's number, its checkpoint epochs)."""
    return dict(zip(META_KEYS[:3], (grid_cell, pair, list(checkpoint_epochs))))


def grid_cell_of(config: dict[str, Any]) -> str:
    """The grid cell key of a trial config."""
    return config[META_KEYS[0]]


def pair_of(config: dict[str, Any]) -> int:
    """The pair number of a trial config."""
    return int(config[META_KEYS[1]])


def checkpoint_epochs_of(config: dict[str, Any]) -> frozenset[int]:
    """The epochs at which a trial must report a checkpoint (see `deepdiff_study.trainable`)."""
    return frozenset(int(e) for e in config.get(META_KEYS[2], ()))


def warm_start_of(config: dict[str, Any]) -> str | None:
    """Where a trial config's configuration came from when it is a warm start (GRID_CELL/TRIAL_ID), else None."""
    return config.get(META_KEYS[3])


def decode_trial_config(config: dict[str, Any], *, source: str = "trial config") -> tuple[ModelConfig, TrainConfig]:
    """The run configs of a trial config (its META_KEYS set aside)."""
    return configs_from_flat({k: v for k, v in config.items() if k not in META_KEYS}, source=source)


def encode_params(config: dict[str, Any]) -> dict[str, str]:
    """MLflow params of a trial: the resolved config fields that apply to its variant, as strings."""
    model_cfg, train_cfg = decode_trial_config(config)
    values = {**model_cfg.__dict__, **train_cfg.__dict__}
    return {name: str(values[name]) for name in applicable_fields(model_cfg.variant)}


def decode_params(params: dict[str, str], *, source: str = "MLflow params") -> tuple[ModelConfig, TrainConfig]:
    """The run configs of a trial run's params (fields not logged keep their defaults: they do not apply).
    Numbers logged as text are read by `deepdiff.config`'s one coercion."""
    return configs_from_flat({k: v for k, v in params.items() if k in _CONFIG_FIELDS}, source=source)


def compute_dtype_tag(recorded: str | None, reported: str, epoch: int) -> str:
    """A trial run's ``compute_dtype`` tag once an epoch reported the dtype `reported` (what `precision`
    came to on the worker that ran it): `recorded`, the tag so far, when that still ends in the same
    dtype, else with the change appended ("float16, then bfloat16 from epoch 13": a trial resumed
    on another kind of GPU under precision=auto)."""
    if not recorded:
        return reported
    if recorded.rsplit(", then ", 1)[-1].split(" from epoch ")[0] == reported:
        return recorded
    return f"{recorded}, then {reported} from epoch {epoch}"


# ---- the trial outcome: decided here, once ------------------------------------------------------------

def trial_outcome(last: dict[str, Any] | None, planned_epochs: int | None) -> tuple[TrialStatus, str]:
    """(status, reason) of a trial that ended without raising, from its last reported result.

    The trainer ends a run by itself (EpochStatus completed, early_stopped, nan); a trial whose last
    epoch still said "running" was stopped from outside, and in this study only its grid cell's ASHA
    stops trials: it was pruned.
    """
    last = last or {}
    epoch, status = last.get("epoch"), last.get("status")
    if status == EpochStatus.NAN:
        return TrialStatus.FAILED, f"training loss became NaN at epoch {epoch}; lower lr or use input_transform log1p"
    if status == EpochStatus.DIVERGED:
        return TrialStatus.FAILED, f"predictions or valid/test metrics became non-finite at epoch {epoch}"
    if status != EpochStatus.RUNNING:
        return TrialStatus.COMPLETED, f"trained {epoch} of {planned_epochs} epochs"
    return TrialStatus.PRUNED, (
        f"stopped by its grid cell's ASHA at epoch {epoch} of {planned_epochs}: best valid PCC "
        f"{last.get('best_valid_pcc', math.nan):.4f} was below the rung cutoff of its grid cell"
    )


def epoch_status_tag(status: TrialStatus, last: dict[str, Any]) -> str:
    """Tag.EPOCH_STATUS of a trial that ended with `status` after the last reported result `last`: the
    trainer's own status of that epoch when it ended the run itself (completed, early_stopped, nan,
    diverged); when it was still running, EPOCH_STOPPED for a pruned trial (ASHA stopped it) and
    EPOCH_ERROR for a failed one (it raised), so no ended trial reads "running". `last_result` reads it back."""
    reported = str(last.get("status") or "")
    if reported and reported != EpochStatus.RUNNING:
        return reported
    return {TrialStatus.PRUNED: EPOCH_STOPPED, TrialStatus.FAILED: EPOCH_ERROR}.get(status, reported)


def error_reason(trial) -> str:
    """The last line of a Tune trial's error (the exception type and message).

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


def outcome_of(trial) -> tuple[TrialStatus, str]:
    """(status, reason) of a Tune trial that has ended (Tune status TERMINATED or ERROR)."""
    if trial.status == TuneStatus.ERROR:
        return TrialStatus.FAILED, error_reason(trial)
    return trial_outcome(trial.last_result, trial.config.get("epochs"))


# ---- stores and readers -------------------------------------------------------------------------------

def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a local SQLite database (``mlartifacts/``); a tracking server decides its own."""
    if (db := sqlite_path(tracking_uri)) is not None:
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def open_store(tracking_uri: str) -> MlflowClient:
    """A client of an existing store that answers (`deepdiff_study.store.check_readable`: a missing
    SQLite file is an error, not a new empty database; a server that does not answer, one line)."""
    check_readable(tracking_uri)
    return MlflowClient(tracking_uri)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the live experiment `name`; a one-line error listing the known ones otherwise."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        known = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"--experiment {name!r}: no such MLflow experiment at {client.tracking_uri}; "
                          f"found {', '.join(known) if known else 'none'}")
    return experiment.experiment_id


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (with `artifact_location`) if it does not exist."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def study_runs(client: MlflowClient, experiment_id: str, kind: Kind) -> list:
    """All live runs of the study of the given kind (grid-cell runs, trial runs, ...)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.{Tag.KIND} = '{kind}'", run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000, page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def last_result(run) -> dict[str, Any]:
    """A trial run's last epoch as reported: the latest value of every epoch metric, the epoch, and
    the trainer's epoch status (EPOCH_STOPPED read back as the "running" its trainer reported)."""
    last: dict[str, Any] = {k: v for k, v in run.data.metrics.items() if k in EPOCH_METRICS}
    if "epoch" in run.data.metrics:
        last["epoch"] = int(run.data.metrics["epoch"])
    status = run.data.tags.get(Tag.EPOCH_STATUS, "")
    last["status"] = EpochStatus.RUNNING.value if status == EPOCH_STOPPED else status
    return last


def ended_trials(tracking_uri: str, experiment: str) -> dict[str, dict[str, Any]]:
    """Trials the study's record shows as ended: trial id -> {status, reason, last} (see `last_result`)."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    ended = {}
    for run in study_runs(client, found.experiment_id, Kind.TRIAL):
        status = _status(run)
        if status is not None and status.ended:
            ended[run.data.tags[Tag.TRIAL_ID]] = {
                "status": status, "reason": run.data.tags.get(Tag.STATUS_REASON, ""), "last": last_result(run),
            }
    return ended


def _status(run) -> TrialStatus | None:
    try:
        return TrialStatus(run.data.tags.get(Tag.STATUS))
    except ValueError:
        return None


@dataclass(frozen=True)
class BestTrial:
    """A grid cell of a study with its best trial (`best_trials`); the trial's fields are None (its PCCs
    NaN) when the grid cell has no scored trial."""

    grid_cell: str  # the grid cell's key
    variant: str
    pair: int
    pair_name: str
    epigenome_a: str
    epigenome_b: str
    aux_mode: str | None  # None where it does not apply
    margin: float | None
    best_valid_pcc: float
    best_test_pcc: float  # at the best valid-PCC epoch
    best_epoch: int | None
    epochs_trained: int | None  # the trial's last epoch
    trial_status: str | None  # a TrialStatus
    trials: int  # trial runs of the grid cell
    trial_id: str | None
    run_id: str | None  # the best trial's MLflow run
    data: dict[str, Any] | None  # the grid cell's data tag, parsed
    run: Any = field(default=None, repr=False, compare=False)  # the best trial's MLflow run itself

    def row(self) -> dict[str, Any]:
        """The fields but `run`, as one row of a table."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "run"}


def best_trials(tracking_uri: str, experiment: str) -> list[BestTrial]:
    """One `BestTrial` per grid cell of the study (order: pair, variant as in the paper, aux mode, margin):
    its best trial is the ended, scored trial with the highest best_valid_pcc."""
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    parents = {run.data.tags[Tag.GRID_CELL]: run for run in study_runs(client, exp_id, Kind.GRID_CELL)}
    children: dict[str, list] = {}
    for run in study_runs(client, exp_id, Kind.TRIAL):
        children.setdefault(run.data.tags[Tag.GRID_CELL], []).append(run)
    rows = []
    for key, parent in parents.items():
        tags = parent.data.tags
        scored = [
            r for r in children.get(key, [])
            if (_status(r) or TrialStatus.RUNNING).scored and math.isfinite(r.data.metrics.get("best_valid_pcc", math.nan))
        ]
        best = max(scored, key=lambda r: r.data.metrics["best_valid_pcc"]) if scored else None
        metrics = best.data.metrics if best else {}
        rows.append(BestTrial(
            grid_cell=key, variant=tags[Tag.VARIANT], pair=int(tags[Tag.PAIR]), pair_name=tags[Tag.PAIR_NAME],
            epigenome_a=tags[Tag.EPIGENOME_A], epigenome_b=tags[Tag.EPIGENOME_B],
            aux_mode=None if tags[Tag.AUX_MODE] == NOT_APPLICABLE else tags[Tag.AUX_MODE],
            margin=None if tags[Tag.MARGIN] == NOT_APPLICABLE else float(tags[Tag.MARGIN]),
            best_valid_pcc=metrics.get("best_valid_pcc", math.nan), best_test_pcc=metrics.get("best_test_pcc", math.nan),
            best_epoch=int(metrics["best_epoch"]) if "best_epoch" in metrics else None,
            epochs_trained=int(metrics["epoch"]) if "epoch" in metrics else None,
            trial_status=best.data.tags.get(Tag.STATUS) if best else None, trials=len(children.get(key, [])),
            trial_id=best.data.tags.get(Tag.TRIAL_ID) if best else None, run_id=best.info.run_id if best else None,
            data=json.loads(tags[Tag.DATA]) if Tag.DATA in tags else None, run=best,
        ))
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r.pair, order.get(r.variant, 99), r.aux_mode or "", r.margin or 0.0))
    return rows


def decode_search_space(text: str, *, source: str = "search_space tag") -> tuple:
    """The searched params of a grid cell from its ``search_space`` tag (`Tag.SEARCH_SPACE`), as
    `deepdiff_study.grid.Param`s in the grid file's order; a `ConfigError` naming `source` when the tag
    is not the JSON list ``[{"name", "kind", "low", "high"} | {"name", "kind": "choice", "values"}, ...]``."""
    from deepdiff_study.grid import PARAM_KINDS, Param

    try:
        items = json.loads(text)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: not JSON ({err})") from None
    if not isinstance(items, list):
        raise ConfigError(f"{source}: expected a JSON list of searched params, got {type(items).__name__}")
    params = []
    for i, item in enumerate(items):
        kind = item.get("kind") if isinstance(item, dict) else None
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or kind not in PARAM_KINDS:
            raise ConfigError(f"{source}: item {i} needs a name and a kind in {', '.join(PARAM_KINDS)}, got {item!r}")
        if kind == "choice":
            values = item.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: {name} (choice) needs a non-empty list of values, got {values!r}")
            params.append(Param(name, kind, values=tuple(values)))
            continue
        low, high = item.get("low"), item.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)) \
                or not low < high or (kind == "log_uniform" and low <= 0):
            raise ConfigError(f"{source}: {name} ({kind}) needs numbers low < high"
                              f"{' (both > 0)' if kind == 'log_uniform' else ''}, got low={low!r} high={high!r}")
        params.append(Param(name, kind, low=float(low), high=float(high)))
    return tuple(params)
