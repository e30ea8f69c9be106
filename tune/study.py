"""The study: grid cells x per-cell Optuna search x per-cell ASHA, behind one Ray Tune `Tuner`.

One Tuner runs every trial of every cell, so the cluster stays packed and there is one experiment
directory and one resume. Two small adapters make the cells independent inside it:

- `CellSearcher` (a Tune `Searcher`) holds one `OptunaSearch` per cell (its own TPE sampler, seeded,
  with the published setting enqueued as its first trial). `suggest` picks the cell with the most trials
  left and returns that cell's suggestion plus the cell's fixed fields and ``"cell"``. It implements
  `save`/`restore` (every cell's Optuna study and the trial -> cell map), which Tune needs to resume.
- `CellScheduler` (a Tune `FIFOScheduler`) holds one `AsyncHyperBandScheduler` per cell and forwards each
  trial event to its cell's ASHA: a trial is only ever compared with trials of its own cell (PCCs of
  different pairs are not comparable). Tune never saves schedulers, so after a resume each cell's rungs
  are rebuilt from the restored trials' recorded results (``result.json``).

Both optimise `METRIC` = ``best_valid_pcc`` (the trial's best validation PCC so far, i.e. the valid PCC
of the model it would select if stopped now), mode max, over the time attribute ``epoch``.
"""

from __future__ import annotations

import json
import math
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from deepdiff.train import STATUS_NAN

from ablations.grid import Cell, Grid, Param

METRIC = "best_valid_pcc"
MODE = "max"
TIME_ATTR = "epoch"
META_KEYS = ("cell", "pair")  # trial-config keys that are not ModelConfig/TrainConfig fields
RESULT_FILE = "result.json"  # Tune's per-trial log of every reported result (one JSON object per line)


@dataclass(frozen=True)
class CellPlan:
    """What one cell runs: its searched space, the published first point, fixed fields, trial count."""

    cell: Cell
    params: tuple[Param, ...]
    published: dict[str, Any]
    fixed: dict[str, Any]  # config fields the same for every trial of the cell (incl. META_KEYS)
    samples: int

    @property
    def key(self) -> str:
        return self.cell.key


@dataclass(frozen=True)
class StudySettings:
    """Run-level settings shared by all cells."""

    samples: int  # trials per cell, the published one included
    max_epochs: int
    grace_period: int
    reduction_factor: float
    seed: int = 0  # seeds every cell's sampler (mixed with the cell key) and every trial's training
    fixed: dict[str, Any] = field(default_factory=dict)  # extra config fields for every trial (e.g. eval_batch_size)


def plan_cells(grid: Grid, cells: list[Cell], settings: StudySettings) -> list[CellPlan]:
    """A `CellPlan` per cell: the grid's space for the variant, its published point, the fixed fields."""
    plans = []
    for cell in cells:
        fixed = {
            **settings.fixed,
            **cell.fixed_config(),
            "epochs": settings.max_epochs,
            "seed": settings.seed,
            "cell": cell.key,
            "pair": cell.pair.number,
        }
        plans.append(CellPlan(cell, grid.space_for(cell), grid.published_for(cell), fixed, settings.samples))
    return plans


def optuna_space(params: tuple[Param, ...]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The cell's search space as Optuna distributions (log_uniform -> log-scale float, choice -> categorical)."""
    make = {
        "log_uniform": lambda p: optuna.distributions.FloatDistribution(p.low, p.high, log=True),
        "uniform": lambda p: optuna.distributions.FloatDistribution(p.low, p.high),
        "choice": lambda p: optuna.distributions.CategoricalDistribution(list(p.values)),
    }
    return {p.name: make[p.kind](p) for p in params}


def cell_seed(seed: int, key: str) -> int:
    """A sampler seed per cell that depends only on the study seed and the cell (not on the selection)."""
    return (zlib.crc32(key.encode()) + 7919 * seed) % (2**31)


class CellSearcher(Searcher):
    """One Optuna search per cell behind one Tune searcher; see the module docstring."""

    def __init__(self, plans: list[CellPlan], *, metric: str = METRIC, mode: str = MODE, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self._plans = {plan.key: plan for plan in plans}
        self._optuna = {
            plan.key: OptunaSearch(
                optuna_space(plan.params), metric=metric, mode=mode, points_to_evaluate=[plan.published],
                sampler=optuna.samplers.TPESampler(seed=cell_seed(seed, plan.key)), study_name=plan.key,
            )
            for plan in plans
        }
        self._trial_cell: dict[str, str] = {}  # Tune trial id -> cell key
        self._suggested = {plan.key: 0 for plan in plans}

    @property
    def total_samples(self) -> int:
        return sum(plan.samples for plan in self._plans.values())

    def cell_of(self, trial_id: str) -> str | None:
        return self._trial_cell.get(trial_id)

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        left = {key: plan.samples - self._suggested[key] for key, plan in self._plans.items()}
        key = max(left, key=left.get)  # first cell among those with the most trials left
        if left[key] <= 0:
            return Searcher.FINISHED
        params = self._optuna[key].suggest(trial_id)
        self._trial_cell[trial_id] = key
        self._suggested[key] += 1
        return {**self._plans[key].fixed, **params}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        key = self._trial_cell.get(trial_id)
        if key is not None and _usable(result, self.metric):
            self._optuna[key].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._trial_cell.get(trial_id)
        if key is None or trial_id in self._optuna[key]._completed_trials:
            return
        if result is not None and not _usable(result, self.metric):  # NaN loss or no metric: a failed trial
            result, error = None, True
        self._optuna[key].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        state = {
            "trial_cell": self._trial_cell,
            "suggested": self._suggested,
            "optuna": {key: search.__dict__.copy() for key, search in self._optuna.items()},
        }
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(state, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            state = pickle.load(fh)
        self._trial_cell = state["trial_cell"]
        self._suggested.update(state["suggested"])
        for key, search_state in state["optuna"].items():
            self._optuna[key].__dict__.update(search_state)


def _usable(result: dict, metric: str) -> bool:
    """A result an optimiser may learn from: the metric present and finite, training not diverged."""
    value = result.get(metric)
    return result.get("status") != STATUS_NAN and isinstance(value, (int, float)) and math.isfinite(value)


class CellScheduler(FIFOScheduler):
    """One ASHA per cell behind one Tune scheduler; see the module docstring.

    `pruned` holds the ids of trials a cell's ASHA stopped before `max_t` (this session and, after a
    resume, only the ones stopped since).
    """

    def __init__(
        self, cell_keys: list[str], *, max_t: int, grace_period: int, reduction_factor: float,
        metric: str = METRIC, mode: str = MODE, time_attr: str = TIME_ATTR,
    ):
        super().__init__()
        # The base class owns the `metric` property (read by Tune to validate results); set its field.
        self._metric = metric
        self._cell_mode = mode
        self._time_attr = time_attr
        self._max_t = max_t
        self._asha = {
            key: AsyncHyperBandScheduler(
                time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                grace_period=grace_period, reduction_factor=reduction_factor,
            )
            for key in cell_keys
        }
        self.pruned: set[str] = set()

    def _cell(self, trial) -> AsyncHyperBandScheduler:
        return self._asha[trial.config["cell"]]

    def on_trial_add(self, tune_controller, trial) -> None:
        asha = self._cell(trial)
        asha.on_trial_add(tune_controller, trial)
        self._replay_history(asha, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("status") == STATUS_NAN:  # the trial ends by itself; its NaN is no evidence for the rung
            return TrialScheduler.CONTINUE
        decision = self._cell(trial).on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:
            self.pruned.add(trial.trial_id)
        return decision

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        asha = self._cell(trial)
        if trial.trial_id not in asha._trial_info:
            return
        if self._time_attr in result and self.metric in result and result.get("status") != STATUS_NAN:
            asha.on_trial_complete(tune_controller, trial, result)
        else:
            asha.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        asha = self._cell(trial)
        if trial.trial_id in asha._trial_info:
            asha.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._cell(trial).on_trial_error(tune_controller, trial)

    def rung_records(self, key: str) -> list[dict[str, float]]:
        """Recorded metric values per rung of a cell's ASHA (lowest milestone first), for inspection."""
        return [dict(recorded) for _, recorded in reversed(self._asha[key]._brackets[0]._rungs)]

    def _replay_history(self, asha: AsyncHyperBandScheduler, trial) -> None:
        """Put a restored (or retried) trial's earlier results back into its cell's rungs.

        Recording is idempotent (a rung keeps one value per trial), so a retried trial is harmless.
        """
        if not trial.has_reported_at_least_once:
            return
        # Tune keeps the file in the driver's staging folder (downloaded there again on restore) and
        # syncs it to the storage folder; read whichever is there.
        paths = [Path(trial.local_path) / RESULT_FILE, Path(trial.path) / RESULT_FILE]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            return
        bracket = asha._trial_info[trial.trial_id]
        op = 1.0 if self._cell_mode == "max" else -1.0
        for line in path.read_text().splitlines():
            try:
                result = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed driver
                continue
            if self._time_attr in result and _usable(result, self.metric):
                bracket.on_result(trial, result[self._time_attr], op * result[self.metric])
        if trial.status in ("TERMINATED", "ERROR"):
            del asha._trial_info[trial.trial_id]

    def debug_string(self) -> str:
        return f"Per-cell ASHA over {len(self._asha)} cells; stopped early: {len(self.pruned)}"


# ---- the Tuner --------------------------------------------------------------------------------------

MANIFEST = "deepdiff-study.json"  # beside Tune's files: what --resume needs to rebuild the data


def trial_dirname(trial) -> str:
    """Trial folders named by cell and trial id (Tune's default spells out the whole config)."""
    return f"{trial.config['cell']}-{trial.trial_id}"


def make_tuner(trainable, plans: list[CellPlan], settings: StudySettings, *, storage: Path, name: str,
               callbacks: list, max_failures: int) -> tune.Tuner:
    """One Tuner for the whole study: per-cell Optuna behind `CellSearcher`, per-cell ASHA behind `CellScheduler`."""
    searcher = CellSearcher(plans, seed=settings.seed)
    scheduler = CellScheduler(
        [p.key for p in plans], max_t=settings.max_epochs, grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=searcher.total_samples, reuse_actors=True,
            trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            # result.json is what CellScheduler replays after a resume; progress.csv is for people.
            name=name, storage_path=str(storage), callbacks=[*callbacks, JsonLoggerCallback(), CSVLoggerCallback()], verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def restore_tuner(trainable, *, storage: Path, name: str) -> tune.Tuner:
    """The study saved under storage/name: finished and failed trials kept, unfinished ones continued
    from their last checkpoint, the searcher (every cell's Optuna study) restored from its save."""
    return tune.Tuner.restore(str(storage / name), trainable, resume_unfinished=True, resume_errored=False,
                              restart_errored=False)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(path)


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
