"""The study report and the baseline runs end to end: a tiny finished study (one synthetic pair, raw_d /
aux / aux_siamese, both aux modes, margins 1 and 2, 2 trials x 2 epochs, trained on Ray) -> every report
file, Table 3 and an axis difference recomputed by hand from the MLflow runs, links that resolve,
baselines recorded once; every grid cell's best model kept as an MLflow artifact that `deepdiff evaluate`
scores as recorded, the report's attention maps from it, and replicate runs (logged here into a copy of
the study's store) summarised as by hand. Every test here needs the study: each is marked slow.
The report's parts on hand-made frames: tests/test_report_*.py."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import markupsafe
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ray_session import ray_session, write_tiny_grid  # noqa: F401
from deepdiff_study import driver as run_ablation
from deepdiff_study import report as report_mod
from deepdiff_study.baseline_runs import log_baselines, recorded_baselines
from deepdiff_study.grid import Pair, load_grid
from deepdiff_study.records import Kind, Tag, decode_params, study_runs

EXPERIMENT = "tiny-report"
CELL_TYPES = {"E123": "K562", "E003": "H1"}  # the names the grid file gives the pair the synthetic one imitates


def _tag_as_the_study_command_does(client, exp_id, grid_path) -> bool:
    """Set the cell-type and search-space tags of the grid-cell runs (records.Tag) where the study did not
    write them (a driver from before they existed); True if it set any."""
    space = load_grid(grid_path).space
    added = False
    for run in study_runs(client, exp_id, Kind.GRID_CELL):
        tags = run.data.tags
        wanted = {Tag.SEARCH_SPACE: json.dumps([
            {"name": p.name, "kind": p.kind, **({"values": list(p.values)} if p.kind == "choice" else
                                               {"low": p.low, "high": p.high})}
            for p in space if p.applies(tags[Tag.VARIANT])], sort_keys=True)}
        a, _, b = tags[Tag.IMITATES].partition("-")
        wanted |= {Tag.CELL_TYPE_A: CELL_TYPES[a], Tag.CELL_TYPE_B: CELL_TYPES[b]}
        for name, value in wanted.items():
            if name not in tags:
                client.set_tag(run.info.run_id, name, value)
                added = True
    return added


@pytest.fixture(scope="module")
def study(ray_session, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("report_study")
    grid = write_tiny_grid(tmp)
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    args = ["--grid", str(grid), "--preset", "quick", "--pairs", "1", "--synthetic-genes", "100",
            "--storage", str(tmp / "results"), "--mlflow-uri", uri, "--variants", "raw_d,aux,aux_siamese",
            "--aux", "regression,classification", "--margins", "1,2", "--samples", "2", "--max-epochs", "2",
            "--grace-period", "1", "--reduction-factor", "2", "--experiment", EXPERIMENT]
    assert run_ablation.main(args) == 0
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    out = tmp / "results" / EXPERIMENT / "report"
    if _tag_as_the_study_command_does(client, exp_id, grid):
        report_mod.write_report(uri, EXPERIMENT, out, log=False)  # the study's report again, over those tags
    return {"tmp": tmp, "uri": uri, "client": client, "exp_id": exp_id, "out": out}


def _runs(study, kind):
    return study_runs(study["client"], study["exp_id"], kind)


@pytest.mark.slow
def test_the_study_writes_every_report_file_and_logs_them(study):
    expected = {*report_mod.REPORT_FILES, *report_mod.ATTENTION_FILES}  # no replicates: none were trained
    for name in expected:
        assert (study["out"] / name).is_file() and (study["out"] / name).stat().st_size > 0, name
    reports = _runs(study, Kind.REPORT)
    assert len(reports) == 1
    logged = {a.path for a in study["client"].list_artifacts(reports[0].info.run_id)}
    assert logged == expected


@pytest.mark.slow
def test_baseline_runs_one_per_pair_and_baseline(study):
    runs = {r.data.tags["baseline"]: r for r in _runs(study, Kind.BASELINE)}
    assert sorted(runs) == sorted(["linear", "svr", "svr2", "ridge", "rbf_svr", "gboost", "best_simple"])
    for name, run in runs.items():
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        assert (tags["pair"], tags["pair_name"], tags["epigenome_a"], tags["epigenome_b"], tags["imitates"]) == (
            "1", "syn1A-syn1B", "syn1A", "syn1B", "E123-E003")
        # the score under the names every kind of run carries (one column of MLflow's runs table)
        assert set(metrics) == {"best_valid_pcc", "best_test_pcc", "valid_mse", "test_mse", "seconds"}
        assert all(math.isfinite(v) for v in metrics.values())
        assert params["seed"] == "0" and run.info.status == "FINISHED"
        if name in ("linear", "svr", "svr2"):
            assert params["input_transform"] == "raw"  # the tiny grid's published setting
            assert ("region_C" in params) == (name == "svr2")
            assert (params["C"] == "none") == (name == "linear")
        else:  # a simple model chose its transform and features on the valid genes
            assert params["input_transform"] in ("raw", "log1p") and params["features"] in ("bins", "regions")
    best = max(("ridge", "rbf_svr", "gboost"), key=lambda m: runs[m].data.metrics["best_valid_pcc"])
    assert runs["best_simple"].data.params == runs[best].data.params
    assert runs["best_simple"].data.tags["best_run_id"] == runs[best].info.run_id


@pytest.mark.slow
def test_a_resumed_study_does_not_refit_recorded_baselines(study):
    calls = []

    def fit(name, data, **kwargs):  # must not be called: every (pair, baseline) is recorded
        calls.append(name)
        raise AssertionError("refitted a recorded baseline")

    pair = Pair(1, "syn1A", "syn1B", imitates="E123-E003")
    assert recorded_baselines(study["client"], study["exp_id"]) == {
        (1, name) for name in ("linear", "svr", "svr2", "ridge", "rbf_svr", "gboost", "best_simple")}
    assert log_baselines(study["client"], study["exp_id"], [pair], {1: None}, input_transform="raw", fit=fit) == []
    assert calls == []
    # a pair not yet recorded is fitted (all three baselines), in a scratch experiment
    scratch = study["client"].create_experiment("scratch-baselines")
    done = log_baselines(study["client"], scratch, [pair], {1: None}, input_transform="raw",
                         fit=lambda name, data, **kw: _fake_result(name), echo=lambda line: None)
    assert done == [(1, "linear"), (1, "svr"), (1, "svr2")]
    assert log_baselines(study["client"], scratch, [pair], {1: None}, input_transform="raw", fit=fit) == []
    assert len(study_runs(study["client"], scratch, Kind.BASELINE)) == 3


def _fake_result(name):
    """A scored result for the skip test only (the real fit is covered by the study above)."""
    from deepdiff.baselines import BaselineResult

    return BaselineResult(name, "syn1A-syn1B", "raw", 0.1, 1.0, 0.2, 1.0, None if name == "linear" else 1.0,
                          (1.0,) if name == "svr2" else (), 50, 0.01)


def _hand_best(study):
    """(variant -> (valid, test)) of the best grid cell per variant, from the trial runs directly."""
    best = {}
    for run in _runs(study, Kind.TRIAL):
        if run.data.tags["status"] not in ("completed", "pruned"):
            continue
        v, t = run.data.metrics["best_valid_pcc"], run.data.metrics["best_test_pcc"]
        variant = run.data.tags["variant"]
        if math.isfinite(v) and (variant not in best or v > best[variant][0]):
            best[variant] = (v, t)
    return best


@pytest.mark.slow
def test_table3_matches_a_hand_computation(study):
    svr2 = [r for r in _runs(study, Kind.BASELINE) if r.data.tags["baseline"] == "svr2"][0].data.metrics["best_test_pcc"]
    best = _hand_best(study)
    import pandas as pd

    table = pd.read_csv(study["out"] / "table3.csv").set_index("variant")
    assert list(table.index) == ["raw_d", "aux", "aux_siamese"]
    for variant, (_, test_pcc) in best.items():
        expected = 100 * (test_pcc - svr2) / abs(svr2)
        assert table.loc[variant, "pair 1"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert table.loc[variant, "mean"] == pytest.approx(expected) and table.loc[variant, "median"] == pytest.approx(expected)
    md = (study["out"] / "table3.md").read_text()
    assert f"{table.loc['aux', 'pair 1']:.1f}" in md


@pytest.mark.slow
def test_aux_mode_axis_matches_a_hand_computation(study):
    import pandas as pd

    cells = {}
    for run in _runs(study, Kind.GRID_CELL):
        tags = run.data.tags
        cells[(tags["variant"], tags["aux_mode"], tags["margin"])] = run.data.metrics["best_test_pcc"]
    diffs = [cells[(v, "classification", m)] - cells[(v, "regression", m)]
             for (v, mode, m) in cells if mode == "classification"]
    assert len(diffs) == 3  # aux, aux_siamese m1, aux_siamese m2
    axes = pd.read_csv(study["out"] / "axes.csv")
    row = axes[axes["axis"] == "aux_mode"].iloc[0]
    assert row["n"] == 3 and row["mean_diff"] == pytest.approx(np.mean(diffs))
    assert row["wilcoxon_p"] == "n too small"
    rng = np.random.default_rng(0)
    means = rng.choice(np.array(diffs), size=(2000, 3), replace=True).mean(axis=1)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    variant_rows = axes[axes["axis"] == "variant"]
    assert set(variant_rows["n"]) == {1}  # one pair: the interval is undefined, and said so
    assert all("interval undefined" in s for s in variant_rows["sentence"])
    assert set(axes[axes["axis"] == "margin"]["comparison"]) == {"Margin 1 vs 2"}


@pytest.mark.slow
def test_cost_sums_the_per_epoch_seconds(study):
    import pandas as pd

    cost = pd.read_csv(study["out"] / "cost.csv").set_index("grid_cell")
    client = study["client"]
    for cell in cost.index:
        trials = [r for r in _runs(study, Kind.TRIAL) if r.data.tags["grid_cell"] == cell]
        seconds = sum(m.value for r in trials for m in client.get_metric_history(r.info.run_id, "seconds"))
        assert cost.loc[cell, "trials"] == len(trials) == 2
        assert cost.loc[cell, "trial_hours"] == pytest.approx(seconds / 3600)
        assert cost.loc[cell, "pruned"] == sum(r.data.tags["status"] == "pruned" for r in trials)


@pytest.mark.slow
def test_importance_is_omitted_with_one_sentence_for_two_trials_per_grid_cell(study):
    import pandas as pd

    # two trials per grid cell, fewer than importance.MIN_TRIALS: no rows, no figure, one sentence why
    assert pd.read_csv(study["out"] / "importance.csv").empty and not (study["out"] / "importance.png").exists()
    html = (study["out"] / "index.html").read_text()
    n = len(_runs(study, Kind.GRID_CELL))
    assert (f"Hyperparameter importance omitted for {n} of {n} grid cell(s): they have fewer than 10 scored trials "
            "(at most 2)") in html


@pytest.mark.slow
def test_every_link_in_index_html_resolves(study):
    html = (study["out"] / "index.html").read_text()
    links = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html)
    assert {"test_pcc_by_variant.png", "aux_mode.png", "margin.png", "table3.csv"} <= set(links)
    for link in links:
        assert (study["out"] / link).is_file(), link
    assert "syn1A-syn1B (synthetic, standing in for E123 K562 vs E003 H1)" in html
    assert "<b>Single runs.</b>" in html  # no replicates: said at the top
    for sentence in axis_sentences(study):  # one per axis of the grid
        assert f"<li>{markupsafe.escape(sentence)}</li>" in html


def axis_sentences(study):
    import pandas as pd

    from deepdiff_study.report.words import axis_sentences as sentences

    axes = pd.read_csv(study["out"] / "axes.csv")
    assert list(axes["axis"].unique()) == ["variant", "aux_mode", "margin"]
    return sentences(axes)


@pytest.mark.slow
def test_entry_script_runs(study, tmp_path):
    script = Path(__file__).resolve().parents[1] / "ablations" / "report.py"
    proc = subprocess.run([sys.executable, str(script), "--experiment", EXPERIMENT, "--out", str(tmp_path / "r"),
                           "--mlflow-uri", study["uri"], "--no-log"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("report: ")


def test_a_failing_report_does_not_fail_the_study(tmp_path, capsys):
    run_ablation.write_study_report(f"sqlite:///{tmp_path / 'missing.db'}", "nope", tmp_path)
    out = capsys.readouterr().out
    assert out.startswith("warning: the study report was not written") and out.count("\n") == 1


# ---- the best model of every grid cell, deepdiff evaluate, attention ------------------------------------------

def _cells(study):
    return {r.data.tags["grid_cell"]: r for r in _runs(study, Kind.GRID_CELL)}


def _download_model(study, run, folder):
    return study["client"].download_artifacts(run.info.run_id, "model/best.pt", str(folder))


@pytest.mark.slow
def test_every_grid_cell_keeps_its_best_model_and_it_loads(study, tmp_path):
    from deepdiff.train import load_model

    client = study["client"]
    for key, run in _cells(study).items():
        assert run.data.tags["model"] == "model/best.pt" and "model_missing" not in run.data.tags, key
        assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/best.pt"]
        model, model_cfg, train_cfg = load_model(_download_model(study, run, tmp_path / key))
        best = client.get_run(run.data.tags["best_run_id"])
        assert decode_params(best.data.params) == (model_cfg, train_cfg), key  # the best trial's configuration


@pytest.mark.slow
def test_evaluate_on_a_stored_model_prints_its_trials_recorded_pccs(study, tmp_path, capsys, one_thread):
    """The stored best.pt is the model of the best trial's best valid-PCC epoch (also for trials ASHA
    stopped): scored again it gives the PCCs and MSE the trial recorded."""
    import json

    import numpy as np

    from deepdiff.cli import main as deepdiff

    for key, run in _cells(study).items():
        best = study["client"].get_run(run.data.tags["best_run_id"]).data.metrics
        data = json.loads(run.data.tags["data"])
        out = tmp_path / f"ev-{key}"
        assert deepdiff(["evaluate", "--checkpoint", _download_model(study, run, tmp_path / key), "--data", data["dir"],
                         "--pair", data["cell_a"], data["cell_b"], "--no-cache", "--out", str(out)]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        printed = dict(field.split("=") for field in line.split()[1:])
        assert line.startswith(f"result variant={run.data.tags['variant']} pair=syn1A-syn1B epoch={int(best['best_epoch'])} ")
        for name, recorded in (("valid_pcc", "best_valid_pcc"), ("test_pcc", "best_test_pcc"), ("test_mse", "best_test_mse")):
            assert abs(float(printed[name]) - best[recorded]) <= 1e-6, (key, name)
        arrays = np.load(out / "attention.npz")
        n = len(arrays["gene_ids"])
        for path in [f[len("bin_attention_"):] for f in arrays.files if f.startswith("bin_attention_")]:
            alpha = arrays[f"bin_attention_{path}"]
            assert alpha.shape == (n, 5, 200) and np.allclose(alpha.sum(axis=-1), 1.0, atol=1e-5)
            assert len(arrays[f"bin_channels_{path}"]) == 5
        assert set(f for f in arrays.files if f.startswith("bin_attention_")) == (
            {"bin_attention_diff"} if run.data.tags["variant"] == "raw_d" else {"bin_attention_A", "bin_attention_B"})


@pytest.mark.slow
def test_the_reports_attention_maps_are_the_stored_models(study, tmp_path, capsys, one_thread):
    """attention_marks.csv: the mean mark attention over the most up- and down-regulated test genes of the
    pair's best stored model, recomputed here from `deepdiff evaluate`'s arrays of the same model."""
    import json

    import numpy as np
    import pandas as pd

    from deepdiff.cli import main as deepdiff

    cells = _cells(study)
    key = max(cells, key=lambda k: cells[k].data.metrics["best_valid_pcc"])  # every grid cell's model is stored
    data = json.loads(cells[key].data.tags["data"])
    assert deepdiff(["evaluate", "--checkpoint", _download_model(study, cells[key], tmp_path), "--data", data["dir"],
                     "--pair", data["cell_a"], data["cell_b"], "--no-cache", "--out", str(tmp_path / "ev")]) == 0
    arrays = np.load(tmp_path / "ev" / "attention.npz")
    order = np.argsort(arrays["target"].astype(np.float32), kind="stable")
    k = min(report_mod.ATTENTION_GENES, len(order) // 2)
    marks = pd.read_csv(study["out"] / "attention_marks.csv")
    assert set(marks["n_genes"]) == {k}
    for group, genes in (("up", order[::-1][:k]), ("down", order[:k])):
        for path in [f[len("mark_attention_"):] for f in arrays.files if f.startswith("mark_attention_")]:
            mine = marks[(marks["genes"] == group) & (marks["path"] == path)]
            assert list(mine["channel"]) == list(arrays[f"mark_channels_{path}"])
            assert mine["mean_beta"].to_numpy() == pytest.approx(arrays[f"mark_attention_{path}"][genes].mean(axis=0), abs=1e-6)
    page = (study["out"] / "index.html").read_text()
    assert f"grid cell {key}" in page and f"the {k} most up-regulated and the {k} most down-regulated" in page
    assert "<img src='attention_bins.png'" in page and "<img src='attention_marks.png'" in page
    # a pair that does not exist is refused before anything is written
    capsys.readouterr()
    assert report_mod.main(["--experiment", EXPERIMENT, "--out", str(tmp_path / "r"), "--mlflow-uri", study["uri"],
                            "--attention-pair", "7"]) == 2
    assert capsys.readouterr().err.startswith("error: --attention-pair 7: not a pair of experiment")
    assert not (tmp_path / "r").exists()


class _Trial:
    """What the tracker reads of a Tune trial when a grid cell's model is stored."""

    def __init__(self, trial_id, grid_cell, checkpoint=None, folder=None):
        self.trial_id, self.config, self.checkpoint = trial_id, {"grid_cell": grid_cell, "pair": 1}, checkpoint
        if folder is not None:  # the trial's folder in the study's storage, as Tune's StorageContext names it
            from ray.train._internal.storage import StorageContext

            self.storage = StorageContext(storage_path=str(folder.parent.parent), experiment_dir_name=folder.parent.name,
                                          trial_dir_name=folder.name)


@pytest.mark.slow
def test_a_resumed_tracker_never_stores_a_model_twice_and_tags_why_one_is_missing(study, tmp_path):
    """A tracker started again (as on --resume) on a copy of the finished study's store."""
    import shutil

    import torch
    from ray import tune

    from deepdiff_study.tracker import MlflowTracker

    db = tmp_path / "copy.db"
    shutil.copy(study["uri"][len("sqlite:///"):], db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    cells = {r.data.tags["grid_cell"]: r for r in study_runs(client, study["exp_id"], Kind.GRID_CELL)}
    tags = {key: dict(run.data.tags) for key, run in cells.items()}
    planned = {key: int(t["planned_trials"]) for key, t in tags.items()}
    stored = []

    def tracker():
        t = MlflowTracker(uri, EXPERIMENT, tags, planned)
        log = t.client.log_artifact
        t.client.log_artifact = lambda *a, **kw: (stored.append(a[0]), log(*a, **kw))
        return t

    tracker().on_experiment_end([_Trial(run.data.tags["best_trial_id"], key) for key, run in cells.items()])
    assert stored == []  # every grid cell's model is stored already: not again

    key, run = "p1-raw_d", cells["p1-raw_d"]
    client.delete_tag(run.info.run_id, "model")
    client.set_tag(run.info.run_id, "model_missing", "the store failed before")
    best_id = run.data.tags["best_trial_id"]
    best_epoch = int(client.get_run(run.data.tags["best_run_id"]).data.metrics["best_epoch"])
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(_download_model(study, cells[key], tmp_path / "dl"), good / "best.pt")
    older = tmp_path / "older"
    older.mkdir()
    state = torch.load(good / "best.pt", weights_only=True)
    torch.save({**state, "epoch": best_epoch - 1}, older / "best.pt")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "last.pt").write_bytes(b"")
    damaged = tmp_path / "damaged"  # a node died while writing it
    damaged.mkdir()
    (damaged / "best.pt").write_bytes((good / "best.pt").read_bytes()[:1000])
    resumed = tracker()
    for trial, reason in [
        (_Trial("another", key), f"its best trial {best_id} is not in this Tune run"),
        (_Trial(best_id, key), f"its best trial {best_id} has no checkpoint in the study's storage"),
        (_Trial(best_id, key, tune.Checkpoint.from_directory(str(empty))), "holds no best.pt"),
        (_Trial(best_id, key, tune.Checkpoint.from_directory(str(damaged))),
         f"the best.pt of its best trial {best_id} ({damaged}) is not a readable deepdiff checkpoint"),
        (_Trial(best_id, key, tune.Checkpoint.from_directory(str(older))),
         f"holds the model of epoch {best_epoch - 1}, not of its best epoch {best_epoch}"),
    ]:
        resumed.on_experiment_end([trial])
        now = client.get_run(run.info.run_id).data.tags
        assert "model" not in now and reason in now["model_missing"], now.get("model_missing")
    assert stored == []
    # Handed back on resume (its end missed by Tune's last snapshot), the best trial has no checkpoint Tune
    # knows of: its folder's checkpoints are read, newest first, past a damaged one.
    folder = tmp_path / "storage" / "study" / "trial"
    shutil.copytree(older, folder / "checkpoint_000001")
    shutil.copytree(good, folder / "checkpoint_000002")
    shutil.copytree(damaged, folder / "checkpoint_000003")
    resumed.on_experiment_end([_Trial(best_id, key, folder=folder)])
    resumed.on_experiment_end([_Trial(best_id, key, tune.Checkpoint.from_directory(str(good)))])  # once only
    now = client.get_run(run.info.run_id).data.tags
    assert now["model"] == "model/best.pt" and "model_missing" not in now
    assert len(stored) == 1


@pytest.mark.slow
def test_a_model_is_looked_for_in_the_trials_folder_when_tunes_checkpoint_is_older(tmp_path):
    """After a kill, Tune's snapshot may name an older checkpoint of a trial than the last it wrote (the
    trial ended before the kill and is handed back): the folder's checkpoints come next, newest first,
    and Tune's is not tried twice."""
    from ray import tune

    from deepdiff_study.tracker import _checkpoints_of

    folder = tmp_path / "storage" / "study" / "trial"
    for name in ("checkpoint_000000", "checkpoint_000001", "checkpoint_000002"):
        (folder / name).mkdir(parents=True)
    (folder / "result.json").write_text("")
    tune_kept = tune.Checkpoint.from_directory(str(folder / "checkpoint_000001"))
    names = [Path(path).name for _, path in _checkpoints_of(_Trial("t", "X", tune_kept, folder=folder))]
    assert names == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000000"]
    assert [Path(p).name for _, p in _checkpoints_of(_Trial("t", "X", folder=folder))] == [
        "checkpoint_000002", "checkpoint_000001", "checkpoint_000000"]
    assert list(_checkpoints_of(_Trial("t", "X"))) == []


# ---- replicates (trained by the study command; the report reads them) ----------------------------------------

@pytest.mark.slow
def test_replicate_runs_are_summarised_as_by_hand(study, tmp_path):
    """Replicate runs logged into a copy of the study's store as the study command logs them (records:
    kind=replicate, the grid cell's tags, seed, replicate_of, status), with made-up test PCCs; one of an
    older best trial and one failed are left out."""
    import pandas as pd
    from scipy.stats import wilcoxon

    db = tmp_path / "copy.db"
    shutil.copy(study["uri"][len("sqlite:///"):], db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    cells = {r.data.tags["grid_cell"]: r for r in study_runs(client, study["exp_id"], Kind.GRID_CELL)}
    rng = np.random.default_rng(3)
    pcc = {}
    for key, cell in cells.items():
        tags = {**{t: cell.data.tags[t] for t in ("grid_cell", "variant", "pair", "pair_name", "imitates")},
                Tag.KIND: Kind.REPLICATE, Tag.STATUS: "completed", Tag.REPLICATE_OF: cell.data.tags["best_run_id"]}
        for seed, status, of in ((1, "FINISHED", None), (2, "FINISHED", None), (3, "FINISHED", "an older best trial"),
                                 (4, "FAILED", None)):
            value = float(rng.uniform(0.1, 0.6))
            run = client.create_run(study["exp_id"], tags={**tags, Tag.SEED: str(seed),
                                                           **({Tag.REPLICATE_OF: of} if of else {})})
            client.log_metric(run.info.run_id, "best_test_pcc", value)
            client.set_terminated(run.info.run_id, status)
            if seed <= 2:
                pcc[(key, seed)] = value
    out = tmp_path / "report"
    report_mod.write_report(uri, EXPERIMENT, out, log=False)
    table = pd.read_csv(out / "replicates.csv").set_index("grid_cell")
    assert set(table.index) == set(cells)
    for key in cells:
        values = [pcc[(key, 1)], pcc[(key, 2)]]
        assert table.loc[key, "seeds"] == "1 2" and table.loc[key, "n"] == 2
        assert table.loc[key, "mean_test_pcc"] == pytest.approx(np.mean(values), abs=1e-12)
        assert table.loc[key, "sd_test_pcc"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    # one pair: each variant's best grid cell (by valid PCC) against raw_d's, over the 2 seeds
    tests = pd.read_csv(out / "replicate_tests.csv").set_index(["comparison", "against"])
    aux = max((k for k in cells if cells[k].data.tags["variant"] == "aux"), key=lambda k: cells[k].data.metrics["best_valid_pcc"])
    diffs = [pcc[(aux, s)] - pcc[("p1-raw_d", s)] for s in (1, 2)]
    row = tests.loc[("Aux", "Raw:d")]
    assert (row["over"], row["n"]) == ("seeds of pair 1", 2) and row["mean_diff"] == pytest.approx(np.mean(diffs))
    assert float(row["wilcoxon_p"]) == pytest.approx(wilcoxon(diffs).pvalue)
    svr2 = [r for r in _runs(study, Kind.BASELINE) if r.data.tags["baseline"] == "svr2"][0].data.metrics["best_test_pcc"]
    assert tests.loc[("Aux", "SVR (two layers)"), "mean_diff"] == pytest.approx(np.mean([pcc[(aux, s)] - svr2 for s in (1, 2)]))
    page = (out / "index.html").read_text()
    assert "no p-value can fall below 0.5" in page  # the paired tests over 2 seeds, said once
    for link in re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page):
        assert (out / link).is_file(), link
