"""The study's MLflow store, checked before anything starts and watched while the study runs. MLflow only
(imported when a check runs: this module itself imports nothing heavy, so a tool's ``--help`` is fast).

- `check_store` (a study writes) and `check_readable` (export and report read): a mistake in the URI
  (an unknown scheme, a SQLite path whose folder is missing, that is a directory, a symlink loop or
  not a SQLite database, a folder that cannot be written) is a `ConfigError` before anything else
  runs, never a folder created wherever the URI points or minutes of retries; a store that does not
  answer (a tracking server down, a database that cannot be opened) is a `StoreError` within seconds.
- SQLite stores are switched to write-ahead logging, so a reader (``mlflow ui``, a script) never
  blocks the study's writes.
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
from contextlib import contextmanager
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
SQLITE_ATTEMPTS = 3  # a new SQLite store: its creation may race a reader's (see `_answers`)


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
    answers within seconds; then SQLite gets write-ahead logging."""
    path = check_uri(tracking_uri, write=True)
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
    """One query within seconds. A new SQLite store is created by the first client that opens it; a
    reader opening it at the same moment (``mlflow ui``, a script polling it) races that creation
    ("duplicate column name"), so a SQLite store is asked again a few times before it counts as failed."""

    from mlflow.tracking import MlflowClient

    attempts = SQLITE_ATTEMPTS if sqlite_path(tracking_uri) is not None else 1
    for attempt in range(1, attempts + 1):
        try:
            with _env(_QUICK_CHECK):
                MlflowClient(tracking_uri).search_experiments(max_results=1)
            return
        except Exception as err:  # any failure to reach or open the store is one line
            if attempt < attempts:
                time.sleep(1.0)
                continue
            raise StoreError(f"--mlflow-uri {tracking_uri}: the MLflow store does not answer "
                             f"({store_failure(err) or _first_line(err)}); start the server or fix the URI") from None


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
