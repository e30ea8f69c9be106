"""Restarting a study: `deepdiff_study.resume.reconcile` makes MLflow's trial runs agree with the trials
Tune saved (a real SQLite store; stand-ins for Tune's trials with the attributes reconcile reads), and
the driver's store check survives another process creating the same new database."""

from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from deepdiff_study.records import Kind, Tag, study_runs
from deepdiff_study.resume import reconcile


@pytest.mark.slow
def test_reconcile_closes_deletes_and_records_what_tune_knows(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("s")

    def run(trial_id: str, status: str):
        r = client.create_run(exp, tags={Tag.KIND: Kind.TRIAL, Tag.TRIAL_ID: trial_id, Tag.GRID_CELL: "p1-raw_d"})
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)
        return r.info.run_id

    ids = {t: run(t, s) for t, s in (("ended-in-tune", "RUNNING"), ("still-running", "RUNNING"), ("done", "FINISHED"),
                                      ("unsaved-running", "RUNNING"), ("unsaved-ended", "FINISHED"))}
    trials = [SimpleNamespace(trial_id=t, status=s, last_result={"epoch": 2, "status": "completed"}, config={"epochs": 2})
              for t, s in (
        ("ended-in-tune", "TERMINATED"), ("still-running", "RUNNING"), ("done", "TERMINATED"),
        ("ended-while-store-failed", "TERMINATED"))]
    finished, forgotten = [], []
    reconcile(client, exp, trials, finish=lambda trial, status, reason: finished.append(trial.trial_id),
              forget=forgotten.append)
    assert sorted(finished) == ["ended-in-tune", "ended-while-store-failed"]
    assert sorted(forgotten) == ["unsaved-ended", "unsaved-running"]  # Tune runs that work again, under new ids
    live = {r.data.tags[Tag.TRIAL_ID] for r in study_runs(client, exp, Kind.TRIAL)}
    assert live == {"ended-in-tune", "still-running", "done"}
    assert client.get_run(ids["unsaved-ended"]).info.lifecycle_stage == "deleted"  # deleted, not purged


@pytest.mark.slow
def test_the_store_check_rides_out_another_process_creating_the_same_database(tmp_path, monkeypatch):
    """`mlflow ui` or a reader opening a new SQLite file at the same moment as the driver: one of the two
    loses the race to create MLflow's tables; the driver's store check tries again instead of failing."""
    import pytest
    from mlflow.tracking import MlflowClient

    from deepdiff_study import store

    real, calls = MlflowClient.search_experiments, []

    def racing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.OperationalError) table logged_models already exists")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_experiments", racing)
    monkeypatch.setattr(store, "SQLITE_WAIT_S", 1.0)  # a race lasting longer is a failure
    store.check_store(f"sqlite:///{tmp_path / 'm.db'}")
    assert len(calls) == 2

    def broken(self, *args, **kwargs):
        raise RuntimeError("(sqlite3.OperationalError) table logged_models already exists")

    monkeypatch.setattr(MlflowClient, "search_experiments", broken)
    with pytest.raises(store.StoreError, match="the MLflow store does not answer"):
        store.check_store(f"sqlite:///{tmp_path / 'n.db'}")


@pytest.mark.slow
def test_a_study_short_of_trials_is_interrupted_unless_tune_failed_them_before_mlflow_saw_them(tmp_path):
    """After Ctrl-C or SIGTERM Tune marks the trials it stops TERMINATED, so the driver counts from MLflow:
    planned trials not ended there are unfinished (exit 130, --resume), unless Tune failed them unseen."""
    from deepdiff_study.summary import trial_shortfall

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("s")
    for trial_id, status in (("a", "completed"), ("b", "pruned"), ("c", "running")):
        client.create_run(exp, tags={Tag.KIND: Kind.TRIAL, Tag.TRIAL_ID: trial_id, Tag.STATUS: status})
    runs = study_runs(client, exp, Kind.TRIAL)
    assert trial_shortfall(runs, 5, set()) == (3, 0)  # c running, two never started
    assert trial_shortfall(runs, 5, {"d", "e"}) == (1, 2)  # d, e failed by Tune unseen; c still runs
    assert trial_shortfall(runs, 4, {"c", "d"}) == (1, 1)  # c has a record
    assert trial_shortfall(runs, 2, set()) == (0, 0)
