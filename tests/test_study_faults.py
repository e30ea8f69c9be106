"""Faults from outside a running study (deepdiff_study.faults, the store's and the storage's checks), injected
for real into running studies (driver subprocesses or the session's Ray): the MLflow server dying mid-study,
a Ray worker killed mid-trial, a reader polling the SQLite store while the study writes it, the store's
file moved away, the storage filling up, the raylet killed. Each ends in one clear line or a clean finish,
and nothing is lost or duplicated in MLflow. The pieces themselves are tested first, without a study."""

import io
import os
import pickle
import re
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
from ray_session import TUNE_DIR, by_value, ray_session, read_until, write_tiny_grid  # noqa: F401

from deepdiff.command import shell_command
from deepdiff.errors import ConfigError
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


def descendants(root: int, column: str) -> dict[int, str]:
    """Processes below `root` (a driver with its own local Ray: its raylet starts the workers), each with
    its `ps` column `column` (args: the command line, comm: the program name)."""
    rows = [line.split(None, 2) for line in subprocess.run(["ps", "-eo", f"pid=,ppid=,{column}="], check=True,
                                                           capture_output=True, text=True).stdout.splitlines()]
    children: dict[int, list[int]] = {}
    text = {}
    for row in rows:
        if len(row) == 3:
            children.setdefault(int(row[1]), []).append(int(row[0]))
            text[int(row[0])] = row[2]
    below, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            below[child] = text.get(child, "")
            todo.append(child)
    return below


def trial_workers(root: int) -> list[int]:
    """Processes below `root` (the driver) running a trial now."""
    return [pid for pid, args in descendants(root, "args").items() if args.startswith("ray::ImplicitFunc.train")]


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


# ---- the pieces, without a study ------------------------------------------------------------------------

def test_a_question_mark_in_a_sqlite_path_is_refused_and_the_default_uri_is_the_file_written(tmp_path):
    import sqlalchemy

    from deepdiff_study import store

    with pytest.raises(ConfigError, match=r"^--mlflow-uri sqlite:///.*/a\?b\.db: SQLAlchemy reads what follows '\?' as "
                                          r"connection options, so the runs would go to .*/a; write the '\?' of the path as %3F"):
        store.check_uri(f"sqlite:///{tmp_path}/a?b.db", write=True)
    folder = tmp_path / "runs?x=1 %41"  # a working folder whose name SQLAlchemy would read as options and a %XX
    folder.mkdir()
    uri = store.default_mlflow_uri(folder)
    assert store.sqlite_path(uri) == folder / "mlruns.db"
    assert store.check_uri(uri, write=True) == folder / "mlruns.db"
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:  # SQLAlchemy opens the file the study checks and prints
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["mlruns.db"] and (folder / "mlruns.db").is_file()


def test_a_store_file_moved_away_or_replaced_is_a_store_error(tmp_path):
    from deepdiff_study import store

    db = tmp_path / "mlruns.db"
    db.write_bytes(b"x")
    uri = store.sqlite_uri(db)
    identity = store.file_identity(uri)
    store.check_same_file(uri, identity, "rerun it")  # the same file: nothing to say
    db.rename(tmp_path / "moved.db")
    with pytest.raises(store.StoreError, match=rf"^the study stopped: its MLflow database {db} is missing \(moved away, "
                                               rf"deleted or replaced while the study ran\); .* put that one back at {db}, then rerun it$"):
        store.check_same_file(uri, identity, "rerun it")
    db.write_bytes(b"x")  # a new file of the same name holds none of the study
    with pytest.raises(store.StoreError, match="is another file now"):
        store.check_same_file(uri, identity, "rerun it")
    (tmp_path / "moved.db").replace(db)  # put back
    store.check_same_file(uri, identity, "rerun it")
    assert store.file_identity("http://127.0.0.1:5000") is None


def test_the_storage_writes_each_file_whole_and_records_a_full_disk(tmp_path, monkeypatch):
    """A disk filling up mid-write: the snapshot Tune had stays whole (Tune's LocalFileSystem rewrote it in
    place and left it truncated), nothing half-written is left, and the fault is recorded with its path.
    The full disk is simulated: the file object's writes fail with ENOSPC once armed."""
    import errno

    import pyarrow.fs

    from deepdiff_study import storage

    fs = storage.StudyStorage.parse(str(tmp_path)).tune_filesystem()
    state = tmp_path / "experiment_state.json"
    with fs.open_output_stream(str(state)) as out:
        out.write(b"the last good snapshot")
    assert state.read_bytes() == b"the last good snapshot"
    full = [False]
    real_fdopen = storage.os.fdopen

    class FillingDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            if full[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(storage.os, "fdopen", lambda *a, **k: FillingDisk(real_fdopen(*a, **k)))
    before = len(storage.write_faults())
    full[0] = True
    with pytest.raises(OSError, match="No space left on device"), fs.open_output_stream(str(state)) as out:
        out.write(b"a newer snapshot" * 1000)
    assert state.read_bytes() == b"the last good snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["experiment_state.json"]  # no temporary file left
    faults = storage.write_faults()[before:]
    assert [(f.errno, f.filename) for f in faults] == [(errno.ENOSPC, str(state))]
    assert storage.storage_fault(faults[0]) and not storage.storage_fault(FileNotFoundError(2, "x"))
    full[0] = False  # the space freed: writes work again
    pyarrow.fs.copy_files(str(state), str(tmp_path / "copy.json"), destination_filesystem=fs)
    assert (tmp_path / "copy.json").read_bytes() == b"the last good snapshot"


def test_a_trial_whose_checkpoint_cannot_be_written_raises_a_storage_fault(tmp_path, monkeypatch):
    import errno

    from deepdiff_study import faults, trainable

    def report(metrics, checkpoint=None):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/results/x/checkpoint_000001/last.pt")

    monkeypatch.setattr(trainable.tune, "report", report)
    with pytest.raises(faults.StorageFault, match=r"^copying it to the study's storage: /results/x/checkpoint_000001/"
                                                  r"last.pt: Read-only file system$") as raised:
        trainable.report_with_checkpoint({"epoch": 1}, tmp_path)
    reason = f"{faults.StorageFault.__module__}.StorageFault: {raised.value}"  # a trial's last error line
    assert faults.storage_fault_of(reason) == str(raised.value)
    assert faults.storage_fault_of("ValueError: lr") is None


def test_the_fault_watch_stops_the_study_at_a_storage_write_fault_or_a_replaced_store(tmp_path):
    import errno

    from deepdiff_study import faults, store

    recorded: list[OSError] = [OSError(errno.ENOSPC, "old", "/before")]
    replaced: list[str] = []

    def check_store():
        if replaced:
            raise store.StoreError(replaced[0])

    session = faults.Session(storage=str(tmp_path), check_store=check_store, write_faults=lambda: list(recorded),
                             faults_before=1, then="rerun x --resume",
                             waiting=faults.Waiting(faults.Request(1, 0), 60, "the next trial", "rerun x --resume"))
    watch = faults.FaultWatch()
    watch.on_step_begin(0, [])  # nothing happened outside
    with faults.watching(session):
        watch.on_step_begin(1, [])  # a fault from before this run is not this run's
        recorded.append(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{tmp_path}/s/experiment_state.json"))
        with pytest.raises(store.StoreError, match=rf"^the study stopped: writing to its storage {tmp_path} failed \("
                                                   rf"{tmp_path}/s/experiment_state.json: No space left on device\); "
                                                   r"what ran is saved: free space or make it writable, then rerun x --resume$"):
            watch.on_trial_result(2, [], None, {})
        recorded.pop()
        replaced.append("moved")
        with pytest.raises(store.StoreError, match="^moved$"):
            watch.on_step_end(3, [])
    assert faults.FaultWatch.session is None
    assert pickle.loads(pickle.dumps(watch)).__class__ is faults.FaultWatch  # in tuner.pkl, holding nothing


def test_a_wait_for_the_cluster_says_what_it_waits_for_and_gives_up_after_its_bound(monkeypatch):
    from deepdiff_study import faults

    clock = [100.0]
    monkeypatch.setattr(faults.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(faults, "cluster_room", lambda: "the cluster has 0 of 2 CPUs and 0 of 0 GPUs free (1 node)")
    monkeypatch.setattr(faults, "largest_node", lambda: {"CPU": 2.0, "GPU": 0.0})
    lines = io.StringIO()
    waiting = faults.Waiting(faults.Request(1, 0), 60, "the next trial", "rerun x --resume", stream=lines)
    for now in (100.0, 110.0, 131.0, 140.0):
        clock[0] = now
        waiting.tick()
    assert lines.getvalue().splitlines() == [
        ("  ... waiting 31 s for a node with 1 CPU + 0 GPU for the next trial: the cluster has 0 of 2 CPUs and 0 of 0 GPUs "
         "free (1 node); stops after --wait-timeout 60 s")]
    clock[0] = 160.0
    with pytest.raises(faults.ClusterError) as raised:
        waiting.tick()
    assert str(raised.value) == ("no node had 1 CPU + 0 GPU free for the next trial within --wait-timeout 60 s (the cluster "
                                 "has 0 of 2 CPUs and 0 of 0 GPUs free (1 node): other work holds it); rerun x --resume")
    assert raised.value.exit_status == 75
    waiting.reset()
    waiting.tick()  # a new wait starts its own clock
    big = faults.Waiting(faults.Request(4, 1), 60, "a calibration task", "rerun it")
    assert isinstance(big.gave_up(), ConfigError) and str(big.gave_up()).startswith(
        "--cpus-per-trial/--gpus-per-trial: no node of the cluster has 4 CPU + 1 GPU in all (the largest has 2 CPU + 0 GPU)")


WATCHED = """
import subprocess, sys, time
sys.path.insert(0, {root!r})
from deepdiff_study.faults import RayWatch
target = subprocess.Popen(["sleep", "60"])
watch = RayWatch({{"raylet": target.pid}}, then="what ran is saved: rerun x --resume").start()
if {interrupted}:
    watch.interrupted.set()
print("watching", flush=True)
target.kill()  # a zombie until reaped: dead all the same
time.sleep(20)
print("not ended", flush=True)
"""


@pytest.mark.parametrize("interrupted, status, line", [
    (False, 75, ("error: Ray's raylet (pid {pid}) on this machine died while the study ran (killed, out of memory or "
                 "crashed); what ran is saved: rerun x --resume")),
    (True, 130, ("interrupted: Ray's raylet (pid {pid}) on this machine ended while the study stopped; what ran is "
                 "saved: rerun x --resume")),
])
@pytest.mark.slow
def test_ray_dying_ends_the_driver_with_one_line(interrupted, status, line):
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", WATCHED.format(root=root, interrupted=interrupted)], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stdout + done.stderr
    assert done.stdout == "watching\n"
    (said,) = done.stderr.splitlines()
    pid = said.split("(pid ")[1].split(")")[0]
    assert said == line.format(pid=pid)


def test_the_resume_command_is_quoted_for_a_shell():
    from deepdiff_study import study

    assert study.resume_hint(["deepdiff-ablation", "--storage", "my results", "--experiment", "a;b"]) == (
        "rerun deepdiff-ablation --storage 'my results' --experiment 'a;b' --resume")
    assert study.resume_hint(["deepdiff-ablation", "--resume"]) == "rerun deepdiff-ablation --resume"
    assert study.resume_hint(None) == "rerun the same command with --resume"


# ---- the faults, injected into running studies --------------------------------------------------------

def _after_first_ended_trial(uri: str, experiment: str, act, stop: threading.Event) -> threading.Thread:
    """A thread that runs `act` once the study's first trial has ended (or never, once `stop` is set)."""
    def wait_then_act():
        while not stop.is_set():
            if any(r.info.status != "RUNNING" for r in _trial_runs(uri, experiment)):
                act()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_the_storage_filling_up_mid_study_stops_it_with_one_line_and_resume_finishes_it(ray_session, tmp_path, capsys,
                                                                                        monkeypatch):
    """The driver's writes to --storage fail with ENOSPC from the first ended trial on (simulated: every
    write through `storage.WholeFiles` in this process fails as on a full disk, which Tune's snapshot
    uploads go through). It used to end in a traceback, and --resume then failed on the truncated snapshot."""
    import errno

    from deepdiff_study import driver, storage

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    args = study_command(tmp_path, uri, "full", "--variants", "raw_d", "--samples", "4", "--max-epochs", "2")[2:]
    full, stop = threading.Event(), threading.Event()

    def write(self, data):
        if not full.is_set():
            return self._failing(self._fh.write, data)

        def no_space(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._failing(no_space, data)

    monkeypatch.setattr(storage._WholeFile, "write", write)
    thread = _after_first_ended_trial(uri, "full", full.set, stop)
    try:
        assert driver.main(args) == 75
    finally:
        stop.set()
        thread.join(timeout=30)
    captured = capsys.readouterr()
    assert full.is_set(), captured.out
    assert "Traceback" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    assert errors[0].startswith(f"error: the study stopped: writing to its storage {tmp_path / 'results'} failed ("
                                f"{tmp_path / 'results' / 'full'}/"), errors[0]
    assert "No space left on device); what ran is saved: free space or make it writable, then rerun " in errors[0]
    assert errors[0].endswith(" --resume"), errors[0]

    full.clear()  # space freed: the same command with --resume
    assert driver.main([*args, "--resume"]) == 0
    ids, runs = trial_ids(uri, "full")
    assert len(ids) == 4 and set(ids.values()) == {1}, ids
    assert all(r.data.tags["status"] in ("completed", "pruned") for r in runs if r.data.tags.get("kind") == "trial")


@pytest.mark.slow
def test_the_store_file_moved_away_mid_study_stops_it_and_resume_finishes_it_once_back(ray_session, tmp_path, capsys):
    """It used to exit 0 with a summary while the file named held none of the study."""
    from deepdiff_study import driver

    db, moved = tmp_path / "mlruns.db", tmp_path / "elsewhere.db"
    uri = f"sqlite:///{db}"
    args = study_command(tmp_path, uri, "moved", "--variants", "raw_d", "--samples", "4", "--max-epochs", "2")[2:]
    stop = threading.Event()
    thread = _after_first_ended_trial(uri, "moved", lambda: db.rename(moved), stop)
    try:
        status = driver.main(args)
    finally:
        stop.set()
        thread.join(timeout=30)
    captured = capsys.readouterr()
    assert moved.is_file(), captured.out
    assert status == 75, captured.out + captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"its MLflow database {db} is " in errors[0] and errors[0].endswith("--resume"), captured.err
    assert "Traceback" not in captured.err

    moved.replace(db)  # put back where the study said it would be
    assert driver.main([*args, "--resume"]) == 0
    ids, _ = trial_ids(uri, "moved")
    assert len(ids) == 4 and set(ids.values()) == {1}, ids


def ray_node_processes(root: int, name: str) -> list[int]:
    """Processes below `root` (a driver that started its own local Ray) whose program is `name`."""
    return [pid for pid, comm in descendants(root, "comm").items() if comm == name]


@pytest.mark.slow
def test_the_raylet_killed_mid_study_ends_it_with_one_line_and_the_resume_command(tmp_path):
    """It used to end with exit 1 and Ray's own last line."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    command = study_command(tmp_path, uri, "no raylet", "--variants", "raw_d", "--samples", "3", "--max-epochs", "20",
                            "--grace-period", "20")
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    assert read_until(driver, 1, log) >= 1, "".join(log)
    (raylet,) = ray_node_processes(driver.pid, "raylet")
    os.kill(raylet, signal.SIGKILL)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 75, "".join(log) + out + err
    (said,) = [line for line in err.splitlines() if line.startswith("error: ")]
    again = shell_command(Path(sys.executable).name, *command[1:], "--resume")  # as `driver.invoked_as` spells it
    assert said == (f"error: Ray's raylet (pid {raylet}) on this machine died while the study ran (killed, out of memory "
                    f"or crashed); what ran is saved: rerun {again}"), err
    assert "Traceback" not in err
    resumed = subprocess.run([*command, "--resume"], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    ids, _ = trial_ids(uri, "no raylet")
    assert len(ids) == 3 and set(ids.values()) == {1}, ids


@pytest.mark.slow
def test_a_calibration_on_a_cluster_with_no_free_cpus_stops_after_the_wait_timeout(ray_session, tmp_path):
    """`--dry-run --address auto` next to work that holds every CPU used to wait until it was killed."""
    import ray

    from deepdiff_study import calibrate, faults
    from deepdiff_study.grid import load_grid
    from deepdiff_study.plan import plan_grid_cells
    from deepdiff_study.spec import StudySpec
    from deepdiff_study.study import plan_study

    grid = load_grid(str(write_tiny_grid(tmp_path)))
    spec, cells = plan_study(StudySpec(grid=grid.source, variants="raw_d"), grid)
    plans = plan_grid_cells(grid, cells, spec.sizes, seed=0)
    holder = ray.remote(num_cpus=2)(lambda: time.sleep(60)).remote()  # other work holds both CPUs
    try:
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = io.StringIO()
        waiting = faults.Waiting(faults.Request(1, 0), 3, "a calibration task", "rerun it", stream=lines)
        started = time.monotonic()
        with pytest.raises(faults.ClusterError) as raised:
            calibrate.calibrate(plans, 100, cpus=1, gpus=0, waiting=waiting)
        assert time.monotonic() - started < 30
        assert str(raised.value) == ("no node had 1 CPU + 0 GPU free for a calibration task within --wait-timeout 3 s (the "
                                     "cluster has 0 of 2 CPUs and 0 of 0 GPUs free (1 node): other work holds it); rerun it")
        assert (" s for a node with 1 CPU + 0 GPU for a calibration task: the cluster has 0 of 2 CPUs and 0 of 0 GPUs free "
                "(1 node); stops after --wait-timeout 3 s") in lines.getvalue()
    finally:
        ray.cancel(holder, force=True)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the placement groups were removed: every CPU free again
    assert ray.available_resources().get("CPU", 0) == 2
    measured = calibrate.calibrate(plans, 100, cpus=1, gpus=0, waiting=faults.Waiting(faults.Request(1, 0), 60, "x", "y"))
    assert list(measured) == ["raw_d"] and measured["raw_d"].seconds_per_epoch > 0


def read_only_storage(config, pairs, ended=None):
    """The real trainable, its checkpoints copied to a storage that is read-only while a file READ_ONLY
    lies in the --storage folder: the copy fails with the EROFS the OS raises (injected in the worker)."""
    import errno

    from ray import tune

    from deepdiff_study import trainable

    marker = Path(tune.get_context().get_storage().storage_fs_path) / "READ_ONLY"  # TrainContext.get_storage
    real = trainable.tune.report

    def report(metrics, *, checkpoint=None, **kwargs):
        if checkpoint is not None and marker.exists():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(marker.parent))
        return real(metrics, checkpoint=checkpoint, **kwargs)

    trainable.tune.report = report
    try:
        trainable.train_trial(config, pairs, ended)
    finally:
        trainable.tune.report = real


@pytest.mark.slow
def test_storage_turning_read_only_mid_study_stops_it_and_resume_runs_the_trial_again(ray_session, tmp_path):
    """It used to record the trials as failed and exit 0, never retried after the fault was cleared."""
    from deepdiff_study import driver
    from deepdiff_study.store import StoreError

    by_value(__name__)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    argv = study_command(tmp_path, uri, "read-only", "--variants", "raw_d", "--samples", "4", "--max-epochs", "3",
                         "--grace-period", "3")[2:]
    marker = tmp_path / "results" / "READ_ONLY"
    stop = threading.Event()
    thread = _after_first_ended_trial(uri, "read-only", marker.touch, stop)
    try:
        with pytest.raises(StoreError) as raised:  # `driver.main` prints it as one line and exits 75
            driver.run(driver.build_parser().parse_args(argv), train_fn=read_only_storage, argv=argv)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert marker.exists()
    assert raised.value.exit_status == 75
    assert re.fullmatch(rf"the study stopped: trial \w+ could not write its checkpoint \(copying it to the study's storage: "
                        rf"{tmp_path / 'results'}: Read-only file system\); what ran is saved and the trial runs again: free "
                        rf"space or make the storage writable, then rerun deepdiff-ablation .* --resume", str(raised.value))
    ids, runs = trial_ids(uri, "read-only")
    assert not [r for r in runs if r.data.tags.get("status") == "failed"]  # the storage failed, not a trial

    marker.unlink()  # writable again: --resume runs the stopped trial from its last checkpoint
    assert driver.run(driver.build_parser().parse_args([*argv, "--resume"]), train_fn=read_only_storage) == 0
    ids, runs = trial_ids(uri, "read-only")
    assert len(ids) == 4 and set(ids.values()) == {1}, ids
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert all(r.data.tags["status"] == "completed" for r in trials), [r.data.tags for r in trials]
