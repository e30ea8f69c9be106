"""deepdiff_study.searcher / scheduler / records.trial_outcome without a Ray cluster: per-grid-cell ASHA
isolation, per-grid-cell Optuna search, save/restore, and the one decision of a trial's outcome."""

import math
import pickle
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from ray_session import write_tiny_grid
from deepdiff_study import ray_private
from deepdiff_study.grid import load_grid
from deepdiff_study.plan import StudySettings, plan_grid_cells
from deepdiff_study.records import TrialStatus, trial_outcome
from deepdiff_study.scheduler import GridCellScheduler
from deepdiff_study.searcher import METRIC, GridCellSearcher, optuna_space


def fake_trial(trial_id, cell, epochs=8):
    return SimpleNamespace(trial_id=trial_id, config={"grid_cell": cell, "pair": 1, "epochs": epochs}, has_reported_at_least_once=False,
                           status="RUNNING", local_path=None, path=None, last_result={})


def report(scheduler, trial, epoch, pcc):
    return scheduler.on_trial_result(None, trial, {"epoch": epoch, METRIC: pcc, "status": "running"})


def make_scheduler(cells=("X", "Y")):
    return GridCellScheduler(list(cells), max_t=8, grace_period=1, reduction_factor=2)


def test_poor_trial_is_never_stopped_because_of_another_cells_good_trials():
    scheduler = make_scheduler()
    good = [fake_trial(f"y{i}", "Y") for i in range(4)]
    poor = fake_trial("x0", "X")
    for t in [*good, poor]:
        scheduler.on_trial_add(None, t)
    for t, pcc in zip(good, (0.90, 0.95, 0.92, 0.93)):
        report(scheduler, t, 1, pcc)
    # X's first trial: only compared with X's (none yet) -> continues, at every rung.
    for epoch in (1, 2, 4):
        assert report(scheduler, poor, epoch, 0.10) == TrialScheduler.CONTINUE
    assert set(scheduler.rung_records("X")[0]) == {"x0"}
    assert set(scheduler.rung_records("Y")[0]) == {"y0", "y1", "y2", "y3"}


def test_the_same_poor_trial_is_stopped_inside_one_cell():
    """Control for the test above: with everyone in one cell, ASHA does stop the poor trial."""
    scheduler = make_scheduler(cells=("Y",))
    good = [fake_trial(f"y{i}", "Y") for i in range(4)]
    poor = fake_trial("x0", "Y")
    for t in [*good, poor]:
        scheduler.on_trial_add(None, t)
    for t, pcc in zip(good, (0.90, 0.95, 0.92, 0.93)):
        report(scheduler, t, 1, pcc)
    assert report(scheduler, poor, 1, 0.10) == TrialScheduler.STOP


def test_asha_prunes_within_a_cell_and_reaching_max_t_is_not_pruning():
    scheduler = make_scheduler()
    trials = [fake_trial(f"x{i}", "X") for i in range(3)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    assert report(scheduler, trials[0], 1, 0.8) == TrialScheduler.CONTINUE
    assert report(scheduler, trials[1], 1, 0.2) == TrialScheduler.STOP
    assert report(scheduler, trials[2], 1, 0.9) == TrialScheduler.CONTINUE
    assert report(scheduler, trials[2], 8, 0.95) == TrialScheduler.STOP  # max_t: the trial is done
    # A NaN report is not evidence for a rung and never stops by itself.
    nan_trial = fake_trial("x3", "X")
    scheduler.on_trial_add(None, nan_trial)
    assert scheduler.on_trial_result(None, nan_trial, {"epoch": 1, METRIC: math.nan, "status": "nan"}) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, nan_trial, {"epoch": 1, METRIC: math.nan, "status": "nan"})
    scheduler.on_trial_complete(None, trials[0], {"epoch": 1, METRIC: 0.8})
    scheduler.on_trial_remove(None, trials[0])  # already gone: harmless


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    grid = load_grid(write_tiny_grid(tmp_path_factory.mktemp("grid")))
    cells = grid.grid_cells("1", variants="raw_d,aux_siamese", aux_modes="regression", margins="1,2")
    return plan_grid_cells(grid, cells, StudySettings(samples=3, max_epochs=4, grace_period=1, reduction_factor=2, seed=5))


def test_plans_fix_the_cell_and_run_settings(plans):
    assert [p.key for p in plans] == ["p1-raw_d", "p1-aux_siamese-regression-m1", "p1-aux_siamese-regression-m2"]
    assert plans[1].fixed == {"variant": "aux_siamese", "aux_mode": "regression", "margin": 1.0, "epochs": 4,
                              "seed": 5, "grid_cell": "p1-aux_siamese-regression-m1", "pair": 1,
                              "checkpoint_epochs": [1, 2]}  # ASHA may stop a trial after epoch 1 or 2 of 4
    assert set(optuna_space(plans[0].params)) == {"lr", "batch_size", "dropout", "level1_hidden", "level2_hidden", "input_transform"}
    assert {"aux_weight", "gamma"} <= set(optuna_space(plans[1].params))


def test_searcher_starts_every_cell_with_the_published_setting_and_balances_cells(plans):
    searcher = GridCellSearcher(plans, seed=5)
    configs = [searcher.suggest(f"t{i}") for i in range(9)]
    assert searcher.suggest("t9") == Searcher.FINISHED
    assert [c["grid_cell"] for c in configs[:3]] == [p.key for p in plans]  # most trials left first, then grid order
    for plan, config in zip(plans, configs[:3]):
        assert config == {**plan.fixed, **plan.published}
    assert sorted(c["grid_cell"] for c in configs) == sorted([p.key for p in plans] * 3)
    assert searcher.grid_cell_of("t4") == configs[4]["grid_cell"]


def test_searcher_save_restore_continues_every_cells_study_exactly(plans, tmp_path):
    a = GridCellSearcher(plans, seed=5)
    for i in range(5):
        config = a.suggest(f"t{i}")
        a.on_trial_result(f"t{i}", {"epoch": 1, METRIC: 0.1 * i, "training_iteration": 1})
        if i != 3:
            a.on_trial_complete(f"t{i}", {"epoch": 2, METRIC: 0.1 * i + config["dropout"], "training_iteration": 2})
    a.save(tmp_path / "searcher.pkl")
    b = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=5)))  # as Tune unpickles it from tuner.pkl
    b.restore(tmp_path / "searcher.pkl")
    assert b.grid_cell_of("t3") == a.grid_cell_of("t3")
    b.on_trial_complete("t3", {"epoch": 2, METRIC: 0.5, "training_iteration": 2})
    a.on_trial_complete("t3", {"epoch": 2, METRIC: 0.5, "training_iteration": 2})
    rest_a = [a.suggest(f"u{i}") for i in range(5)]
    rest_b = [b.suggest(f"u{i}") for i in range(5)]
    assert rest_a == rest_b
    assert b.suggest("u5") == Searcher.FINISHED


def test_a_save_after_more_results_holds_them_all(plans, tmp_path):
    """Only grid cells changed since the last save are pickled again: a second save still holds every
    grid cell's whole study."""
    a = GridCellSearcher(plans, seed=5)
    for i in range(4):
        a.suggest(f"t{i}")
        a.on_trial_complete(f"t{i}", {"epoch": 2, METRIC: 0.1 * i, "training_iteration": 2})
    a.save(tmp_path / "first.pkl")
    for i in range(4, 6):  # two more trials, in some of the grid cells
        a.suggest(f"t{i}")
        a.on_trial_complete(f"t{i}", {"epoch": 2, METRIC: 0.1 * i, "training_iteration": 2})
    a.save(tmp_path / "second.pkl")
    b = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=5)))
    b.restore(tmp_path / "second.pkl")

    def trials(searcher):
        return {p.key: [(t.state, t.value, t.params) for t in ray_private.optuna_study(searcher.optuna_search(p.key)).trials]
                for p in plans}

    assert trials(b) == trials(a) and sum(map(len, trials(a).values())) == 6
    b.save(tmp_path / "third.pkl")  # a restored searcher saves what it restored
    c = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=5)))
    c.restore(tmp_path / "third.pkl")
    assert trials(c) == trials(a)


def test_diverged_trial_is_a_failed_optuna_trial(plans):
    searcher = GridCellSearcher(plans, seed=5)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"epoch": 1, METRIC: -math.inf, "status": "nan"})
    study = ray_private.optuna_study(searcher.optuna_search(config["grid_cell"]))
    assert study.trials[0].state == optuna.trial.TrialState.FAIL


def test_trial_outcome_from_the_last_result():
    """The trainer ends a run by itself; a trial whose last epoch still said "running" was pruned."""
    assert trial_outcome({"epoch": 6, "status": "completed", "best_valid_pcc": 0.5}, 6)[0] is TrialStatus.COMPLETED
    assert trial_outcome({"epoch": 3, "status": "early_stopped", "best_valid_pcc": 0.5}, 6)[0] is TrialStatus.COMPLETED
    status, reason = trial_outcome({"epoch": 2, "status": "running", "best_valid_pcc": 0.5}, 6)
    assert status is TrialStatus.PRUNED and "ASHA at epoch 2 of 6" in reason
    status, reason = trial_outcome({"epoch": 4, "status": "nan", "best_valid_pcc": 0.5}, 6)
    assert status is TrialStatus.FAILED and "NaN at epoch 4" in reason
    status, reason = trial_outcome({"epoch": 3, "status": "diverged", "best_valid_pcc": 0.5}, 6)
    assert status is TrialStatus.FAILED and "non-finite at epoch 3" in reason
    # Reaching max_t is the end of training, whatever ASHA returns at that epoch.
    assert trial_outcome({"epoch": 6, "status": "completed"}, 6)[0] is TrialStatus.COMPLETED


def test_rungs_are_rebuilt_from_restored_trials_results(tmp_path):
    """Tune never saves a scheduler: after --resume each cell's rungs come back from result.json."""
    import json

    folder = tmp_path / "trial"
    folder.mkdir()
    rows = [{"epoch": 1, METRIC: 0.9, "status": "running"}, {"epoch": 2, METRIC: 0.92, "status": "running"}]
    (folder / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"epoch\": 3, \"best_va")  # cut by a kill
    restored = SimpleNamespace(trial_id="old", config={"grid_cell": "X", "pair": 1, "epochs": 8}, has_reported_at_least_once=True,
                               status="TERMINATED", local_path=str(folder), path=str(tmp_path / "elsewhere"))
    scheduler = make_scheduler()
    scheduler.on_trial_add(None, restored)
    assert scheduler.rung_records("X")[:2] == [{"old": 0.9}, {"old": 0.92}]
    assert scheduler.rung_records("Y")[0] == {}
    newcomer = fake_trial("new", "X")
    scheduler.on_trial_add(None, newcomer)
    assert report(scheduler, newcomer, 1, 0.5) == TrialScheduler.STOP


def test_progress_counts_the_ended_trial_as_ended_and_estimates_the_time_left():
    import io

    from deepdiff_study.progress import ProgressLine

    out = io.StringIO()
    progress = ProgressLine(4, stream=out)
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING", config={"grid_cell": "X", "pair": 1, "epochs": 2},
                              last_result={"epoch": 2, "status": "completed", "best_valid_pcc": 0.5}) for i in range(4)]
    for i, trial in enumerate(trials):
        progress.on_trial_complete(0, trials, trial)  # Tune still says RUNNING while it calls back
        line = out.getvalue().splitlines()[-1]
        assert f"{i + 1}/4 trials ended" in line and f"{3 - i} running" in line, line
        assert ("left" in line) == (i + 1 == 3), line  # an estimate from 3 ended trials on, none when all ended


def test_progress_says_so_when_a_trial_ends_without_a_callback():
    """Tune can mark a trial ERROR before it starts (a worker it could not reuse) and call no callback:
    the progress says so on its next line instead of counting it silently."""
    import io

    from deepdiff_study.progress import ProgressLine

    out = io.StringIO()
    progress = ProgressLine(3, stream=out, every_s=0)
    config = {"grid_cell": "X", "pair": 1, "epochs": 2}
    before = SimpleNamespace(trial_id="old", status="TERMINATED", config=config,
                             last_result={"epoch": 2, "status": "completed", "best_valid_pcc": 0.5})
    lost = SimpleNamespace(trial_id="lost", status="PENDING", config=config, last_result={}, error_file=None,
                           get_error=lambda: RuntimeError("Trainable runner reuse requires reset_config()"))
    trials = [before, lost]
    progress.on_step_end(0, trials)  # the first look: `before` ended before this session (a resume)
    lost.status = "ERROR"
    progress.on_step_end(1, trials)
    lines = out.getvalue().splitlines()
    assert "1/3 trials ended (0 pruned by ASHA, 0 failed)" in lines[0]
    assert lines[1] == "  X                                        failed: Trainable runner reuse requires reset_config()"
    assert "2/3 trials ended (0 pruned by ASHA, 1 failed)" in lines[2]


def test_a_trial_uses_as_many_torch_threads_as_cpus_ray_gave_it():
    from deepdiff_study.trainable import trial_threads

    assert trial_threads({"CPU": 1.0}) == 1 and trial_threads({"CPU": 4.0}) == 4
    assert trial_threads({"CPU": 0.5, "GPU": 0.25}) == 1 and trial_threads({}) == 1
