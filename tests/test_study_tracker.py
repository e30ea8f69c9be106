"""deepdiff_study.tracker's background writes: a slow store does not hold up Tune's hooks, the records
are what the in-hook writes make, complete at the experiment's end, and a store failure still stops
the study (raised by the next hook)."""

import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from ray_session import write_tiny_grid
from deepdiff_study.grid import load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.records import Kind, Tag, grid_cell_tags, study_runs
from deepdiff_study.schema import RunSizes
from deepdiff_study.tracker import MlflowTracker

EPOCHS = 3


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
