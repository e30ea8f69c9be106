"""Shared storage for real: a study whose --storage is an s3:// URI (a local S3 endpoint, moto's server on
127.0.0.1, started and stopped here), killed with SIGKILL, every local trace of it on the driver's
machine deleted (Ray's session folder with Tune's staging files, the synthetic data and cache), then
finished with --resume from the bucket alone: every trial exactly once in MLflow, every trial ended in
the bucket's Tune state, checkpoints in the bucket."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ray_session import TUNE_DIR, kill_after_trials, write_tiny_grid
from deepdiff_study.records import Kind, study_runs


BUCKET = "study-bucket"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """A loopback S3 endpoint with an empty bucket; yields (endpoint host:port, boto3 client)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # counts uploads
        yield f"{host}:{port}", client
    finally:
        server.stop()


def bucket_keys(client, prefix: str) -> list[str]:
    keys, token = [], None
    while True:
        page = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def ended_at(uri: str, experiment: str) -> dict[str, float]:
    """When (epoch seconds) each trial MLflow recorded as ended ended."""
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    return {r.data.tags["trial_id"]: r.info.end_time / 1000 for r in study_runs(client, exp_id, Kind.TRIAL)
            if r.data.tags.get("status") in ("completed", "pruned", "failed") and r.info.end_time}


def with_kernel_cache(home: Path) -> None:
    """The compiled CPU kernel of this machine in `home`'s cache (not study state: a new head node builds
    it once). Built afresh under a new HOME it took 3.5 minutes on the shared test machine, in every worker."""
    built = Path.home() / ".cache" / "deepdiff-tune" / "kernels"
    if built.is_dir():
        shutil.copytree(built, home / ".cache" / "deepdiff-tune" / "kernels")


# Tune (2.60) saves its experiment snapshot every max(10 s, 19 x the time a save took) (TUNE_GLOBAL_CHECKPOINT_S
# "auto") and starts its upload at once unless the previous upload still runs (SyncConfig.sync_period does
# not throttle it). A trial that ended more than a period and two uploads before a kill is in the bucket.
RERUN_WINDOW_S = 30


@pytest.mark.slow
def test_study_on_s3_resumes_from_the_bucket_alone_after_sigkill(s3, tmp_path):
    endpoint, client = s3
    # pyarrow's S3 options ride on the URI. allow_delayed_open: a small file goes up in one PUT (moto
    # 5.2's CompleteMultipartUpload answer is read by pyarrow 25 as an error; every file here is small).
    storage = f"s3://{BUCKET}/results?endpoint_override={endpoint}&scheme=http&allow_delayed_open=true"
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths live under it
    home = tmp_path / "home"  # the driver's ~ (its local work dir for synthetic data and the cache)
    env = {**os.environ, **CREDENTIALS, "RAY_TMPDIR": ray_tmp, "HOME": str(home)}
    grid = write_tiny_grid(tmp_path)
    command = [sys.executable, str(TUNE_DIR / "run_ablation.py"), "--grid", str(grid), "--preset", "quick",
               "--pairs", "1", "--variants", "raw_d,aux", "--aux", "regression", "--samples", "4", "--max-epochs", "3",
               "--grace-period", "1", "--synthetic-genes", "200", "--experiment", "s3study", "--storage", storage,
               "--mlflow-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]
    with_kernel_cache(home)
    try:
        kill_after_trials(command, 3, "s3study", cwd=tmp_path, env=env)
        killed_at = time.time()
        ended_before_kill = ended_at(f"sqlite:///{tmp_path / 'mlruns.db'}", "s3study")
        stored = bucket_keys(client, "results/s3study/")
        assert "results/s3study/tuner.pkl" in stored and "results/s3study/deepdiff-study.json" in stored, stored
        assert any(Path(ray_tmp).rglob("driver_artifacts")), "Tune's staging folder was under RAY_TMPDIR"
        time.sleep(2)  # let the killed driver's Ray processes notice and exit before their files go
        shutil.rmtree(ray_tmp)  # Tune's staging copy of the study (driver_artifacts) is in here
        shutil.rmtree(home)  # the synthetic pair and the Parquet cache: rebuilt from the manifest
        with_kernel_cache(home)
        assert not (tmp_path / "results").exists(), "nothing of the study is in a local folder"

        resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert f"Tune results:  s3://{BUCKET}/results/s3study" in resumed.stdout
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    mlflow = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    exp_id = mlflow.get_experiment_by_name("s3study").experiment_id
    children = study_runs(mlflow, exp_id, Kind.TRIAL)
    ids = Counter(r.data.tags["trial_id"] for r in children)
    assert set(ids.values()) == {1}, ids  # never a duplicated trial
    # Finished work run again: trials MLflow recorded as ended before the kill that the bucket's snapshot
    # did not hold (the resume deletes their runs and does the work again under new trial ids). Those that
    # ended more than RERUN_WINDOW_S before the kill were in an uploaded snapshot.
    rerun = set(ended_before_kill) - set(ids)
    old = {t for t, at in ended_before_kill.items() if at < killed_at - RERUN_WINDOW_S}
    uploads = len(client.list_object_versions(Bucket=BUCKET, Prefix="results/s3study/experiment_state-").get("Versions", []))
    print(f"\nS3 sigkill: {len(ended_before_kill)} trials ended before the kill ({len(old)} of them over "
          f"{RERUN_WINDOW_S} s before it), {len(rerun)} ran again after --resume; ended "
          f"{sorted(round(killed_at - at, 1) for at in ended_before_kill.values())} s before the kill; "
          f"snapshot uploads of both sessions: {uploads}")
    assert not rerun & old, (sorted(rerun), ended_before_kill, killed_at)
    assert all(r.data.tags["status"] in ("completed", "pruned") for r in children), (
        [(r.data.tags["trial_id"], r.data.tags["status"], r.data.tags.get("status_reason")) for r in children], resumed.stdout[-3000:])
    state_key = max(k for k in bucket_keys(client, "results/s3study/") if k.rsplit("/", 1)[-1].startswith("experiment_state-"))
    state = json.loads(client.get_object(Bucket=BUCKET, Key=state_key)["Body"].read())
    trials = [json.loads(t) if isinstance(t, str) else t for t, _ in state["trial_data"]]
    assert {t["trial_id"] for t in trials} == set(ids)
    assert {t["status"] for t in trials} == {"TERMINATED"}, (  # MLflow and Tune agree on every trial, all ended
        [(t["trial_id"], t["status"], t.get("error_filename")) for t in trials], resumed.stdout[-3000:])
    # A SIGKILL while Tune uploads its snapshot to the bucket can leave the searcher's save newer than the
    # trial list (the suggestion counted, the trial missing): the searcher's reconcile reopens that trial.
    assert len(children) == 8, [(r.data.tags["trial_id"], r.data.tags["grid_cell"]) for r in children]
    keys = bucket_keys(client, "results/s3study/")
    checkpoints = Counter(k.split("/")[2] for k in keys if "/checkpoint_" in k and k.endswith("last.pt"))
    # Every trial's checkpoint went to the bucket, and once all ended only its last one is kept. (A trial
    # Tune never saved before the kill leaves its folder behind; the study ran that work again.)
    assert {f"{t['config']['grid_cell']}-{t['trial_id']}" for t in trials} <= set(checkpoints), checkpoints
    assert set(checkpoints.values()) == {1}, checkpoints
    # each grid cell's best model was read from its trial's checkpoint in the bucket and kept in MLflow
    cells = study_runs(mlflow, exp_id, Kind.GRID_CELL)
    assert [c.data.tags.get("model", c.data.tags.get("model_missing")) for c in cells] == ["model/best.pt"] * 2
    assert all([a.path for a in mlflow.list_artifacts(c.info.run_id, "model")] == ["model/best.pt"] for c in cells)
