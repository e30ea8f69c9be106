"""Warm starts across related grid cells: which configurations one grid cell's search is given from the
trials other grid cells have finished, mapped onto its own search space. Pure Python: no Ray, no Optuna.

A grid cell's search (`deepdiff_study.searcher.GridCellSearcher`) runs the paper's setting first. From
its second trial on, each time it is asked for a trial it first looks here: while it has had fewer
than `warm_start_limit` warm starts, it is given the best configuration found so far in a **related**
grid cell (`RELATIONS`: a grid cell of the same variant on the same pair with another aux mode or
margin, or on another pair) that it has not tried yet; only when there is none does its own TPE
sampler propose. A candidate is each related grid cell's best scored trial so far, once that grid cell
has scored `MIN_SOURCE_TRIALS` trials (the best of its paper's setting and one proposal is mostly that
one proposal's luck: such warm starts scored no better than the target's own proposals in
benchmarks/bench_warmstart.py), and only if it beat that grid cell's trial of the paper's setting, so
what is handed on is a configuration the search found, not the paper's setting again. Candidates are ranked by that gain in valid PCC
(PCCs of two pairs are not comparable; their gains over the same paper's setting roughly are), then
by closeness (`RELATIONS` order), then by grid cell key and trial order: the same events give the
same warm starts.

`map_config` maps a configuration onto the target's space (the rules are in its docstring). Within
one grid file all grid cells of a variant share one search space, so the mapping changes nothing
there today; it is what makes a warm start valid by construction, whatever the two spaces are.

`WarmStarts` is the bookkeeping (saved with the searcher, see `deepdiff_study.resume`): every trial's
configuration and grid cell, every scored result, and the warm starts given (target trial -> source
``GRID_CELL/TRIAL_ID``, which the trial's config carries into its MLflow run as the tag
``warm_start_from``). A trial that a resumed study's reconcile drops (Tune never saved it) is
forgotten here too: a warm start it received can be given again, and it is no longer a source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepdiff_study.grid import GridCell, Param
from deepdiff_study.plan import GridCellPlan

WARM_SHARE = 1 / 3  # at most this share of a grid cell's trials after the published one are warm starts
MIN_SOURCE_TRIALS = 3  # a grid cell's best is handed on once it has scored this many trials


@dataclass(frozen=True)
class Relation:
    name: str  # how the docs and the tests say it
    holds: Callable[[GridCell, GridCell], bool]  # (searching grid cell, grid cell it may learn from)


# Closest first; two grid cells are related when one of these holds and they are not the same grid cell.
RELATIONS = (
    Relation("same variant and pair, another aux mode or margin",
             lambda a, b: a.variant == b.variant and a.pair.number == b.pair.number),
    Relation("same variant, aux mode and margin on another pair",
             lambda a, b: a.variant == b.variant and (a.aux_mode, a.margin) == (b.aux_mode, b.margin)),
    Relation("same variant on another pair, another aux mode or margin", lambda a, b: a.variant == b.variant),
)


def relation(a: GridCell, b: GridCell) -> int | None:
    """The index in `RELATIONS` of how grid cell `b` relates to `a`, None if unrelated (or the same)."""
    if a.key == b.key:
        return None
    return next((i for i, r in enumerate(RELATIONS) if r.holds(a, b)), None)


def warm_start_limit(samples: int) -> int:
    """The most warm starts a grid cell of `samples` trials gets: `WARM_SHARE` of those after the first."""
    return int((samples - 1) * WARM_SHARE)


def map_config(params: dict[str, Any], space: tuple[Param, ...], fallback: dict[str, Any]) -> dict[str, Any]:
    """`params` (another grid cell's configuration) as a point of `space`, one value per parameter of it.

    - a parameter `space` does not search is dropped;
    - a number for a ``uniform`` / ``log_uniform`` parameter is clipped to [low, high];
    - a value a ``choice`` parameter lists is kept; a number it does not list becomes the nearest number
      it lists (on a log scale when all are > 0, as batch and hidden sizes are; the smaller on a tie);
      anything else it does not list (a word, a number among words) is dropped;
    - a parameter of `space` left without a value (dropped, or absent from `params`) takes its value
      in `fallback` (the target's published setting).
    """
    mapped = {}
    for p in space:
        value = params.get(p.name)
        mapped[p.name] = fallback[p.name] if value is None else _fit(p, value, fallback[p.name])
    return mapped


def _fit(p: Param, value: Any, fallback: Any) -> Any:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if p.kind != "choice":
        return min(max(float(value), p.low), p.high) if number else fallback
    if value in p.values:
        return value
    numbers = [v for v in p.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not number or len(numbers) != len(p.values):
        return fallback
    scale = math.log if value > 0 and min(numbers) > 0 else float
    return min(numbers, key=lambda v: (round(abs(scale(v) - scale(value)), 12), v))  # rounded: log 32 is as near log 16 as log 64


def _same_point(params: dict[str, Any]) -> tuple:
    """A configuration as a hashable value; floats rounded so a mapped copy matches its source."""
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


class WarmStarts:
    """What each grid cell's search has tried and scored, and which warm starts it was given; see the
    module docstring. `on`: False records the same but never gives a warm start."""

    def __init__(self, plans: list[GridCellPlan], *, on: bool = True):
        self.on = on
        self._plans = {plan.key: plan for plan in plans}
        self._limit = {plan.key: warm_start_limit(plan.samples) if on else 0 for plan in plans}
        self._related = {  # grid cell -> [(relation index, related grid cell)], closest first, then by key
            a.key: sorted((r, b.key) for b in plans if (r := relation(a.cell, b.cell)) is not None) for a in plans
        }
        self._trials: dict[str, tuple[str, dict[str, Any]]] = {}  # trial id -> (grid cell, params)
        self._scores: dict[str, float] = {}  # trial id -> its scored best valid PCC
        self._given: dict[str, str] = {}  # trial id of a warm start -> its source, GRID_CELL/TRIAL_ID
        self._index()

    def _index(self) -> None:
        self._of_cell: dict[str, list[str]] = {key: [] for key in self._plans}  # grid cell -> its trial ids, in order
        for trial_id, (key, _) in self._trials.items():
            self._of_cell[key].append(trial_id)

    # ---- events ------------------------------------------------------------------------------------

    def suggested(self, key: str, trial_id: str, params: dict[str, Any], source: str | None = None) -> None:
        """Grid cell `key` runs `params` as trial `trial_id` (a warm start from `source`, or not)."""
        if trial_id not in self._trials:
            self._of_cell[key].append(trial_id)
        self._trials[trial_id] = (key, dict(params))
        if source is not None:
            self._given[trial_id] = source

    def scored(self, trial_id: str, value: float) -> None:
        """Trial `trial_id` ended with a usable best valid PCC `value` (ignored for an unknown trial)."""
        if trial_id in self._trials and math.isfinite(value):
            self._scores[trial_id] = float(value)

    def forget(self, trial_id: str) -> None:
        """A trial the study no longer has (a resumed study's reconcile dropped it)."""
        if trial_id in self._trials:
            self._of_cell[self._trials[trial_id][0]].remove(trial_id)
        for table in (self._trials, self._scores, self._given):
            table.pop(trial_id, None)

    # ---- the choice --------------------------------------------------------------------------------

    def given(self, key: str) -> dict[str, str]:
        """The warm starts grid cell `key` was given: its trial id -> source."""
        return {t: self._given[t] for t in self._of_cell[key] if t in self._given}

    def next_for(self, key: str) -> tuple[dict[str, Any], str] | None:
        """(params, source) of the warm start grid cell `key` should run next, or None (its own sampler
        proposes): none before its first trial, none past its `warm_start_limit`, none left untried."""
        mine = self._of_cell[key]
        if not mine or len(self.given(key)) >= self._limit[key]:
            return None
        plan = self._plans[key]
        seen = {_same_point(self._trials[t][1]) for t in mine}
        candidates = []
        for closeness, other in self._related[key]:
            best = self._best(other)
            if best is None:
                continue
            trial_id, params, gain = best
            mapped = map_config(params, plan.params, plan.published)
            if gain > 0 and _same_point(mapped) not in seen:
                candidates.append((-gain, closeness, other, trial_id, mapped))
        if not candidates:
            return None
        _, _, other, trial_id, mapped = min(candidates, key=lambda c: c[:3])
        return mapped, f"{other}/{trial_id}"

    def _best(self, key: str) -> tuple[str, dict[str, Any], float] | None:
        """(trial id, params, gain) of grid cell `key`'s best scored trial so far (the earliest of equals),
        its gain measured against the grid cell's published setting (against its worst scored trial when
        the published one was not scored); None before it scored `MIN_SOURCE_TRIALS` trials."""
        scored = [t for t in self._of_cell[key] if t in self._scores]
        if len(scored) < MIN_SOURCE_TRIALS:
            return None
        best = max(scored, key=self._scores.__getitem__)  # max keeps the first of equals
        published = [self._scores[t] for t in scored if self._trials[t][1] == self._plans[key].published]
        baseline = published[0] if published else min(self._scores[t] for t in scored)
        return best, self._trials[best][1], self._scores[best] - baseline

    # ---- saved with the searcher --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"trials": dict(self._trials), "scores": dict(self._scores), "given": dict(self._given)}

    def restore(self, state: dict[str, Any]) -> None:
        self._trials, self._scores, self._given = dict(state["trials"]), dict(state["scores"]), dict(state["given"])
        self._index()
