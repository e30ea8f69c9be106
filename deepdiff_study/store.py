"""The study's MLflow store, checked before anything starts and watched while the study runs. MLflow only.

- `check_store`: a SQLite file's folder must exist and be writable (MLflow would otherwise create
  folders wherever the URI points, or retry for minutes); a tracking server must answer within a
  few seconds. One `StoreError` line either way, before Ray starts.
- SQLite stores are switched to write-ahead logging, so a reader (``mlflow ui``, a script) never
  blocks the study's writes.
- `store_failure`: whether an exception that ended a study came from the store (server gone, disk
  full, read-only database), so the driver can stop with one line that says to ``--resume``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from deepdiff.errors import DeepDiffError

SQLITE_PREFIX = "sqlite:///"
# How hard the MLflow client retries a tracking server during a study (unless the user set these):
# a few retries ride out a restart of the server; minutes of silence help nobody.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_QUICK_CHECK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class StoreError(DeepDiffError):
    """The MLflow tracking store cannot be used."""


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri[len(SQLITE_PREFIX):]) if tracking_uri.startswith(SQLITE_PREFIX) else None


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


def check_store(tracking_uri: str) -> None:
    """A one-line `StoreError` unless the store can be written (SQLite) or answers (server), within seconds."""
    from mlflow.tracking import MlflowClient

    path = sqlite_path(tracking_uri)
    if path is not None:
        folder = path.parent
        if not folder.is_dir():
            raise StoreError(f"--mlflow-uri {tracking_uri}: folder {folder} does not exist; create it or choose another path")
        if path.exists() and not path.is_file():
            raise StoreError(f"--mlflow-uri {tracking_uri}: {path} is not a file")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise StoreError(f"--mlflow-uri {tracking_uri}: cannot write {path if path.exists() else folder}; choose a writable place")
    elif not tracking_uri.startswith(("http://", "https://", "databricks", "postgresql", "mysql", "mssql")):
        raise StoreError(f"--mlflow-uri {tracking_uri}: expected sqlite:///PATH or http(s)://HOST:PORT of an MLflow server")
    for attempt in range(CREATE_RACE_ATTEMPTS):
        try:
            with _env(_QUICK_CHECK):
                MlflowClient(tracking_uri).search_experiments(max_results=1)
            break
        except Exception as err:  # any failure to reach or open the store is one line
            if path is not None and _created_meanwhile(err) and attempt + 1 < CREATE_RACE_ATTEMPTS:
                time.sleep(1.0)  # another process (`mlflow ui`, a reader) is creating the same new database
                continue
            raise StoreError(f"--mlflow-uri {tracking_uri}: the MLflow store does not answer ({_first_line(err)}); "
                             "start the server or fix the URI") from None
    if path is not None:
        use_wal(path)


CREATE_RACE_ATTEMPTS = 3


def _created_meanwhile(err: BaseException) -> bool:
    """MLflow lost a race to create a new SQLite database's tables (or to lock it) with another process."""
    text = str(err)
    return "already exists" in text or "database is locked" in text


def use_wal(path: Path) -> None:
    """Write-ahead logging on a SQLite database (kept by the file): readers no longer block the writer."""
    with sqlite3.connect(path, timeout=20) as db:
        db.execute("PRAGMA journal_mode=WAL")


def apply_http_defaults() -> None:
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def store_failure(err: BaseException) -> str | None:
    """The first line of the store failure in `err`'s chain (MLflow, SQLAlchemy, HTTP or OS), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        module = type(err).__module__.split(".")[0]
        if module in ("mlflow", "sqlalchemy", "requests", "urllib3", "sqlite3") or isinstance(err, OSError):
            return f"{type(err).__name__}: {_first_line(err)}"
        err = err.__cause__ or err.__context__
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
