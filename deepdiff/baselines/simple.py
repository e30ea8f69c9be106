"""The strongest simple models a reviewer would try beside DeepDiff, each choosing its inputs on validation.

A simple model predicts the same target as the deep models and the paper's baselines (``SplitData.diff``
= log2(expr_B + 1) - log2(expr_A + 1)). Each of `SIMPLE_MODELS` tries every input transform ("raw",
"log1p") x feature form (`deepdiff.baselines.features`: pooled "bins", or "regions" summed per mark
around the TSS) x setting of its hyperparameter grid: it is fitted on the pair's **train** genes and
scored by PCC on its **valid** genes (`Candidate`). The candidate with the best valid PCC (the first
one on a tie; a NaN PCC never wins) is refitted exactly as chosen and scored once on the **test** genes
(`SimpleResult`). `best_simple_model` does this for every model and keeps the one with the best valid
PCC, "the best simple model" of the pair. Test genes are read only after the choice is made, so they
cannot influence it; everything is seeded and deterministic.

The models and their grids (`SIMPLE_MODELS`; 2 transforms x 2 forms x the grid = the candidates):

- ``ridge``: `StandardScaler` + `Ridge`, alpha in 0.1 .. 10^4 (6 values; 24 candidates);
- ``rbf_svr``: `StandardScaler` + RBF `SVR`, C in {0.1, 1, 10, 100} x gamma = gamma_scale / features
  with gamma_scale in {0.1, 1, 10} (1 = sklearn's ``gamma="scale"`` on standardised inputs; 48
  candidates). O(n^2) in the training genes: fitted on a seeded random subset of at most
  `max_train_genes` training genes (as the paper's SVRs); the other models see all of them;
- ``gboost``: `HistGradientBoostingRegressor` (no early stopping, ``random_state=seed``), learning rate
  {0.03, 0.1} x max_leaf_nodes {7, 31} x boosting iterations {50, 100, 200, 400} (64 candidates). The
  iterations are read off one 400-iteration fit per (learning rate, leaves) with ``staged_predict``:
  without early stopping or subsampling the first k trees of that fit are the trees a k-iteration fit
  grows, which the refit of the chosen candidate confirms (same valid PCC, tested).

Choosing among 136 candidates on the valid genes makes the chosen valid PCC optimistic; the test PCC is
the honest figure (the same protocol as the deep models: train to fit, valid to choose, test to report).
Runtime (``benchmarks/bench_baselines.py``, one thread): all three models on the real sample pair (200
training genes) 12 CPU s, on a 2,000-gene synthetic pair (1,080 training genes) 48 CPU s, gradient
boosting 11 and 40 s of that. The fits run on `threads` threads of scikit-learn's native pools (OpenMP,
BLAS; default 1: on a shared 2-core machine under load, two OpenMP threads made a 400-iteration boosting
fit 10-25x slower than one, spinning at barriers). Boosting's predictions were the same on 1 and 2 threads.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from deepdiff.baselines.features import FEATURE_FORMS, REGIONS_KB, region_slices, simple_features
from deepdiff.config import INPUT_TRANSFORMS
from deepdiff.data import PairData
from deepdiff.errors import ConfigError
from deepdiff.metrics import mse, pcc

Params = tuple[tuple[str, Any], ...]  # one hyperparameter setting, ((name, value), ...) in the grid's order
BEST_SIMPLE = "best_simple"  # the name of a pair's best simple model (`best_simple_model`) in tables, MLflow, the CLI


def _grid(**axes: tuple) -> tuple[Params, ...]:
    """Every combination of the axes' values, the last axis varying fastest."""
    return tuple(tuple(zip(axes, values)) for values in itertools.product(*axes.values()))


@dataclass(frozen=True)
class SimpleModel:
    """One simple model: how to build it and the hyperparameter grid it chooses from."""

    label: str  # how tables and the report name it
    grid: tuple[Params, ...]  # the hyperparameter settings tried
    build: Callable[[dict[str, Any], int, int], Any]  # (setting, feature count, seed) -> unfitted regressor
    subsample: bool  # O(n^2) in the training genes: fitted on a seeded subset of <= max_train_genes
    staged: str | None = None  # a grid axis read off one fit's staged_predict (boosting iterations), or None


def _ridge(setting: dict[str, Any], n_features: int, seed: int) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=setting["alpha"]))])


def _rbf_svr(setting: dict[str, Any], n_features: int, seed: int) -> Pipeline:
    svr = SVR(kernel="rbf", C=setting["C"], gamma=setting["gamma_scale"] / n_features)
    return Pipeline([("scale", StandardScaler()), ("svr", svr)])


def _gboost(setting: dict[str, Any], n_features: int, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=setting["learning_rate"], max_leaf_nodes=setting["max_leaf_nodes"], max_iter=setting["max_iter"],
        early_stopping=False, random_state=seed,
    )


SIMPLE_MODELS: Mapping[str, SimpleModel] = MappingProxyType({
    "ridge": SimpleModel("ridge regression", _grid(alpha=(0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)), _ridge, False),
    "rbf_svr": SimpleModel("RBF SVR", _grid(C=(0.1, 1.0, 10.0, 100.0), gamma_scale=(0.1, 1.0, 10.0)), _rbf_svr, True),
    "gboost": SimpleModel("gradient boosting", _grid(learning_rate=(0.03, 0.1), max_leaf_nodes=(7, 31),
                                                     max_iter=(50, 100, 200, 400)), _gboost, False, staged="max_iter"),
})


@dataclass(frozen=True)
class Candidate:
    """One setting a simple model tried: fitted on the train genes, scored on the valid genes only."""

    model: str  # a key of SIMPLE_MODELS
    input_transform: str  # "raw" or "log1p", applied to pooled bins / region sums
    features: str  # one of FEATURE_FORMS
    params: Params  # the hyperparameter setting
    valid_pcc: float  # Pearson correlation of predicted vs true diff on the valid genes (what is maximised)
    valid_mse: float  # mean squared error on the valid genes


@dataclass(frozen=True)
class SimpleResult:
    """A simple model as chosen on the valid genes and refitted on the train genes, scored on test."""

    model: str  # a key of SIMPLE_MODELS (from best_simple_model: the winning model's)
    pair: str  # "CELL_A-CELL_B"
    input_transform: str  # the chosen transform, "raw" or "log1p"
    features: str  # the chosen feature form, one of FEATURE_FORMS
    params: Params  # the chosen hyperparameter setting
    valid_pcc: float  # of the refitted choice on the valid genes (equal to its candidate's)
    valid_mse: float
    test_pcc: float  # on the test genes: the number to compare with the deep models' test PCC
    test_mse: float
    train_genes: int  # training genes the chosen model was fitted on (after subsampling to max_train_genes)
    seconds: float  # wall time of all candidates' features, fits and scores plus the refit (best: every model's)
    candidates: tuple[Candidate, ...]  # every setting tried, in order (best_simple_model: of every model)
    estimator: Any = field(default=None, compare=False, repr=False)  # the fitted regressor (for inspection)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.params)

    def line(self, name: str | None = None) -> str:
        """One parseable stdout line for this result, ``result baseline=NAME model=MODEL ...`` like
        `BaselineResult.line` (NAME: `name`, e.g. `BEST_SIMPLE`, else the model's own)."""
        fields = {
            "baseline": name or self.model, "model": self.model, "pair": self.pair,
            "input_transform": self.input_transform, "features": self.features,
            "params": ",".join(f"{k}:{v:g}" for k, v in self.params),
            "valid_pcc": f"{self.valid_pcc:.4f}", "valid_mse": f"{self.valid_mse:.4f}",
            "test_pcc": f"{self.test_pcc:.4f}", "test_mse": f"{self.test_mse:.4f}",
            "candidates": len(self.candidates), "train_genes": self.train_genes, "seconds": f"{self.seconds:.2f}",
        }
        return "result " + " ".join(f"{k}={v}" for k, v in fields.items())


def candidate_count(models: Iterable[str] = tuple(SIMPLE_MODELS), transforms: Iterable[str] = INPUT_TRANSFORMS,
                    forms: Iterable[str] = FEATURE_FORMS) -> int:
    """How many candidates `run_simple_model` tries for these models, transforms and forms (for a progress bar)."""
    return sum(len(SIMPLE_MODELS[m].grid) for m in models) * len(tuple(transforms)) * len(tuple(forms))


def _rank(candidate: Candidate | SimpleResult) -> float:
    return -math.inf if math.isnan(candidate.valid_pcc) else candidate.valid_pcc


def _first_best(items: Iterable[Any]) -> Any:
    """The item with the highest valid PCC; the earliest on a tie (max keeps the first maximum)."""
    return max(items, key=_rank)


def _scores(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    p, t = torch.from_numpy(np.asarray(prediction, dtype=np.float64)), torch.from_numpy(truth)
    return pcc(p, t), mse(p, t)


def valid_predictions(spec: SimpleModel, X: np.ndarray, y: np.ndarray, X_valid: np.ndarray,
                       seed: int) -> Iterable[tuple[Params, np.ndarray]]:
    """(setting, predictions on the valid rows) for every setting of `spec.grid`, in grid order."""
    if spec.staged is None:
        for params in spec.grid:
            yield params, spec.build(dict(params), X.shape[1], seed).fit(X, y).predict(X_valid)
        return
    groups: dict[Params, list[Params]] = {}  # the other axes' values -> their settings along the staged axis
    for params in spec.grid:
        groups.setdefault(tuple(p for p in params if p[0] != spec.staged), []).append(params)
    for members in groups.values():
        top = max(dict(p)[spec.staged] for p in members)
        model = spec.build({**dict(members[0]), spec.staged: top}, X.shape[1], seed).fit(X, y)
        stages = list(model.staged_predict(X_valid))  # stages[k - 1]: the prediction after k iterations
        for params in members:
            yield params, stages[dict(params)[spec.staged] - 1]


def _check(name: str, pair: PairData, transforms: tuple, forms: tuple, pool: int, regions_kb: tuple,
           max_train_genes: int) -> None:
    if name not in SIMPLE_MODELS:
        raise ConfigError(f"simple model {name!r}: expected one of {', '.join(SIMPLE_MODELS)}")
    for what, given, known in (("input_transforms", transforms, INPUT_TRANSFORMS), ("feature forms", forms, FEATURE_FORMS)):
        if not given or any(g not in known for g in given) or len(set(given)) != len(given):
            shown = ",".join(map(str, given)) or "(none)"
            raise ConfigError(f"{what} {shown}: expected distinct values of {', '.join(known)}")
    n_bins = pair.train.x_a.shape[2]
    if not 1 <= pool <= n_bins:
        raise ConfigError(f"pool {pool}: expected 1..{n_bins} bins")
    if "regions" in forms:
        region_slices(n_bins, regions_kb)
    if max_train_genes < 2:
        raise ConfigError(f"max_train_genes {max_train_genes}: expected at least 2")
    for split in ("train", "valid", "test"):
        if len(pair.split(split)) < 2:
            raise ConfigError(f"{len(pair.split(split))} {split} genes: expected at least 2 to fit and score a model")


def run_simple_model(
    name: str,
    pair: PairData,
    *,
    seed: int = 0,
    transforms: tuple[str, ...] = INPUT_TRANSFORMS,
    forms: tuple[str, ...] = FEATURE_FORMS,
    pool: int = 10,
    regions_kb: tuple[tuple[float, float], ...] = REGIONS_KB,
    max_train_genes: int = 2000,
    threads: int | None = 1,
    progress: Callable[[Candidate], Any] | None = None,
) -> SimpleResult:
    """Simple model `name` (a key of `SIMPLE_MODELS`) on `pair`: every transform x form x setting fitted
    on train and scored on valid, the best refitted and scored on test (see the module docstring).

    transforms, forms: the input transforms and feature forms to choose from (default: all).
    pool: bins averaged per feature of the "bins" form; regions_kb: the "regions" form's regions.
    max_train_genes: models marked `subsample` fit on a seeded subset of at most this many training genes.
    threads: threads of scikit-learn's native pools (OpenMP: gradient boosting; BLAS: ridge), None: every core.
    progress: called with each `Candidate` once it is scored (e.g. to advance a progress bar).
    Deterministic for a given pair and arguments. Bad arguments raise `ConfigError`.
    """
    transforms, forms = tuple(transforms), tuple(forms)
    _check(name, pair, transforms, forms, pool, regions_kb, max_train_genes)
    if threads is not None and threads < 1:
        raise ConfigError(f"threads {threads}: expected at least 1 (or None for every core)")
    with threadpool_limits(limits=threads):
        return _run(name, pair, seed, transforms, forms, pool, regions_kb, max_train_genes, progress)


def _run(name: str, pair: PairData, seed: int, transforms: tuple, forms: tuple, pool: int, regions_kb: tuple,
         max_train_genes: int, progress: Callable[[Candidate], Any] | None) -> SimpleResult:
    started = time.perf_counter()
    spec = SIMPLE_MODELS[name]
    y = {s: pair.split(s).diff.detach().cpu().double().numpy() for s in ("train", "valid", "test")}
    rows = np.arange(len(y["train"]))
    if spec.subsample and len(rows) > max_train_genes:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_train_genes, replace=False))

    def features(split: str, transform: str, form: str) -> np.ndarray:
        data = pair.split(split)
        return simple_features(data.x_a, data.x_b, form, transform, pool=pool, regions_kb=regions_kb)

    candidates = []
    for transform, form in itertools.product(transforms, forms):  # the test genes are not read in this loop
        X, X_valid = features("train", transform, form)[rows], features("valid", transform, form)
        for params, prediction in valid_predictions(spec, X, y["train"][rows], X_valid, seed):
            candidates.append(Candidate(name, transform, form, params, *_scores(prediction, y["valid"])))
            if progress is not None:
                progress(candidates[-1])
    chosen = _first_best(candidates)
    X = {s: features(s, chosen.input_transform, chosen.features) for s in ("train", "valid", "test")}
    estimator = spec.build(dict(chosen.params), X["train"].shape[1], seed).fit(X["train"][rows], y["train"][rows])
    valid_pcc, valid_mse = _scores(estimator.predict(X["valid"]), y["valid"])
    test_pcc, test_mse = _scores(estimator.predict(X["test"]), y["test"])
    return SimpleResult(
        model=name, pair=f"{pair.cell_a}-{pair.cell_b}", input_transform=chosen.input_transform,
        features=chosen.features, params=chosen.params, valid_pcc=valid_pcc, valid_mse=valid_mse, test_pcc=test_pcc,
        test_mse=test_mse, train_genes=len(rows), seconds=time.perf_counter() - started,
        candidates=tuple(candidates), estimator=estimator,
    )


def best_of(results: Iterable[SimpleResult]) -> SimpleResult:
    """The result with the best valid PCC (the first on a tie), carrying every result's candidates and the
    sum of their seconds: the best simple model of a pair, from per-model results already computed."""
    results = tuple(results)
    if not results:
        raise ValueError("best_of: expected at least one SimpleResult")
    if len({r.pair for r in results}) != 1:
        raise ValueError(f"best_of: results of several pairs ({', '.join(sorted({r.pair for r in results}))})")
    return replace(_first_best(results), candidates=tuple(c for r in results for c in r.candidates),
                   seconds=sum(r.seconds for r in results))


def best_simple_model(pair: PairData, *, models: Iterable[str] = tuple(SIMPLE_MODELS), **options: Any) -> SimpleResult:
    """The best simple model of `pair`: `run_simple_model` for each of `models` (default: all of
    `SIMPLE_MODELS`, same `options`), the one with the best valid PCC, as `best_of` returns it."""
    models = tuple(models)
    if not models:
        raise ConfigError(f"simple models (none): expected one or more of {', '.join(SIMPLE_MODELS)}")
    return best_of(run_simple_model(name, pair, **options) for name in models)
