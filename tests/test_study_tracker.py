"""The MLflow writer of a study (`deepdiff_study.tracker.MlflowTracker`) driven by hand with stand-in Tune
trials (no Ray run, no training): the tags of an ended trial agree with each other (a pruned trial's
epoch_status is "stopped", never "running"), and a grid cell's run spans its trials' time, not the
study's. (A real tiny study: tests/test_study_report.py.) An MLflow SQLite store takes seconds to create:
the test is marked slow."""

import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from deepdiff.config import ModelConfig, TrainConfig, flat_config
from deepdiff_study.grid import GridCell, Pair
from deepdiff_study.records import EPOCH_STOPPED, Kind, Tag, encode_meta, grid_cell_tags, last_result, study_runs

CELL = GridCell("raw_d", Pair(1, "E123", "E003"), None, None)


def _trial(trial_id, epoch, status):
    config = {**flat_config(ModelConfig(variant="raw_d"), TrainConfig(epochs=4)), **encode_meta(CELL.key, 1)}
    result = {"epoch": epoch, "status": status, "best_valid_pcc": 0.1 * epoch, "best_test_pcc": 0.05 * epoch,
              "best_epoch": epoch, "seconds": 1.0}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=result, status="TERMINATED", checkpoint=None,
                           error_file=None)


@pytest.mark.slow
def test_ended_trials_tags_agree_and_the_grid_cell_spans_its_trials(tmp_path):
    from deepdiff_study.tracker import MlflowTracker

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
