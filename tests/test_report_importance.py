"""Hyperparameter importance per grid cell over the search space its run recorded (hand-made trials)."""

import numpy as np
import optuna
import pytest

from report_frames import SPACE, cell, study, trial
from deepdiff_study.grid import Param
from deepdiff_study.report.importance import MIN_TRIALS, distribution, importance_table


def _trials(key, n=20):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        lr, dropout, batch = 10 ** rng.uniform(-4, -1), rng.uniform(0, 0.5), int(rng.choice([16, 32]))
        rows.append(trial(key, f"r{i}", valid=float(-abs(np.log10(lr) + 2.5) + 0.01 * dropout), lr=lr, dropout=dropout,
                          batch_size=batch, seed=0))  # seed: logged, not searched
    return rows


def test_distributions_are_the_recorded_ones():
    lr, dropout, batch = (distribution(p) for p in SPACE)
    assert lr == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert dropout == optuna.distributions.FloatDistribution(0.0, 0.5, log=False)
    assert batch == optuna.distributions.CategoricalDistribution([16, 32])


@pytest.mark.slow  # two fANOVA fits: seconds on a loaded machine
def test_importance_is_fanova_over_the_recorded_space():
    trials = _trials("p1-raw_d")
    table, notes = importance_table(study([cell(1, "raw_d", valid=0.5, test=0.4)], trials=trials))
    assert notes == []
    assert list(table["grid_cell"].unique()) == ["p1-raw_d"] and set(table["trials"]) == {20}
    assert set(table["param"]) == {"lr", "dropout", "batch_size"}  # seed was logged but not searched
    assert table["importance"].sum() == pytest.approx(1.0) and table.iloc[0]["param"] == "lr"
    # the same as Optuna's own over the recorded distributions (not the range the trials happened to cover)
    opt = optuna.create_study(direction="maximize")
    dists = {p.name: distribution(p) for p in SPACE}
    for t in trials:
        params = {"lr": float(t["params"]["lr"]), "dropout": float(t["params"]["dropout"]),
                  "batch_size": int(t["params"]["batch_size"])}
        opt.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=t["best_valid_pcc"]))
    expected = optuna.importance.get_param_importances(opt, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert dict(zip(table["param"], table["importance"])) == pytest.approx(expected)


def _same(key, n, status="completed", **params):
    return [trial(key, f"{key}-{status}-{i}", status, **params) for i in range(n)]


def test_grid_cells_without_importances_say_why():
    """Below MIN_TRIALS scored trials a grid cell is left out (one sentence for all of them, first); at or
    above it, a grid cell whose space is unrecorded, unreadable or exceeded, or whose params never varied,
    gets a note."""
    assert MIN_TRIALS == 10
    n = MIN_TRIALS
    cells = [cell(1, "raw_d", valid=0.5, test=0.4),
             cell(1, "raw_c", valid=0.5, test=0.4, search_space=None),  # recorded before search spaces were
             cell(1, "raw", valid=0.5, test=0.4, search_space=(Param("lr", "log_uniform", low=1e-3, high=1e-2),)),
             cell(1, "aux", "regression", valid=0.5, test=0.4),
             cell(1, "aux", "classification", valid=0.5, test=0.4, search_space=None, search_space_problem="run x: not JSON"),
             cell(1, "aux_siamese", "regression", 2.0, valid=0.5, test=0.4)]
    trials = [*_trials("p1-raw_d", n - 1), *_same("p1-raw_d", 3, "failed", lr=1e-3),  # 9 scored: too few
              *_same("p1-raw_c", n, lr=1e-3),
              *_same("p1-raw", n - 1, lr=1e-3), trial("p1-raw", "x", lr=5e-2),  # outside the recorded 1e-3..1e-2
              *_same("p1-aux-regression", n - 1, lr=1e-3), *_same("p1-aux-regression", 1, "pruned", lr=1e-3),
              *_same("p1-aux-classification", n, lr=1e-3)]  # p1-aux_siamese-regression-m2: no trial at all
    table, notes = importance_table(study(cells, trials=trials))
    assert table.empty
    assert notes == [
        ("Hyperparameter importance omitted for 2 of 6 grid cell(s): they have fewer than 10 scored trials (at most "
         "9), and fANOVA over so few is noise; --samples 10 or more gives them."),
        "p1-raw: a trial's lr=0.05 lies outside the recorded search space; importance skipped.",
        "p1-aux-regression: 10 scored trial(s), no hyperparameter varied; importance skipped.",
        "p1-aux-classification: run x: not JSON; importance skipped.",
        ("No importances for 1 grid cell(s) whose runs record no search space (a study recorded before it was; its "
         "log scales are not guessed): p1-raw_c."),
    ]
