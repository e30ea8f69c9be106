"""deepdiff_study.warmstart and the searcher's warm starts: relatedness, the mapping of a configuration
onto another grid cell's space, the choice of warm starts (once each, deterministic), their place in
the trial config and the MLflow tag, and their bookkeeping across a searcher save/restore and a resumed
study's reconcile; a tiny real study with warm starts on."""

import math
import pickle
from types import SimpleNamespace

import optuna
import pytest
from ray import tune
from ray.tune.search import Searcher

from ray_session import by_value, ray_session, write_tiny_grid  # noqa: F401
from deepdiff_study import ray_private
from deepdiff_study.grid import GridCell, Pair, Param, load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.schema import RunSizes
from deepdiff_study.records import META_KEYS, Tag, decode_trial_config, warm_start_of
from deepdiff_study.searcher import METRIC, GridCellSearcher
from deepdiff_study.warmstart import (
    MIN_SOURCE_TRIALS,
    RELATIONS,
    WarmStarts,
    map_config,
    relation,
    warm_start_limit,
)

by_value(__name__)  # dropout_trial reaches Ray workers as code, not as an import of tests/

SPACE = (
    Param("lr", "log_uniform", low=1e-4, high=1e-2),
    Param("dropout", "uniform", low=0.0, high=0.5),
    Param("batch_size", "choice", values=(10, 20, 50, 100)),
    Param("level1_hidden", "choice", values=(16, 64)),
    Param("input_transform", "choice", values=("raw", "log1p")),
    Param("aux_weight", "log_uniform", low=0.1, high=10.0, applies_to="aux"),
)
PUBLISHED = {"lr": 1e-4, "dropout": 0.5, "batch_size": 10, "level1_hidden": 16, "input_transform": "raw", "aux_weight": 1.0}


# ---- mapping a configuration onto another grid cell's space ----------------------------------------------

def test_a_configuration_inside_the_space_is_kept_as_it_is():
    config = {"lr": 3e-3, "dropout": 0.2, "batch_size": 50, "level1_hidden": 64, "input_transform": "log1p", "aux_weight": 2.0}
    assert map_config(config, SPACE, PUBLISHED) == config


def test_params_the_target_lacks_are_dropped_and_numbers_clipped_to_its_ranges():
    config = {"lr": 0.5, "dropout": -0.1, "batch_size": 20, "level1_hidden": 16, "input_transform": "raw",
              "aux_weight": 1e-3, "gamma": 8.0, "level2_hidden": 32}
    assert map_config(config, SPACE, PUBLISHED) == {
        "lr": 1e-2, "dropout": 0.0, "batch_size": 20, "level1_hidden": 16, "input_transform": "raw", "aux_weight": 0.1}


def test_a_number_a_choice_lacks_becomes_the_nearest_on_a_log_scale():
    mapped = map_config({"batch_size": 64, "level1_hidden": 40}, SPACE, PUBLISHED)
    assert mapped["batch_size"] == 50  # |log 64 - log 50| < |log 100 - log 64|
    assert mapped["level1_hidden"] == 64  # on a linear scale 40 lies as near 16 as 64; on a log scale nearer 64
    assert map_config({"level1_hidden": 32}, SPACE, PUBLISHED)["level1_hidden"] == 16  # a tie: the smaller


def test_a_value_a_choice_cannot_take_and_a_missing_param_get_the_published_value():
    mapped = map_config({"input_transform": "sqrt", "batch_size": "large", "dropout": math.nan}, SPACE, PUBLISHED)
    assert mapped == PUBLISHED  # a word not listed, a word for numbers, NaN; every other param absent
    words = (Param("input_transform", "choice", values=("raw", "log1p")),)
    assert map_config({"input_transform": 1}, words, PUBLISHED) == {"input_transform": "raw"}  # a number among words


# ---- related grid cells -----------------------------------------------------------------------------------

P1, P2 = Pair(1, "E123", "E003"), Pair(2, "E116", "E003")


def test_related_grid_cells_are_the_same_variant_closest_first():
    a = GridCell("aux_siamese", P1, "regression", 1.0)
    assert relation(a, GridCell("aux_siamese", P1, "classification", 1.0)) == 0  # same pair, another aux mode
    assert relation(a, GridCell("aux_siamese", P1, "regression", 2.0)) == 0  # same pair, another margin
    assert relation(a, GridCell("aux_siamese", P2, "regression", 1.0)) == 1  # same aux mode and margin, another pair
    assert relation(a, GridCell("aux_siamese", P2, "classification", 2.0)) == 2
    assert relation(a, GridCell("raw_aux_siamese", P1, "regression", 1.0)) is None  # another variant
    assert relation(a, a) is None
    assert relation(GridCell("raw", P1, None, None), GridCell("raw", P2, None, None)) == 1
    assert len(RELATIONS) == 3


def test_at_most_a_third_of_a_grid_cells_trials_after_the_published_one_are_warm_starts():
    assert [warm_start_limit(n) for n in (1, 2, 3, 4, 7, 10, 20)] == [0, 0, 0, 1, 2, 3, 6]


# ---- which warm starts a grid cell gets ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """p1-raw_d, p2-raw_d (related), p1-raw_c (unrelated to both); 7 trials each: 2 warm starts at most."""
    grid = load_grid(write_tiny_grid(tmp_path_factory.mktemp("grid")))
    cells = grid.grid_cells("1,2", variants="raw_d") + grid.grid_cells("1", variants="raw_c")
    return plan_grid_cells(grid, cells, RunSizes(samples=7, max_epochs=2, grace_period=1, reduction_factor=2), seed=3)


def keys(plans):
    return {p.key: p for p in plans}


def test_a_grid_cell_gets_the_best_configuration_of_a_related_one_once(plans):
    p = keys(plans)
    warm = WarmStarts(plans)
    good = {**p["p1-raw_d"].published, "lr": 5e-3, "dropout": 0.3}
    better = {**p["p1-raw_d"].published, "lr": 2e-3}
    assert warm.next_for("p2-raw_d") is None  # not before its published setting ran
    warm.suggested("p2-raw_d", "b0", p["p2-raw_d"].published)
    assert warm.next_for("p2-raw_d") is None  # nothing found yet
    warm.suggested("p1-raw_d", "a0", p["p1-raw_d"].published)
    warm.scored("a0", 0.40)
    warm.suggested("p1-raw_d", "a1", good)
    warm.scored("a1", 0.35)
    assert warm.next_for("p2-raw_d") is None  # below p1's published setting: nothing found worth giving
    warm.suggested("p1-raw_d", "a2", better)
    warm.scored("a2", 0.50)
    assert warm.next_for("p2-raw_d") == (better, "p1-raw_d/a2")
    assert warm.next_for("p1-raw_c") is None  # another variant: unrelated
    warm.suggested("p2-raw_d", "b1", better, "p1-raw_d/a2")
    assert warm.given("p2-raw_d") == {"b1": "p1-raw_d/a2"}
    assert warm.next_for("p2-raw_d") is None  # given once: p1's best has not changed
    warm.suggested("p1-raw_d", "a3", good | {"dropout": 0.1})
    warm.scored("a3", 0.55)
    assert warm.next_for("p2-raw_d") == (good | {"dropout": 0.1}, "p1-raw_d/a3")


def test_a_grid_cell_gets_no_more_than_its_limit_and_nothing_it_ran_already(plans):
    p = keys(plans)
    warm = WarmStarts(plans)
    warm.suggested("p2-raw_d", "b0", p["p2-raw_d"].published)
    warm.suggested("p1-raw_d", "a0", p["p1-raw_d"].published)
    warm.scored("a0", 0.1)
    own = {**p["p2-raw_d"].published, "lr": 4e-3}
    warm.suggested("p2-raw_d", "b1", own)  # its own sampler proposed it already
    warm.suggested("p1-raw_d", "a1", own)
    warm.scored("a1", 0.2)
    assert warm.next_for("p2-raw_d") is None
    for i, lr in enumerate((5e-3, 6e-3, 7e-3), start=2):
        warm.suggested("p1-raw_d", f"a{i}", {**own, "lr": lr})
        warm.scored(f"a{i}", 0.2 + i / 10)
        given = warm.next_for("p2-raw_d")
        if i < 4:
            assert given == ({**own, "lr": lr}, f"p1-raw_d/a{i}")
            warm.suggested("p2-raw_d", f"b{i}", *given)
    assert warm.next_for("p2-raw_d") is None and len(warm.given("p2-raw_d")) == 2 == warm_start_limit(7)


def test_a_related_grid_cell_s_best_is_handed_on_once_it_scored_three_trials(plans):
    p = keys(plans)
    warm = WarmStarts(plans)
    warm.suggested("p2-raw_d", "b0", p["p2-raw_d"].published)
    lucky = {**p["p1-raw_d"].published, "lr": 8e-3}
    for trial_id, params, value in (("a0", p["p1-raw_d"].published, 0.1), ("a1", lucky, 0.9)):
        warm.suggested("p1-raw_d", trial_id, params)
        warm.scored(trial_id, value)
    assert MIN_SOURCE_TRIALS == 3 and warm.next_for("p2-raw_d") is None  # the best of two: one proposal's luck
    warm.suggested("p1-raw_d", "a2", {**lucky, "lr": 2e-4})
    assert warm.next_for("p2-raw_d") is None  # suggested, not yet scored
    warm.scored("a2", 0.2)
    assert warm.next_for("p2-raw_d") == (lucky, "p1-raw_d/a1")


def test_off_records_everything_and_gives_nothing(plans):
    p = keys(plans)
    warm = WarmStarts(plans, on=False)
    warm.suggested("p2-raw_d", "b0", p["p2-raw_d"].published)
    warm.suggested("p1-raw_d", "a0", p["p1-raw_d"].published)
    warm.suggested("p1-raw_d", "a1", {**p["p1-raw_d"].published, "lr": 2e-3})
    warm.scored("a0", 0.1)
    warm.scored("a1", 0.9)
    assert warm.next_for("p2-raw_d") is None


# ---- in the searcher --------------------------------------------------------------------------------------

def drive(searcher, n, start=0, value=lambda config: config["dropout"] + config["lr"]):
    """Ask for `n` trials, each told its result before the next is asked for; the configs by trial id."""
    configs = {}
    for i in range(start, start + n):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        configs[f"t{i}"] = config
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, METRIC: value(config), "training_iteration": 2})
    return configs


def test_the_searcher_runs_warm_starts_after_the_published_setting_and_tags_them(plans):
    searcher = GridCellSearcher(plans, seed=3, warm_starts=True)
    configs = drive(searcher, 21)
    assert searcher.suggest("extra") == Searcher.FINISHED
    by_cell = {}
    for trial_id, config in configs.items():
        by_cell.setdefault(config["grid_cell"], []).append((trial_id, config))
    for plan in plans:
        first = by_cell[plan.key][0][1]
        assert {k: first[k] for k in plan.published} == plan.published and Tag.WARM_START_FROM not in first
        warm = {t: warm_start_of(c) for t, c in by_cell[plan.key] if warm_start_of(c) is not None}
        assert warm == searcher.warm_starts(plan.key) and len(warm) <= warm_start_limit(plan.samples)
        for trial_id, source in warm.items():
            cell, source_id = source.split("/")
            assert cell != plan.key and cell.split("-", 1)[1] == plan.key.split("-", 1)[1]  # same variant, other pair
            assert {k: configs[source_id][k] for k in plan.published} == {k: configs[trial_id][k] for k in plan.published}
    assert searcher.warm_starts("p1-raw_c") == {}  # no related grid cell
    assert sum(len(searcher.warm_starts(k)) for k in ("p1-raw_d", "p2-raw_d")) >= 1
    some = next(c for c in configs.values() if warm_start_of(c) is not None)
    assert decode_trial_config(some)[0].variant == "raw_d"  # the tag is a META_KEY, never a config field
    assert Tag.WARM_START_FROM in META_KEYS
    # Optuna learnt every warm start as a completed trial of its grid cell, with its value
    study = ray_private.optuna_study(searcher.optuna_search("p2-raw_d"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 7


def test_the_same_events_give_the_same_warm_starts_and_off_gives_none(plans):
    a, b = drive(GridCellSearcher(plans, seed=3, warm_starts=True), 21), drive(GridCellSearcher(plans, seed=3, warm_starts=True), 21)
    assert a == b
    cold = drive(GridCellSearcher(plans, seed=3), 21)  # off by default
    assert not any(warm_start_of(c) for c in cold.values())
    first_warm = min(int(t[1:]) for t, c in a.items() if warm_start_of(c))
    assert [a[f"t{i}"] for i in range(first_warm)] == [cold[f"t{i}"] for i in range(first_warm)]  # the same until then


def test_warm_starts_survive_a_save_and_restore_and_are_not_given_twice(plans, tmp_path):
    a = GridCellSearcher(plans, seed=3, warm_starts=True)
    before = drive(a, 12)
    assert any(warm_start_of(c) for c in before.values())
    a.save(tmp_path / "searcher.pkl")
    b = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=3, warm_starts=True)))  # as Tune unpickles it from tuner.pkl
    b.restore(tmp_path / "searcher.pkl")
    assert all(b.warm_starts(p.key) == a.warm_starts(p.key) for p in plans)
    rest_a, rest_b = drive(a, 9, start=12), drive(b, 9, start=12)
    assert rest_a == rest_b
    sources = [warm_start_of(c) for c in {**before, **rest_b}.values() if warm_start_of(c)]
    given = [(c["grid_cell"], warm_start_of(c)) for c in {**before, **rest_b}.values() if warm_start_of(c)]
    assert len(set(given)) == len(given) == len(sources)  # no grid cell was given the same trial twice


def tune_trial(trial_id, config, status="RUNNING", last_result=None):
    """A stand-in for a Trial Tune restored, with what `GridCellSearcher.reconcile` reads."""
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=last_result or {})


def warm_run(plans):
    """A searcher with a warm start just suggested (not yet ended): (searcher, every config, its trial id)."""
    searcher = GridCellSearcher(plans, seed=3, warm_starts=True)
    configs = {}
    for i in range(21):
        configs[f"t{i}"] = config = searcher.suggest(f"t{i}")
        if warm_start_of(config):
            return searcher, configs, f"t{i}"
        searcher.on_trial_complete(f"t{i}", {"epoch": 2, METRIC: config["dropout"] + config["lr"], "training_iteration": 2})
    raise AssertionError("no warm start in 21 trials")


def test_a_warm_start_tune_never_saved_is_given_again_after_a_resume(plans):
    searcher, configs, lost = warm_run(plans)
    key, source = configs[lost]["grid_cell"], warm_start_of(configs[lost])
    searcher.reconcile([tune_trial(t, c, "TERMINATED", {"epoch": 2, METRIC: 0.1}) for t, c in configs.items() if t != lost])
    assert searcher.warm_starts(key) == {}
    again = next((t, c) for t in ("u0", "u1", "u2") if (c := searcher.suggest(t))["grid_cell"] == key)
    assert warm_start_of(again[1]) == source  # the same warm start, under a new trial id
    assert searcher.warm_starts(key) == {again[0]: source}


def test_a_warm_start_the_searchers_save_missed_counts_as_given_after_a_resume(plans, tmp_path):
    _, configs, warm = warm_run(plans)
    before = {t: c for t, c in configs.items() if t != warm}
    # the searcher's save was taken before the warm start was suggested; Tune's trial list has it
    earlier = GridCellSearcher(plans, seed=3, warm_starts=True)
    drive(earlier, len(before))
    earlier.save(tmp_path / "searcher.pkl")
    restored = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=3, warm_starts=True)))
    restored.restore(tmp_path / "searcher.pkl")
    restored.reconcile([*(tune_trial(t, c, "TERMINATED", {"epoch": 2, METRIC: c["dropout"] + c["lr"]}) for t, c in before.items()),
                        tune_trial(warm, configs[warm])])
    key = configs[warm]["grid_cell"]
    assert restored.warm_starts(key) == {warm: warm_start_of(configs[warm])}
    restored.on_trial_complete(warm, {"epoch": 2, METRIC: 0.3, "training_iteration": 2})
    rest = drive(restored, 21, start=100)
    given = [(key, warm_start_of(configs[warm]))] + [(c["grid_cell"], warm_start_of(c)) for c in rest.values() if warm_start_of(c)]
    assert len(set(given)) == len(given)  # not given twice
    assert sum(1 for _ in rest) + len(configs) == 21  # every planned trial, once


# ---- the MLflow tag ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_tracker_tags_a_warm_start_with_its_source(plans, tmp_path):
    from mlflow.tracking import MlflowClient

    from deepdiff_study.records import grid_cell_tags
    from deepdiff_study.tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "warm", {p.key: grid_cell_tags(p.cell) for p in plans}, {p.key: p.samples for p in plans})
    plan = keys(plans)["p2-raw_d"]
    cold = SimpleNamespace(trial_id="b0", config={**plan.fixed, **plan.published})
    warm = SimpleNamespace(trial_id="b1", config={**plan.fixed, **plan.published, "lr": 2e-3, Tag.WARM_START_FROM: "p1-raw_d/a2"})
    for trial in (cold, warm):
        tracker.on_trial_start(0, [], trial)
    tracker.flush()  # the writes run in the background
    client = MlflowClient(uri)
    runs = {r.data.tags[Tag.TRIAL_ID]: r for r in client.search_runs([client.get_experiment_by_name("warm").experiment_id])
            if Tag.TRIAL_ID in r.data.tags}
    assert Tag.WARM_START_FROM not in runs["b0"].data.tags
    assert runs["b1"].data.tags[Tag.WARM_START_FROM] == "p1-raw_d/a2"
    assert Tag.WARM_START_FROM not in runs["b1"].data.params and runs["b1"].data.params["lr"] == "0.002"


# ---- a tiny real study --------------------------------------------------------------------------------------

def dropout_trial(config, pairs, ended=None):
    """A trial that trains nothing: its valid PCC is its dropout (p2's a little higher)."""
    pcc = config["dropout"] + 0.05 * (config["pair"] - 1)
    tune.report({"epoch": 1, "best_valid_pcc": pcc, "best_test_pcc": pcc, "valid_pcc": pcc, "status": "completed"})


@pytest.mark.slow
def test_a_tiny_study_with_warm_starts_records_every_planned_trial(ray_session, tmp_path):
    from mlflow.tracking import MlflowClient

    from deepdiff_study import driver
    from deepdiff_study.records import Kind, experiment_id, study_runs

    grid = write_tiny_grid(tmp_path)
    args = driver.build_parser().parse_args([
        "--grid", str(grid), "--preset", "quick", "--pairs", "1,2", "--variants", "raw_d", "--samples", "7",
        "--max-epochs", "1", "--grace-period", "1", "--synthetic-genes", "60", "--storage", str(tmp_path / "results"),
        "--mlflow-uri", f"sqlite:///{tmp_path / 'mlruns.db'}", "--experiment", "warm", "--warm-starts"])
    assert driver.run(args, train_fn=dropout_trial) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    runs = study_runs(client, experiment_id(client, "warm"), Kind.TRIAL)
    assert len(runs) == 14 and all(r.data.tags[Tag.STATUS] == "completed" for r in runs)
    by_id = {r.data.tags[Tag.TRIAL_ID]: r for r in runs}
    warm = [r for r in runs if Tag.WARM_START_FROM in r.data.tags]
    assert 1 <= len(warm) <= 2 * warm_start_limit(7)  # p1 beats its published dropout (0.1) on most proposals
    for run in warm:
        cell, source = run.data.tags[Tag.WARM_START_FROM].split("/")
        assert cell != run.data.tags[Tag.GRID_CELL] and by_id[source].data.tags[Tag.GRID_CELL] == cell
        assert run.data.params == by_id[source].data.params  # the same variant's space: the same configuration
