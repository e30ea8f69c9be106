"""Per-grid-cell Optuna search behind one Ray Tune `Searcher`.

`GridCellSearcher` holds one `OptunaSearch` per grid cell (its own TPE sampler, seeded from the study
seed and the grid cell's key, with the published setting enqueued as its first trial). `suggest` picks
the grid cell with the most trials left and returns that grid cell's suggestion plus its fixed
trial-config entries. Its `save`/`restore` (called by Tune, see `deepdiff_study.resume`) keep every
grid cell's Optuna study, the trial -> grid cell map and the trials already told to Optuna.

It optimises `METRIC` = ``best_valid_pcc`` (a trial's best validation PCC so far: the valid PCC of the
model it would keep if stopped now), mode max.
"""

from __future__ import annotations

import math
import pickle
import tempfile
import zlib
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from deepdiff.results import diverged
from deepdiff_study.grid import Param
from deepdiff_study.plan import GridCellPlan

METRIC = "best_valid_pcc"
MODE = "max"


def optuna_space(params: tuple[Param, ...]) -> dict[str, optuna.distributions.BaseDistribution]:
    """A grid cell's search space as Optuna distributions (log_uniform -> log-scale float, choice -> categorical)."""
    make = {
        "log_uniform": lambda p: optuna.distributions.FloatDistribution(p.low, p.high, log=True),
        "uniform": lambda p: optuna.distributions.FloatDistribution(p.low, p.high),
        "choice": lambda p: optuna.distributions.CategoricalDistribution(list(p.values)),
    }
    return {p.name: make[p.kind](p) for p in params}


def grid_cell_seed(seed: int, key: str) -> int:
    """A sampler seed per grid cell that depends only on the study seed and the grid cell (not on the selection)."""
    return (zlib.crc32(key.encode()) + 7919 * seed) % (2**31)


def usable(result: dict, metric: str = METRIC) -> bool:
    """A result an optimiser or a scheduler may learn from: the metric finite, training not diverged."""
    value = result.get(metric)
    return not diverged(result.get("status")) and isinstance(value, (int, float)) and math.isfinite(value)


class GridCellSearcher(Searcher):
    """One Optuna search per grid cell behind one Tune searcher; see the module docstring."""

    def __init__(self, plans: list[GridCellPlan], *, metric: str = METRIC, mode: str = MODE, seed: int = 0):
        super().__init__(metric=metric, mode=mode)
        self._plans = {plan.key: plan for plan in plans}
        self._optuna = {
            plan.key: OptunaSearch(
                optuna_space(plan.params), metric=metric, mode=mode, points_to_evaluate=[plan.published],
                sampler=optuna.samplers.TPESampler(seed=grid_cell_seed(seed, plan.key)), study_name=plan.key,
            )
            for plan in plans
        }
        self._trial_cell: dict[str, str] = {}  # Tune trial id -> grid cell key
        self._suggested = {plan.key: 0 for plan in plans}
        self._told: set[str] = set()  # trials whose ending Optuna has been told
        self._reset_saves()

    def _reset_saves(self) -> None:
        # Tune saves the searcher with every experiment snapshot, and with one kept checkpoint per trial
        # it takes a snapshot after every trial checkpoint. At the paper's 230 grid cells x 20 trials,
        # pickling every grid cell's Optuna study took 0.6 s per save; only the grid cells that changed
        # since the last save are pickled again.
        self._blobs: dict[str, bytes] = {}  # grid cell -> its OptunaSearch's save, as of the last save
        self._dirty: set[str] = set(self._plans)

    # Pickled into tuner.pkl at the start: the cached saves are rebuilt, never pickled.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_blobs", "_dirty")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_saves()

    @property
    def total_samples(self) -> int:
        return sum(plan.samples for plan in self._plans.values())

    def grid_cell_of(self, trial_id: str) -> str | None:
        return self._trial_cell.get(trial_id)

    def optuna_search(self, key: str) -> OptunaSearch:
        return self._optuna[key]

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        left = {key: plan.samples - self._suggested[key] for key, plan in self._plans.items()}
        key = max(left, key=left.get)  # first grid cell among those with the most trials left
        if left[key] <= 0:
            return Searcher.FINISHED
        params = self._optuna[key].suggest(trial_id)
        self._dirty.add(key)
        self._trial_cell[trial_id] = key
        self._suggested[key] += 1
        return {**self._plans[key].fixed, **params}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        key = self._trial_cell.get(trial_id)
        if key is not None and trial_id not in self._told and usable(result, self.metric):
            self._optuna[key].on_trial_result(trial_id, result)
            self._dirty.add(key)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._trial_cell.get(trial_id)
        if key is None or trial_id in self._told:
            return
        if result is not None and not usable(result, self.metric):  # NaN loss or no metric: a failed trial
            result, error = None, True
        self._optuna[key].on_trial_complete(trial_id, result=result, error=error)
        self._dirty.add(key)
        self._told.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Everything a resumed study needs to continue every grid cell's search exactly."""
        for key in self._dirty:
            self._blobs[key] = _saved(self._optuna[key])
        self._dirty = set()
        state = {"trial_cell": self._trial_cell, "suggested": self._suggested, "told": self._told, "optuna": self._blobs}
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(state, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            state = pickle.load(fh)
        self._trial_cell = state["trial_cell"]
        self._suggested.update(state["suggested"])
        self._told = state["told"]
        for key, blob in state["optuna"].items():
            _restore(self._optuna[key], blob)
        self._blobs, self._dirty = dict(state["optuna"]), set()


def _saved(search: OptunaSearch) -> bytes:
    """An `OptunaSearch`'s own save (it writes a file), as bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "search.pkl"
        search.save(str(path))
        return path.read_bytes()


def _restore(search: OptunaSearch, blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "search.pkl"
        path.write_bytes(blob)
        search.restore(str(path))
