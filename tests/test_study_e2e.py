"""Tiny real studies on local Ray (2 CPUs, started once per session): MLflow record, ASHA, failures,
the export round trip, and resume after a SIGKILL of the driver."""

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from ray_session import TINY_GRID, TUNE_DIR, by_value, kill_after_trials, ray_session, write_tiny_grid  # noqa: F401
from deepdiff.config import applicable_fields, load_config
from deepdiff_study import driver as run_ablation
from deepdiff_study.records import Kind, decode_params, study_runs

by_value(__name__)  # the test trainables below reach Ray workers as code, not as an import of tests/


EPOCH_METRICS = ("train_loss", "valid_pcc", "valid_mse", "test_pcc", "test_mse")


def study_args(tmp: Path, grid: Path, *extra: str) -> list[str]:
    return [
        "--grid", str(grid), "--preset", "quick", "--pairs", "1", "--synthetic-genes", "100",
        "--storage", str(tmp / "results"), "--mlflow-uri", f"sqlite:///{tmp / 'mlruns.db'}", *extra,
    ]


def runs_of(tmp: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    return client, study_runs(client, exp_id, Kind.GRID_CELL), study_runs(client, exp_id, Kind.TRIAL)


@pytest.fixture(scope="module")
def tiny_study(ray_session, tmp_path_factory):
    """3 grid cells (raw_d, aux regression, aux_siamese regression m=1) x 4 trials x <= 3 epochs, ~100 genes."""
    tmp = tmp_path_factory.mktemp("tiny_study")
    grid = write_tiny_grid(tmp, TINY_GRID + "cell_types: {E123: K562, E003: H1}\n")
    args = study_args(tmp, grid, "--variants", "raw_d,aux,aux_siamese", "--aux", "regression", "--margins", "1",
                      "--samples", "4", "--max-epochs", "3", "--grace-period", "1", "--reduction-factor", "2",
                      "--experiment", "tiny", "--precision", "float32")
    assert run_ablation.main(args) == 0
    return tmp


@pytest.mark.slow
def test_one_parent_run_per_grid_cell_and_one_child_run_per_trial(tiny_study):
    client, parents, children = runs_of(tiny_study, "tiny")
    assert sorted(r.data.tags["grid_cell"] for r in parents) == ["p1-aux-regression", "p1-aux_siamese-regression-m1", "p1-raw_d"]
    assert len(children) == 12
    assert len({r.data.tags["trial_id"] for r in children}) == 12
    by_id = {r.info.run_id: r for r in parents}
    for parent in parents:
        tags = parent.data.tags
        assert parent.info.status == "FINISHED"
        # synthetic data never carries a real epigenome's name; the pair it stands in for is a tag
        assert {k: tags[k] for k in ("pair", "epigenome_a", "epigenome_b", "imitates")} == {
            "pair": "1", "epigenome_a": "syn1A", "epigenome_b": "syn1B", "imitates": "E123-E003"}
        assert (tags["variant"], tags["aux_mode"], tags["margin"]) in {
            ("raw_d", "-", "-"), ("aux", "regression", "-"), ("aux_siamese", "regression", "1")}
        assert (tags["cell_type_a"], tags["cell_type_b"]) == ("K562", "H1")  # the names of the pair it imitates
        space = json.loads(tags["search_space"])  # the grid file's searched params that apply to the variant
        assert [p["name"] for p in space] == ["lr", "batch_size", "dropout", "level1_hidden", "level2_hidden",
                                              "input_transform", *{"raw_d": [], "aux": ["aux_weight"],
                                                                   "aux_siamese": ["aux_weight", "gamma"]}[tags["variant"]]]
        assert space[0] == {"name": "lr", "kind": "log_uniform", "low": 1e-4, "high": 3e-2}
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(mine) == 4 and all(c.data.tags["grid_cell"] == tags["grid_cell"] for c in mine)
        best = max(c.data.metrics["best_valid_pcc"] for c in mine if c.data.tags["status"] != "failed")
        assert parent.data.metrics["best_valid_pcc"] == pytest.approx(best)
        winner = [c for c in mine if c.info.run_id == tags["best_run_id"]][0]
        assert parent.data.metrics["best_test_pcc"] == pytest.approx(winner.data.metrics["best_test_pcc"])
        assert parent.data.params == winner.data.params  # the grid cell's run shows its best trial's config
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in by_id
        variant = child.data.tags["variant"]
        assert set(child.data.params) == set(applicable_fields(variant))  # no margin on raw_d, no aux_mode ...
        assert ("margin" in child.data.params) == (variant == "aux_siamese")
        assert ("aux_mode" in child.data.params) == (variant != "raw_d")
        assert child.data.params["precision"] == "float32"  # --precision: every trial's config
        assert child.data.tags["compute_dtype"] == "float32"  # what the worker's steps computed in
        status = child.data.tags["status"]
        assert status in ("completed", "pruned")
        assert child.info.status == "FINISHED"  # a pruned trial is a result, not a crash (red cross)
        if status == "pruned":
            assert child.data.tags["mlflow.note.content"].startswith("Pruned (not a failure)")
        assert child.data.tags["status_reason"]


@pytest.mark.slow
def test_an_ended_trial_s_kept_checkpoint_holds_its_last_and_its_best_epoch(tiny_study):
    """Trials checkpoint only where they may end (last epoch, ASHA stop epochs) or every few minutes;
    Tune keeps one checkpoint per trial, and it is the one of the trial's end, with its best model."""
    _, _, children = runs_of(tiny_study, "tiny")
    for child in children:
        tags = child.data.tags
        (folder,) = (tiny_study / "results" / "tiny").glob(f"{tags['grid_cell']}-{tags['trial_id']}")
        (checkpoint,) = folder.glob("checkpoint_*")
        last = torch.load(checkpoint / "last.pt", weights_only=True)
        best = torch.load(checkpoint / "best.pt", weights_only=True)
        assert last["epoch"] == int(child.data.metrics["epoch"]), tags
        assert best["epoch"] == int(child.data.metrics["best_epoch"]), tags


def test_checkpoints_are_due_where_a_trial_may_end_or_after_a_while():
    from deepdiff.results import EpochResult, EpochStatus
    from deepdiff_study.trainable import CHECKPOINT_SECONDS, checkpoint_due

    def epoch(n, status=EpochStatus.RUNNING):
        nan = math.nan
        return EpochResult(n, *(nan,) * 8, n, *(nan,) * 3, 1.0, status)

    stops = frozenset({2, 4})
    assert [checkpoint_due(epoch(n), stops, 1.0) for n in range(1, 6)] == [False, True, False, True, False]
    assert checkpoint_due(epoch(5, EpochStatus.COMPLETED), stops, 1.0)
    assert checkpoint_due(epoch(3, EpochStatus.EARLY_STOPPED), stops, 1.0)
    assert checkpoint_due(epoch(3), stops, CHECKPOINT_SECONDS)


@pytest.mark.slow
def test_published_setting_is_the_first_trial_of_every_cell(tiny_study):
    _, _, children = runs_of(tiny_study, "tiny")
    for cell in {c.data.tags["grid_cell"] for c in children}:
        first = min((c for c in children if c.data.tags["grid_cell"] == cell), key=lambda c: c.info.start_time)
        assert (first.data.params["lr"], first.data.params["batch_size"], first.data.params["dropout"]) == ("0.001", "32", "0.1")


@pytest.mark.slow
def test_every_epoch_is_logged_with_its_step(tiny_study):
    client, _, children = runs_of(tiny_study, "tiny")
    for child in children:
        epochs = int(child.data.metrics["epoch"])
        expected = 3 if child.data.tags["status"] == "completed" else epochs
        assert 1 <= epochs <= 3 and epochs == expected
        for name in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, name)]
            assert sorted(steps) == list(range(1, epochs + 1)), (name, steps)


@pytest.mark.slow
def test_asha_stopped_trials_early(tiny_study):
    _, _, children = runs_of(tiny_study, "tiny")
    statuses = Counter(c.data.tags["status"] for c in children)
    assert statuses["pruned"] >= 1, statuses
    for child in children:
        if child.data.tags["status"] == "pruned":
            assert child.data.metrics["epoch"] < 3
            assert "ASHA" in child.data.tags["status_reason"]


@pytest.mark.slow
def test_a_second_run_under_the_same_name_is_refused(tiny_study, capsys):
    args = study_args(tiny_study, write_tiny_grid(tiny_study), "--experiment", "tiny", "--samples", "1")
    assert run_ablation.main(args) == 2
    assert "already saved" in capsys.readouterr().err
    # Its Tune folder gone (another --storage, or tune_results deleted), MLflow still holding its runs: both
    # commands refuse and name the same way out, and neither writes anything (issue 15: a circle before).
    elsewhere = tiny_study / "elsewhere"
    assert run_ablation.main([*args, "--storage", str(elsewhere)]) == 2
    assert "already holds runs of a study of that name" in capsys.readouterr().err
    assert run_ablation.main([*args, "--storage", str(elsewhere), "--resume"]) == 2
    assert "under another --experiment if MLflow already holds this name" in capsys.readouterr().err
    assert not elsewhere.exists()


@pytest.mark.slow
def test_export_round_trip_reproduces_the_valid_pcc(tiny_study, tmp_path):
    from deepdiff import cli
    from deepdiff_study import export

    table = export.export_best(f"sqlite:///{tiny_study / 'mlruns.db'}", "tiny", tmp_path / "best")
    assert len(table) == 3
    for kind in ("summary.csv", "summary.parquet"):
        assert (tmp_path / "best" / kind).is_file()
    frame = pd.read_parquet(tmp_path / "best" / "summary.parquet")
    assert {"variant", "pair", "aux_mode", "margin", "best_valid_pcc", "best_test_pcc", "trial_id", "run_id"} <= set(frame.columns)
    assert frame.loc[frame["variant"] == "aux_siamese", "margin"].tolist() == [1.0]
    assert frame.loc[frame["variant"] == "raw_d", "aux_mode"].isna().all()
    row = frame.sort_values("best_valid_pcc").iloc[-1]
    config = tmp_path / "best" / row["config"]
    model_cfg, train_cfg, data = load_config(config)
    assert train_cfg.epochs == row["epochs_trained"]
    assert Path(data["dir"]).is_dir() and data["synthetic"] == {"genes": 100, "seed": 0, "signal": "realistic", "imitates": "E123-E003"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial (Ray gives a 1-CPU trial one thread): same float summation order
    try:
        assert cli.main(["train", "--config", str(config), "--device", "cpu", "--out", str(tmp_path / "again")]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "again" / "result.json").read_text())
    assert result["valid_pcc"] == pytest.approx(row["best_valid_pcc"], abs=1e-6)
    assert result["test_pcc"] == pytest.approx(row["best_test_pcc"], abs=1e-6)


@pytest.mark.slow
def test_an_export_is_written_whole_or_not_at_all(tiny_study, tmp_path, capsys, monkeypatch):
    """A full disk halfway used to leave a partial export (an earlier one half replaced); --overwrite
    left configs of grid cells the new export no longer has."""
    import errno

    from deepdiff_study import export

    uri, out = f"sqlite:///{tiny_study / 'mlruns.db'}", tmp_path / "best"
    assert export.main(["--mlflow-uri", uri, "--experiment", "tiny", "--out", str(out)]) == 0
    (out / "configs" / "p9-stale.yaml").write_text("an earlier export's grid cell")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)  # the last file written
    assert export.main(["--mlflow-uri", uri, "--experiment", "tiny", "--out", str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {out}: cannot write there (No space left on device)"
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert export.main(["--mlflow-uri", uri, "--experiment", "tiny", "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()  # a folder the export created is not left behind
    monkeypatch.undo()
    assert export.main(["--mlflow-uri", uri, "--experiment", "tiny", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "configs").iterdir()) == sorted(f"{k}.yaml" for k in
                                                                          pd.read_csv(out / "summary.csv")["grid_cell"])


# ---- failures -------------------------------------------------------------------------------------

def flaky_train(config, pairs, ended=None):
    """The real trainable, except the published (first) trial of two cells: one raises, one diverges."""
    from deepdiff_study.trainable import train_trial

    first = config["lr"] == 1e-3 and config["batch_size"] == 32 and config["dropout"] == 0.1
    if first and config["grid_cell"] == "p1-raw_d":
        raise ValueError("planted failure for the test")
    if first and config["grid_cell"] == "p1-raw_c":
        tune.report({"epoch": 1, "train_loss": math.nan, "best_valid_pcc": -math.inf, "status": "nan"})
        return
    train_trial(config, pairs, ended)


@pytest.mark.slow
def test_failed_trials_are_recorded_with_their_reason_and_the_study_goes_on(ray_session, tmp_path):
    grid = write_tiny_grid(tmp_path)
    args = run_ablation.build_parser().parse_args(study_args(
        tmp_path, grid, "--variants", "raw_d,raw_c", "--samples", "2", "--max-epochs", "2", "--experiment", "flaky",
        "--max-failures", "1"))
    assert run_ablation.run(args, train_fn=flaky_train) == 0
    _, parents, children = runs_of(tmp_path, "flaky")
    assert len(parents) == 2 and len(children) == 4
    failed = {c.data.tags["grid_cell"]: c for c in children if c.data.tags["status"] == "failed"}
    assert set(failed) == {"p1-raw_d", "p1-raw_c"}
    assert all(c.info.status == "FAILED" for c in failed.values())
    assert "ValueError: planted failure for the test" in failed["p1-raw_d"].data.tags["status_reason"]
    assert failed["p1-raw_d"].data.tags["retries"] == "1"  # --max-failures 1: retried once, then failed
    assert "NaN at epoch 1" in failed["p1-raw_c"].data.tags["status_reason"]
    others = [c for c in children if c.data.tags["status"] != "failed"]
    assert len(others) == 2 and all(c.data.tags["status"] == "completed" for c in others)
    assert all(math.isfinite(p.data.metrics["best_valid_pcc"]) for p in parents)


# ---- resume after SIGKILL -------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_study_without_repeating_a_trial(tmp_path):
    """The driver runs as a subprocess (its own local Ray); killed with SIGKILL after a few trials ended."""
    grid = write_tiny_grid(tmp_path)
    args = study_args(tmp_path, grid, "--variants", "raw_d,aux", "--aux", "regression", "--samples", "6",
                      "--max-epochs", "4", "--grace-period", "1", "--synthetic-genes", "200", "--experiment", "killed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, nothing else
    command = [sys.executable, str(TUNE_DIR / "run_ablation.py"), *args]
    kill_after_trials(command, 3, "killed", cwd=tmp_path, env=env)
    _, _, before = runs_of(tmp_path, "killed")
    finished_before = {r.data.tags["trial_id"]: r.info.end_time for r in before if r.info.status != "RUNNING"}
    # MLflow is written in the background: a SIGKILL loses the writes still queued (the third trial's end,
    # often), which --resume rebuilds from Tune's state below; what MLflow held is kept as it was.
    assert len(finished_before) >= 1

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Token authentication" not in resumed.stderr  # Ray's start-up warning is quieted
    client, parents, children = runs_of(tmp_path, "killed")
    ids = Counter(r.data.tags["trial_id"] for r in children)
    assert len(children) == 12 and all(n == 1 for n in ids.values()), ids
    assert all(r.info.status in ("FINISHED", "KILLED", "FAILED") for r in [*children, *parents])
    for run in children:  # trials finished before the kill were kept, not run again
        if run.data.tags["trial_id"] in finished_before:
            assert run.info.end_time == finished_before[run.data.tags["trial_id"]]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "valid_pcc")]
        assert len(steps) == len(set(steps)), steps
    state = max((tmp_path / "results" / "killed").glob("experiment_state-*.json"))
    trials = [json.loads(t) if isinstance(t, str) else t for t, _ in json.loads(state.read_text())["trial_data"]]
    assert {t["trial_id"] for t in trials} == set(ids)
    assert {t["status"] for t in trials} <= {"TERMINATED", "ERROR"}


def crash_once(config, pairs, ended=None):
    """Crashes after epoch 2 the first time; Tune's retry (--max-failures) resumes from the checkpoint."""
    from deepdiff_study.trainable import train_trial

    if tune.get_checkpoint() is None:
        train_trial({**config, "epochs": 2}, pairs, ended)  # `epochs` may differ when resuming a checkpoint
        raise RuntimeError("simulated crash after epoch 2")
    train_trial(config, pairs, ended)


@pytest.mark.slow
def test_a_crashed_trial_is_retried_from_its_checkpoint_and_ends_as_if_never_interrupted(ray_session, tmp_path):
    from deepdiff.data import load_pair
    from deepdiff.train import fit

    grid = write_tiny_grid(tmp_path)
    args = run_ablation.build_parser().parse_args(study_args(
        tmp_path, grid, "--variants", "raw_d", "--samples", "1", "--max-epochs", "4", "--experiment", "crash",
        "--max-failures", "1"))
    assert run_ablation.run(args, train_fn=crash_once) == 0
    client, _, children = runs_of(tmp_path, "crash")
    (run,) = children
    assert (run.data.tags["status"], run.data.tags["retries"]) == ("completed", "1")
    assert "simulated crash" in run.data.tags["last_error"]
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "valid_pcc")}
    assert sorted(logged) == [1, 2, 3, 4]

    model_cfg, train_cfg = decode_params(run.data.params)
    data = load_pair(json.loads(run.data.tags["data"])["dir"], "syn1A", "syn1B")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = {r.epoch: r.valid_pcc for r in fit(model_cfg, train_cfg, data, device="cpu")}
    finally:
        torch.set_num_threads(threads)
    assert straight == pytest.approx(logged, abs=1e-6)


# ---- a worker slow to let go of its trial ---------------------------------------------------------

def slow_to_end(config, pairs, ended=None):
    """The real trainable, whose ending (normal or stopped by ASHA) takes 4 s, as its clean-up (freeing
    memory, removing its work folder) can on a loaded machine."""
    import time

    from deepdiff_study.trainable import train_trial

    try:
        train_trial(config, pairs, ended)
    finally:
        time.sleep(4)


@pytest.mark.slow
def test_a_worker_slow_to_end_its_trial_is_reused_without_losing_the_next(ray_session, tmp_path, capsys):
    """Tune reuses a worker for the next trial only if the last one's thread ended within
    TUNE_FUNCTION_THREAD_TIMEOUT_S (2 s by default); past that the next trial was marked ERROR before it
    started, with no callback: no MLflow run, no progress line, missing from the closing table (10 of the
    quick start's 60 trials on a loaded 2-core machine)."""
    grid = write_tiny_grid(tmp_path)
    args = run_ablation.build_parser().parse_args(study_args(
        tmp_path, grid, "--variants", "raw_d", "--samples", "4", "--max-epochs", "2", "--experiment", "slow-end"))
    assert run_ablation.run(args, train_fn=slow_to_end) == 0
    _, _, children = runs_of(tmp_path, "slow-end")
    assert len(children) == 4 and {c.data.tags["status"] for c in children} <= {"completed", "pruned"}
    out = capsys.readouterr().out
    assert "4/4 trials ended (" in out and ", 0 failed)" in out and "study 'slow-end': 4 trials: " in out


WORKER_PROBE = """
import os, ray
from deepdiff_study.tuner import quiet_logs, start_ray
quiet_logs()  # as the driver does: Tune's switches, then Ray
start_ray(None)
probe = ray.remote(lambda: (os.environ.get("MALLOC_ARENA_MAX"), os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S")))
print("worker", *ray.get(probe.remote()))
"""


@pytest.mark.slow
def test_the_driver_s_ray_workers_get_the_worker_environment():
    """Trial workers get MALLOC_ARENA_MAX=2 (glibc reads it at process start: a reused worker's memory stays
    flat over hundreds of trials, benchmarks/bench_tune.py) and Tune's worker-thread timeout."""
    from deepdiff_study import ray_private, trainable

    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "TUNE_FUNCTION_THREAD_TIMEOUT_S")}
    import shutil
    import tempfile

    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        done = subprocess.run([sys.executable, "-c", WORKER_PROBE], capture_output=True, text=True, env=env, timeout=300)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("worker "))
    assert line.split()[1:] == [trainable.WORKER_ENV["MALLOC_ARENA_MAX"], ray_private.TUNE_ENV_DEFAULTS["TUNE_FUNCTION_THREAD_TIMEOUT_S"]]


RELEASE_PROBE = """
import gc
import torch
from deepdiff import cpu_kernel
from deepdiff_study import trainable
trainable.release_memory()
frozen = gc.get_freeze_count()
garbage = [[] for _ in range(1000)]
for a, b in zip(garbage, garbage[1:]):
    a.append(b); b.append(a)  # cycles made by a trial: collected, not frozen
del garbage, a, b
trainable.release_memory()
print("frozen", frozen > 10_000, gc.get_freeze_count() == frozen, gc.collect())
"""


@pytest.mark.slow
def test_the_memory_release_freezes_what_the_worker_started_with_once_and_still_collects_a_trial_s_cycles():
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == ["frozen", "True", "True", "0"]
