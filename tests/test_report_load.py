"""What the report reads from MLflow (`deepdiff_study.report.load`) and `write_report` over it, on a study
logged by hand with MlflowClient (no Ray, no training): two pairs, raw_d and aux grid cells, trials (one a
warm start), baselines (one logged twice, one failed; the paper's under the metric names of older studies,
the simple models' under best_valid_pcc / best_test_pcc), replicate runs; names with markup in them. Also
`records.decode_search_space`, the reader of the grid cells' search-space tag."""

import json
import subprocess
import sys

import markupsafe
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from deepdiff.errors import ConfigError
from deepdiff_study import grid
from deepdiff_study.records import Kind, Tag, decode_search_space, grid_cell_tags, study_runs
from deepdiff_study.report import REPLICATE_FILES, REPORT_FILES, main, write_report
from deepdiff_study.report.load import load_study

EXPERIMENT = "hand <b>made</b> \"study\""
SPACE = [{"name": "lr", "kind": "log_uniform", "low": 1e-05, "high": 0.01},
         {"name": "batch_size", "kind": "choice", "values": [10, 20, 50, 100]},
         {"name": "dropout", "kind": "uniform", "low": 0.0, "high": 0.7}]
PAIRS = {1: grid.Pair(1, "E123", "E003"), 2: grid.Pair(2, "E116", "E003")}
CELL_TYPES = {1: ("K562", "H1")}  # pair 2's grid-cell runs record no names: shown by epigenome id
CELLS = [grid.GridCell(v, PAIRS[p], m, None) for p in (1, 2) for v, m in (("raw_d", None), ("aux", "regression"))]
TRIALS = {  # grid cell -> (valid, test, lr, batch_size, dropout, seconds per epoch) per trial; statuses in order
    "p1-raw_d": [(0.50, 0.40, 1e-4, 10, 0.5, (3.0, 4.0)), (0.55, 0.45, 1e-3, 20, 0.2, (2.0, 2.5)), (0.30, 0.20, 1e-5, 50, 0.1, (1.0,))],
    "p1-aux-regression": [(0.60, 0.52, 1e-4, 10, 0.5, (5.0,)), (0.58, 0.60, 3e-3, 100, 0.6, (6.0,)), (0.1, 0.1, 2e-3, 50, 0.3, (1.0,))],
    "p2-raw_d": [(0.40, 0.35, 1e-4, 10, 0.5, (1.0,)), (0.42, 0.33, 5e-4, 20, 0.0, (1.0,)), (0.2, 0.3, 1e-2, 50, 0.7, (1.0,))],
    "p2-aux-regression": [(0.45, 0.41, 1e-4, 10, 0.5, (1.0,)), (0.41, 0.44, 2e-4, 50, 0.4, (1.0,)), (0.9, 0.9, 2e-4, 50, 0.4, (1.0,))],
}
STATUSES = ("completed", "pruned", "failed")
BASELINES = {(1, "linear"): 0.30, (1, "svr"): 0.35, (1, "svr2"): 0.25, (2, "linear"): 0.2, (2, "svr"): 0.3, (2, "svr2"): 0.5}
REPLICATES = {"p1-raw_d": (0.41, 0.47), "p1-aux-regression": (0.55, 0.58)}  # seeds 1, 2 of the best trial
SIMPLE = {"ridge": (0.70, 0.62), "best_simple": (0.70, 0.62)}  # (valid, test) of pair 1's simple-model runs


def _run(client, exp_id, tags, *, metrics=(), params=None, status="FINISHED"):
    run = client.create_run(exp_id, tags=tags)
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, step) for k, v, step in metrics],
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hand_study")
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=str(tmp / "artifacts"))
    best = {}
    for cell in CELLS:
        tags = {**grid_cell_tags(cell), Tag.KIND: Kind.GRID_CELL}
        names = CELL_TYPES.get(cell.pair.number)
        if names:
            tags[Tag.CELL_TYPE_A], tags[Tag.CELL_TYPE_B] = names
        if cell.variant == "raw_d":  # the aux grid cells: one recorded before search spaces were, one unreadable
            tags[Tag.SEARCH_SPACE] = json.dumps(SPACE, sort_keys=True)
        elif cell.pair.number == 2:
            tags[Tag.SEARCH_SPACE] = "[{\"name\": \"lr\"}]"
        parent = _run(client, exp_id, tags, status="FINISHED")
        for i, ((valid, test, lr, batch, dropout, seconds), status) in enumerate(zip(TRIALS[cell.key], STATUSES)):
            warm = {Tag.WARM_START_FROM: "p1-raw_d/p1-raw_d-1"} if (cell.key, i) == ("p2-raw_d", 1) else {}
            run_id = _run(client, exp_id, {Tag.KIND: Kind.TRIAL, Tag.GRID_CELL: cell.key, Tag.VARIANT: cell.variant,
                                           Tag.STATUS: status, Tag.TRIAL_ID: f"{cell.key}-{i}", "mlflow.parentRunId": parent,
                                           **warm},
                          metrics=[("best_valid_pcc", valid, len(seconds)), ("best_test_pcc", test, len(seconds)),
                                   *[("seconds", s, e + 1) for e, s in enumerate(seconds)]],
                          params={"variant": cell.variant, "lr": lr, "batch_size": batch, "dropout": dropout, "seed": 0},
                          status="FAILED" if status == "failed" else "FINISHED")
            if i == 0 or (status != "failed" and valid > TRIALS[cell.key][0][0]):
                best[cell.key] = run_id
    for (pair, name), pcc in BASELINES.items():
        tags = {Tag.KIND: Kind.BASELINE, Tag.PAIR: str(pair), Tag.PAIR_NAME: PAIRS[pair].name, Tag.BASELINE: name}
        if (pair, name) == (1, "svr2"):  # an older run of the same (pair, baseline): the latest counts
            _run(client, exp_id, tags, metrics=[("test_pcc", 0.99, 0)])
        _run(client, exp_id, tags, metrics=[("test_pcc", pcc, 0), ("valid_pcc", pcc, 0)], params={"input_transform": "raw"})
    _run(client, exp_id, {Tag.KIND: Kind.BASELINE, Tag.PAIR: "2", Tag.BASELINE: "svr2"},
         metrics=[("test_pcc", 0.0, 0)], status="FAILED")
    for name, (valid, test) in SIMPLE.items():
        _run(client, exp_id, {Tag.KIND: Kind.BASELINE, Tag.PAIR: "1", Tag.PAIR_NAME: PAIRS[1].name, Tag.BASELINE: name},
             metrics=[("best_valid_pcc", valid, 0), ("best_test_pcc", test, 0), ("valid_pcc", valid, 0), ("test_pcc", test, 0)],
             params={"model": "ridge", "input_transform": "log1p", "features": "regions", "alpha": "100",
                     "candidates": "24", "train_genes": "200", "seed": "0"})
    for key, pccs in REPLICATES.items():
        for seed, pcc in zip((1, 2), pccs):
            _run(client, exp_id, {Tag.KIND: Kind.REPLICATE, Tag.GRID_CELL: key, Tag.SEED: str(seed), Tag.STATUS: "completed",
                                  Tag.REPLICATE_OF: best[key]}, metrics=[("best_test_pcc", pcc, 0), ("best_valid_pcc", pcc, 0)])
        _run(client, exp_id, {Tag.KIND: Kind.REPLICATE, Tag.GRID_CELL: key, Tag.SEED: "3", Tag.STATUS: "completed",
                              Tag.REPLICATE_OF: "an older best trial"}, metrics=[("best_test_pcc", 0.9, 0)])
        _run(client, exp_id, {Tag.KIND: Kind.REPLICATE, Tag.GRID_CELL: key, Tag.SEED: "4", Tag.STATUS: "failed",
                              Tag.REPLICATE_OF: best[key]}, metrics=[("best_test_pcc", 0.9, 0)], status="FAILED")
    return {"uri": uri, "client": client, "exp_id": exp_id, "best": best, "tmp": tmp}


@pytest.mark.slow
def test_the_study_as_read(store):
    study = load_study(store["uri"], EXPERIMENT)
    cells = study.cells.set_index("grid_cell")
    assert list(cells.index) == ["p1-raw_d", "p1-aux-regression", "p2-raw_d", "p2-aux-regression"]
    assert cells.loc["p1-raw_d", "run_id"] == store["best"]["p1-raw_d"] and cells.loc["p1-raw_d", "best_test_pcc"] == 0.45
    assert [p.name for p in cells.loc["p1-raw_d", "search_space"]] == ["lr", "batch_size", "dropout"]
    assert cells.loc["p1-raw_d", "search_space"][0] == grid.Param("lr", "log_uniform", low=1e-5, high=1e-2)
    assert cells.loc["p1-aux-regression", "search_space"] is None and cells.loc["p1-raw_d", "model"] is None
    assert list(study.pairs["label"]) == ["E123 K562 vs E003 H1", "E116 vs E003"]
    assert study.baselines[["pair", "baseline", "test_pcc"]].values.tolist() == [
        [1, "linear", 0.30], [2, "linear", 0.2], [1, "svr", 0.35], [2, "svr", 0.3], [1, "svr2", 0.25], [2, "svr2", 0.5],
        [1, "ridge", 0.62], [1, "best_simple", 0.62]]
    simple = study.baselines.set_index("baseline").loc["best_simple"]
    assert (simple["valid_pcc"], simple["model"], simple["features"], simple["choice"]) == (0.70, "ridge", "regions", "alpha=100")
    assert study.baselines[study.baselines["baseline"] == "svr"]["choice"].isna().all()  # no C logged by hand
    trials = study.trials.set_index("run_id")
    assert trials.loc[store["best"]["p1-raw_d"], "seconds"] == 4.5 and len(trials) == 12
    assert (trials["warm_start_from"] != "").sum() == 1 and trials["start_time"].notna().all()
    assert sorted(study.replicates["seed"]) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert cells.loc["p2-aux-regression", "search_space_problem"] == (
        f"grid-cell run {cells.loc['p2-aux-regression', 'cell_run_id']} tag search_space: item 0 needs a name and a "
        "kind in log_uniform, uniform, choice, got {'name': 'lr'}")
    assert study.notes == []


@pytest.mark.slow
def test_write_report_writes_every_file_and_logs_them(store, tmp_path):
    out = tmp_path / "report"
    assert write_report(store["uri"], EXPERIMENT, out) == out / "index.html"
    assert sorted(p.name for p in out.iterdir()) == sorted([*REPORT_FILES, *REPLICATE_FILES])
    (report,) = study_runs(store["client"], store["exp_id"], Kind.REPORT)
    assert {a.path for a in store["client"].list_artifacts(report.info.run_id)} == {*REPORT_FILES, *REPLICATE_FILES}
    table = pd.read_csv(out / "replicates.csv").set_index("grid_cell")
    assert list(table.index) == list(REPLICATES)
    for key, pccs in REPLICATES.items():
        assert table.loc[key, "seeds"] == "1 2" and table.loc[key, "mean_test_pcc"] == pytest.approx(np.mean(pccs))
        assert table.loc[key, "sd_test_pcc"] == pytest.approx(np.std(pccs, ddof=1))
    tests = pd.read_csv(out / "replicate_tests.csv").set_index(["comparison", "against"])
    assert tests.loc[("Aux", "Raw:d"), "mean_diff"] == pytest.approx(np.mean([0.55 - 0.41, 0.58 - 0.47]))
    assert tests.loc[("Aux", "SVR (two layers)"), "mean_diff"] == pytest.approx(np.mean([0.55, 0.58]) - 0.25)
    # with replicates, Table 3 is of the mean over seeds (pair 1), a grid cell without them keeps its run (pair 2)
    t3 = pd.read_csv(out / "table3.csv").set_index("variant")
    assert t3.loc["aux", "pair 1"] == pytest.approx(100 * (np.mean([0.55, 0.58]) - 0.25) / 0.25)
    assert t3.loc["aux", "pair 1 sd"] == pytest.approx(100 * np.std([0.55, 0.58], ddof=1) / 0.25)
    assert t3.loc["raw_d", "pair 2"] == pytest.approx(100 * (0.33 - 0.5) / 0.5) and np.isnan(t3.loc["raw_d", "pair 2 sd"])
    against = pd.read_csv(out / "against_baselines.csv").set_index(["pair", "variant"])
    assert against.loc[(1, "aux"), "simple_side"] == "below" and against.loc[(1, "aux"), "simple_pcc"] == 0.62
    importance = pd.read_csv(out / "importance.csv")
    assert importance.empty  # 2 scored trials per grid cell: below the threshold
    html = (out / "index.html").read_text()
    assert EXPERIMENT not in html and f"<h1>DeepDiff ablation study: {markupsafe.escape(EXPERIMENT)}</h1>" in html
    assert "No attention maps: no grid cell has a stored model (their runs have no model artifact" in html
    assert ("Hyperparameter importance omitted for 4 of 4 grid cell(s): they have fewer than 10 scored trials (at "
            "most 2)") in html
    assert "<b>Means over seeds.</b>" in html and "2 grid cell(s) without replicates show their one run." in html
    cost = pd.read_csv(out / "cost.csv").set_index("grid_cell")
    assert cost.loc["p1-raw_d", ["trials", "pruned", "failed"]].tolist() == [3, 1, 1]
    assert cost.loc["p1-raw_d", "trial_hours"] == pytest.approx((3.0 + 4.0 + 2.0 + 2.5 + 1.0) / 3600)
    assert cost.loc["p1-raw_d", "trials_to_best"] == 2 and cost.loc["p2-raw_d", "warm_starts"] == 1


@pytest.mark.slow
def test_command_line_errors_are_one_line_and_write_nothing(store, tmp_path, capsys):
    uri = ["--mlflow-uri", store["uri"], "--no-log"]
    assert main(["--experiment", "nope", "--out", str(tmp_path / "r"), *uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --experiment 'nope': no such MLflow experiment") and err.count("\n") == 1
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--experiment", EXPERIMENT, "--out", str(a_file), *uri]) == 2
    assert capsys.readouterr().err == f"error: --out {a_file}: is a file; expected a folder for the report\n"
    assert main(["--experiment", EXPERIMENT, "--out", str(tmp_path / "r"), "--attention-pair", "7", *uri]) == 2
    assert capsys.readouterr().err == (f"error: --attention-pair 7: not a pair of experiment {EXPERIMENT!r}; "
                                       "expected one of 1, 2\n")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_report_runs_with_ray_blocked(store, tmp_path):
    """Ray is never imported, and importing the report loads no torch (only reading does, for names)."""
    out = tmp_path / "noray"
    code = ("import sys\n"
            "class Blocked:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'ray':\n"
            "            raise ImportError(f'{name} is blocked in this test')\n"
            "sys.meta_path.insert(0, Blocked())\n"
            "from deepdiff_study.report import main\n"
            "assert 'torch' not in sys.modules, 'torch on import'\n"
            f"rc = main(['--experiment', {EXPERIMENT!r}, '--out', {str(out)!r}, '--mlflow-uri', {store['uri']!r}, '--no-log'])\n"
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").is_file() and proc.stdout == f"report: {out / 'index.html'}\n"


def test_search_space_tag_round_trip():
    space = decode_search_space(json.dumps(SPACE, sort_keys=True))
    assert space == (grid.Param("lr", "log_uniform", low=1e-5, high=1e-2),
                     grid.Param("batch_size", "choice", values=(10, 20, 50, 100)),
                     grid.Param("dropout", "uniform", low=0.0, high=0.7))
    assert decode_search_space("[]") == ()


@pytest.mark.parametrize("text, message", [
    ("{", "run r: not JSON"),
    ("{}", "run r: expected a JSON list of searched params, got dict"),
    ('[{"name": "lr", "kind": "normal"}]', "run r: item 0 needs a name and a kind in log_uniform, uniform, choice"),
    ('[{"name": "x", "kind": "choice", "values": []}]', "run r: x (choice) needs a non-empty list of values, got []"),
    ('[{"name": "lr", "kind": "log_uniform", "low": 0, "high": 1}]',
     "run r: lr (log_uniform) needs numbers low < high (both > 0), got low=0 high=1"),
    ('[{"name": "d", "kind": "uniform", "low": 1, "high": "2"}]', "run r: d (uniform) needs numbers low < high, got low=1 high='2'"),
])
def test_an_unreadable_search_space_is_one_line_naming_the_run(text, message):
    with pytest.raises(ConfigError) as err:
        decode_search_space(text, source="run r")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
