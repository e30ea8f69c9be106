"""Faults from outside, injected for real into a running study (driver subprocesses, their own local Ray):
the MLflow server dying mid-study, a Ray worker killed mid-trial, and a reader polling the SQLite store
while the study writes it. Each ends in one clear line or a clean finish, and nothing is lost or
duplicated in MLflow."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ray_session import TUNE_DIR, ray_session, read_until, write_tiny_grid  # noqa: F401
from deepdiff_study.records import Kind, study_runs



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1 (SQLite backend in `folder`), waited for until it answers (60 s at most)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise AssertionError("mlflow server did not start within 60 s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def study_command(tmp: Path, uri: str, experiment: str, *extra: str) -> list[str]:
    return [sys.executable, str(TUNE_DIR / "run_ablation.py"), "--grid", str(write_tiny_grid(tmp)), "--preset", "quick",
            "--pairs", "1", "--synthetic-genes", "200", "--storage", str(tmp / "results"), "--mlflow-uri", uri,
            "--experiment", experiment, *extra]


def trial_workers(root: int) -> list[int]:
    """Processes below `root` (the driver: its local Ray's raylet starts the workers) running a trial now."""
    rows = [line.split(None, 2) for line in subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True,
                                                           text=True).stdout.splitlines()]
    children: dict[int, list[int]] = {}
    args = {}
    for row in rows:
        if len(row) == 3:
            children.setdefault(int(row[1]), []).append(int(row[0]))
            args[int(row[0])] = row[2]
    below, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    return [pid for pid in below if args.get(pid, "").startswith("ray::ImplicitFunc.train")]


def trial_ids(uri: str, experiment: str) -> tuple[Counter, list]:
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    runs = study_runs(client, exp_id, Kind.TRIAL) + study_runs(client, exp_id, Kind.GRID_CELL)
    return Counter(r.data.tags["trial_id"] for r in runs if "trial_id" in r.data.tags), runs


@pytest.mark.slow
def test_the_mlflow_server_dying_mid_study_stops_it_with_one_line_and_resume_finishes_it(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    command = study_command(tmp_path, uri, "gone", "--variants", "raw_d,aux", "--aux", "regression",
                            "--samples", "4", "--max-epochs", "3")
    server = start_server(tmp_path, port)
    try:
        driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        log: list[str] = []
        assert read_until(driver, 2, log) >= 2, "".join(log)
    finally:
        stop(server)  # the store is gone while trials still run
    out, _ = driver.communicate(timeout=240)
    log.append(out)
    text = "".join(log)
    assert driver.returncode == 75, text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--resume" in errors[0], text
    assert "Traceback" not in text

    server = start_server(tmp_path, port)  # the cause fixed: the same store is back
    try:
        resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        ids, runs = trial_ids(uri, "gone")
        assert len(ids) == 8 and set(ids.values()) == {1}, ids
        assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)
    finally:
        stop(server)


def epochs_logged(uri: str) -> int:
    """The most epochs any run of the study's SQLite store has logged so far (0 before the first). Read
    with sqlite3 in read-only mode: an MlflowClient here could race the driver creating the database."""
    db = Path(uri[len("sqlite:///"):])
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            (value,) = con.execute("SELECT MAX(value) FROM latest_metrics WHERE key = 'epoch'").fetchone()
    except sqlite3.Error:  # no table yet
        return 0
    return int(value or 0)


@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_is_retried_and_the_study_finishes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    epochs = 40  # long enough (several seconds) that the kill lands mid-trial
    command = study_command(tmp_path, uri, "killed-worker", "--variants", "raw_d", "--samples", "3",
                            "--max-epochs", str(epochs), "--grace-period", str(epochs), "--max-failures", "2")
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
        if epochs_logged(uri) < 2:
            continue  # mid-trial: a trial has reported (and checkpointed) a few epochs
        for pid in trial_workers(driver.pid):  # only this study's Ray: other Ray instances may run on the machine
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # its trial ended just now
                continue
            killed = pid
            break
    out, _ = driver.communicate(timeout=300)
    assert killed is not None, out
    assert driver.returncode == 0, out
    ids, runs = trial_ids(uri, "killed-worker")
    assert len(ids) == 3 and set(ids.values()) == {1}, ids
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert all(r.info.status == "FINISHED" and r.data.tags["status"] == "completed" for r in trials), (
        [(r.info.status, r.data.tags) for r in trials], out)
    assert all(int(r.data.metrics["epoch"]) == epochs for r in trials)
    assert any(r.data.tags.get("retries") == "1" for r in trials), "the killed trial was retried"


@pytest.mark.slow
def test_a_reader_polling_the_sqlite_store_never_fails_the_study(ray_session, tmp_path):
    """`mlflow ui` or a script reading the database from the study's first second on."""
    from deepdiff_study import driver

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    stop_reading, reads, failures = threading.Event(), [0], []

    def reader():
        while not stop_reading.is_set():
            try:
                if (tmp_path / "mlruns.db").exists():
                    client = MlflowClient(uri)
                    for exp in client.search_experiments():
                        client.search_runs([exp.experiment_id], max_results=1000)
                    reads[0] += 1
            except Exception as err:  # noqa: BLE001 - the reader may fail; the study must not
                failures.append(repr(err))
            time.sleep(0.02)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        args = study_command(tmp_path, uri, "read-while-writing", "--variants", "raw_d,raw_c", "--samples", "3",
                             "--max-epochs", "2")[2:]
        assert driver.main(args) == 0
    finally:
        stop_reading.set()
        thread.join(timeout=30)
    assert reads[0] > 10
    ids, _ = trial_ids(uri, "read-while-writing")
    assert len(ids) == 6


@pytest.mark.slow
def test_a_store_that_stops_taking_writes_mid_study_stops_it_with_one_line_and_resume_finishes_it(ray_session, tmp_path, capsys):
    """Another process holds the SQLite store's write lock past the driver's timeout: each write of the
    study fails as it would on a read-only or full disk (a folder that turns read-only under open files
    cannot be made so on Linux: a remount is refused while files are open for writing; chmod does not
    reach open files, nor root). The driver used to print ~250 lines of MLflow's logged tracebacks first."""
    import sqlite3

    from deepdiff_study import driver

    db = tmp_path / "mlruns.db"
    uri = f"sqlite:///{db}"
    args = study_command(tmp_path, uri, "locked", "--variants", "raw_d", "--samples", "4", "--max-epochs", "2")[2:]
    locked, stop = threading.Event(), threading.Event()

    def hold_the_lock():  # from the first ended trial on, until the driver gave up
        while not stop.is_set() and not any(r.info.status != "RUNNING" for r in _trial_runs(uri, "locked")):
            time.sleep(0.2)
        holder = sqlite3.connect(db, isolation_level=None, timeout=60)
        holder.execute("BEGIN EXCLUSIVE")
        locked.set()
        stop.wait(240)
        holder.close()

    thread = threading.Thread(target=hold_the_lock, daemon=True)
    thread.start()
    try:
        assert driver.main(args) == 75
    finally:
        stop.set()
        thread.join(timeout=30)
    captured = capsys.readouterr()
    assert locked.is_set(), captured.out
    assert "Traceback" not in captured.err and len(captured.err.splitlines()) <= 3, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "database is locked" in errors[0] and "--resume" in errors[0], captured.err

    assert driver.main([*args, "--resume"]) == 0  # the lock released: the same command with --resume
    ids, runs = trial_ids(uri, "locked")
    assert len(ids) == 4 and set(ids.values()) == {1}, ids
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)


def _trial_runs(uri: str, experiment: str) -> list:
    """The experiment's trial runs so far ([] while the study is still creating its store)."""
    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        return study_runs(client, exp.experiment_id, Kind.TRIAL) if exp is not None else []
    except Exception:  # noqa: BLE001 - the database is being created: ask again
        return []


@pytest.mark.slow
def test_sigterm_stops_the_study_as_ctrl_c_does(tmp_path):
    """`ray job stop`, a batch scheduler or `kill` send SIGTERM: Tune saves its state, the driver says to
    --resume and exits 130 (it used to die in Ray's signal handler with a C++ stack dump)."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    command = study_command(tmp_path, uri, "termed", "--variants", "raw_d", "--samples", "3", "--max-epochs", "30",
                            "--grace-period", "30")
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    assert read_until(driver, 1, log) >= 1, "".join(log)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, "".join(log) + out + err
    assert err.strip().splitlines()[-1].startswith("interrupted: ") and "--resume" in err.strip().splitlines()[-1], err
    assert "SIGTERM received" not in err and "Traceback" not in err
    assert (tmp_path / "results" / "termed" / "tuner.pkl").is_file()
