"""The baselines. The paper's: scores on the real sample (pinned), a planted linear signal recovered, C
chosen by cross-validation (not assumed), out-of-fold second layer, and the `deepdiff baselines` command.
The simple models: feature forms checked by hand, a log-scale signal found by the log1p form, choices
made on the valid genes only, deterministic for a seed."""

import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold, cross_val_predict
from threadpoolctl import threadpool_limits

from deepdiff.baselines import (
    BASELINE_NAMES, BIN_BP, C_GRID, FEATURE_FORMS, PAPER_BASELINES, REGIONS_KB, SIMPLE_MODELS, Candidate, SimpleResult,
    TwoLayerSVR, best_of, best_simple_model, bin_features, candidate_count, region_slices, run_baseline,
    run_simple_model, simple_features,
)
from deepdiff.baselines.simple import valid_predictions
from deepdiff.cli import main
from deepdiff.config import INPUT_TRANSFORMS
from deepdiff.data import MARKS, N_BINS, PairData, SplitData
from deepdiff.errors import ConfigError

RESULT = re.compile(
    r"^result baseline=(\w+) pair=(\S+) input_transform=(\w+) valid_pcc=(-?[\d.]+) valid_mse=([\d.]+) "
    r"test_pcc=(-?[\d.]+) test_mse=([\d.]+) C=(\S+) train_genes=(\d+) seconds=([\d.]+)( region_C=\S+)?$"
)


@pytest.fixture(scope="module")
def sample_results(sample_pair):
    return {name: run_baseline(name, sample_pair, input_transform="log1p", seed=0) for name in BASELINE_NAMES}


@pytest.mark.slow  # the module's fit of all three on the real sample: ~8 s
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_every_baseline_scores_the_real_sample(sample_results, name):
    result = sample_results[name]
    assert result.baseline == name and result.pair == "Cell1-Cell2" and result.train_genes == 200
    for value in (result.valid_pcc, result.test_pcc, result.valid_mse, result.test_mse):
        assert math.isfinite(value)
    # the marks carry real information about differential expression in this pair
    assert result.valid_pcc > 0.3 and result.test_pcc > 0.3
    assert (result.c is None) == (name == "linear")
    assert len(result.region_c) == (N_BINS // 20 if name == "svr2" else 0)


def _assert_c_is_the_cv_argmax(search, chosen, folds=5):
    grid = [float(c) for c in search.cv_results_["param_svr__C"]]
    assert grid == list(C_GRID)
    assert all(f"split{k}_test_score" in search.cv_results_ for k in range(folds))
    mean = search.cv_results_["mean_test_score"]
    assert chosen == C_GRID[int(np.argmax(mean))]
    assert search.best_estimator_.named_steps["svr"].C == chosen


@pytest.mark.slow  # sample_results: ~8 s
def test_svr_c_is_chosen_by_cross_validation_over_the_grid(sample_results):
    result = sample_results["svr"]
    _assert_c_is_the_cv_argmax(result.model, result.c)


@pytest.mark.slow  # sample_results: ~8 s
def test_two_layer_svr_chooses_c_per_region_and_for_the_second_layer(sample_results):
    result = sample_results["svr2"]
    model = result.model
    assert isinstance(model, TwoLayerSVR) and len(model.region_searches_) == len(result.region_c)
    for search, chosen in zip(model.region_searches_, result.region_c):
        _assert_c_is_the_cv_argmax(search, chosen)
    _assert_c_is_the_cv_argmax(model.second_search_, result.c)


def test_two_layer_svr_second_layer_learns_from_out_of_fold_predictions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = X[:, 0] - 2 * X[:, 3] + rng.normal(0, 0.3, 120)
    folds = KFold(5, shuffle=True, random_state=0)
    model = TwoLayerSVR(regions=((0, 1, 2), (3, 4, 5)), folds=folds).fit(X, y)
    for r, columns in enumerate(model.regions):
        expected = cross_val_predict(model.region_searches_[r].best_estimator_, X[:, columns], y, cv=folds)
        np.testing.assert_allclose(model.out_of_fold_[:, r], expected)
    # in-sample fits differ from out-of-fold ones: the second layer did not learn on the former
    assert not np.allclose(model.out_of_fold_, model.first_layer(X))
    assert model.second_search_.best_estimator_.n_features_in_ == 2


def _planted_pair(seed: int, genes: int = 300, noise: float = 0.3) -> PairData:
    """Random counts; diff = a fixed linear function of the marks' TSS-window means in A and B + noise."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.0, 1.0, 0.0, -0.5, 0.5])

    def split(n):
        x_a = rng.poisson(rng.gamma(2.0, 1.5, (n, len(MARKS), 1)), (n, len(MARKS), N_BINS)).astype(np.float32)
        x_b = rng.poisson(rng.gamma(2.0, 1.5, (n, len(MARKS), 1)), (n, len(MARKS), N_BINS)).astype(np.float32)
        window = slice(N_BINS // 2 - 20, N_BINS // 2 + 20)
        signal = (x_b[:, :, window].mean(2) - x_a[:, :, window].mean(2)) @ weights
        diff = signal + rng.normal(0.0, noise, n)
        expr_a = np.full(n, 2.0 ** 8 - 1)
        expr_b = 2.0 ** (8 + diff) - 1
        return SplitData.from_arrays([f"G{i}" for i in range(n)], x_a, x_b, expr_a, expr_b, 1.0, 1.0)

    return PairData("A", "B", split(genes), split(genes // 2), split(genes // 2), 1.0, 1.0, ())


def test_linear_regression_recovers_a_planted_linear_signal():
    pair = _planted_pair(1)
    result = run_baseline("linear", pair, input_transform="raw")
    assert result.test_pcc > 0.95 and result.valid_pcc > 0.95
    # and learns nothing from labels shuffled against the marks
    perm = torch.randperm(len(pair.train), generator=torch.Generator().manual_seed(0))
    shuffled = SplitData.from_arrays(pair.train.gene_ids, pair.train.x_a, pair.train.x_b,
                                     pair.train.expr_a[perm], pair.train.expr_b[perm], 1.0, 1.0)
    control = run_baseline("linear", PairData("A", "B", shuffled, pair.valid, pair.test, 1.0, 1.0, ()))
    assert abs(control.test_pcc) < 0.3


def test_same_seed_same_result_and_svr_subsampling(sample_pair):
    one = run_baseline("svr", sample_pair, seed=3, max_train_genes=60)
    two = run_baseline("svr", sample_pair, seed=3, max_train_genes=60)
    assert (one.test_pcc, one.c, one.train_genes) == (two.test_pcc, two.c, 60)
    assert run_baseline("linear", sample_pair, max_train_genes=60).train_genes == 200  # only the SVRs subsample


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "svm"}, "baseline 'svm'"),
    ({"input_transform": "sqrt"}, "input_transform 'sqrt'"),
    ({"pool": 0}, "pool 0"),
    ({"region_bins": 25}, "region_bins 25"),
    ({"folds": 1}, "folds 1"),
])
def test_bad_arguments_are_config_errors(sample_pair, kwargs, message):
    kwargs = {"name": "svr", **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_baseline(kwargs.pop("name"), sample_pair, **kwargs)


@pytest.mark.slow  # linear and svr2 on the real sample: ~7 s
def test_cli_prints_one_parseable_line_per_baseline(sample_dir, tmp_path, capsys):
    code = main(["baselines", "--data", str(sample_dir), "--pair", "Cell1", "Cell2", "--cache-dir", str(tmp_path),
                 "--baselines", "linear,svr2", "--input-transform", "log1p"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    matches = [RESULT.match(line) for line in lines]
    assert all(matches), lines
    assert [m.group(1) for m in matches] == ["linear", "svr2"]
    assert all(m.group(2) == "Cell1-Cell2" and m.group(3) == "log1p" for m in matches)
    assert matches[0].group(8) == "none" and float(matches[1].group(8)) in C_GRID
    assert len(matches[1].group(11).split("=")[1].split(",")) == N_BINS // 20


def test_cli_baseline_names_expand_groups_in_one_order():
    from deepdiff.cli_results import baseline_names

    assert baseline_names("all") == ["linear", "svr", "svr2", "ridge", "rbf_svr", "gboost", "best_simple"]
    assert baseline_names("simple") == ["ridge", "rbf_svr", "gboost", "best_simple"]
    assert baseline_names("best_simple, linear,paper") == ["linear", "svr", "svr2", "best_simple"]
    with pytest.raises(ConfigError, match=re.escape("--baselines 'ridge,lasso': expected a comma-separated subset of "
                                                    "linear,svr,svr2,ridge,rbf_svr,gboost,best_simple (or all, paper, simple)")):
        baseline_names("ridge,lasso")


@pytest.mark.slow  # every simple model's candidates on the real sample: ~15 CPU seconds
def test_cli_prints_the_best_simple_model_after_the_models_asked_for(sample_dir, tmp_path, capsys):
    assert main(["baselines", "--data", str(sample_dir), "--pair", "Cell1", "Cell2", "--cache-dir", str(tmp_path),
                 "--baselines", "best_simple,ridge"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["baseline=ridge", "baseline=best_simple"]
    ridge, best = (dict(field.split("=", 1) for field in line.split()[1:]) for line in lines)
    assert best["model"] == "ridge" and best["candidates"] == "136" and ridge["candidates"] == "24"
    assert {k: v for k, v in best.items() if k not in ("baseline", "candidates", "seconds")} == {
        k: v for k, v in ridge.items() if k not in ("baseline", "candidates", "seconds")}
    assert (best["input_transform"], best["features"], best["test_pcc"]) == ("log1p", "regions", "0.6795")


@pytest.mark.parametrize("args, message", [
    (["--data", "nowhere", "--pair", "Cell1", "Cell2"], "nowhere"),
    (["--pair", "Cell1", "Cell9"], "Cell9"),
    (["--pair", "Cell1", "Cell2", "--baselines", "linear,rf"], "--baselines 'linear,rf'"),
])
def test_cli_bad_input_is_one_error_line(sample_dir, tmp_path, capsys, args, message):
    if "--data" not in args:
        args = ["--data", str(sample_dir), *args]
    code = main(["baselines", "--no-cache", *args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


# ---------------------------------------------------------------------------------------------------
# The paper's three, pinned: the package split and the simple models left them exactly as they were


PAPER_SAMPLE_SCORES = {  # (valid PCC, test PCC) on the real sample, seed 0, before deepdiff.baselines became a package
    ("linear", "raw"): (0.5565, 0.5703), ("linear", "log1p"): (0.6635, 0.6748),
    ("svr", "raw"): (0.5354, 0.5652), ("svr", "log1p"): (0.6075, 0.6486),
    ("svr2", "raw"): (0.5560, 0.5763), ("svr2", "log1p"): (0.5546, 0.5514),
}


@pytest.mark.slow  # sample_results: ~8 s
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_paper_baselines_score_as_before_on_log1p(sample_results, name):
    result = sample_results[name]
    assert (round(result.valid_pcc, 4), round(result.test_pcc, 4)) == PAPER_SAMPLE_SCORES[name, "log1p"]


@pytest.mark.slow
def test_paper_baselines_score_as_before_on_raw(sample_pair):
    assert PAPER_BASELINES == BASELINE_NAMES == ("linear", "svr", "svr2")
    for name in PAPER_BASELINES:
        result = run_baseline(name, sample_pair, input_transform="raw", seed=0)
        assert (round(result.valid_pcc, 4), round(result.test_pcc, 4)) == PAPER_SAMPLE_SCORES[name, "raw"], name


# ---------------------------------------------------------------------------------------------------
# Feature forms


def test_region_slices_of_the_default_regions_and_bad_regions():
    assert REGIONS_KB == ((-10.0, -2.0), (-2.0, 2.0), (2.0, 10.0)) and BIN_BP == 100
    assert region_slices(N_BINS) == (slice(0, 80), slice(80, 120), slice(120, 200))
    assert region_slices(20, ((-1, -0.2), (-0.2, 0.2), (0.2, 1))) == (slice(0, 8), slice(8, 12), slice(12, 20))
    for regions, message in [(((-12, -2),), "(-12, -2) kb: expected start < end within the 200 bins (-10..+10 kb)"),
                             (((2, 2),), "(2, 2) kb: expected start < end"),
                             (((-0.25, 0.5),), "(-0.25, 0.5) kb: expected edges on whole 100 bp bins"),
                             ((), "expected at least one")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            region_slices(N_BINS, regions)


def _hand_made_counts():
    """2 genes x 2 marks x 20 bins (+-1 kb): mark 0 counts t in bin t (gene 1: 2t), mark 1 one count per bin."""
    t = np.arange(20, dtype=np.float64)
    x_a = np.stack([np.stack([t, np.ones(20)]), np.stack([2 * t, np.ones(20)])])
    x_b = np.stack([np.stack([np.zeros(20), 3 * np.ones(20)]), np.stack([t, np.zeros(20)])])
    return torch.tensor(x_a, dtype=torch.float32), torch.tensor(x_b, dtype=torch.float32)


HAND_REGIONS = ((-1, -0.2), (-0.2, 0.2), (0.2, 1))  # bins 0-7, 8-11, 12-19


def test_region_form_sums_each_mark_per_region_for_a_b_and_a_minus_b():
    x_a, x_b = _hand_made_counts()
    features = simple_features(x_a, x_b, "regions", "raw", regions_kb=HAND_REGIONS)
    assert features.shape == (2, 3 * 2 * 3)  # (genes, groups A/B/A-B x marks x regions)
    grid = features.reshape(2, 3, 2, 3)  # (gene, group, mark, region)
    # gene 0, cell A: mark 0 sums 0+..+7 = 28, 8+..+11 = 38, 12+..+19 = 124; mark 1 counts 8, 4, 8 bins
    np.testing.assert_array_equal(grid[0, 0], [[28, 38, 124], [8, 4, 8]])
    np.testing.assert_array_equal(grid[0, 1], [[0, 0, 0], [24, 12, 24]])  # cell B
    np.testing.assert_array_equal(grid[0, 2], [[28, 38, 124], [-16, -8, -16]])  # A - B
    np.testing.assert_array_equal(grid[1, 0], [[56, 76, 248], [8, 4, 8]])
    np.testing.assert_array_equal(grid[1, 2], [[28, 38, 124], [8, 4, 8]])
    # log1p applies to the region totals, then A - B is a difference of logs
    logged = simple_features(x_a, x_b, "regions", "log1p", regions_kb=HAND_REGIONS).reshape(2, 3, 2, 3)
    np.testing.assert_allclose(logged[0, 0, 0], np.log1p([28, 38, 124]))
    np.testing.assert_allclose(logged[0, 2, 1], np.log1p([8, 4, 8]) - np.log1p([24, 12, 24]))


def test_bin_form_pools_bins_like_the_paper():
    x_a, x_b = _hand_made_counts()
    features = simple_features(x_a, x_b, "bins", "raw", pool=10)
    assert features.shape == (2, 3 * 2 * 2)  # 20 bins pooled by 10: 2 values per mark
    grid = features.reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(grid[0, 0], [[4.5, 14.5], [1, 1]])
    np.testing.assert_array_equal(grid[1, 1], [[4.5, 14.5], [0, 0]])
    np.testing.assert_array_equal(grid[0, 2], [[4.5, 14.5], [-2, -2]])
    np.testing.assert_array_equal(features, bin_features(x_a, x_b, 10).reshape(2, -1))  # the paper's, untransformed
    logged = simple_features(x_a, x_b, "bins", "log1p", pool=10).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(logged[0, 0, 0], np.log1p([4.5, 14.5]))
    assert simple_features(x_a, x_b, "bins", "raw", pool=3).shape == (2, 3 * 2 * 7)  # the last run is shorter


# ---------------------------------------------------------------------------------------------------
# Simple models: choices on the valid genes only


def _split_from_diff(rng, n, x_a, x_b, diff):
    return SplitData.from_arrays([f"G{i}" for i in range(n)], x_a, x_b, np.full(n, 2.0 ** 8 - 1), 2.0 ** (8 + diff) - 1,
                                 1.0, 1.0)


def _log_signal_pair(seed: int, genes: int = 240, noise: float = 0.2) -> PairData:
    """Heavy-tailed counts (a log-normal level per gene and mark); diff = log1p of H3K4me3's promoter total
    in B minus the same in A, + noise: linear in log1p of the counts, not in the counts."""
    rng = np.random.default_rng(seed)

    def split(n):
        x_a, x_b = (rng.poisson(rng.lognormal(0.0, 1.5, (n, len(MARKS), 1)), (n, len(MARKS), N_BINS)).astype(np.float32)
                    for _ in range(2))
        promoter = np.log1p(x_b[:, 1, 80:120].sum(1)) - np.log1p(x_a[:, 1, 80:120].sum(1))
        return _split_from_diff(rng, n, x_a, x_b, promoter + rng.normal(0.0, noise, n))

    return PairData("A", "B", split(genes), split(genes // 2), split(genes // 2), 1.0, 1.0, ())


@pytest.fixture(scope="module")
def log_pair():
    return _log_signal_pair(2)


def _best_valid(result, transform):
    return max(c.valid_pcc for c in result.candidates if c.input_transform == transform)


def test_a_signal_linear_in_log_counts_is_found_by_the_log1p_form(log_pair):
    result = run_simple_model("ridge", log_pair, seed=0)
    assert result.input_transform == "log1p" and result.features == "regions"
    assert _best_valid(result, "log1p") > _best_valid(result, "raw") + 0.1
    assert result.valid_pcc > 0.9 and result.test_pcc > 0.9
    assert len(result.candidates) == candidate_count(["ridge"]) == 2 * 2 * 6
    assert {(c.input_transform, c.features) for c in result.candidates} == {
        (t, f) for t in INPUT_TRANSFORMS for f in FEATURE_FORMS}


def test_the_choice_is_the_best_valid_candidate_refitted(log_pair):
    result = run_simple_model("rbf_svr", log_pair, seed=0)
    best = max(result.candidates, key=lambda c: c.valid_pcc)
    assert (result.input_transform, result.features, result.params) == (best.input_transform, best.features, best.params)
    assert result.valid_pcc == pytest.approx(best.valid_pcc, abs=1e-12)  # the refit is the candidate
    svr = result.estimator.named_steps["svr"]
    features = 3 * len(MARKS) * (3 if result.features == "regions" else N_BINS // 10)
    assert (svr.C, svr.gamma) == (result.hyperparameters["C"], result.hyperparameters["gamma_scale"] / features)


def test_test_genes_never_touch_the_choice(log_pair):
    perm = np.random.default_rng(5).permutation(len(log_pair.test))
    test = log_pair.test
    permuted = SplitData.from_arrays(test.gene_ids, test.x_a, test.x_b, test.expr_a[perm], test.expr_b[perm], 1.0, 1.0)
    other = PairData("A", "B", log_pair.train, log_pair.valid, permuted, 1.0, 1.0, ())
    options = {"models": ("ridge", "rbf_svr"), "forms": ("regions",), "seed": 0}
    one, two = best_simple_model(log_pair, **options), best_simple_model(other, **options)
    assert (one.model, one.input_transform, one.features, one.params, one.valid_pcc) == (
        two.model, two.input_transform, two.features, two.params, two.valid_pcc)
    assert one.candidates == two.candidates  # every valid score the same
    assert one.test_pcc > 0.9 and abs(two.test_pcc) < 0.3  # and the test score did see the permuted targets


def test_simple_model_same_seed_same_result_and_svr_subsampling(log_pair):
    def run(seed):
        result = run_simple_model("rbf_svr", log_pair, seed=seed, forms=("regions",), max_train_genes=60)
        return dataclasses.replace(result, seconds=0.0)

    one = run(3)
    assert one == run(3) and one.train_genes == 60
    assert run(4).candidates != one.candidates  # another subsample
    assert run_simple_model("ridge", log_pair, max_train_genes=60).train_genes == 240  # only the SVR subsamples


def test_staged_grid_axis_predicts_as_a_fit_of_that_many_iterations(log_pair):
    """gboost's iterations are read off one fit's stages: each must equal a fresh fit of that many."""
    grid = tuple((("learning_rate", 0.1), ("max_leaf_nodes", 7), ("max_iter", k)) for k in (5, 20))
    spec = dataclasses.replace(SIMPLE_MODELS["gboost"], grid=grid)
    X = {s: simple_features(log_pair.split(s).x_a, log_pair.split(s).x_b, "regions", "log1p") for s in ("train", "valid")}
    y = log_pair.train.diff.double().numpy()
    with threadpool_limits(1):  # as run_simple_model fits (two OpenMP threads crawl on a loaded 2-core machine)
        got = list(valid_predictions(spec, X["train"], y, X["valid"], seed=0))
        assert [params for params, _ in got] == list(grid)
        for (params, prediction), iterations in zip(got, (5, 20)):
            fresh = HistGradientBoostingRegressor(learning_rate=0.1, max_leaf_nodes=7, max_iter=iterations,
                                                  early_stopping=False, random_state=0).fit(X["train"], y)
            np.testing.assert_allclose(prediction, fresh.predict(X["valid"]), rtol=0, atol=1e-12)
    assert not np.allclose(got[0][1], got[1][1])


@pytest.mark.slow
def test_boosting_chooses_on_valid_and_its_refit_matches_the_candidate(log_pair):
    result = run_simple_model("gboost", log_pair, seed=0, transforms=("log1p",), forms=("regions",))
    assert len(result.candidates) == 2 * 2 * 4 and {c.features for c in result.candidates} == {"regions"}
    best = max(result.candidates, key=lambda c: c.valid_pcc)
    assert result.params == best.params and result.valid_pcc == pytest.approx(best.valid_pcc, abs=1e-12)
    assert result.estimator.max_iter == result.hyperparameters["max_iter"] and result.test_pcc > 0.8


def _result(model, valid_pcc, seconds, pair="A-B"):
    candidate = Candidate(model, "log1p", "regions", (("alpha", 1.0),), valid_pcc, 1.0)
    return SimpleResult(model, pair, "log1p", "regions", (("alpha", 1.0),), valid_pcc, 1.0, 0.5, 2.0, 10, seconds,
                        (candidate,))


def test_best_of_keeps_the_best_valid_pcc_every_candidate_and_the_total_time():
    best = best_of([_result("ridge", 0.6, 1.0), _result("rbf_svr", 0.7, 2.0), _result("gboost", math.nan, 4.0),
                    _result("gboost", 0.7, 8.0)])
    assert best.model == "rbf_svr" and best.valid_pcc == 0.7  # a NaN never wins; the first of a tie does
    assert [c.model for c in best.candidates] == ["ridge", "rbf_svr", "gboost", "gboost"] and best.seconds == 15.0
    with pytest.raises(ValueError, match="several pairs"):
        best_of([_result("ridge", 0.6, 1.0), _result("ridge", 0.6, 1.0, pair="C-D")])
    with pytest.raises(ValueError, match="at least one"):
        best_of([])


def test_simple_result_line_is_parseable(log_pair):
    line = run_simple_model("ridge", log_pair, forms=("regions",)).line()
    assert re.fullmatch(r"result baseline=ridge model=ridge pair=A-B input_transform=log1p features=regions params=alpha:[\d.e+]+ "
                        r"valid_pcc=[\d.]+ valid_mse=[\d.]+ test_pcc=[\d.]+ test_mse=[\d.]+ candidates=12 "
                        r"train_genes=240 seconds=[\d.]+", line), line


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "lasso"}, "simple model 'lasso': expected one of ridge, rbf_svr, gboost"),
    ({"transforms": ("sqrt",)}, "input_transforms sqrt: expected distinct values of raw, log1p"),
    ({"forms": ()}, "feature forms (none)"),
    ({"forms": ("regions",), "regions_kb": ((-20, 0),)}, "regions: (-20, 0) kb"),
    ({"pool": 0}, "pool 0"),
    ({"threads": 0}, "threads 0"),
])
def test_simple_model_bad_arguments_are_config_errors(log_pair, kwargs, message):
    kwargs = {"name": "ridge", **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_simple_model(kwargs.pop("name"), log_pair, **kwargs)
    with pytest.raises(ConfigError, match=re.escape("simple models (none): expected one or more of ridge")):
        best_simple_model(log_pair, models=())


@pytest.mark.slow
def test_on_the_real_sample_log_region_sums_beat_the_papers_features(sample_pair):
    for name in ("ridge", "rbf_svr"):
        result = run_simple_model(name, sample_pair, seed=0)
        assert (result.input_transform, result.features) == ("log1p", "regions"), name
        assert result.valid_pcc > 0.7 and result.test_pcc > PAPER_SAMPLE_SCORES["svr2", "raw"][1] + 0.05, name
