"""The MLflow server mode, as on the cluster's head: `mlflow server` on 127.0.0.1 (SQLite backend in a temp
folder, a free port), the study logging to it over HTTP (--mlflow-uri http://...), the runs read back
over HTTP, the export reading it too. The server is stopped afterwards."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from ray_session import ray_session, write_tiny_grid  # noqa: F401
from deepdiff_study import driver
from deepdiff_study.records import Kind, study_runs



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}", "--artifacts-destination", (tmp / "artifacts").as_uri()],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up: {server.stdout.read() if server.poll() is not None else 'timeout'}")
            time.sleep(0.5)
        yield uri, tmp
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: its own process group
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.mark.slow
def test_the_study_logs_to_a_tracking_server_over_http(mlflow_server, ray_session, tmp_path, capsys):
    uri, server_dir = mlflow_server
    grid = write_tiny_grid(tmp_path)
    code = driver.main(["--grid", str(grid), "--preset", "quick", "--pairs", "1", "--variants", "raw_d,aux",
                        "--aux", "regression", "--samples", "2", "--max-epochs", "2", "--synthetic-genes", "100",
                        "--storage", str(tmp_path / "results"), "--mlflow-uri", uri, "--experiment", "served"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert not list(tmp_path.glob("*.db")), "nothing written to a local database"
    assert f"MLflow:        {uri}" in out and f"Look at it:    open {uri}" in out

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("served")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's artifact store decides
    parents = study_runs(client, experiment.experiment_id, Kind.GRID_CELL)
    children = study_runs(client, experiment.experiment_id, Kind.TRIAL)
    assert sorted(p.data.tags["grid_cell"] for p in parents) == ["p1-aux-regression", "p1-raw_d"]
    assert len(children) == 4 and len({c.data.tags["trial_id"] for c in children}) == 4
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["status"] in ("completed", "pruned")
        epochs = int(child.data.metrics["epoch"])
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "valid_pcc")]
        assert sorted(steps) == list(range(1, epochs + 1))
    assert all(p.info.status == "FINISHED" and "best_valid_pcc" in p.data.metrics for p in parents)
    assert (server_dir / "server.db").is_file()  # the runs are in the server's backend store


@pytest.mark.slow
def test_export_reads_the_server(mlflow_server, tmp_path):
    from deepdiff_study import export

    uri, _ = mlflow_server
    if MlflowClient(uri).get_experiment_by_name("served") is None:
        pytest.skip("needs the study of the previous test")
    table = export.export_best(uri, "served", tmp_path / "best")
    assert len(table) == 2 and (tmp_path / "best" / "summary.csv").is_file()
