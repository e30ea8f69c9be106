"""deepdiff_study.storage: --storage as a folder or a URI, and the resume files read and written on
either through the same calls (a file:// URI stands in for s3:// here; the real S3 run is
tests/test_cluster_storage.py)."""

import pyarrow.fs
import pytest

from deepdiff.errors import ConfigError
from deepdiff_study import resume
from deepdiff_study.spec import StudyManifest
from deepdiff_study.storage import LOCAL_WORK_DIR, RemotePath, StudyStorage


def test_a_folder_stays_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = StudyStorage.parse("tune_results")
    assert storage.is_local and storage.root == str(tmp_path / "tune_results")
    assert storage.experiment_dir("x") == tmp_path / "tune_results" / "x"
    assert storage.local_dir == tmp_path / "tune_results"
    kwargs = storage.tune_kwargs()  # Tune writes a local folder through WholeFiles (each file whole or not at all)
    assert kwargs["storage_path"] == str(tmp_path / "tune_results")
    assert kwargs["storage_filesystem"].type_name == "py::local-whole-files"


def test_a_uri_gives_tune_the_filesystem_and_the_path_without_the_query(tmp_path):
    storage = StudyStorage.parse(f"file://{tmp_path}/store")
    assert not storage.is_local and isinstance(storage.fs, pyarrow.fs.LocalFileSystem)
    assert storage.tune_kwargs() == {"storage_path": f"{tmp_path}/store", "storage_filesystem": storage.fs}
    assert storage.tune_restore_kwargs("exp") == {"path": f"{tmp_path}/store/exp", "storage_filesystem": storage.fs}
    assert storage.local_dir == LOCAL_WORK_DIR
    s3 = StudyStorage.parse("s3://bucket/prefix?endpoint_override=127.0.0.1:9&scheme=http")
    assert s3.root == "bucket/prefix" and str(s3.experiment_dir("exp")) == "s3://bucket/prefix/exp"


def test_an_unreadable_uri_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="--storage s3://bucket/p\\?nonsense=1: not a storage URI"):
        StudyStorage.parse("s3://bucket/p?nonsense=1")


def test_resume_files_on_a_uri_storage(tmp_path):
    exp_dir = StudyStorage.parse(f"file://{tmp_path}/store").experiment_dir("exp")
    assert isinstance(exp_dir, RemotePath)
    assert resume.check_start(exp_dir, "exp", resume=False) is resume.StudyState.NEW
    with pytest.raises(ConfigError, match="--resume: no study saved in"):
        resume.check_start(exp_dir, "exp", resume=True)
    manifest = {"experiment": "exp", "mlflow_uri": "sqlite:///m.db", "grid": "g.yaml", "seed": 0, "data": None,
                "cells": ["a"], "pairs": [[1, "syn1A", "syn1B", "E123-E003"]],
                "sizes": {"samples": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "synthetic_genes": 40}}
    resume.write_manifest(exp_dir / resume.MANIFEST, StudyManifest.model_validate(manifest))
    assert resume.read_manifest(exp_dir / resume.MANIFEST) == StudyManifest.model_validate(manifest)
    assert (tmp_path / "store" / "exp" / resume.MANIFEST).is_file()
    assert not (tmp_path / "store" / "exp" / (resume.MANIFEST + ".tmp")).exists()
    assert resume.study_state(exp_dir) is resume.StudyState.UNSTARTED
    (tmp_path / "store" / "exp" / resume.TUNER_FILE).write_bytes(b"x")
    assert resume.check_start(exp_dir, "exp", resume=True) is resume.StudyState.SAVED
    with pytest.raises(ConfigError, match="unreadable study manifest"):
        resume.read_manifest(exp_dir / "missing.json")


@pytest.mark.parametrize("uri", [False, True])
def test_pruning_keeps_each_trial_s_last_checkpoint_only(tmp_path, uri):
    exp = tmp_path / "store" / "exp"
    for trial, last in (("p1-raw_d-a1", 3), ("p1-aux-regression-b2", 1)):
        for i in range(last + 1):
            folder = exp / trial / f"checkpoint_{i:06d}"
            folder.mkdir(parents=True)
            (folder / "last.pt").write_bytes(b"x")
        (exp / trial / "result.json").write_text("{}\n")
    (exp / "experiment_state-x.json").write_text("{}")
    storage = StudyStorage.parse(f"file://{tmp_path}/store" if uri else str(tmp_path / "store"))
    assert storage.prune_checkpoints("exp") == 4
    left = sorted(str(p.relative_to(exp)) for p in exp.rglob("*") if p.is_file())
    assert left == ["experiment_state-x.json", "p1-aux-regression-b2/checkpoint_000001/last.pt",
                    "p1-aux-regression-b2/result.json", "p1-raw_d-a1/checkpoint_000003/last.pt", "p1-raw_d-a1/result.json"]
    assert storage.prune_checkpoints("exp") == 0 and storage.prune_checkpoints("never-ran") == 0
