"""Processes that open a brand-new MLflow SQLite store as a user's ``mlflow ui``, a notebook or a
monitoring script would, for the store tests (tests/test_study_store.py):

    python tests/store_race.py open URI START            # MlflowClient(URI) at time START (epoch s)
    python tests/store_race.py pause URI MARKER SECONDS   # create it, pausing SECONDS inside a migration

``open`` prints ``ok`` or ``FAIL <error>``. ``pause`` runs MLflow's own table creation and migrations,
but holds still for SECONDS right after one batch migration created its temporary table
``_alembic_tmp_experiments`` (writing MARKER then): another process's migration in progress, for as
long as the test needs it."""

import sys
import time
from pathlib import Path


def open_store(uri: str, start: float) -> None:
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - imported before the start, as a running reader has
    from mlflow.tracking import MlflowClient

    while time.time() < start:
        time.sleep(0.001)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
        print("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        print("FAIL", type(err).__name__, (str(err).splitlines() or [""])[0][:200])


def pause_in_migration(uri: str, marker: str, seconds: float) -> None:
    from alembic.ddl.impl import DefaultImpl
    from mlflow.tracking import MlflowClient

    real, paused = DefaultImpl.create_table, []

    def create_table(self, table, **kw):
        result = real(self, table, **kw)
        if table.name == "_alembic_tmp_experiments" and not paused:
            paused.append(1)
            Path(marker).write_text("paused")
            time.sleep(seconds)
        return result

    DefaultImpl.create_table = create_table
    MlflowClient(uri).search_experiments(max_results=1)
    print("ok" if paused else "FAIL never paused")


if __name__ == "__main__":
    if sys.argv[1] == "open":
        open_store(sys.argv[2], float(sys.argv[3]))
    else:
        pause_in_migration(sys.argv[2], sys.argv[3], float(sys.argv[4]))
