"""The study's baseline runs (`deepdiff_study.baseline_runs`) in a scratch MLflow store, with hand-made
results (the fits themselves: tests/test_baselines.py; in a real study: tests/test_study_report.py): each
simple model's choice and scores recorded under the names every kind of run shares, the best simple model
derived from the recorded runs, and nothing refitted on a rerun. An MLflow SQLite store takes seconds to
create: every test here is marked slow."""

import math

import pytest
from mlflow.tracking import MlflowClient

from deepdiff.baselines import BaselineResult, Candidate, SimpleResult
from deepdiff_study import baseline_runs
from deepdiff_study.grid import Pair
from deepdiff_study.records import SCORE_METRICS, Kind, Tag, study_runs

PAIR = Pair(1, "syn1A", "syn1B", imitates="E123-E003")
PARAMS = {"ridge": (("alpha", 100.0),), "rbf_svr": (("C", 10.0), ("gamma_scale", 1.0)),
          "gboost": (("learning_rate", 0.1), ("max_leaf_nodes", 7), ("max_iter", 200))}
VALID = {"ridge": 0.70, "rbf_svr": 0.74, "gboost": 0.74}  # a tie: the first in SIMPLE_MODELS order wins


def _simple(model, data, *, seed, threads, progress):
    candidate = Candidate(model, "log1p", "regions", PARAMS[model], VALID[model], 1.0)
    for _ in range(3):
        if progress is not None:
            progress(candidate)
    return SimpleResult(model, "syn1A-syn1B", "log1p", "regions", PARAMS[model], VALID[model], 1.0, VALID[model] - 0.1,
                        2.0, 50, 1.5, (candidate,) * 3)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('baseline_runs') / 'mlruns.db'}")  # seconds to create


@pytest.fixture
def store(client, tmp_path, request):
    return client, client.create_experiment(request.node.name, artifact_location=str(tmp_path / "artifacts"))


def _by_name(client, exp_id):
    return {r.data.tags[Tag.BASELINE]: r for r in study_runs(client, exp_id, Kind.BASELINE)}


@pytest.mark.slow
def test_simple_models_record_their_choice_and_the_best_is_derived(store):
    client, exp_id = store
    fetched, ticks = [], []
    logged = baseline_runs.log_simple_models(client, exp_id, [PAIR], lambda n: fetched.append(n) or "data", seed=3,
                                             fit=_simple, echo=lambda line: None, progress=ticks.append)
    assert logged == [(1, "ridge"), (1, "rbf_svr"), (1, "gboost"), (1, "best_simple")]
    assert fetched == [1] and sum(ticks) == 9  # the data fetched once; every candidate ticked
    runs = _by_name(client, exp_id)
    svr = runs["rbf_svr"]
    assert svr.data.params == {"model": "rbf_svr", "input_transform": "log1p", "features": "regions", "C": "10",
                               "gamma_scale": "1", "candidates": "3", "train_genes": "50", "seed": "3"}
    # the score every kind of run carries (one column of MLflow's runs table), and no second name for it
    assert set(svr.data.metrics) == {*SCORE_METRICS, "valid_mse", "test_mse", "seconds"}
    assert svr.data.metrics["best_valid_pcc"] == 0.74 and svr.data.metrics["best_test_pcc"] == pytest.approx(0.64)
    assert svr.data.metrics["seconds"] == 1.5
    assert (svr.data.tags[Tag.PAIR], svr.data.tags[Tag.IMITATES], svr.info.status) == ("1", "E123-E003", "FINISHED")
    csv = client.download_artifacts(svr.info.run_id, baseline_runs.CANDIDATES_ARTIFACT)
    assert open(csv).read().splitlines() == ["model,input_transform,features,params,valid_pcc,valid_mse",
                                             *["rbf_svr,log1p,regions,C=10 gamma_scale=1,0.74,1"] * 3]
    best = runs["best_simple"]
    assert best.data.params == svr.data.params and best.data.tags[Tag.BEST_RUN_ID] == svr.info.run_id
    assert best.data.metrics["best_valid_pcc"] == 0.74 and best.data.metrics["seconds"] == pytest.approx(4.5)


@pytest.mark.slow
def test_nothing_recorded_is_fitted_again_and_a_missing_best_is_derived_without_fitting(store):
    client, exp_id = store

    def refuse(*args, **kwargs):
        raise AssertionError("refitted a recorded simple model")

    baseline_runs.log_simple_models(client, exp_id, [PAIR], lambda n: "data", fit=_simple, echo=lambda line: None)
    assert baseline_runs.log_simple_models(client, exp_id, [PAIR], refuse, fit=refuse) == []
    client.delete_run(_by_name(client, exp_id)["best_simple"].info.run_id)  # as if killed before it was logged
    assert baseline_runs.log_simple_models(client, exp_id, [PAIR], refuse, fit=refuse) == [(1, "best_simple")]
    assert sorted(baseline_runs.recorded_baselines(client, exp_id)) == [
        (1, "best_simple"), (1, "gboost"), (1, "rbf_svr"), (1, "ridge")]


@pytest.mark.slow
def test_a_nan_valid_pcc_never_wins_and_a_missing_model_means_no_best(store):
    client, exp_id = store
    VALID_NAN = {"ridge": math.nan, "rbf_svr": 0.1, "gboost": 0.05}

    def fit(model, data, **kwargs):
        result = _simple(model, data, **kwargs)
        return SimpleResult(**{**result.__dict__, "valid_pcc": VALID_NAN[model]})

    baseline_runs.log_simple_models(client, exp_id, [PAIR], lambda n: "data", fit=fit, echo=lambda line: None)
    runs = _by_name(client, exp_id)
    assert runs["best_simple"].data.params["model"] == "rbf_svr"
    assert baseline_runs.best_simple_run({"ridge": runs["ridge"]}) is None


@pytest.mark.slow
def test_paper_baselines_carry_the_shared_score_names(store):
    client, exp_id = store
    result = BaselineResult("svr2", "syn1A-syn1B", "raw", 0.5, 1.0, 0.6, 1.1, 1.0, (1.0, 10.0), 50, 0.2)
    baseline_runs.log_result(client, exp_id, PAIR, result, seed=0)
    run = _by_name(client, exp_id)["svr2"]
    assert run.data.metrics == {"best_valid_pcc": 0.5, "best_test_pcc": 0.6, "valid_mse": 1.0, "test_mse": 1.1,
                                "seconds": 0.2}
    assert run.data.params == {"input_transform": "raw", "C": "1", "region_C": "1,10", "train_genes": "50", "seed": "0"}


@pytest.mark.slow
def test_a_failing_fit_is_one_warning_and_the_study_goes_on(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"

    def broken(number):
        raise OSError("the object store is gone")

    baseline_runs.study_simple_models(uri, "e", [PAIR], broken)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "warning: simple models not recorded (OSError: the object store is gone); the study goes on"
