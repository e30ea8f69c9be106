"""deepdiff_study.searcher / scheduler / records.trial_outcome without a Ray cluster: per-grid-cell ASHA
isolation, per-grid-cell Optuna search, save/restore, and the one decision of a trial's outcome."""

import math
import pickle
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from ray_session import by_value, ray_session, write_tiny_grid  # noqa: F401
from deepdiff_study import ray_private
from deepdiff_study.grid import load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.schema import RunSizes
from deepdiff_study.records import TrialStatus, trial_outcome
from deepdiff_study.scheduler import GridCellScheduler
from deepdiff_study.searcher import METRIC, GridCellSearch, GridCellSearcher, SearcherSync, optuna_space

by_value(__name__)  # quick_trial reaches Ray workers as code, not as an import of tests/


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
    return plan_grid_cells(grid, cells, RunSizes(samples=3, max_epochs=4, grace_period=1, reduction_factor=2), seed=5)


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


def tune_trial(trial_id, config, status="RUNNING", last_result=None):
    """A stand-in for a Trial Tune restored, with what `GridCellSearcher.reconcile` reads."""
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=last_result or {})


def optuna_trials(searcher, key):
    return ray_private.optuna_study(searcher.optuna_search(key)).trials


def test_reconcile_reopens_the_budget_of_a_suggestion_tune_never_saved(plans):
    """Searcher ahead of Tune: its save counted suggestions whose trials Tune's restored state lacks."""
    searcher = GridCellSearcher(plans, seed=5)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(9)}
    for i in range(3):
        searcher.on_trial_complete(f"t{i}", {"epoch": 4, METRIC: 0.5, "training_iteration": 4})
    assert searcher.all_suggested() and searcher.suggest("extra") == Searcher.FINISHED
    lost, ended = "t4", "t0"  # never told (the second trial of its grid cell); told (the first of another)
    searcher.reconcile([tune_trial(t, c) for t, c in configs.items() if t not in (lost, ended)])
    assert searcher.grid_cell_of(lost) is None and searcher.grid_cell_of(ended) is None and not searcher.all_suggested()
    states = {t: [s.state for s in optuna_trials(searcher, configs[t]["grid_cell"])][:2] for t in (lost, ended)}
    assert states[lost] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]  # t1 completed, t4 failed
    assert states[ended][0] == optuna.trial.TrialState.COMPLETE  # what Optuna learnt from t0 stays
    again = [searcher.suggest("u0"), searcher.suggest("u1")]
    assert sorted(c["grid_cell"] for c in again) == sorted(configs[t]["grid_cell"] for t in (lost, ended))
    assert searcher.grid_cell_of("u0") == again[0]["grid_cell"] and searcher.suggest("u2") == Searcher.FINISHED
    key = configs[lost]["grid_cell"]
    searcher.on_trial_complete(lost, {"epoch": 4, METRIC: 0.9, "training_iteration": 4})  # ignored: not a trial of this study
    assert len(optuna_trials(searcher, key)) == 4


def test_a_grid_cell_whose_only_trial_was_lost_runs_its_published_setting_again(plans):
    searcher = GridCellSearcher(plans, seed=5)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(3)}  # the published setting of each grid cell
    searcher.reconcile([tune_trial("t0", configs["t0"]), tune_trial("t1", configs["t1"])])
    again = searcher.suggest("u0")
    assert again == {**plans[2].fixed, **plans[2].published}
    assert [t.state for t in optuna_trials(searcher, plans[2].key)] == [optuna.trial.TrialState.RUNNING]


def test_reconcile_counts_trials_tune_saved_and_the_searcher_missed(plans, tmp_path):
    """Tune ahead of the searcher: trials whose ids the searcher's save never saw."""
    searcher = GridCellSearcher(plans, seed=5)
    known = {f"t{i}": searcher.suggest(f"t{i}") for i in range(2)}  # published points of plans[0] and plans[1]
    ended = {**plans[0].fixed, **plans[0].published, "lr": 0.002, "dropout": 0.25}
    pending = {**plans[1].fixed, **plans[1].published, "dropout": 0.3}
    crashed = {**plans[2].fixed, **plans[2].published}
    searcher.reconcile([
        *(tune_trial(t, c) for t, c in known.items()),
        tune_trial("x", ended, "TERMINATED", {"epoch": 4, METRIC: 0.7, "status": "completed"}),
        tune_trial("y", pending, "PENDING"),
        tune_trial("z", crashed, "ERROR"),
    ])
    assert [searcher.grid_cell_of(t) for t in "xyz"] == [p.key for p in plans]
    (added,) = [t for t in optuna_trials(searcher, plans[0].key) if t.state == optuna.trial.TrialState.COMPLETE]
    assert added.value == 0.7 and added.params == {k: ended[k] for k in optuna_space(plans[0].params)}
    assert [t.state for t in optuna_trials(searcher, plans[2].key)] == [optuna.trial.TrialState.FAIL]
    searcher.on_trial_result("y", {"epoch": 1, METRIC: 0.2, "training_iteration": 1})  # Optuna has no trial to report to

    searcher.save(tmp_path / "searcher.pkl")
    restored = pickle.loads(pickle.dumps(GridCellSearcher(plans, seed=5)))
    restored.restore(tmp_path / "searcher.pkl")
    for s in (searcher, restored):
        s.on_trial_complete("y", {"epoch": 4, METRIC: 0.4, "training_iteration": 4})
        (told,) = [t for t in optuna_trials(s, plans[1].key) if t.state == optuna.trial.TrialState.COMPLETE]
        assert told.value == 0.4 and told.params == {k: pending[k] for k in optuna_space(plans[1].params)}
        # 5 of 9 trials are known: 4 more, and not one for the grid cells' published points again
        rest = [s.suggest(f"u{i}") for i in range(4)]
        assert s.suggest("u4") == Searcher.FINISHED
        assert sorted(c["grid_cell"] for c in rest) == sorted([plans[0].key, plans[1].key, plans[2].key, plans[2].key])
        assert all(c != {**p.fixed, **p.published} for c in rest for p in plans)


def test_searcher_sync_reconciles_once_at_the_first_step(plans):
    searcher = GridCellSearcher(plans, seed=5)
    sync = SearcherSync(searcher)
    config = {**plans[0].fixed, **plans[0].published}
    sync.on_step_begin(0, [tune_trial("x", config, "PENDING")])
    sync.on_step_begin(1, [])  # later steps: nothing (a trial no longer listed is not lost)
    assert searcher.grid_cell_of("x") == plans[0].key


def test_tune_cannot_ask_for_a_trial_without_searcher_sync(plans):
    """Without the callback Tune would never see the search finish (it waits for a reconcile): it fails at once."""
    search = GridCellSearch(GridCellSearcher(plans, seed=5))
    with pytest.raises(RuntimeError, match="add SearcherSync"):
        search.next_trial()
    assert not search.is_finished()
    search.searcher.reconcile([])
    assert not search.is_finished()
    search.set_finished()  # Tune stopping the whole run
    assert search.is_finished()


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


@pytest.mark.parametrize("busy, expected", [(0.0, 4), (10.0, 4), (13.4, 3), (15.9, 1)])
def test_a_trial_uses_a_torch_thread_per_cpu_ray_gave_it_that_others_leave_free(monkeypatch, busy, expected):
    """deepdiff.threads' choice, as `deepdiff train`'s: on a 16-CPU node whose other processes keep `busy` CPUs
    busy, a 4-CPU trial takes at most 4 threads, fewer when fewer are free, at least one."""
    from deepdiff import threads
    from deepdiff_study.trainable import WORKER_ENV, trial_threads

    def samples():
        while True:
            yield threads.CpuSample(0.0, 0.0, 0.0, 16)
            yield threads.CpuSample(1.0, busy, 0.0, 16)

    sample = samples()
    monkeypatch.setattr(threads.CpuSample, "now", classmethod(lambda cls, stat=None: next(sample)))
    monkeypatch.setattr(threads, "usable_cpus", lambda environ: (16, "CPU affinity"))
    assert trial_threads({"CPU": 4.0}) == expected
    assert trial_threads({"CPU": 0.5, "GPU": 0.25}) == 1 and trial_threads({}) == 1
    assert WORKER_ENV["OMP_WAIT_POLICY"] == "PASSIVE"


# ---- on a real Tune run ---------------------------------------------------------------------------

def quick_trial(config):
    from ray import tune

    tune.report({"epoch": 1, METRIC: config["dropout"], "status": "completed"})


@pytest.mark.slow
def test_after_tuner_restore_the_searcher_agrees_with_the_trials_tune_restored(ray_session, tmp_path):
    """Through `Tuner.restore`: the searcher SearcherSync reconciles is the one Tune restored and asks, and
    Tune asks it again though its own count of suggestions (saved beside the searcher's) was spent.
    Both ways a kill can leave a snapshot, at once: a trial the searcher's save has and Tune's trial list
    lacks (run again, under a new id), and one Tune's list has and the searcher's save lacks (not run again)."""
    import json

    from deepdiff_study.tuner import make_tuner
    from deepdiff_study.resume import restore_tuner
    from deepdiff_study.storage import StudyStorage

    grid = load_grid(write_tiny_grid(tmp_path))
    sizes = RunSizes(samples=2, max_epochs=1, grace_period=1, reduction_factor=2)
    plans = plan_grid_cells(grid, grid.grid_cells("1", variants="raw_d,raw_c", aux_modes=None, margins=None), sizes, seed=5)
    storage = StudyStorage.parse(str(tmp_path / "results"))
    results = make_tuner(quick_trial, plans, sizes, seed=5, storage=storage, name="sync", callbacks=[], max_failures=0).fit()
    assert len(results) == 4 and not results.errors

    exp = tmp_path / "results" / "sync"
    (state_file,) = exp.glob("experiment_state-*.json")
    state = json.loads(state_file.read_text())
    trials = [json.loads(t) if isinstance(t, str) else t for t, _ in state["trial_data"]]
    lost = trials[-1]  # searcher ahead: suggested (not yet ended) when the searcher was saved, not in Tune's list
    unknown = next(t for t in trials if t["config"]["grid_cell"] != lost["config"]["grid_cell"])  # Tune ahead
    state_file.write_text(json.dumps({**state, "trial_data": state["trial_data"][:-1]}))
    (searcher_file,) = exp.glob("searcher-state-*.pkl")
    saved = pickle.loads(searcher_file.read_bytes())
    saved["told"] -= {lost["trial_id"], unknown["trial_id"]}
    saved["suggested"][saved["trial_cell"].pop(unknown["trial_id"])] -= 1
    searcher_file.write_bytes(pickle.dumps(saved))

    results = restore_tuner(quick_trial, storage=storage, name="sync").fit()
    ids = {r.metrics["trial_id"]: r.config["grid_cell"] for r in results}
    assert len(ids) == 4 and lost["trial_id"] not in ids and unknown["trial_id"] in ids, ids
    assert sorted(ids.values()) == sorted([p.key for p in plans] * 2)
