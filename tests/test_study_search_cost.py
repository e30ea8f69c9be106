"""deepdiff_study.search_cost: trials and trial-hours to a grid cell's best valid PCC (or a target), warm
starts marked, on hand-made trial runs."""

import math

import pandas as pd
import pytest

from deepdiff_study.search_cost import COST_COLUMNS, search_cost, total_trial_hours


def runs():
    rows = [  # grid_cell, order, status, best_valid_pcc, seconds, warm_start_from
        ("b", 0, "completed", 0.30, 3600, None),
        ("b", 2, "completed", 0.50, 1800, "a/t1"),  # listed out of order: order sorts them
        ("b", 1, "failed", math.nan, 900, ""),
        ("b", 3, "pruned", 0.45, 600, math.nan),
        ("a", 0, "completed", 0.20, 360, None),
        ("a", 1, "completed", 0.40, 720, None),
        ("a", 2, "running", 0.90, 360, None),  # not ended: not scored, but its time counts
    ]
    return pd.DataFrame(rows, columns=["grid_cell", "order", "status", "best_valid_pcc", "seconds", "warm_start_from"])


def test_trials_and_hours_to_each_grid_cell_s_best_valid_pcc():
    cost = search_cost(runs())
    assert list(cost.columns) == list(COST_COLUMNS)
    a, b = (row._asdict() for row in cost.itertuples(index=False))
    assert a == {"grid_cell": "a", "trials": 3, "warm_starts": 0, "trial_hours": pytest.approx(0.4), "best_valid_pcc": 0.40,
                 "target": 0.40, "trials_to_target": 2, "hours_to_target": pytest.approx(0.3), "target_reached_by": ""}
    assert b == {"grid_cell": "b", "trials": 4, "warm_starts": 1, "trial_hours": pytest.approx(6900 / 3600), "best_valid_pcc": 0.50,
                 "target": 0.50, "trials_to_target": 3, "hours_to_target": pytest.approx(1.75), "target_reached_by": "a/t1"}
    assert total_trial_hours(runs()) == pytest.approx(8340 / 3600)


def test_a_target_per_grid_cell_and_one_never_reached():
    cost = search_cost(runs(), {"a": 0.5, "b": 0.3}).set_index("grid_cell")
    assert math.isnan(cost.loc["a", "trials_to_target"]) and math.isnan(cost.loc["a", "hours_to_target"])
    assert cost.loc["a", "target_reached_by"] == ""
    assert cost.loc["b", "trials_to_target"] == 1 and cost.loc["b", "hours_to_target"] == 1.0
    assert cost.loc["b", "target_reached_by"] == ""


def test_a_grid_cell_without_a_scored_trial_has_no_best_and_no_target():
    failed = pd.DataFrame([("c", 0, "failed", math.nan, 60, None)], columns=runs().columns)
    (row,) = search_cost(failed).itertuples(index=False)
    assert row.trials == 1 and math.isnan(row.best_valid_pcc) and math.isnan(row.trials_to_target)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="missing column 'order'"):
        search_cost(runs().drop(columns="order"))
