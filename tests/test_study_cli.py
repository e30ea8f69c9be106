"""tune/run_ablation.py and tune/export_best.py as a user meets them: dry runs and bad input (no Ray)."""

import importlib.machinery
import subprocess
import sys
from pathlib import Path

import pytest

from ray_session import REPO_ROOT, TUNE_DIR, write_tiny_grid

RUN = [sys.executable, str(TUNE_DIR / "run_ablation.py")]


def run(args, cwd, timeout=120):
    return subprocess.run([*RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def call(main, args, cwd, capsys, monkeypatch):
    """A script's main() in this process (fast); returns what a subprocess run would."""
    monkeypatch.chdir(cwd)
    code = main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(proc, *fragments, code=2):
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_no_script_module_shadows_stdlib_or_an_installed_package():
    """tune/ is sys.path[0] when its scripts run, so `ray.py` there would hide Ray (same for ablations/)."""
    site = [p for p in sys.path if Path(p).resolve() not in (REPO_ROOT, TUNE_DIR, Path(__file__).parent.resolve())]
    for folder in (TUNE_DIR, REPO_ROOT / "ablations"):
        for module in folder.glob("*.py"):
            name = module.stem
            if name == "__init__":
                continue
            assert name not in sys.stdlib_module_names, f"{module} shadows the standard library module {name}"
            spec = importlib.machinery.PathFinder.find_spec(name, site)
            assert spec is None, f"{module} shadows the installed module {name} ({spec.origin})"


@pytest.mark.slow
def test_dry_run_of_the_paper_grid_lists_230_cells(tmp_path):
    proc = run(["--pairs", "all", "--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "230 grid cells x 20 trials = 4600 trials (preset paper)" in proc.stdout
    assert "p10-raw_aux_siamese-classification-m4" in proc.stdout
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


@pytest.mark.slow
def test_dry_run_of_the_quick_start_covers_every_cell_shape(tmp_path):
    proc = run(["--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "15 grid cells x 4 trials = 60 trials (preset quick)" in proc.stdout
    for variant in ("raw_d", "raw_c", "raw", "aux", "raw_aux", "aux_siamese", "raw_aux_siamese"):
        assert f" {variant} " in proc.stdout
    assert "classification" in proc.stdout and "regression" in proc.stdout
    assert "syn1A-syn1B" in proc.stdout and "E123" not in proc.stdout  # synthetic data, named as such


@pytest.mark.slow
def test_dry_run_sub_grid_and_flags_over_preset(tmp_path):
    proc = run(["--pairs", "1,E123-E116", "--variants", "raw,aux", "--aux", "regression", "--samples", "3",
                "--max-epochs", "9", "--dry-run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 grid cells x 3 trials = 12 trials (preset paper), at most 9 epochs" in proc.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--pairs", "11"], ["--pairs '11'", "1-10"]),
    (["--pairs", "1", "--variants", "rawish"], ["--variants 'rawish'", "raw_aux_siamese"]),
    (["--aux", "both"], ["--aux 'both'"]),
    (["--margins", "3"], ["--margins '3'", "0.5, 1, 2, 4"]),
    (["--samples", "0"], ["--samples"]),
    (["--reduction-factor", "1"], ["--reduction-factor"]),
    (["--preset", "huge"], ["--preset 'huge'", "quick, paper"]),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, fragments, capsys, monkeypatch):
    from deepdiff_study import driver as run_ablation

    assert_one_line_error(call(run_ablation.main, [*args, "--dry-run"], tmp_path, capsys, monkeypatch), *fragments)
    assert_one_line_error(call(run_ablation.main, args, tmp_path, capsys, monkeypatch), *fragments)
    assert not any(tmp_path.iterdir())


def test_aux_and_margins_for_variants_that_do_not_use_them_are_noted(tmp_path, capsys, monkeypatch):
    from deepdiff_study import driver

    proc = call(driver.main, ["--variants", "raw_d,raw", "--aux", "classification", "--margins", "1", "--dry-run"],
                tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0 and "2 grid cells x 4 trials" in proc.stdout
    assert proc.stderr.splitlines() == [
        "note: --aux ignored: none of the selected variants (raw_d, raw) has an auxiliary task",
        "note: --margins ignored: none of the selected variants (raw_d, raw) has a contrastive loss"]
    proc = call(driver.main, ["--variants", "aux", "--aux", "classification", "--dry-run"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 0 and proc.stderr == ""


@pytest.mark.slow
def test_a_bad_flag_in_a_real_process_exits_2_without_traceback(tmp_path):
    assert_one_line_error(run(["--pairs", "0"], tmp_path), "--pairs '0'")


@pytest.mark.slow
def test_bad_grid_file_names_file_and_field(tmp_path):
    grid = write_tiny_grid(tmp_path, "pairs: {1: [E1, E2]}\nvariants: [raw, nope]\n")
    assert_one_line_error(run(["--grid", str(grid), "--dry-run"], tmp_path), str(grid), "section 'aux_modes'")
    grid.write_text("pairs: [\n")
    assert_one_line_error(run(["--grid", str(grid)], tmp_path), str(grid), "not valid YAML")


@pytest.mark.slow
def test_missing_data_files_are_one_error_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "E123.train.csv").write_text("x\n")
    grid = write_tiny_grid(tmp_path)
    proc = run(["--grid", str(grid), "--pairs", "all", "--data", str(data), "--storage", str(tmp_path / "results")], tmp_path)
    assert_one_line_error(proc, f"--data {data}", "E003.expr.csv", "pairs 1, 2")
    assert not (tmp_path / "results" / "deepdiff-ablation").exists()
    assert not (tmp_path / "mlruns.db").exists()
    proc = run(["--grid", str(grid), "--data", str(tmp_path / "nowhere")], tmp_path)
    assert_one_line_error(proc, "directory not found")


@pytest.mark.slow
def test_resume_without_a_study_is_an_error(tmp_path):
    assert_one_line_error(run(["--resume", "--storage", str(tmp_path / "r")], tmp_path), "--resume: no study saved in")


def test_export_without_a_database_is_an_error(tmp_path, capsys, monkeypatch):
    from deepdiff_study import export as export_best

    proc = call(export_best.main, ["--experiment", "nope", "--out", str(tmp_path / "o")], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, "no MLflow database")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, fragments", [
    (["--reduction-factor", "nan"], ["--reduction-factor", "finite"]),
    (["--cpus-per-trial", "nan"], ["--cpus-per-trial", "finite"]),
    (["--gpus-per-trial", "inf"], ["--gpus-per-trial", "finite"]),
])
def test_numbers_that_would_fail_after_ray_starts_are_refused_first(tmp_path, args, fragments, capsys, monkeypatch):
    from deepdiff_study import driver

    for dry in ([], ["--dry-run"]):
        assert_one_line_error(call(driver.main, [*args, *dry, "--storage", str(tmp_path / "r")], tmp_path, capsys, monkeypatch), *fragments)
    assert not any(tmp_path.iterdir()), "nothing is written for a refused flag"


@pytest.mark.slow
def test_dry_run_checks_the_data_as_the_real_start_does(tmp_path):
    assert_one_line_error(run(["--data", str(tmp_path / "nowhere"), "--dry-run"], tmp_path), "directory not found")
    (tmp_path / "only_expr").mkdir()
    (tmp_path / "only_expr" / "E123.expr.csv").write_text("ENSG1,1\n")
    assert_one_line_error(run(["--data", str(tmp_path / "only_expr"), "--dry-run"], tmp_path), "E123.train.csv")


@pytest.mark.parametrize("uri, fragment, code", [
    ("sqlite:////nonexistent-deepdiff/dir/m.db", "folder /nonexistent-deepdiff/dir does not exist", 2),  # the flag is wrong
    ("http://127.0.0.1:9", "the MLflow store does not answer (ConnectionRefusedError", 75),  # the store is down
    ("ftp://somewhere", "expected sqlite:///PATH or http", 2),
])
@pytest.mark.slow
def test_a_store_that_cannot_be_used_is_one_error_before_ray_starts(tmp_path, uri, fragment, code):
    import time

    started = time.monotonic()
    proc = run(["--mlflow-uri", uri, "--storage", str(tmp_path / "r"), "--synthetic-genes", "40"], tmp_path)
    assert_one_line_error(proc, fragment, code=code)
    assert time.monotonic() - started < 60
    assert not Path("/nonexistent-deepdiff").exists()
    assert "running on Ray" not in proc.stdout


@pytest.mark.slow
def test_two_drivers_on_one_study_the_second_is_refused(tmp_path):
    from deepdiff_study.resume import lock_study

    held = lock_study(str(tmp_path / "r"), "busy")
    try:
        proc = run(["--experiment", "busy", "--storage", str(tmp_path / "r")], tmp_path)
        assert_one_line_error(proc, "--experiment 'busy'", f"driver pid {__import__('os').getpid()}", "already running")
        proc = run(["--experiment", "busy", "--storage", str(tmp_path / "r"), "--resume"], tmp_path)
        assert_one_line_error(proc, "already running")
    finally:
        held.close()
    assert not (tmp_path / "r" / "busy").exists()


@pytest.mark.slow
def test_two_drivers_on_one_mlflow_experiment_with_different_storage_the_second_is_refused(tmp_path, capsys, monkeypatch):
    from deepdiff_study import driver
    from deepdiff_study.resume import lock_store

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    held = lock_store(uri, "busy")
    try:
        proc = call(driver.main, ["--experiment", "busy", "--storage", str(tmp_path / "other"), "--mlflow-uri", uri,
                                  "--synthetic-genes", "40"], tmp_path, capsys, monkeypatch)
        assert_one_line_error(proc, "--experiment 'busy'", f"driver pid {__import__('os').getpid()}",
                              f"already running a study of that name in MLflow at {uri}")
        assert lock_store(uri, "another-name") is not None  # other studies in the same store are not locked out
    finally:
        held.close()
    assert not (tmp_path / "other" / "busy").exists()


def test_a_study_that_never_started_can_be_started_again(tmp_path):
    from deepdiff_study import resume

    exp_dir = tmp_path / "r" / "half"
    exp_dir.mkdir(parents=True)
    (exp_dir / resume.MANIFEST).write_text('{"cells": []}')  # as left by a failure before Tune saved
    assert resume.check_start(exp_dir, "half", resume=False) is resume.StudyState.UNSTARTED
    with pytest.raises(Exception, match="never started; run the same command without --resume"):
        resume.check_start(exp_dir, "half", resume=True)


@pytest.mark.slow
def test_export_refuses_a_file_an_earlier_export_and_an_empty_experiment(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from deepdiff_study import export as export_best

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    MlflowClient(uri).create_experiment("empty")
    (tmp_path / "afile").write_text("x")
    proc = call(export_best.main, ["--experiment", "empty", "--out", str(tmp_path / "afile"), "--mlflow-uri", uri], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, "is a file")
    (tmp_path / "old" / "configs").mkdir(parents=True)
    proc = call(export_best.main, ["--experiment", "empty", "--out", str(tmp_path / "old"), "--mlflow-uri", uri], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, "already holds an export", "--overwrite")
    proc = call(export_best.main, ["--experiment", "empty", "--out", str(tmp_path / "new"), "--mlflow-uri", uri], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, "no grid-cell runs", "nothing to export")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--seed", "-1"], ["--seed -1: expected an integer in [0, 2**32)"]),  # was a numpy traceback after writing
    (["--samples", "abc"], ["run_ablation: argument --samples: invalid int value: 'abc' (see run_ablation --help)"]),
    (["--reduction-factor", "-1e-3"], ["--reduction-factor: expected a finite number > 1, got -0.001"]),
    (["--synthetic-genes", "10000000"], ["--synthetic-genes 10000000: expected 20 to 100000 genes"]),
    (["--preset", ""], ["--preset '': not in"]),
    (["--pairs", ""], ["--pairs '': empty selection"]),
    (["--experiment", ""], ["--experiment '': expected a study name that is also a folder name"]),
    (["--experiment", "../elsewhere"], ["--experiment '../elsewhere': expected a study name"]),
    (["--experiment", "."], ["--experiment '.': expected a study name"]),
    (["--storage", ""], ["--storage '': expected a folder or a URI"]),
    (["--storage", "{tmp}/afile"], ["--storage {tmp}/afile: is a file, not a directory"]),
    (["--storage", "{tmp}/loop/r"], ["--storage {tmp}/loop/r: {tmp}/loop is a symlink loop"]),
    (["--data", ""], ["--data '': expected a folder with the paper's files"]),
    (["--data", "{tmp}/loop"], ["--data {tmp}/loop: is a symlink loop"]),  # was a RuntimeError traceback
    (["--data", "{tmp}/afile"], ["--data {tmp}/afile: is a file, not a directory"]),
    (["--grid", "{tmp}"], ["--grid {tmp}: is a directory, not a file; expected a grid file (YAML)"]),
    (["--grid", "{tmp}/loop"], ["--grid {tmp}/loop: is a symlink loop"]),
    (["--mlflow-uri", ""], ["--mlflow-uri '': expected sqlite:///PATH"]),
    (["--mlflow-uri", "sqlite:///{tmp}/loop"], ["{tmp}/loop is a symlink loop"]),  # MLflow retried it for minutes
    (["--mlflow-uri", "sqlite:///{tmp}/afile"], ["{tmp}/afile is not a SQLite database"]),
    (["--mlflow-uri", "sqlite:///{tmp}"], ["{tmp} is a directory, not a file"]),
    (["--mlflow-uri", "sqlite:///{tmp}/afile/m.db"], ["{tmp}/afile is a file, not a directory"]),
    (["--address", "bogus"], ["--address 'bogus': expected auto, HOST:PORT"]),  # was a ValueError traceback
    (["--cpus-per-trial", "1e9"], ["--cpus-per-trial 1e+09: this process may use"]),  # trials waited for ever
    (["--gpus-per-trial", "1.5"], ["--gpus-per-trial 1.5: expected a fraction of one GPU or a whole number"]),
])
def test_more_bad_flags_are_one_line_errors_and_write_nothing(tmp_path, args, fragments, capsys, monkeypatch):
    from deepdiff_study import driver

    (tmp_path / "afile").write_text("keep")
    (tmp_path / "loop").symlink_to("loop")
    args = [a.format(tmp=tmp_path) for a in args]
    fragments = [f.format(tmp=tmp_path) for f in fragments]
    for dry in ([], ["--dry-run"]):
        if args[0] == "--samples":  # argparse's own error: it exits
            with pytest.raises(SystemExit) as info:
                driver.main([*args, *dry])
            assert info.value.code == 2 and capsys.readouterr().err.strip() == "error: " + fragments[0]
            continue
        extra = [] if args[0] == "--storage" else ["--storage", str(tmp_path / "r")]
        assert_one_line_error(call(driver.main, [*args, *dry, *extra], tmp_path, capsys, monkeypatch), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "loop"] and (tmp_path / "afile").read_text() == "keep"


def test_a_store_folder_that_cannot_be_written_is_refused_at_once(tmp_path, capsys, monkeypatch):
    """MLflow used to retry for ~100 s, then print a traceback."""
    import os

    from deepdiff_study import driver

    (tmp_path / "ro").mkdir()
    real_access = os.access
    # root writes anywhere whatever the mode: the folder is read-only to this process's checks
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path / "ro") else real_access(path, mode))
    uri = f"sqlite:///{tmp_path / 'ro' / 'm.db'}"
    proc = call(driver.main, ["--mlflow-uri", uri, "--storage", str(tmp_path / "r")], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, f"--mlflow-uri {uri}: cannot write {tmp_path / 'ro'}; choose a writable place")
    assert not any((tmp_path / "ro").iterdir()) and not (tmp_path / "r").exists()


def test_an_address_without_a_cluster_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """Ray retries an address that does not answer for ever (minutes of warnings, with the baselines
    already logged to MLflow)."""
    from deepdiff_study import driver

    port = free_port()
    proc = call(driver.main, ["--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "r")], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, f"--address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)")
    assert not any(tmp_path.iterdir())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_damaged_study_manifest_is_one_line_naming_the_field(tmp_path, capsys, monkeypatch):
    import json

    from deepdiff_study import driver, resume

    exp_dir = tmp_path / "r" / "broken"
    (exp_dir / resume.TUNER_FILE).parent.mkdir(parents=True)
    (exp_dir / resume.TUNER_FILE).write_bytes(b"")  # a study Tune saved
    good = {"experiment": "broken", "mlflow_uri": f"sqlite:///{tmp_path / 'm.db'}", "grid": "g.yaml", "seed": 0,
            "data": None, "cells": ["p1-raw_d"], "pairs": [[1, "syn1A", "syn1B", "E123-E003"]],
            "sizes": {"samples": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "synthetic_genes": 40}}
    for damage, fragment in [
        (lambda m: m.pop("cells"), "field cells is missing; expected a list of grid cell names"),
        (lambda m: m.update(cells=5), "field cells: expected a list of grid cell names, got 5"),
        (lambda m: m["sizes"].update(synthetic_genes="x"), "field sizes.synthetic_genes: expected an integer >= 1, got 'x'"),
        (lambda m: m["sizes"].update(reduction_factor=float("nan")), "field sizes.reduction_factor: expected a number > 1"),
        (lambda m: m.update(pairs=[[1, "a"]]), "field pairs: expected a list of [number, epigenome A, epigenome B, imitates]"),
    ]:
        manifest = json.loads(json.dumps(good))
        damage(manifest)
        (exp_dir / resume.MANIFEST).write_text(json.dumps(manifest))
        before = (exp_dir / resume.MANIFEST).read_bytes()
        proc = call(driver.main, ["--resume", "--storage", str(tmp_path / "r"), "--experiment", "broken"], tmp_path, capsys, monkeypatch)
        assert_one_line_error(proc, str(exp_dir / resume.MANIFEST), fragment, "the study cannot be resumed")
        assert (exp_dir / resume.MANIFEST).read_bytes() == before and not (tmp_path / "m.db").exists()
    (exp_dir / resume.MANIFEST).write_bytes(b"\xff\xfe")
    proc = call(driver.main, ["--resume", "--storage", str(tmp_path / "r"), "--experiment", "broken"], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, "unreadable study manifest (UnicodeDecodeError)")


def test_damaged_tune_state_is_refused_before_tune_restarts_the_study_from_nothing(tmp_path):
    """Tune logs a state it cannot read and starts the study over: every trial lost, exit 0."""
    import pickle

    from deepdiff_study import resume
    from deepdiff_study.storage import StudyStorage

    storage = StudyStorage.parse(str(tmp_path))
    exp_dir = tmp_path / "s"
    exp_dir.mkdir()
    resume.check_saved_state(storage, "s")  # killed before Tune's first save: nothing to check
    (exp_dir / "tuner.pkl").write_bytes(pickle.dumps({"fine": 1}))
    (exp_dir / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [], "runner_data": {}}')
    (exp_dir / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps({}))
    (exp_dir / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps({}))
    resume.check_saved_state(storage, "s")
    (exp_dir / "experiment_state-2026-02-01_00-00-00.json").write_text("{")  # the newest, cut by a full disk
    with pytest.raises(Exception, match=r"experiment_state-2026-02-01_00-00-00.json: damaged \(JSONDecodeError\); the "
                                        r"study cannot be resumed from it and nothing was changed; move it away to "
                                        r"resume from the older experiment_state-2026-01-01_00-00-00.json"):
        resume.check_saved_state(storage, "s")
    (exp_dir / "experiment_state-2026-02-01_00-00-00.json").unlink()
    (exp_dir / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(pickle.dumps({"studies": list(range(99))})[:20])
    with pytest.raises(Exception, match=r"searcher-state-2026-01-01_00-00-00.pkl: damaged \(UnpicklingError\)"):
        resume.check_saved_state(storage, "s")


def test_resume_notes_the_flags_it_ignores():
    from deepdiff_study import driver

    args = driver.build_parser().parse_args(["--resume", "--samples", "9", "--mlflow-uri", "sqlite:///x.db", "--cpus-per-trial", "2",
                                             "--precision", "float32"])
    given = driver.spec_from_flags(args).saved_settings_set()
    assert given == ["--samples", "--mlflow-uri", "--precision"]  # --cpus-per-trial may change on a resume: not a study setting


def test_export_refuses_what_it_cannot_read_or_write_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from deepdiff_study import export as export_best

    (tmp_path / "afile").write_text("keep")
    (tmp_path / "loop").symlink_to("loop")
    cases = [
        (["--out", ""], "--out '': expected a folder", 2),
        (["--out", str(tmp_path / "loop")], f"--out {tmp_path / 'loop'}: is a symlink loop", 2),
        (["--out", str(tmp_path / "afile" / "x")], f"--out {tmp_path / 'afile' / 'x'}: {tmp_path / 'afile'} is a file, not a directory", 2),
        (["--out", "o", "--mlflow-uri", ""], "--mlflow-uri '': expected sqlite:///PATH", 2),
        (["--out", "o", "--mlflow-uri", f"sqlite:///{tmp_path / 'afile'}"], "is not a SQLite database", 2),  # was a traceback
        (["--out", "o", "--mlflow-uri", f"sqlite:///{tmp_path / 'loop'}"], "is a symlink loop", 2),
        (["--out", "o", "--mlflow-uri", f"http://127.0.0.1:{free_port()}"], "the MLflow store does not answer", 75),  # hung
        (["--out", "o", "--bogus"], "export_best: unrecognized arguments: --bogus", 2),
    ]
    for args, fragment, code in cases:
        if args[-1] == "--bogus":
            with pytest.raises(SystemExit) as info:
                export_best.main(args)
            assert info.value.code == 2 and fragment in capsys.readouterr().err
            continue
        assert_one_line_error(call(export_best.main, args, tmp_path, capsys, monkeypatch), fragment, code=code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "loop"]


def test_export_help_imports_no_mlflow():
    """`--help` answered in 8-12 s when it imported Ray, ~2 s while it imported MLflow; now at once."""
    code = ("import sys\nfrom deepdiff_study import export\ntry:\n    export.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('mlflow', 'ray', 'optuna', 'torch', 'pandas') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("[]"), proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_new_store_whose_creation_races_a_reader_is_asked_again(tmp_path, monkeypatch):
    """A script polling mlruns.db from the study's first second once made the store check fail with
    "duplicate column name: step": both ran MLflow's table creation at the same moment."""
    import sqlite3

    import mlflow.tracking

    from deepdiff_study import store

    real, calls = mlflow.tracking.MlflowClient, []

    class RacedOnce(real):
        def search_experiments(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise sqlite3.OperationalError("duplicate column name: step")
            return super().search_experiments(*args, **kwargs)

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", RacedOnce)
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 1.0)  # a race lasting longer is a failure
    store.check_store(f"sqlite:///{tmp_path / 'm.db'}")
    assert len(calls) == 2
    with pytest.raises(store.StoreError, match=r"does not answer \(OperationalError: duplicate column name: step\)"):
        calls.clear()
        monkeypatch.setattr(RacedOnce, "search_experiments", lambda self, *a, **k: (_ for _ in ()).throw(
            sqlite3.OperationalError("duplicate column name: step")))
        store.check_store(f"sqlite:///{tmp_path / 'm2.db'}")


@pytest.mark.slow
def test_a_full_disk_while_the_driver_writes_its_files_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    import os

    import deepdiff_study.pairs
    from deepdiff_study import driver

    def full(*args, **kwargs):  # pyarrow's writer on a full disk: no file name, its own wording
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(deepdiff_study.pairs, "ensure_synthetic_pair", full)
    proc = call(driver.main, ["--storage", str(tmp_path / "r"), "--synthetic-genes", "40"], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, f"error: {os.strerror(errno.ENOSPC)}; fix it and rerun the same command", code=75)


def test_flags_load_into_a_study_spec_and_unset_ones_leave_its_defaults():
    from deepdiff_study import driver
    from deepdiff_study.schema import RunSizes
    from deepdiff_study.spec import StudySpec

    args = driver.build_parser().parse_args(["--pairs", "1,3", "--samples", "5", "--reduction-factor", "2.5",
                                             "--synthetic-genes", "300", "--gpus-per-trial", "0.5", "--storage", "s3://b/p",
                                             "--experiment", "e2", "--precision", "float32", "--seed", "4"])
    assert driver.spec_from_flags(args) == StudySpec(
        pairs="1,3", sizes=RunSizes(samples=5, reduction_factor=2.5, synthetic_genes=300), gpus_per_trial=0.5,
        storage="s3://b/p", experiment="e2", precision="float32", seed=4)
    assert driver.spec_from_flags(driver.build_parser().parse_args([])) == StudySpec()
    flags = {o for a in driver.build_parser()._actions for o in a.option_strings}
    assert {"--dry-run", "--resume", "--replicates", "--replicate-storage", "--max-epochs", "--mlflow-uri"} <= flags


@pytest.mark.parametrize("args, fragment", [
    (["--replicates", "2", "--resume"], "--replicates 2: retrains a finished study; drop --resume"),
    (["--replicates", "2", "--dry-run"], "--replicates 2: retrains a finished study; drop --dry-run"),
    (["--replicate-storage", "x"], "--replicate-storage: applies only with --replicates K"),
])
def test_replicate_flags_that_do_not_go_together_are_one_line_errors(tmp_path, args, fragment, capsys, monkeypatch):
    from deepdiff_study import driver

    assert_one_line_error(call(driver.main, args, tmp_path, capsys, monkeypatch), fragment)
    assert not any(tmp_path.iterdir())
