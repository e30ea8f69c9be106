"""Tests of deepdiff.rundir: the files of a `deepdiff train --out` folder (end to end in test_cli.py)."""

import csv
import json
import os
import signal

import pytest

from deepdiff.config import ModelConfig, TrainConfig, load_config
from deepdiff.errors import ConfigError
from deepdiff.results import METRIC_NAMES, EpochResult, EpochStatus
from deepdiff.rundir import DeferredInterrupt, RunFolder


def _result(epoch, status=EpochStatus.RUNNING):
    return EpochResult(**{name: 0.5 for name in METRIC_NAMES} | {"epoch": epoch, "best_epoch": 1, "status": status})


def test_a_new_run_writes_its_config_metrics_and_result(tmp_path):
    model_cfg, train_cfg = ModelConfig(variant="raw_d"), TrainConfig(epochs=2)
    run = RunFolder.open(tmp_path / "run", model_cfg, train_cfg, resume=False)
    assert (run.resume_from, run.done, run.rows) == (None, 0, []) and not (tmp_path / "run").exists()
    run.start(model_cfg, train_cfg, {"dir": "/d", "cell_a": "A", "cell_b": "B"})
    assert load_config(tmp_path / "run" / "config.yaml") == (model_cfg, train_cfg, {"dir": "/d", "cell_a": "A", "cell_b": "B"})
    run.record(_result(1))
    run.record(_result(2, EpochStatus.COMPLETED))
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [(r["epoch"], r["status"]) for r in rows] == [("1", "running"), ("2", "completed")]
    assert list(rows[0]) == [*METRIC_NAMES, "status"]
    run.finish({"variant": "raw_d", "status": "completed"}, model_cfg, train_cfg)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "completed" and result["config"]["epochs"] == 2 and result["config"]["variant"] == "raw_d"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "metrics.csv", "result.json"]


def test_a_folder_with_a_run_is_refused_without_resume(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"a run")
    with pytest.raises(ConfigError, match="already holds a run \\(last.pt\\); pass --resume"):
        RunFolder.open(tmp_path, ModelConfig(), TrainConfig(), resume=False)
    (tmp_path / "last.pt").unlink()
    assert RunFolder.open(tmp_path, ModelConfig(), TrainConfig(), resume=True).resume_from is None  # nothing to resume


def test_a_metrics_file_not_written_by_train_is_refused(tmp_path):
    from deepdiff.rundir import _previous_rows

    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n")
    with pytest.raises(ConfigError, match="not a metrics file written by deepdiff train"):
        _previous_rows(tmp_path / "metrics.csv", 1)
    (tmp_path / "metrics.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n3,0.3\n")
    assert [row["epoch"] for row in _previous_rows(tmp_path / "metrics.csv", 2)] == ["1", "2"]


def test_the_first_ctrl_c_waits_for_check_and_the_second_stops_at_once(capsys):
    before = signal.getsignal(signal.SIGINT)
    with DeferredInterrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.pending and "stopping once this epoch's files agree" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def _resumed(tmp_path, trained_on):
    """A RunFolder as `open` returns it for a resume whose config.yaml recorded `trained_on`."""
    return RunFolder(tmp_path, resume_from=tmp_path / "last.pt", done=1, trained_on=trained_on)


def test_a_resume_on_other_data_is_refused_and_moved_data_noted(tmp_path):
    trained = {"dir": "/d", "cell_a": "A", "cell_b": "B", "fingerprint": "f" * 64}
    run = _resumed(tmp_path, trained)
    assert run.check_data(dict(trained)) is None
    with pytest.raises(ConfigError) as info:
        run.check_data({**trained, "cell_a": "B", "cell_b": "A"})
    assert str(info.value) == (f"{tmp_path}: cannot resume on other data: it trained on A -> B, now B -> A; "
                               "pass --pair A B to continue it, or choose another --out for a new run")
    with pytest.raises(ConfigError) as info:
        run.check_data({**trained, "fingerprint": "0" * 64})
    assert str(info.value) == (f"{tmp_path}: cannot resume on other data: A/B in /d holds other contents (fingerprint "
                               "000000000000, ffffffffffff in its config.yaml); pass the --data it trained on to continue "
                               "it, or choose another --out for a new run")
    with pytest.raises(ConfigError) as info:
        run.check_data({**trained, "dir": "/my data", "fingerprint": "0" * 64})
    assert str(info.value).endswith("A/B in /my data, not /d it trained on, holds other contents (fingerprint 000000000000, "
                                    "ffffffffffff in its config.yaml); pass the --data it trained on (--data /d) to "
                                    "continue it, or choose another --out for a new run")
    assert run.check_data({**trained, "dir": "/e"}) == f"{tmp_path} trained on /d; it goes on with the same data (same fingerprint) in /e"
    older = _resumed(tmp_path, {"dir": "/d", "cell_a": "A", "cell_b": "B"})  # a config.yaml of an older deepdiff
    assert older.check_data(trained) == (f"{tmp_path / 'config.yaml'} records no fingerprint of its data (an older "
                                         "deepdiff wrote it): not checked that /d holds the data it trained on")
    assert RunFolder(tmp_path).check_data({**trained, "cell_a": "C"}) is None  # a new run: nothing to compare
