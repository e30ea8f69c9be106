"""Per-grid-cell Optuna search behind one Ray Tune `Searcher`.

`GridCellSearcher` holds one `OptunaSearch` per grid cell (its own TPE sampler, seeded from the study
seed and the grid cell's key, with the published setting enqueued as its first trial). `suggest` picks
the grid cell with the most trials left and returns that grid cell's suggestion plus its fixed
trial-config entries. With warm starts on (``warm_starts=True``; off by default, see docs/warm-starts.md),
a grid cell past its first trial is first given the best configurations related grid cells found
(`deepdiff_study.warmstart`, which decides which): such a trial is not Optuna's suggestion; Optuna
learns it as an evaluated point when it ends, and its config names its source (``warm_start_from``).
Its `save`/`restore` (called by Tune, see `deepdiff_study.resume`) keep every grid cell's Optuna study,
the trial -> grid cell map, the trials already told to Optuna and the warm starts' bookkeeping.

Tune saves its trial list and the searcher in separate files of each snapshot, so after a kill either
can be ahead of the other: `GridCellSearcher.reconcile` (run by `SearcherSync` at the first step of
a resumed run) makes the searcher agree with the trials Tune restored, and `GridCellSearch` (Tune's
wrapper around it) lets a grid cell whose trial Tune lost get it back.

It optimises `METRIC` = ``best_valid_pcc`` (a trial's best validation PCC so far: the valid PCC of the
model it would keep if stopped now), mode max.
"""

from __future__ import annotations

import math
import pickle
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.search import SearchGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from deepdiff.results import diverged
from deepdiff_study.grid import Param
from deepdiff_study.plan import GridCellPlan
from deepdiff_study.records import Tag, TuneStatus, grid_cell_of, warm_start_of
from deepdiff_study.warmstart import WarmStarts

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

    def __init__(self, plans: list[GridCellPlan], *, metric: str = METRIC, mode: str = MODE, seed: int = 0,
                 warm_starts: bool = False):
        super().__init__(metric=metric, mode=mode)
        self._plans = {plan.key: plan for plan in plans}
        self._seed = seed
        self._optuna = {plan.key: self._new_search(plan) for plan in plans}
        self._trial_cell: dict[str, str] = {}  # Tune trial id -> grid cell key
        self._suggested = {plan.key: 0 for plan in plans}
        self._told: set[str] = set()  # trials whose ending Optuna has been told
        # trials Optuna never suggested (warm starts; see also reconcile) -> their params
        self._unasked: dict[str, dict[str, Any]] = {}
        self._warm = WarmStarts(plans, on=warm_starts)
        self.reconciled = False  # `reconcile` ran in this process (see `GridCellSearch`); never saved
        self._reset_saves()

    def _new_search(self, plan: GridCellPlan) -> OptunaSearch:
        return OptunaSearch(
            optuna_space(plan.params), metric=self.metric, mode=self.mode, points_to_evaluate=[plan.published],
            sampler=optuna.samplers.TPESampler(seed=grid_cell_seed(self._seed, plan.key)), study_name=plan.key,
        )

    def _reset_saves(self) -> None:
        # Tune saves the searcher with every experiment snapshot, and with one kept checkpoint per trial
        # it takes a snapshot after every trial checkpoint. At the paper's 230 grid cells x 20 trials,
        # pickling every grid cell's Optuna study took 0.6 s per save; only the grid cells that changed
        # since the last save are pickled again.
        self._blobs: dict[str, bytes] = {}  # grid cell -> its OptunaSearch's save, as of the last save
        self._dirty: set[str] = set(self._plans)

    # Pickled into tuner.pkl at the start: the cached saves and the reconciled flag are reset, never pickled.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_blobs", "_dirty", "reconciled")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reconciled = False
        self._reset_saves()

    @property
    def total_samples(self) -> int:
        return sum(plan.samples for plan in self._plans.values())

    def all_suggested(self) -> bool:
        """Every grid cell has had all its trials suggested (a reconcile may reopen one)."""
        return all(self._suggested[key] >= plan.samples for key, plan in self._plans.items())

    def grid_cell_of(self, trial_id: str) -> str | None:
        return self._trial_cell.get(trial_id)

    def optuna_search(self, key: str) -> OptunaSearch:
        return self._optuna[key]

    def warm_starts(self, key: str) -> dict[str, str]:
        """The warm starts grid cell `key` was given: trial id -> source (GRID_CELL/TRIAL_ID)."""
        return self._warm.given(key)

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        left = {key: plan.samples - self._suggested[key] for key, plan in self._plans.items()}
        key = max(left, key=left.get)  # first grid cell among those with the most trials left
        if left[key] <= 0:
            return Searcher.FINISHED
        warm = self._warm.next_for(key)
        if warm is None:
            params, source = self._optuna[key].suggest(trial_id), None
        else:  # Optuna learns it when it ends, as a point evaluated elsewhere
            (params, source), self._unasked[trial_id] = warm, warm[0]
        self._warm.suggested(key, trial_id, params, source)
        self._dirty.add(key)
        self._trial_cell[trial_id] = key
        self._suggested[key] += 1
        return {**self._plans[key].fixed, **params, **({} if source is None else {Tag.WARM_START_FROM: source})}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        key = self._trial_cell.get(trial_id)
        if key is not None and trial_id not in self._told and trial_id not in self._unasked and usable(result, self.metric):
            self._optuna[key].on_trial_result(trial_id, result)
            self._dirty.add(key)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._trial_cell.get(trial_id)
        if key is None or trial_id in self._told:
            return
        if result is not None and not usable(result, self.metric):  # NaN loss or no metric: a failed trial
            result, error = None, True
        params = self._unasked.pop(trial_id, None)
        if params is None:
            self._optuna[key].on_trial_complete(trial_id, result=result, error=error)
        else:  # Optuna never suggested it: it learns it as an evaluated point (the same state on_trial_complete gives)
            value = result.get(self.metric) if result else None
            self._optuna[key].add_evaluated_point(params, value, error=error, pruned=value is None and not error)
        if result is not None:
            self._warm.scored(trial_id, result[self.metric])
        self._dirty.add(key)
        self._told.add(trial_id)

    def reconcile(self, trials: Iterable[Any]) -> None:
        """Make the searcher agree with the trials Tune restored (Tune `Trial`s: trial_id, config, status,
        last_result); called once before Tune next asks for a trial (`SearcherSync`).

        Tune writes a snapshot's trial list before the searcher's save, and uploads them to a URI storage
        separately: a kill in between leaves either one ahead.
        (a) A suggestion Tune never saved: its grid cell's budget reopens and Tune asks again under a new
        trial id (`deepdiff_study.resume.reconcile` deletes its MLflow run, told or not); if not yet told,
        Optuna learns it failed, so TPE does not count it as pending. A grid cell left with no trial at
        all starts its Optuna study afresh, so its published setting runs first. A warm start among them
        can be given again (`WarmStarts.forget`).
        (b) A trial Tune saved that the searcher's save missed: it is counted (no extra trial for its
        grid cell) and Optuna learns it as an evaluated point, at once if it had ended, else when it ends;
        a grid cell's first trial (its published setting) takes the Optuna trial waiting with it instead.
        A warm start among them counts as given (its config names its source), so it is not given twice.
        """
        by_id = {trial.trial_id: trial for trial in trials}
        for trial_id, key in list(self._trial_cell.items()):
            if trial_id in by_id:
                continue
            if trial_id not in self._told and self._unasked.pop(trial_id, None) is None:
                self._optuna[key].on_trial_complete(trial_id, error=True)
            self._told.discard(trial_id)  # a told one keeps its result in Optuna: it was evaluated
            self._warm.forget(trial_id)
            del self._trial_cell[trial_id]
            self._suggested[key] -= 1
            self._dirty.add(key)
            if self._suggested[key] == 0:
                self._optuna[key] = self._new_search(self._plans[key])
        for trial_id, trial in by_id.items():
            if trial_id in self._trial_cell:
                continue
            key = grid_cell_of(trial.config)
            plan = self._plans[key]
            params = {name: trial.config[name] for name in optuna_space(plan.params)}
            if self._suggested[key] == 0 and params == plan.published:  # Optuna's first, still waiting: take it
                self._optuna[key].suggest(trial_id)
            else:
                self._unasked[trial_id] = params
            self._warm.suggested(key, trial_id, params, warm_start_of(trial.config))
            self._trial_cell[trial_id] = key
            self._suggested[key] += 1
            self._dirty.add(key)
            if trial.status == TuneStatus.TERMINATED:
                self.on_trial_complete(trial_id, trial.last_result)
            elif trial.status == TuneStatus.ERROR:
                self.on_trial_complete(trial_id, error=True)
        self.reconciled = True

    def save(self, checkpoint_path: str) -> None:
        """Everything a resumed study needs to continue every grid cell's search exactly."""
        for key in self._dirty:
            self._blobs[key] = _saved(self._optuna[key])
        self._dirty = set()
        state = {"trial_cell": self._trial_cell, "suggested": self._suggested, "told": self._told,
                 "unasked": self._unasked, "optuna": self._blobs, "warm": self._warm.state()}
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(state, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            state = pickle.load(fh)
        self._trial_cell = state["trial_cell"]
        self._suggested.update(state["suggested"])
        self._told = state["told"]
        self._unasked = state.get("unasked", {})  # absent from saves made before reconcile existed
        if "warm" in state:  # absent from saves made before warm starts existed
            self._warm.restore(state["warm"])
        for key, blob in state["optuna"].items():
            _restore(self._optuna[key], blob)
        self._blobs, self._dirty = dict(state["optuna"]), set()


class GridCellSearch(SearchGenerator):
    """Tune's wrapper around a `GridCellSearcher` (pass it as ``search_alg``, with `SearcherSync` in the
    run's callbacks), done once the searcher is reconciled and every grid cell's trials are suggested.

    Tune's own wrapper stops after ``num_samples`` trials, counted in its own part of the snapshot: with
    the searcher's save ahead of Tune's trial list, that count includes the trial Tune lost, and the
    trial `GridCellSearcher.reconcile` reopens for it would never be asked for. Nor would Tune take a
    first step (where the reconcile runs) if every restored trial had ended and the searcher's restored
    count said all were suggested.
    """

    searcher: GridCellSearcher
    _stopped = False  # Tune stopped the whole run (a stopper, fail_fast): no more trials in this process

    def is_finished(self) -> bool:
        return self._stopped or (self.searcher.reconciled and self.searcher.all_suggested())

    def set_finished(self) -> None:
        super().set_finished()
        self._stopped = True

    def next_trial(self) -> Any:
        if not self.searcher.reconciled:  # Tune asks after its callbacks' on_step_begin: SearcherSync is missing
            raise RuntimeError("GridCellSearch asked for a trial before SearcherSync reconciled its searcher: "
                               "add SearcherSync(searcher) to the run's callbacks")
        return super().next_trial()


class SearcherSync(Callback):
    """Runs `GridCellSearcher.reconcile` at the first step of a run: Tune calls ``on_step_begin`` with every
    restored trial before it first asks the searcher for a trial (a fresh study: nothing to do)."""

    def __init__(self, searcher: GridCellSearcher):
        self.searcher = searcher  # the searcher inside this run's `GridCellSearch` (pickled with it in tuner.pkl)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.searcher.reconciled:
            self.searcher.reconcile(trials)


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
