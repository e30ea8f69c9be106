"""``deepdiff-ablation --replicates K`` (deepdiff_study.replicates): a finished tiny study (one synthetic pair,
raw_d / aux / aux_siamese, both aux modes, margins 1 and 2, 2 trials x 2 epochs) has each grid cell's best
configuration retrained over K other seeds, once; the study's report is written again and its replicate
tables are those runs, summarised as by hand."""

import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ray_session import ray_session, write_tiny_grid  # noqa: F401
from deepdiff_study import driver
from deepdiff_study.records import Kind, study_runs

EXPERIMENT = "tiny-replicates"


@pytest.fixture(scope="module")
def study(ray_session, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("replicates_study")
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    args = ["--grid", str(write_tiny_grid(tmp)), "--preset", "quick", "--pairs", "1", "--synthetic-genes", "100",
            "--storage", str(tmp / "results"), "--mlflow-uri", uri, "--variants", "raw_d,aux,aux_siamese",
            "--aux", "regression,classification", "--margins", "1,2", "--samples", "2", "--max-epochs", "2",
            "--grace-period", "1", "--reduction-factor", "2", "--experiment", EXPERIMENT]
    assert driver.main(args) == 0
    client = MlflowClient(uri)
    return {"tmp": tmp, "uri": uri, "client": client, "exp_id": client.get_experiment_by_name(EXPERIMENT).experiment_id,
            "replicates": ["--replicates", "2", "--experiment", EXPERIMENT, "--mlflow-uri", uri,
                           "--storage", str(tmp / "results")]}


def _runs(study, kind):
    return study_runs(study["client"], study["exp_id"], kind)


@pytest.mark.slow
def test_replicates_train_each_grid_cell_twice_once_and_the_report_is_the_runs(study, capsys):
    import pandas as pd
    from scipy.stats import wilcoxon

    assert driver.main(study["replicates"]) == 0
    cells = {r.data.tags["grid_cell"]: r for r in _runs(study, Kind.GRID_CELL)}
    replicates = _runs(study, Kind.REPLICATE)
    assert len(replicates) == 2 * len(cells)
    assert sorted((r.data.tags["grid_cell"], r.data.tags["seed"]) for r in replicates) == sorted(
        (key, seed) for key in cells for seed in ("1", "2"))  # the study trained with seed 0
    for rep in replicates:
        cell = cells[rep.data.tags["grid_cell"]]
        best = study["client"].get_run(cell.data.tags["best_run_id"])
        assert rep.data.tags["replicate_of"] == best.info.run_id and rep.data.tags["status"] == "completed"
        assert rep.info.status == "FINISHED" and rep.data.tags["imitates"] == "E123-E003"
        assert rep.data.tags["mlflow.parentRunId"] == cell.info.run_id  # nested under its grid cell, beside its trials
        assert {k: v for k, v in rep.data.params.items() if k != "seed"} == {
            k: v for k, v in best.data.params.items() if k != "seed"}
    capsys.readouterr()
    # again, with a study setting that does not apply: nothing trained, the setting noted, the report rewritten
    assert driver.main([*study["replicates"], "--samples", "9"]) == 0
    out, err = capsys.readouterr()
    assert "replicates: 0 to train (2 seed(s) per grid cell), 14 already in MLflow" in out
    assert err.splitlines() == ["note: --samples ignored with --replicates: each grid cell's best configuration is "
                                "retrained as MLflow records it"]
    report = study["tmp"] / "results" / EXPERIMENT / "report"
    assert f"Report:        {report / 'index.html'}" in out
    assert len(_runs(study, Kind.REPLICATE)) == 2 * len(cells)

    pcc = {(r.data.tags["grid_cell"], int(r.data.tags["seed"])): r.data.metrics["best_test_pcc"] for r in replicates}
    table = pd.read_csv(report / "replicates.csv").set_index("grid_cell")
    assert set(table.index) == set(cells)
    for key in cells:
        values = [pcc[(key, 1)], pcc[(key, 2)]]
        assert table.loc[key, "n"] == 2
        assert table.loc[key, "mean_test_pcc"] == pytest.approx(np.mean(values), abs=1e-12)
        assert table.loc[key, "sd_test_pcc"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    # one pair: each variant's best grid cell (by valid PCC) against raw_d's, over the 2 seeds
    tests = pd.read_csv(report / "replicate_tests.csv").set_index(["comparison", "against"])
    aux = max((k for k in cells if cells[k].data.tags["variant"] == "aux"), key=lambda k: cells[k].data.metrics["best_valid_pcc"])
    diffs = [pcc[(aux, s)] - pcc[("p1-raw_d", s)] for s in (1, 2)]
    row = tests.loc[("Aux", "Raw:d")]
    assert (row["over"], row["n"]) == ("seeds of pair 1", 2) and row["mean_diff"] == pytest.approx(np.mean(diffs))
    assert float(row["wilcoxon_p"]) == pytest.approx(wilcoxon(diffs).pvalue)
    svr2 = [r for r in _runs(study, Kind.BASELINE) if r.data.tags["baseline"] == "svr2"][0].data.metrics["best_test_pcc"]
    assert tests.loc[("Aux", "SVR (two layers)"), "mean_diff"] == pytest.approx(np.mean([pcc[(aux, s)] - svr2 for s in (1, 2)]))
    page = (report / "index.html").read_text()
    # the top of the page: means over the 2 seeds, the first table's test PCCs as mean +- sd
    assert "<b>Means over seeds.</b> Every test PCC on this page is the mean over 2 fresh training runs" in page
    assert "Single runs." not in page
    first = page.split("<h2>Each variant against the baselines</h2>", 1)[1].split("</table>", 1)[0]
    raw_d = (pcc[("p1-raw_d", 1)], pcc[("p1-raw_d", 2)])
    assert f"<td>{np.mean(raw_d):.3f} \u00b1 {np.std(raw_d, ddof=1):.3f}</td>" in first
    assert "no p-value can fall below 0.5" in page  # the paired tests over 2 seeds, said once
    for link in re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page):
        assert (report / link).is_file(), link


@pytest.mark.slow
@pytest.mark.parametrize("extra, fragment", [
    (["--replicates", "0"], "--replicates 0: expected a whole number >= 1"),
    (["--experiment", "nope"], "--experiment 'nope': no such MLflow experiment at"),
    (["--replicate-storage", "{tmp}/afile"], "--replicate-storage {tmp}/afile: is a file, not a directory"),
])
def test_replicates_of_what_cannot_be_retrained_are_one_line_errors(study, extra, fragment, capsys):
    (study["tmp"] / "afile").write_text("x")
    before = len(_runs(study, Kind.REPLICATE))
    args = [*study["replicates"], *[a.format(tmp=study["tmp"]) for a in extra]]
    assert driver.main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and fragment.format(tmp=study["tmp"]) in lines[0], lines
    assert len(_runs(study, Kind.REPLICATE)) == before
