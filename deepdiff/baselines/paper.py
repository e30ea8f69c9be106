"""The paper's baselines (appendix Tables 2-3): linear regression, one- and two-layer RBF SVR.

All three predict the same differential target as the deep models (``SplitData.diff`` =
log2(expr_B + 1) - log2(expr_A + 1)), are fitted on the pair's **train** genes only, and are scored
on its valid and test genes with `deepdiff.metrics` (PCC, MSE). Their inputs are the histone-mark
counts after the deep models' own input transform (`deepdiff.train.prepare_split`: "raw" counts or
"log1p"), then averaged over groups of `pool` consecutive bins (``(N, M, T) -> (N, M, T / pool)``).
Every model is a scikit-learn pipeline with a `StandardScaler` inside, so scaling is learnt on the
training rows of each fit (and of each cross-validation fold) only.

The paper names the baselines and their settings (RBF kernel, C in {0.1, 1, 10, 100} by
cross-validation, everything else sklearn defaults) but not their features; choices made here:

- ``linear`` (Karlic et al. 2010; Table 2: no bin information, one region): ordinary least squares
  on each mark's mean over the `tss_window_bins` bins around the TSS (bins T/2 - w/2 .. T/2 + w/2 - 1;
  40 bins = Karlic's 4 kb around the TSS at the defaults), in cell A and in cell B (2M features).
  (On the real sample pair with log1p inputs this window scores test PCC 0.68 against 0.60 for the
  mean over all 200 bins.)
- ``svr`` (single layer, "bin-specific"): one RBF SVR on every pooled bin of every mark in A, in B and
  their difference A - B (3 M T / pool features; 300 at the defaults).
- ``svr2`` (two layer, after Cheng & Gerstein 2012): the T bins are cut into regions of
  `region_bins` bins (10 regions of 2 kb at the defaults); the first layer is one RBF SVR per region
  on that region's pooled bins (A, B, A - B), the second layer one RBF SVR on the first layer's
  predictions. The second layer is trained on **out-of-fold** first-layer predictions
  (`cross_val_predict`, the same seeded folds), never on in-sample fits; at valid/test time it reads
  the predictions of the first-layer models refitted on all training genes.

C is chosen per SVR (per region too) by `GridSearchCV` over `C_GRID` with seeded `KFold` folds
(`folds`, shuffled with `seed`), scored by sklearn's default for regressors (R^2); the model with the
best mean CV score is refitted on all its training genes. Linear regression has no C.

Runtime: RBF SVR costs O(n^2) in the training genes, so the two SVR baselines fit on at most
`max_train_genes` training genes (a seeded random subset; linear regression always sees all). Measured
on a shared 2-core CPU machine, default settings, one process: the real sample pair (200 training genes)
takes 0.2 s (linear), 0.3 s (svr), 1.3-1.9 s (svr2, 10 regions x (4 C x 5 folds + refit + 5
out-of-fold fits) + the second layer); 10,000 training genes of a default synthetic pair (SVRs
subsampled to 2,000) 0.7 s, 34 s and 142 s (8 s and 81 s for the SVRs on the easier `signal="easy"`
pair, whose fits converge faster). `n_jobs` spreads the cross-validation fits over processes.

These three stay as the paper defines them (Table 3's comparison); the strongest simple models, which
choose their own transform and features on the valid genes, are `deepdiff.baselines.simple`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from deepdiff.baselines.features import bin_features
from deepdiff.config import INPUT_TRANSFORMS
from deepdiff.data import PairData, SplitData
from deepdiff.errors import ConfigError
from deepdiff.metrics import mse, pcc
from deepdiff.train import prepare_split

C_GRID = (0.1, 1.0, 10.0, 100.0)  # the paper's SVR grid (appendix 1.5)
PAPER_BASELINES = ("linear", "svr", "svr2")  # Table 3's comparison, in the paper's order
BASELINE_NAMES = PAPER_BASELINES  # the name the command line and the study import


@dataclass(frozen=True)
class BaselineResult:
    """One fitted baseline on one pair: scores on valid and test, and what was chosen."""

    baseline: str  # one of PAPER_BASELINES
    pair: str  # "CELL_A-CELL_B"
    input_transform: str  # "raw" or "log1p", as the deep models' `input_transform`
    valid_pcc: float  # Pearson correlation of predicted vs true diff on the valid genes
    valid_mse: float  # mean squared error on the valid genes
    test_pcc: float  # Pearson correlation on the test genes (the number the paper reports)
    test_mse: float  # mean squared error on the test genes
    c: float | None  # C chosen by cross-validation (svr2: of the second layer); None for linear
    region_c: tuple[float, ...]  # svr2: C chosen for each first-layer region, in bin order; else ()
    train_genes: int  # training genes the model was fitted on (after subsampling to max_train_genes)
    seconds: float  # wall time of feature building, fitting and predicting
    model: Any = field(default=None, compare=False, repr=False)  # the fitted estimator (for inspection)

    def line(self) -> str:
        """The one parseable stdout line of `deepdiff baselines` for this result."""
        fields = {
            "baseline": self.baseline, "pair": self.pair, "input_transform": self.input_transform,
            "valid_pcc": f"{self.valid_pcc:.4f}", "valid_mse": f"{self.valid_mse:.4f}",
            "test_pcc": f"{self.test_pcc:.4f}", "test_mse": f"{self.test_mse:.4f}",
            "C": "none" if self.c is None else f"{self.c:g}", "train_genes": self.train_genes,
            "seconds": f"{self.seconds:.2f}",
        }
        if self.region_c:
            fields["region_C"] = ",".join(f"{c:g}" for c in self.region_c)
        return "result " + " ".join(f"{k}={v}" for k, v in fields.items())


def _svr_pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("svr", SVR(kernel="rbf"))])


def _c_search(folds: KFold, n_jobs: int) -> GridSearchCV:
    """Cross-validated choice of C over `C_GRID` for a scaled RBF SVR; refits the best on all rows."""
    return GridSearchCV(_svr_pipeline(), {"svr__C": list(C_GRID)}, cv=folds, n_jobs=n_jobs)


def chosen_c(search: GridSearchCV) -> float:
    """The C a fitted `_c_search` picked."""
    return float(search.best_params_["svr__C"])


class TwoLayerSVR(RegressorMixin, BaseEstimator):
    """Two-layer SVR (Cheng & Gerstein): one RBF SVR per column group, then an RBF SVR over their outputs.

    fit(X (N, F), y (N,)); predict(X (N, F)) -> (N,). `regions` lists the column indices of each
    first-layer model. Every SVR's C is chosen by `GridSearchCV` over `C_GRID` with `folds`; the second
    layer learns from out-of-fold first-layer predictions (`cross_val_predict` with the same folds).
    Fitted attributes: ``region_searches_`` (one GridSearchCV per region), ``out_of_fold_`` (N, regions)
    the second layer's training inputs, ``second_search_``.
    """

    def __init__(self, regions: tuple[tuple[int, ...], ...] = (), folds: KFold | None = None, n_jobs: int = 1):
        self.regions = regions
        self.folds = folds
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TwoLayerSVR":
        if not self.regions:
            raise ValueError("TwoLayerSVR needs at least one region of columns")
        self.region_searches_, out_of_fold = [], []
        for columns in self.regions:
            search = _c_search(self.folds, self.n_jobs).fit(X[:, columns], y)
            self.region_searches_.append(search)
            out_of_fold.append(cross_val_predict(clone(search.best_estimator_), X[:, columns], y, cv=self.folds,
                                                 n_jobs=self.n_jobs))
        self.out_of_fold_ = np.column_stack(out_of_fold)
        self.second_search_ = _c_search(self.folds, self.n_jobs).fit(self.out_of_fold_, y)
        return self

    def first_layer(self, X: np.ndarray) -> np.ndarray:
        """(N, regions) predictions of the first-layer models refitted on all training rows."""
        return np.column_stack([s.predict(X[:, cols]) for s, cols in zip(self.region_searches_, self.regions)])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.second_search_.predict(self.first_layer(X))


@dataclass(frozen=True)
class _Fitted:
    model: Any  # has .predict(features)
    c: float | None
    region_c: tuple[float, ...]


def tss_window(n_bins: int, width: int) -> slice:
    """The `width` bins centred on the TSS bin T // 2 (clipped to the T bins)."""
    start = max(0, n_bins // 2 - width // 2)
    return slice(start, min(n_bins, start + width))


def _linear_features(x_a: torch.Tensor, x_b: torch.Tensor, *, window: slice, **_: Any) -> np.ndarray:
    """(N, 2M): each mark's mean over the TSS `window`, cell A then cell B."""
    a = x_a[:, :, window].detach().cpu().double().mean(2).numpy()
    b = x_b[:, :, window].detach().cpu().double().mean(2).numpy()
    return np.concatenate([a, b], axis=1)


def _svr_features(x_a: torch.Tensor, x_b: torch.Tensor, *, pool: int, **_: Any) -> np.ndarray:
    """(N, 3 M P) flattened `bin_features`; column order (cell group, mark, pooled bin)."""
    return bin_features(x_a, x_b, pool).reshape(x_a.shape[0], -1)


def _fit_linear(X: np.ndarray, y: np.ndarray, **_: Any) -> _Fitted:
    model = Pipeline([("scale", StandardScaler()), ("ols", LinearRegression())]).fit(X, y)
    return _Fitted(model, None, ())


def _fit_svr(X: np.ndarray, y: np.ndarray, *, folds: KFold, n_jobs: int, **_: Any) -> _Fitted:
    search = _c_search(folds, n_jobs).fit(X, y)
    return _Fitted(search, chosen_c(search), ())


def region_columns(n_marks: int, n_pooled: int, pooled_per_region: int) -> tuple[tuple[int, ...], ...]:
    """Column indices of `_svr_features` (groups A, B, A-B x marks x pooled bins) per region of
    `pooled_per_region` consecutive pooled bins; every region has all groups and marks."""
    index = np.arange(3 * n_marks * n_pooled).reshape(3, n_marks, n_pooled)
    starts = range(0, n_pooled, pooled_per_region)
    return tuple(tuple(index[:, :, s : s + pooled_per_region].ravel().tolist()) for s in starts)


def _fit_svr2(X: np.ndarray, y: np.ndarray, *, folds: KFold, n_jobs: int, regions: tuple, **_: Any) -> _Fitted:
    model = TwoLayerSVR(regions=regions, folds=folds, n_jobs=n_jobs).fit(X, y)
    return _Fitted(model, chosen_c(model.second_search_), tuple(chosen_c(s) for s in model.region_searches_))


# name -> (features of one split, fit, is an SVR: subsampled to max_train_genes)
_BASELINES: dict[str, tuple[Callable, Callable, bool]] = {
    "linear": (_linear_features, _fit_linear, False),
    "svr": (_svr_features, _fit_svr, True),
    "svr2": (_svr_features, _fit_svr2, True),
}


def run_baseline(
    name: str,
    pair: PairData,
    *,
    input_transform: str = "raw",
    seed: int = 0,
    pool: int = 10,
    region_bins: int = 20,
    tss_window_bins: int = 40,
    folds: int = 5,
    max_train_genes: int = 2000,
    n_jobs: int = 1,
) -> BaselineResult:
    """Fit baseline `name` on `pair`'s train genes and score it on valid and test.

    input_transform: "raw" or "log1p", applied to the counts exactly as for the deep models.
    pool: bins averaged into one feature (T = 200 bins -> 20 features per mark at 10).
    region_bins: bins per first-layer region of ``svr2`` (a multiple of `pool`).
    tss_window_bins: bins around the TSS whose mean per mark ``linear`` reads.
    folds: cross-validation folds for C (and for the out-of-fold second-layer inputs), shuffled with `seed`.
    max_train_genes: the SVRs fit on a seeded random subset of at most this many training genes.
    n_jobs: processes for scikit-learn's cross-validation (1 = this process only).
    Deterministic for a given pair and arguments. Bad arguments raise `ConfigError`.
    """
    if name not in _BASELINES:
        raise ConfigError(f"baseline {name!r}: expected one of {', '.join(BASELINE_NAMES)}")
    if input_transform not in INPUT_TRANSFORMS:
        raise ConfigError(f"input_transform {input_transform!r}: expected one of {', '.join(INPUT_TRANSFORMS)}")
    n_bins = pair.train.x_a.shape[2]
    if not 1 <= pool <= n_bins:
        raise ConfigError(f"pool {pool}: expected 1..{n_bins} bins")
    if region_bins < pool or region_bins % pool:
        raise ConfigError(f"region_bins {region_bins}: expected a multiple of pool ({pool})")
    if not 1 <= tss_window_bins <= n_bins:
        raise ConfigError(f"tss_window_bins {tss_window_bins}: expected 1..{n_bins} bins")
    if folds < 2:
        raise ConfigError(f"folds {folds}: expected at least 2")
    if max_train_genes < 2 * folds:
        raise ConfigError(f"max_train_genes {max_train_genes}: expected at least 2 x folds ({2 * folds})")
    if len(pair.train) < 2 * folds:
        raise ConfigError(f"{len(pair.train)} training genes: expected at least 2 x folds ({2 * folds}) to choose C")

    started = time.perf_counter()
    make_features, fit, is_svr = _BASELINES[name]
    cpu = torch.device("cpu")
    splits: dict[str, SplitData] = {s: pair.split(s) for s in ("train", "valid", "test")}
    prepared = {s: prepare_split(split, input_transform, cpu) for s, split in splits.items()}
    window = tss_window(n_bins, tss_window_bins)
    X = {s: make_features(p.x_a, p.x_b, pool=pool, window=window) for s, p in prepared.items()}
    y = {s: p.targets["diff"].double().numpy() for s, p in prepared.items()}
    rows = np.arange(len(y["train"]))
    if is_svr and len(rows) > max_train_genes:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_train_genes, replace=False))
    n_pooled = -(-n_bins // pool)
    regions = region_columns(pair.train.x_a.shape[1], n_pooled, region_bins // pool)
    fitted = fit(X["train"][rows], y["train"][rows], folds=KFold(folds, shuffle=True, random_state=seed),
                 n_jobs=n_jobs, regions=regions)
    scores = {}
    for s in ("valid", "test"):
        prediction, truth = torch.from_numpy(fitted.model.predict(X[s])), torch.from_numpy(y[s])
        scores[f"{s}_pcc"], scores[f"{s}_mse"] = pcc(prediction, truth), mse(prediction, truth)
    return BaselineResult(
        baseline=name, pair=f"{pair.cell_a}-{pair.cell_b}", input_transform=input_transform, **scores,
        c=fitted.c, region_c=fitted.region_c, train_genes=len(rows), seconds=time.perf_counter() - started,
        model=fitted.model,
    )
