"""deepdiff_study.store: the study's MLflow store created, waited for and verified while other processes
(``mlflow ui``, a notebook, a monitoring script; tests/store_race.py plays them) open it too."""

import shutil
import sqlite3
from contextlib import closing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepdiff_study import store

RACE = Path(__file__).with_name("store_race.py")


def schema(db: Path) -> tuple[str, list[str]]:
    """(alembic revision, leftover temporary migration tables) of a SQLite store."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return con.execute("SELECT version_num FROM alembic_version").fetchone()[0], [t for t in tables if "tmp" in t]


def head() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


@pytest.mark.slow
@pytest.mark.parametrize("check", ["check_store", "check_readable"])
def test_a_study_waits_for_another_process_half_way_through_migrating_a_new_store(tmp_path, check):
    """The study stopped with exit 75 ("table _alembic_tmp_experiments already exists") when its store
    check opened a new store while a reader that had opened it first was migrating it: its three quick
    attempts all collided with that migration. It now waits for it, and leaves it unharmed; so do an
    export and a report (`check_readable`) reading it."""
    db, marker = tmp_path / "mlruns.db", tmp_path / "paused"
    other = subprocess.Popen([sys.executable, str(RACE), "pause", f"sqlite:///{db}", str(marker), "8"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert other.poll() is None and time.monotonic() < deadline, "the other process never reached its migration"
        time.sleep(0.05)
    assert "_alembic_tmp_experiments" in schema(db)[1]  # the other process is half-way through a migration
    getattr(store, check)(f"sqlite:///{db}")
    assert other.communicate(timeout=300)[0].strip() == "ok"  # its migration finished undisturbed
    assert schema(db) == (head(), [])
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == ("wal" if check == "check_store" else "delete")


@pytest.mark.slow
def test_readers_opening_a_new_store_at_the_moment_the_study_creates_it(tmp_path):
    """Four processes open the brand-new store with MlflowClient at the moment the study's store check
    creates it: the check answers, and the store is whole (MLflow's current schema)."""
    db = tmp_path / "mlruns.db"
    uri = f"sqlite:///{db}"
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - as loaded as the readers when the moment comes

    start = time.time() + 20  # the readers import MLflow first (seconds on a busy machine)
    readers = [subprocess.Popen([sys.executable, str(RACE), "open", uri, str(start)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for _ in range(4)]
    while time.time() < start:
        time.sleep(0.001)
    store.check_store(uri)
    outcomes = [r.communicate(timeout=300)[0].strip() for r in readers]
    assert schema(db)[0] == head(), outcomes
    assert len(outcomes) == 4


@pytest.mark.slow
def test_a_new_store_is_linked_into_place_whole(tmp_path, monkeypatch):
    """The new store is built aside and appears at its path only complete: whatever opens the path sees
    either no file or MLflow's current schema, never a half-made one."""
    db = tmp_path / "mlruns.db"
    seen = []
    real_link = store.os.link

    def link(src, dst):
        seen.append(schema(Path(src)))  # what appears at the path
        assert not Path(dst).exists()
        return real_link(src, dst)

    monkeypatch.setattr(store.os, "link", link)
    store.check_store(f"sqlite:///{db}")
    assert seen == [(head(), [])]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mlruns.db.create.lock", "mlruns.db"]


@pytest.mark.slow
def test_a_race_is_asked_again_until_the_other_process_is_done_and_a_broken_store_is_not(tmp_path, monkeypatch):
    """Failures that say another process is creating the tables are asked again (after waiting for it);
    any other failure, or a race lasting past SQLITE_WAIT_S, is one line at once."""
    from mlflow.tracking import MlflowClient

    half = tmp_path / "half.db"  # a store with tables, not at MLflow's schema (below)
    store._build(half)
    left_half_made(half)
    answers = []

    def search(self, *args, **kwargs):
        outcome = answers.pop(0)
        if callable(outcome):  # what another process does during this attempt, then how the attempt fails
            outcome = outcome()
        if isinstance(outcome, Exception):
            raise outcome
        return []

    monkeypatch.setattr(MlflowClient, "search_experiments", search)
    waited = []
    monkeypatch.setattr(store, "_wait_for_migration", lambda path, deadline: waited.append(path))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    answers[:] = [RuntimeError("(sqlite3.OperationalError) table _alembic_tmp_experiments already exists"),
                  RuntimeError("(sqlite3.OperationalError) duplicate column name: step"), "ok"]
    store._answers(uri)
    assert waited == [tmp_path / "m.db"] * 2 and answers == []
    answers[:] = [RuntimeError("unable to open database file")]
    with pytest.raises(store.StoreError, match=r"does not answer \(unable to open database file\); "
                                               "start the server or fix the URI"):
        store._answers(uri)
    # a store with tables, not at MLflow's schema: any failure may be another process's migration
    # (two migrating at once fail in ways no list of words covers: a KeyError naming a column)
    waited.clear()
    answers[:] = [KeyError("dimension_attributes"), "ok"]
    store._answers(f"sqlite:///{half}")
    assert waited == [half] * 2 and answers == []

    def another_finishes_the_migration():
        with sqlite3.connect(half) as con:
            con.execute("UPDATE alembic_version SET version_num = ?", (head(),))
            con.execute("DROP TABLE _alembic_tmp_experiments")
        return KeyError("dimension_attributes")

    # ... and so is a failure during which another process brought it to MLflow's schema (CI: a reader's
    # migration finished while the study's own failed half-way)
    assert schema(half)[1] == ["_alembic_tmp_experiments"]  # still half-made
    answers[:] = [another_finishes_the_migration, "ok"]
    store._answers(f"sqlite:///{half}")
    assert answers == [] and schema(half) == (head(), [])
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 0.0)
    answers[:] = [RuntimeError("table logged_models already exists")]
    with pytest.raises(store.StoreError, match="another process kept creating it for longer than 0 s"):
        store._answers(uri)


def left_half_made(db: Path) -> None:
    """Make a whole store at `db` look like what the loser of two readers' migrations left: its
    revision behind and a temporary table of a migration."""
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
        con.execute("CREATE TABLE _alembic_tmp_experiments (x INTEGER)")


@pytest.mark.slow
def test_a_new_store_left_half_made_by_a_reader_is_built_again(tmp_path, monkeypatch):
    """Two readers opening the brand-new file at once raced each other's migration; the loser stopped
    half-way (a temporary table left, the revision behind) and nobody will finish it. With no run in
    it, the study's check builds it again whole instead of failing after SQLITE_WAIT_S."""
    db = tmp_path / "mlruns.db"
    store._build(tmp_path / "made.db")  # elsewhere: MLflow caches a store per URI for the process
    (tmp_path / "made.db").rename(db)
    left_half_made(db)
    monkeypatch.setattr(store, "SQLITE_STALL_S", 1.0)
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 20.0)
    store.check_store(f"sqlite:///{db}")
    assert schema(db) == (head(), [])


@pytest.mark.slow
def test_a_second_store_built_aside_by_the_same_process_is_whole(tmp_path, monkeypatch):
    """The study built its new store aside, a reader had opened the path first (the link failed) and
    left it half-made, so the study built a second one aside to replace it. Both were once built at the
    same aside name, and MLflow, which keeps a store per URI for the process, took the second file for
    one with tables: the check stopped with a raw "no such table: experiments". Each build now has
    a name of its own."""
    db = tmp_path / "mlruns.db"

    def link(src, dst):  # the reader got there first
        shutil.copyfile(src, dst)
        left_half_made(Path(dst))
        raise FileExistsError(dst)

    monkeypatch.setattr(store.os, "link", link)
    monkeypatch.setattr(store, "SQLITE_STALL_S", 1.0)
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 20.0)
    store.check_store(f"sqlite:///{db}")
    assert schema(db) == (head(), [])
    assert not [p.name for p in tmp_path.iterdir() if ".new-" in p.name]


@pytest.mark.slow
def test_a_half_made_store_holding_runs_is_never_replaced(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    db, made = tmp_path / "mlruns.db", tmp_path / "made.db"
    MlflowClient(f"sqlite:///{made}").create_run("0")
    store._dispose(f"sqlite:///{made}")
    made.rename(db)
    left_half_made(db)
    monkeypatch.setattr(store, "SQLITE_STALL_S", 1.0)
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 4.0)
    with pytest.raises(store.StoreError, match="another process kept creating it for longer than 4 s"):
        store.check_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


@pytest.mark.slow
def test_a_reader_in_the_middle_of_reading_never_blocks_the_study_s_writes(tmp_path):
    """An export or a report (or ``mlflow ui``) reading the store while the study writes: with the
    store in write-ahead logging (`check_store`), the study's commit goes through while the reader's
    read transaction is open; in SQLite's default journal mode it waited, then failed 'database is locked'."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlruns.db"
    uri = f"sqlite:///{db}"
    store.check_store(uri)
    client = MlflowClient(uri)
    run = client.create_run("0")
    with closing(sqlite3.connect(db, timeout=0.1)) as reader:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)  # a read transaction, held open
        t0 = time.monotonic()
        client.log_metric(run.info.run_id, "valid_pcc", 0.5, step=1)
        client.set_terminated(run.info.run_id)
        assert time.monotonic() - t0 < 4.0  # not waiting out SQLite's busy timeout
        assert reader.execute("SELECT COUNT(*) FROM metrics").fetchone() == (0,)  # its snapshot, unchanged
    assert [m.value for m in client.get_metric_history(run.info.run_id, "valid_pcc")] == [0.5]
