"""What each grid cell's search cost to reach its best valid PCC (or a target): trials and trial-hours,
warm starts marked. Pure functions over a DataFrame of trial runs, for the study report and
benchmarks/bench_warmstart.py. pandas only.

The trial runs: one row per trial, with the columns `TRIAL_COLUMNS`:

- ``grid_cell``: its grid cell's key;
- ``order``: anything that sorts a grid cell's trials in the order they were started (the run's start
  time, or the index of the suggestion);
- ``status``: a `records.TrialStatus` value; only completed and pruned trials count as scored;
- ``best_valid_pcc``: its best valid PCC (NaN when it has none);
- ``seconds``: the training time it took (the sum of its epochs' ``seconds``); every trial's counts, a
  failed one's too;
- ``warm_start_from``: the ``warm_start_from`` tag of a warm start (GRID_CELL/TRIAL_ID), else empty or
  missing (None, NaN, "").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from deepdiff_study.records import TrialStatus

TRIAL_COLUMNS = ("grid_cell", "order", "status", "best_valid_pcc", "seconds", "warm_start_from")
COST_COLUMNS = ("grid_cell", "trials", "warm_starts", "trial_hours", "best_valid_pcc", "target",
                "trials_to_target", "hours_to_target", "target_reached_by")
SCORED = frozenset(s.value for s in TrialStatus if s.scored)


def _warm(value) -> str:
    """The warm-start source of a row ('' when the trial was not a warm start)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def search_cost(trials: pd.DataFrame, targets: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per grid cell (in key order), the columns `COST_COLUMNS`:

    trials, warm_starts (how many of them were warm starts), trial_hours (all its trials), its best
    valid PCC, the target (``targets[grid cell]``; by default its own best valid PCC), and the first
    trial in ``order`` whose best valid PCC reached the target: its position (1 = the first trial,
    trials_to_target) and the hours of the trials up to and including it (hours_to_target), both NaN
    when no trial reached it; target_reached_by: that trial's warm-start source, "" when it was the
    cell's own (the published setting or a TPE proposal).
    """
    missing = [c for c in TRIAL_COLUMNS if c not in trials.columns]
    if missing:
        raise ValueError(f"trial runs: missing column {missing[0]!r}; expected {', '.join(TRIAL_COLUMNS)}")
    rows = []
    for key, mine in trials.groupby("grid_cell", sort=True):
        mine = mine.sort_values("order", kind="stable")
        valid = mine["best_valid_pcc"].where(mine["status"].isin(SCORED))  # NaN where not scored
        warm = [_warm(v) for v in mine["warm_start_from"]]
        best = valid.max()  # NaN when nothing was scored
        target = float(targets[key]) if targets is not None and key in targets else best
        hit = [i for i, v in enumerate(valid) if v >= target] if not math.isnan(target) else []
        first = hit[0] if hit else None
        rows.append({
            "grid_cell": key, "trials": len(mine), "warm_starts": sum(1 for w in warm if w),
            "trial_hours": mine["seconds"].sum() / 3600.0, "best_valid_pcc": best, "target": target,
            "trials_to_target": math.nan if first is None else first + 1,
            "hours_to_target": math.nan if first is None else mine["seconds"].iloc[: first + 1].sum() / 3600.0,
            "target_reached_by": "" if first is None else warm[first],
        })
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def total_trial_hours(trials: pd.DataFrame) -> float:
    """The study's trial-hours: the training time of all its trials, summed."""
    return float(trials["seconds"].sum()) / 3600.0
