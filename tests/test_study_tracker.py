"""deepdiff_study.tracker (`MlflowTracker`) driven by hand with stand-in Tune trials (no Ray run, no
training): the tags of an ended trial agree with each other (a pruned trial's epoch_status is "stopped",
never "running"), a grid cell's run spans its trials' time, not the study's; and its background writes:
a slow store does not hold up Tune's hooks, the records are what the in-hook writes make, complete at the
experiment's end, and a store failure still stops the study (raised by the next hook). (A real tiny
study: tests/test_study_report.py.) An MLflow SQLite store takes seconds to create: those tests are
marked slow."""

import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from ray_session import write_tiny_grid
from deepdiff.config import ModelConfig, TrainConfig, flat_config
from deepdiff_study.grid import GridCell, Pair, load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.records import EPOCH_STOPPED, Kind, Tag, encode_meta, grid_cell_tags, last_result, study_runs
from deepdiff_study.schema import RunSizes
from deepdiff_study.tracker import MlflowTracker

CELL = GridCell("raw_d", Pair(1, "E123", "E003"), None, None)
EPOCHS = 3


def _trial(trial_id, epoch, status):
    config = {**flat_config(ModelConfig(variant="raw_d"), TrainConfig(epochs=4)), **encode_meta(CELL.key, 1)}
    result = {"epoch": epoch, "status": status, "best_valid_pcc": 0.1 * epoch, "best_test_pcc": 0.05 * epoch,
              "best_epoch": epoch, "seconds": 1.0}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=result, status="TERMINATED", checkpoint=None,
                           error_file=None)


@pytest.mark.slow
def test_ended_trials_tags_agree_and_the_grid_cell_spans_its_trials(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "e", {CELL.key: grid_cell_tags(CELL)}, {CELL.key: 2})
    done, pruned = _trial("a", 4, "completed"), _trial("b", 2, "running")  # b: stopped by ASHA at epoch 2 of 4
    for trial in (done, pruned):
        tracker.on_trial_start(0, [], trial)
        tracker.on_trial_result(0, [], trial, trial.last_result)
    time.sleep(0.05)
    tracker.on_trial_complete(0, [], done)
    time.sleep(0.05)
    tracker.on_trial_complete(0, [], pruned)
    time.sleep(0.2)
    tracker.on_experiment_end([done, pruned])  # the study's end, later: the grid cell's time does not move

    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("e").experiment_id
    trials = {r.data.tags[Tag.TRIAL_ID]: r for r in study_runs(client, exp_id, Kind.TRIAL)}
    assert (trials["a"].data.tags[Tag.STATUS], trials["a"].data.tags[Tag.EPOCH_STATUS]) == ("completed", "completed")
    assert (trials["b"].data.tags[Tag.STATUS], trials["b"].data.tags[Tag.EPOCH_STATUS]) == ("pruned", EPOCH_STOPPED)
    assert trials["b"].info.status == "FINISHED"
    assert last_result(trials["b"])["status"] == "running"  # a resume hands it back as the trainer reported it
    [cell] = study_runs(client, exp_id, Kind.GRID_CELL)
    assert cell.info.status == "FINISHED"
    assert cell.info.start_time <= min(t.info.start_time for t in trials.values())
    assert cell.info.end_time == max(t.info.end_time for t in trials.values()) == trials["b"].info.end_time
    assert cell.info.end_time < int(time.time() * 1000) - 150  # not the study's end


def _study(tmp_path, background: bool):
    grid = load_grid(write_tiny_grid(tmp_path))
    cells = grid.grid_cells("1", variants="raw")
    plans = plan_grid_cells(grid, cells, RunSizes(samples=2, max_epochs=EPOCHS, grace_period=1, reduction_factor=2), seed=0)
    trials = [SimpleNamespace(trial_id=f"t{i}", config={**p.fixed, **p.published}, last_result=None, checkpoint=None,
                              status="RUNNING", error_file=None, num_failures=0)
              for i, p in enumerate(plans * 2)]
    uri = f"sqlite:///{tmp_path / ('bg' if background else 'sync')}.db"
    tracker = MlflowTracker(uri, "s", {c.key: grid_cell_tags(c) for c in cells}, {p.key: 2 for p in plans},
                            background=background)
    return tracker, trials, uri


def _feed(tracker, trials, hold: list[float]) -> None:
    def timed(hook, *args):
        t0 = time.perf_counter()
        hook(*args)
        hold.append(time.perf_counter() - t0)

    tracker.setup()
    tracker.on_step_begin(0, trials)
    for t in trials:
        timed(tracker.on_trial_start, 0, trials, t)
    for epoch in range(1, EPOCHS + 1):
        for t in trials:
            t.last_result = {"epoch": epoch, "valid_pcc": 0.1 * epoch, "best_valid_pcc": 0.1 * epoch, "best_test_pcc": 0.05,
                             "best_epoch": epoch, "status": "completed" if epoch == EPOCHS else "running"}
            timed(tracker.on_trial_result, 0, trials, t, t.last_result)
    for t in trials:
        t.status = "TERMINATED"
        timed(tracker.on_trial_complete, 0, trials, t)
    tracker.on_experiment_end(trials)


def _records(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("s").experiment_id
    trials = {r.data.tags[Tag.TRIAL_ID]: (r.data.tags[Tag.STATUS], r.info.status,
                                          [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "valid_pcc")])
              for r in study_runs(client, exp, Kind.TRIAL)}
    cells = {r.data.tags[Tag.GRID_CELL]: (r.info.status, r.data.tags[Tag.TRIALS_ENDED], r.data.tags.get(Tag.MODEL_MISSING))
             for r in study_runs(client, exp, Kind.GRID_CELL)}
    return trials, cells


@pytest.mark.slow
def test_a_slow_store_does_not_hold_up_the_hooks_and_the_records_match_in_hook_writes(tmp_path, monkeypatch):
    sync, trials, sync_uri = _study(tmp_path, background=False)
    _feed(sync, trials, [])
    real = MlflowClient.log_batch

    def slow(self, *args, **kwargs):
        time.sleep(0.1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", slow)
    background, trials, uri = _study(tmp_path, background=True)
    hold: list[float] = []
    _feed(background, trials, hold)
    assert max(hold) < 0.05, max(hold)  # every log_batch takes 0.1 s here
    assert _records(uri) == _records(sync_uri)
    trial_records, _ = _records(uri)
    assert len(trial_records) == 2
    assert all(r == ("completed", "FINISHED", [(e, pytest.approx(0.1 * e)) for e in range(1, EPOCHS + 1)])
               for r in trial_records.values())


@pytest.mark.slow
def test_a_store_failure_in_a_background_write_is_raised_by_the_next_hook(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    tracker, trials, _ = _study(tmp_path, background=True)
    tracker.setup()
    tracker.on_step_begin(0, trials)

    def failing(self, *args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) disk I/O error")

    monkeypatch.setattr(MlflowClient, "log_batch", failing)
    tracker.on_trial_start(0, trials, trials[0])  # creating its run logs its params: fails on the writer's thread
    with pytest.raises(MlflowException, match="disk I/O error"):
        tracker.flush()
    with pytest.raises(MlflowException, match="disk I/O error"):
        tracker.on_trial_result(0, trials, trials[0], {"epoch": 1})
