"""The study's MLflow store, checked before anything starts and watched while the study runs. MLflow only
(imported when a check runs: this module itself imports nothing heavy, so a tool's ``--help`` is fast).

- `check_store` (a study writes) and `check_readable` (export and report read): a mistake in the URI
  (an unknown scheme, a SQLite path whose folder is missing, that is a directory, a symlink loop or
  not a SQLite database, a folder that cannot be written) is a `ConfigError` before anything else
  runs, never a folder created wherever the URI points or minutes of retries; a store that does not
  answer (a tracking server down, a database that cannot be opened) is a `StoreError` within seconds.
- A new SQLite store is created aside and linked into place whole (`create_sqlite`, under a lock file
  beside the database), so a reader opening it at the same moment (``mlflow ui``, a notebook, a script
  polling it) never races MLflow's schema migration against the study's; a store that another process
  is creating (or migrating) is waited for, then verified (`_answers`); a new store such a process left
  half-made for good (two readers raced each other's migration) and holding no run is built again. SQLite stores are switched to
  write-ahead logging, so a reader never blocks the study's writes.
- `store_failure`: whether an exception that ended a study came from the store (server gone, disk
  full, read-only or locked database), named by its innermost cause, so the driver can stop with one
  line that says to ``--resume``.
- `DEFAULT_EXPERIMENT` and `default_mlflow_uri`: where a study goes when no flag says.
- A SQLite URI's path is read as SQLAlchemy reads it (`sqlite_path`: up to a ``?``, which starts
  options, with ``%XX`` decoded), so the file checked and printed is the file written; a ``?`` in a
  given path is refused, and `default_mlflow_uri` quotes the working folder's name. `file_identity` /
  `check_same_file`: the SQLite file a study writes is the one it started with (not moved away or
  replaced while it runs).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from urllib.parse import unquote

from deepdiff.errors import EXIT_STORE, ConfigError, DeepDiffError, path_problem

DEFAULT_EXPERIMENT = "deepdiff-ablation"
DEFAULT_DB = "mlruns.db"  # in the working directory; artifacts go to mlartifacts/ beside it
SQLITE_PREFIX = "sqlite:///"
SERVER_SCHEMES = ("http://", "https://", "databricks", "postgresql", "mysql", "mssql")
SQLITE_MAGIC = b"SQLite format 3\x00"
# How hard the MLflow client retries a tracking server during a study (unless the user set these):
# a few retries ride out a restart of the server; minutes of silence help nobody.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_QUICK_CHECK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
# MLflow logs every SQLAlchemy OperationalError with its traceback (~100 lines) before raising it as
# an MlflowException; the driver reports that exception as one line, so the log is quieted.
NOISY_LOGGERS = ("mlflow.store.db.utils",)
# A SQLite store that another process is creating or migrating (MLflow does it on first open, with no
# lock): asked again every SQLITE_RETRY_S while its failure says so (RACE_SIGNS, SQLite's and MLflow's
# words), for at most SQLITE_WAIT_S (MLflow's ~50 migrations took 6 s on a busy 2-core machine).
SQLITE_WAIT_S = 60.0
SQLITE_RETRY_S = 0.5
# ... and not asked while that process makes progress: only once its schema is MLflow's current one, or
# has not changed for SQLITE_STALL_S (nobody is migrating it: this process's client may).
SQLITE_STALL_S = 15.0
RACE_SIGNS = ("already exists", "duplicate column name", "no such table", "no such column", "database is locked",
              "out-of-date database schema", "database schema has changed", "Online migration expected to match")


def default_mlflow_uri(folder: str | Path | None = None) -> str:
    """``sqlite:///<folder>/mlruns.db`` with an absolute path (folder: the working directory), quoted so
    that SQLAlchemy opens that file whatever the folder is called (`sqlite_uri`)."""
    return sqlite_uri((Path(folder or Path.cwd()) / DEFAULT_DB).resolve())


def sqlite_uri(path: str | Path) -> str:
    """The SQLite URI SQLAlchemy reads as `path`: a ``%`` and a ``?`` in it quoted (SQLAlchemy decodes
    ``%XX`` and starts options at ``?``)."""
    return SQLITE_PREFIX + str(path).replace("%", "%25").replace("?", "%3F")


class StoreError(DeepDiffError):
    """The MLflow tracking store cannot be used (or it or the storage failed mid-study)."""

    exit_status = EXIT_STORE


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file SQLAlchemy opens for a SQLite URI (the path up to a ``?``, ``%XX`` decoded), else None."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(unquote(tracking_uri[len(SQLITE_PREFIX):].partition("?")[0]))


def file_identity(tracking_uri: str) -> tuple[int, int] | None:
    """(device, inode) of a SQLite store's file; None for a server or a file not there."""
    path = sqlite_path(tracking_uri)
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_dev, st.st_ino)


def check_same_file(tracking_uri: str, identity: tuple[int, int] | None, then: str) -> None:
    """A `StoreError` if the SQLite file of `tracking_uri` is no longer the file `identity` names (moved
    away, deleted or replaced while the study ran: its runs are in the file moved away, or gone);
    `then`: what to do after putting it back."""
    if identity is None or file_identity(tracking_uri) == identity:
        return
    path = sqlite_path(tracking_uri)
    now = "is missing" if not path.exists() else "is another file now"
    raise StoreError(f"the study stopped: its MLflow database {path} {now} (moved away, deleted or replaced while the "
                     f"study ran); the study's runs are in the file it started with: put that one back at {path}, "
                     f"then {then}")


@contextmanager
def _env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_uri(tracking_uri: str, *, write: bool) -> Path | None:
    """A `ConfigError` naming --mlflow-uri for a URI that cannot be a store (see the module docstring);
    returns the SQLite file's path (None for a server)."""
    if not tracking_uri.strip():
        raise ConfigError("--mlflow-uri '': expected sqlite:///PATH or http(s)://HOST:PORT of an MLflow server")
    path = sqlite_path(tracking_uri)
    if path is None:
        if not tracking_uri.startswith(SERVER_SCHEMES):
            raise ConfigError(f"--mlflow-uri {tracking_uri}: expected sqlite:///PATH or http(s)://HOST:PORT of an MLflow server")
        return None
    if str(path) in ("", "."):
        raise ConfigError(f"--mlflow-uri {tracking_uri}: expected a database file after sqlite:///, e.g. sqlite:///mlruns.db")
    if "?" in tracking_uri:
        raise ConfigError(f"--mlflow-uri {tracking_uri}: SQLAlchemy reads what follows '?' as connection options, so the "
                          f"runs would go to {path}; write the '?' of the path as %3F, or choose a path without one")
    folder_problem = path_problem(path.parent, "directory")
    if folder_problem == "directory not found":
        raise ConfigError(f"--mlflow-uri {tracking_uri}: folder {path.parent} does not exist; create it or choose another path")
    if folder_problem is not None:
        raise ConfigError(f"--mlflow-uri {tracking_uri}: {path.parent} {folder_problem}")
    if path.exists() or path.is_symlink():
        problem = path_problem(path, "file")
        if problem is not None:
            raise ConfigError(f"--mlflow-uri {tracking_uri}: {path} {problem}; expected an MLflow SQLite database")
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as err:
            raise ConfigError(f"--mlflow-uri {tracking_uri}: {path} cannot be read ({err.strerror}); expected an "
                              "MLflow SQLite database") from None
        if head and head != SQLITE_MAGIC:
            raise ConfigError(f"--mlflow-uri {tracking_uri}: {path} is not a SQLite database; expected an MLflow store "
                              "(or a new file name)")
    if write and (not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))):
        raise ConfigError(f"--mlflow-uri {tracking_uri}: cannot write {path if path.exists() else path.parent}; "
                          "choose a writable place")
    return path


def check_store(tracking_uri: str) -> None:
    """The store a study writes: a `ConfigError` for a URI that cannot be one, a `StoreError` unless it
    answers within seconds (a new SQLite store: created whole first, `create_sqlite`); then SQLite gets
    write-ahead logging."""
    path = check_uri(tracking_uri, write=True)
    if path is not None:
        create_sqlite(path)
    _answers(tracking_uri)
    if path is not None:
        use_wal(path)


def check_readable(tracking_uri: str) -> None:
    """The store an export or a report reads: it must exist (a missing SQLite file is not a new empty
    store) and answer within seconds."""
    path = check_uri(tracking_uri, write=False)
    if path is not None and not path.is_file():
        raise ConfigError(f"--mlflow-uri {tracking_uri}: no MLflow database there; run the study first or pass the "
                          "study's --mlflow-uri")
    _answers(tracking_uri)


def _answers(tracking_uri: str) -> None:
    """One query within seconds. A SQLite store that another process is creating or migrating at this
    moment (a reader that opened a new file first: MLflow creates the tables on first open) fails with
    one of `RACE_SIGNS`; it is asked again until that process is done (at most `SQLITE_WAIT_S`). The
    query that answers is made by a client that verified the schema is MLflow's current one."""

    from mlflow.tracking import MlflowClient

    path = sqlite_path(tracking_uri)
    deadline = time.monotonic() + (SQLITE_WAIT_S if path is not None else 0.0)
    if path is not None and _migrating(path):  # not a client of its own into another's migration
        if _wait_for_migration(path, deadline) and _abandoned(path):
            _replace_abandoned(path)
    while True:
        before = _schema_state(path) if path is not None else None
        try:
            with _env(_QUICK_CHECK):
                MlflowClient(tracking_uri).search_experiments(max_results=1)
            return
        except Exception as err:  # noqa: BLE001 - any failure to reach or open the store is one line
            reason = store_failure(err) or _first_line(err)
            raced = _raced(err) or _unsettled(path, before)
            if raced and time.monotonic() < deadline:
                if _wait_for_migration(path, deadline) and _abandoned(path):
                    _replace_abandoned(path)
                continue
            raise StoreError(f"--mlflow-uri {tracking_uri}: the MLflow store does not answer ({reason}); "
                             + ("another process kept creating it for longer than "
                                f"{SQLITE_WAIT_S:g} s: if none is, remove the new file and rerun" if raced
                                else "start the server or fix the URI")) from None


def _raced(err: BaseException) -> bool:
    """Whether `err` (any link of its chain) is a sign of another process creating the store's tables."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if any(sign in str(err) for sign in RACE_SIGNS):
            return True
        err = err.__cause__ or err.__context__
    return False


def _unsettled(path: Path | None, before: tuple | None) -> bool:
    """Whether the SQLite store at `path` was in another process's hands during an attempt that failed
    (its `_schema_state` `before` it): a writer holds it now, its schema changed meanwhile, or it has
    tables but not MLflow's current schema. MLflow's migrations fail in many ways when two run at once
    (a table or column missing, a row not found, a KeyError naming a column): any failure then may be
    that race, asked again after it."""
    if path is None or not path.is_file():
        return False
    state = _schema_state(path)
    if state is None:  # unreadable now: locked by a writer, or not a database at all (that fails at once)
        return _locked(path)
    return state != before or (state[2] > 0 and state[0] != _head_revision())


def _locked(path: Path) -> bool:
    """Whether a SQLite file cannot be read now only because a writer holds it (True also when it can
    be read again: the writer is done)."""
    try:
        with _read_only(path) as db:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        return "locked" in str(err) or "busy" in str(err)
    return True


def _wait_for_migration(path: Path, deadline: float) -> bool:
    """Wait while another process creates or migrates the SQLite store at `path`: until its schema is
    MLflow's current one, its schema has not changed for `SQLITE_STALL_S` (returns True: stalled), or
    `deadline` (monotonic)."""
    head = _head_revision()
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(SQLITE_RETRY_S)
        state = _schema_state(path)
        if state is not None and head is not None and state[0] == head:
            return False
        if state != last or state is None:  # changed, or unreadable now (locked: being written)
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= SQLITE_STALL_S:
            return True
    return False


def _abandoned(path: Path) -> bool:
    """Whether the SQLite store at `path` is a new one another process left half-made: not at MLflow's
    current schema, a migration's temporary table left over, and no run in it (nothing to lose)."""
    state = _schema_state(path)
    if state is None or not state[1] or state[0] == _head_revision():
        return False
    try:
        with _read_only(path) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return "runs" not in tables or db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    except sqlite3.Error:
        return False


def _replace_abandoned(path: Path) -> None:
    """Replace a new store left half-made (`_abandoned`: two readers that opened the brand-new file at
    once raced MLflow's migrations, and the loser's stopped half-way, for good) by a whole one built
    aside, under the creation lock. Its journal files go with it (they are the half-made one's)."""
    with _creation_lock(path):
        if not _abandoned(path):
            return
        aside = _aside(path)
        try:
            try:
                _build(aside)
            except Exception as err:  # noqa: BLE001 - MLflow failing on a file of its own: one line
                raise StoreError(f"--mlflow-uri {SQLITE_PREFIX}{path}: a new store could not be built beside it to replace "
                                 f"the half-made one ({store_failure(err) or _first_line(err)}); remove {path} and "
                                 "rerun") from None
            for leftover in ("-journal", "-wal", "-shm"):
                path.with_name(path.name + leftover).unlink(missing_ok=True)
            os.replace(aside, path)
        finally:
            for leftover in (aside, aside.with_name(aside.name + "-journal")):
                leftover.unlink(missing_ok=True)
        _dispose(f"{SQLITE_PREFIX}{path}")


def _migrating(path: Path) -> bool:
    """Whether the SQLite store at `path` looks half-way through MLflow's creation: tables but no schema
    revision yet, or a revision older than this MLflow's with a migration's temporary table."""
    state = _schema_state(path)
    if state is None or state[2] == 0:
        return False
    revision, temporary, _ = state
    return revision is None or (bool(temporary) and revision != _head_revision())


def _schema_state(path: Path) -> tuple[str | None, tuple[str, ...], int] | None:
    """(alembic revision, MLflow's temporary migration tables, number of tables) of a SQLite store, read
    without writing; None when it cannot be read now (locked by a writer, or not there)."""
    try:
        with _read_only(path) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            revision = (db.execute("SELECT version_num FROM alembic_version").fetchone() or (None,))[0] \
                if "alembic_version" in tables else None
    except sqlite3.Error:
        return None
    return revision, tuple(sorted(t for t in tables if t.startswith("_alembic_tmp_"))), len(tables)


def _read_only(path: Path):
    """A read-only connection to the SQLite file at `path` (waits at most 1 s for a writer), closed after
    its ``with`` block; reading it never creates or changes the file."""
    return closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1))


def _head_revision() -> str | None:
    """The schema revision this MLflow creates (None if MLflow no longer says)."""
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        return _get_latest_schema_revision()
    except Exception:  # noqa: BLE001 - a private function of MLflow's: without it, waiting ends on a stall
        return None


def create_sqlite(path: Path) -> None:
    """A new SQLite store at `path`, built aside (``.<name>.new-<pid>-<random>``: MLflow's tables, migrated, the
    Default experiment) and linked into place only when whole, under the lock ``.<name>.create.lock``
    beside it (another study, export or report of ours waits for it). A file already there is left as
    it is (`_answers` waits for whoever is creating it). A folder that cannot hold links (some network
    and FAT file systems) gets the store created in place, as MLflow does."""
    if path.exists() and path.stat().st_size > 0:
        return
    with _creation_lock(path):
        if path.exists() and path.stat().st_size > 0:
            return  # created while this process waited for the lock
        aside = _aside(path)
        # FileExistsError: another process opened the path meanwhile (it creates the tables, `_answers`
        # waits for it); any other failure (no links here, MLflow failing aside): created in place by `_answers`.
        try:
            with suppress(Exception):
                _build(aside)
                os.link(aside, path)
        finally:
            for leftover in (aside, aside.with_name(aside.name + "-journal")):
                leftover.unlink(missing_ok=True)


def _aside(path: Path) -> Path:
    """A new file name beside `path` for a store built aside: ``.<name>.new-<pid>-<random>``, never one
    this process used before (MLflow keeps a store per URI for the process, and would take a second
    file at a URI it already created tables at for one that has them)."""
    return path.with_name(f".{path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _build(aside: Path) -> None:
    """A whole new MLflow store at `aside` (its tables, migrated, the Default experiment), closed."""
    from mlflow.tracking import MlflowClient

    try:
        with _env(_QUICK_CHECK):
            MlflowClient(f"{SQLITE_PREFIX}{aside}").search_experiments(max_results=1)
    finally:
        _dispose(f"{SQLITE_PREFIX}{aside}")


def _dispose(tracking_uri: str) -> None:
    """Close MLflow's pooled connections to a database (its engines are cached per URI for the process)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(tracking_uri, None)
    if engine is not None:
        engine.dispose()


@contextmanager
def _creation_lock(path: Path):
    """An exclusive lock on ``.<name>.create.lock`` beside the database, waited for at most `SQLITE_WAIT_S`."""
    import fcntl

    lock = path.with_name(f".{path.name}.create.lock")
    try:
        handle = open(lock, "a+")  # noqa: SIM115 - held until the block ends
    except OSError as err:
        raise ConfigError(f"--mlflow-uri {SQLITE_PREFIX}{path}: cannot write {lock.parent} ({err.strerror})") from None
    deadline = time.monotonic() + SQLITE_WAIT_S
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"--mlflow-uri {SQLITE_PREFIX}{path}: another process has held {lock} for more than "
                                     f"{SQLITE_WAIT_S:g} s while creating the store; wait for it or stop it") from None
                time.sleep(0.1)
        yield
    finally:
        handle.close()


def use_wal(path: Path) -> None:
    """Write-ahead logging on a SQLite database (kept by the file): readers no longer block the writer."""
    with sqlite3.connect(path, timeout=20) as db:
        db.execute("PRAGMA journal_mode=WAL")


def apply_http_defaults() -> None:
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def store_failure(err: BaseException) -> str | None:
    """The innermost store failure in `err`'s chain (MLflow, SQLAlchemy, HTTP or OS) as one line, else
    None. Innermost: MLflow's own message is often a wrapper ("raised as a result of Query-invoked
    autoflush") around the cause that says what to fix ("database is locked")."""
    seen, found = set(), None
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = type(err).__module__.split(".")[0]
        if module in ("mlflow", "sqlalchemy", "requests", "urllib3", "sqlite3") or isinstance(err, OSError):
            found = err
        err = err.__cause__ if err.__cause__ is not None else None if err.__suppress_context__ else err.__context__
    return None if found is None else f"{type(found).__name__}: {_first_line(found)}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
