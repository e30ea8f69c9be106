"""What the study reads back from places others may write: MLflow names that would become paths are
refused before anything is written, Tune's pickles are read only when they are this user's alone, and
our own saves are JSON."""

from __future__ import annotations

import json
import os
import pickle

import pytest
from mlflow.tracking import MlflowClient

from ray_session import write_tiny_grid
from deepdiff.errors import ConfigError, DataError
from deepdiff_study import export, resume
from deepdiff_study.grid import Pair, load_grid
from deepdiff_study.untrusted import check_private, name_problem, plain_name


@pytest.mark.parametrize("value, problem", [
    ("p1-aux-regression-m2", None), ("E123", None), ("naïve cell", None),
    ("../../../x", "it holds a path separator"), ("/etc/passwd", "it holds a path separator"),
    ("a\\b", "it holds a path separator"), ("..", "a relative folder, not a name"), ("", "empty"),
    ("a\nb", "it holds an unprintable character"), (3, "not text (int)"), ("x" * 201, "longer than 200 characters"),
])
def test_a_plain_name_is_one_file_name_and_nothing_else(value, problem):
    assert name_problem(value) == problem


def test_plain_name_refuses_in_one_line_naming_where_it_was_read():
    assert plain_name("ok", "here") == "ok"
    with pytest.raises(ConfigError) as err:
        plain_name("../x", "--experiment 'e': grid-cell tag grid_cell")
    assert str(err.value) == ("--experiment 'e': grid-cell tag grid_cell '../x' is not a plain file name (it holds a path "
                              "separator); refused as part of a file path (the MLflow store holds a record this "
                              "project did not write)")


def _store_with_cell(tmp_path, grid_cell: str) -> str:
    """A SQLite store holding one grid-cell run tagged `grid_cell` and one scored trial of it, as a study
    (or someone writing to a shared server) would leave them."""
    from deepdiff.config import ModelConfig, TrainConfig, flat_config
    from deepdiff_study.records import Kind, Tag, TrialStatus, encode_meta, encode_params, grid_cell_tags

    cell = load_grid(write_tiny_grid(tmp_path)).grid_cells("1", "raw", None, None)[0]
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    data = json.dumps({"dir": str(tmp_path / "data"), "cell_a": "E123", "cell_b": "E003"})
    parent = client.create_run(exp, tags={**grid_cell_tags(cell), Tag.GRID_CELL: grid_cell, Tag.KIND: str(Kind.GRID_CELL),
                                          Tag.DATA: data})
    config = {**flat_config(ModelConfig(variant="raw"), TrainConfig(epochs=2)), **encode_meta(grid_cell, 1)}
    trial = client.create_run(exp, tags={Tag.KIND: str(Kind.TRIAL), Tag.GRID_CELL: grid_cell,
                                         Tag.STATUS: str(TrialStatus.COMPLETED), Tag.TRIAL_ID: "t1"})
    for name, value in encode_params(config).items():
        client.log_param(trial.info.run_id, name, value)
    for name, value in (("best_valid_pcc", 0.5), ("best_test_pcc", 0.4), ("best_epoch", 2), ("epoch", 2)):
        client.log_metric(trial.info.run_id, name, value)
    for run in (parent, trial):
        client.set_terminated(run.info.run_id)
    return uri


@pytest.mark.slow
@pytest.mark.parametrize("hostile", ["../../../escaped", "ABSOLUTE"])
def test_export_refuses_a_grid_cell_tag_that_is_a_path_and_writes_nothing(tmp_path, capsys, hostile):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    name = str(victim.with_suffix("")) if hostile == "ABSOLUTE" else hostile  # save_config adds .yaml
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    uri = _store_with_cell(tmp_path, name)
    out = work / "best"
    assert export.main(["--experiment", "e", "--out", str(out), "--mlflow-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own log lines creating the test store
    assert err.startswith("error: --experiment 'e': grid-cell tag grid_cell ")
    assert "is not a plain file name (it holds a path separator)" in err
    assert not out.exists() and not (tmp_path / "escaped.yaml").exists() and not victim.with_suffix(".yaml").exists()
    assert victim.read_text() == "precious\n"


@pytest.mark.slow
def test_export_of_a_plain_grid_cell_writes_its_config(tmp_path):
    uri = _store_with_cell(tmp_path, "p1-raw")
    assert export.main(["--experiment", "e", "--out", str(tmp_path / "best"), "--mlflow-uri", uri]) == 0
    assert sorted(p.name for p in (tmp_path / "best" / "configs").iterdir()) == ["p1-raw.yaml"]


@pytest.mark.slow
def test_replicates_refuse_a_grid_cell_tag_that_would_name_a_trial_folder_elsewhere(tmp_path):
    from deepdiff_study.replicates import plan

    uri = _store_with_cell(tmp_path, "../p1-raw")
    with pytest.raises(ConfigError, match=r"^--experiment 'e': grid-cell tag grid_cell '\.\./p1-raw' is not a plain"):
        plan(uri, "e", 2)


@pytest.mark.parametrize("pair, data, match", [
    (Pair(1, "../../x", "E003"), {"dir": "/nowhere/pair1"}, r"^pair 1: grid-cell tag epigenome_a '\.\./\.\./x' is not"),
    (Pair(1, "E123", "E003"), {"dir": "/nowhere/..", "synthetic": {"genes": 10, "seed": 1, "signal": "realistic"}},
     r"^pair 1: the folder of grid-cell tag data '\.\.' is not a plain file name"),
])
def test_a_recorded_pair_whose_tags_are_paths_is_refused(tmp_path, pair, data, match):
    from deepdiff_study.pairs import recorded_source

    with pytest.raises(ConfigError, match=match):
        recorded_source(pair, data, regenerate_root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_recorded_pair_with_settings_the_generator_does_not_take_is_refused(tmp_path):
    from deepdiff_study.pairs import recorded_source

    data = {"dir": "/nowhere/p", "synthetic": {"genes": 10, "out_dir": "/etc"}}
    with pytest.raises(DataError, match=r"^pair 1: grid-cell tag data: 'synthetic' holds .*; expected the generator's"):
        recorded_source(Pair(1, "E123", "E003"), data, regenerate_root=tmp_path)


# ---- Tune's pickles -----------------------------------------------------------------------------------

class _Plant:
    """Unpickling this creates a file: what a planted tuner.pkl could do instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _study_folder(tmp_path):
    from deepdiff_study.storage import StudyStorage

    storage = StudyStorage.parse(str(tmp_path / "storage"))
    folder = tmp_path / "storage" / "s"
    folder.mkdir(parents=True)
    return storage, folder


@pytest.mark.parametrize("how", ["group-writable", "world-writable folder", "another user", "a symbolic link"])
def test_a_resume_reads_no_tune_pickle_that_others_could_have_written(tmp_path, how):
    storage, folder = _study_folder(tmp_path)
    marker = tmp_path / "ran"
    planted = folder / resume.TUNER_FILE
    planted.write_bytes(pickle.dumps(_Plant(str(marker))))
    planted.chmod(0o644)
    if how == "group-writable":
        planted.chmod(0o664)
    elif how == "world-writable folder":
        folder.chmod(0o777)
    elif how == "another user":
        if os.getuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(planted, 12345, -1)
    else:
        elsewhere = tmp_path / "elsewhere.pkl"
        planted.rename(elsewhere)
        planted.symlink_to(elsewhere)
    with pytest.raises(ConfigError) as err:
        resume.check_saved_state(storage, "s")
    message = str(err.value)
    assert message.startswith("--resume: the ") and "\n" not in message
    assert "Tune's saved state runs code when it is read" in message
    assert not marker.exists()


def test_a_trial_s_pickled_error_is_checked_too(tmp_path):
    storage, folder = _study_folder(tmp_path)
    (folder / "trial_1").mkdir()
    (folder / "trial_1" / resume.TRIAL_ERROR).write_bytes(b"x")
    (folder / "trial_1" / resume.TRIAL_ERROR).chmod(0o666)
    with pytest.raises(ConfigError, match=r"^--resume: the file .*trial_1/error\.pkl may be written by others \(mode 666\)"):
        resume.check_saved_state(storage, "s")


def test_tune_files_of_this_user_alone_are_read(tmp_path):
    storage, folder = _study_folder(tmp_path)
    (folder / resume.TUNER_FILE).write_bytes(pickle.dumps({"fine": 1}))
    folder.chmod(0o755)
    resume.check_saved_state(storage, "s")
    check_private(folder / resume.TUNER_FILE, "--resume")


def test_the_replicates_searcher_saves_json_not_a_pickle(tmp_path):
    from deepdiff_study.replicates import FixedConfigs

    configs = [{"lr": 0.001, "checkpoint_epochs": [1, 2], "grid_cell": "p1-raw"}, {"lr": 0.002}]
    saved = FixedConfigs(configs)
    saved.suggest("t0")
    saved.save(str(tmp_path / "state"))
    assert json.loads((tmp_path / "state").read_text()) == configs[1:]
    again = FixedConfigs([])
    again.restore(str(tmp_path / "state"))
    assert again.suggest("t1") == configs[1] and again.suggest("t2") == FixedConfigs.FINISHED
