"""The paper's baselines: scores on the real sample, a planted linear signal recovered, C chosen by
cross-validation (not assumed), out-of-fold second layer, and the `deepdiff baselines` command."""

import math
import re

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold, cross_val_predict

from deepdiff.baselines import BASELINE_NAMES, C_GRID, TwoLayerSVR, run_baseline
from deepdiff.cli import main
from deepdiff.data import MARKS, N_BINS, PairData, SplitData
from deepdiff.errors import ConfigError

RESULT = re.compile(
    r"^result baseline=(\w+) pair=(\S+) input_transform=(\w+) valid_pcc=(-?[\d.]+) valid_mse=([\d.]+) "
    r"test_pcc=(-?[\d.]+) test_mse=([\d.]+) C=(\S+) train_genes=(\d+) seconds=([\d.]+)( region_C=\S+)?$"
)


@pytest.fixture(scope="module")
def sample_results(sample_pair):
    return {name: run_baseline(name, sample_pair, input_transform="log1p", seed=0) for name in BASELINE_NAMES}


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


def test_svr_c_is_chosen_by_cross_validation_over_the_grid(sample_results):
    result = sample_results["svr"]
    _assert_c_is_the_cv_argmax(result.model, result.c)


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
