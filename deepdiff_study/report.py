"""The study report: tables, figures and one HTML page from a study's MLflow experiment alone.

    python ablations/report.py --experiment deepdiff-ablation --out report/     (or: deepdiff-report ...)

writes into --out (and logs as the artifacts of a new run tagged ``kind=report`` in the experiment,
unless --no-log):

- ``table3.csv`` / ``table3.md``: the paper's Table 3 for every variant: test PCC of the variant's best
  grid cell per pair (by valid PCC) relative to the pair's two-layer SVR, in percent
  (100 * (pcc - pcc_svr2) / |pcc_svr2|), per pair, mean and median;
- ``test_pcc_by_variant.png`` (the paper's Figure 2 style), ``aux_mode.png``, ``margin.png``;
- ``axes.csv``: which axis of the grid matters: the mean paired difference in best test PCC for
  variant (vs raw_d), aux mode (classification - regression) and margin (vs 2, the published one, or
  the smallest), with a seeded percentile-bootstrap 95% interval and a Wilcoxon p-value when n >= 5;
- ``importance.csv``: Optuna's hyperparameter importances per grid cell, from its scored trial runs
  (optuna optional);
- ``cost.csv``: trials, pruned, failed, trial-seconds, best test PCC and PCC per trial-hour per grid cell;
- ``attention_bins.png``, ``attention_marks.png``, ``attention_marks.csv``: the attention of the best
  stored model (the grid-cell artifact ``model/best.pt``) of one pair (``--attention-pair N``, default
  the first pair with one), averaged over its `ATTENTION_GENES` most up- and most down-regulated test
  genes: bin attention as heat maps (marks x bins, in kb from the TSS) and mark attention as bars. The
  pair's data is found from the grid cell's ``data`` tag (a synthetic pair is regenerated from its
  recorded settings if its folder is gone); without a model, the data or torch the page says so;
- ``replicates.csv``, ``replicate_tests.csv``: when the experiment holds replicate runs (``--seeds K``
  trains the missing ones first, `deepdiff_study.replicates`): per grid cell the mean and sd of test PCC
  over seeds; per variant a paired Wilcoxon test against raw_d and against the two-layer SVR, over pairs
  when >= 2 pairs have both, else over the seeds of the one pair;
- ``index.html``: one page for a reader without code, every figure and table inline.

Imports MLflow, pandas, numpy, scipy and matplotlib (Agg) at module import, never Ray or torch: torch
only while the attention maps are computed, Ray only with ``--seeds``; optuna at call time.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from deepdiff.errors import ConfigError, DeepDiffError
from deepdiff.variants import VARIANTS
from deepdiff_study.records import (
    DEFAULT_EXPERIMENT,
    MODEL_ARTIFACT,
    NOT_APPLICABLE,
    Kind,
    Tag,
    TrialStatus,
    best_trial_dicts as best_trials,  # the rows as dicts until the report reads records.BestTrial
    decode_params,
    default_mlflow_uri,
    experiment_id,
    open_store,
    replicate_seeds,
    study_runs,
)

# REMC epigenome id -> cell type (appendix Table 5).
CELL_TYPES = {
    "E003": "H1", "E004": "H1 BMP4 derived mesendoderm", "E005": "H1 BMP4 derived trophoblast",
    "E006": "H1 derived mesenchymal stem cells", "E007": "H1 derived neuronal progenitor",
    "E037": "CD4 memory primary", "E038": "CD4 naive primary", "E116": "GM12878", "E123": "K562",
}
VARIANT_LABELS = {"raw_d": "Raw:d", "raw_c": "Raw:c", "raw": "Raw", "aux": "Aux", "raw_aux": "Raw+Aux",
                  "aux_siamese": "Aux+Siamese", "raw_aux_siamese": "Raw+Aux+Siamese"}
BASELINES = ("linear", "svr", "svr2")
BASELINE_LABELS = {"linear": "linear regression", "svr": "SVR (one layer)", "svr2": "SVR (two layers)"}
REFERENCE_VARIANT = "raw_d"
PUBLISHED_MARGIN = 2.0
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
WILCOXON_MIN_N = 5
LOG_PARAMS = ("lr", "aux_weight", "gamma")  # searched on a log scale in the grid files
REPORT_FILES = ("index.html", "table3.csv", "table3.md", "axes.csv", "importance.csv", "cost.csv",
                "test_pcc_by_variant.png", "aux_mode.png", "margin.png")  # always written
ATTENTION_FILES = ("attention_bins.png", "attention_marks.png", "attention_marks.csv")  # when a model and data are there
REPLICATE_FILES = ("replicates.csv", "replicate_tests.csv")  # when replicate runs are recorded
ATTENTION_GENES = 20  # most up- and most down-regulated test genes averaged (fewer: half the test genes each)


def cell_label(epigenome: str) -> str:
    """``E123 K562`` for a known epigenome id, the id itself otherwise."""
    return f"{epigenome} {CELL_TYPES[epigenome]}" if epigenome in CELL_TYPES else epigenome


def pair_label(pair_name: str, imitates: str | None = None) -> str:
    """``E123 K562 vs E003 H1``; a synthetic pair: ``syn1A-syn1B (synthetic, standing in for E123 K562 vs E003 H1)``."""
    def spelled(name: str) -> str:
        a, _, b = name.partition("-")
        return f"{cell_label(a)} vs {cell_label(b)}"
    return f"{pair_name} (synthetic, standing in for {spelled(imitates)})" if imitates else spelled(pair_name)


# ---- reading the study --------------------------------------------------------------------------------

REPLICATE_COLUMNS = ["grid_cell", "seed", "status", "replicate_of", "best_valid_pcc", "best_test_pcc", "run_id"]


@dataclass
class Study:
    """What the report reads from MLflow: one row per grid cell, per trial run, per baseline run."""

    tracking_uri: str
    experiment: str
    experiment_id: str
    cells: pd.DataFrame  # best_trials rows (+ imitates)
    trials: pd.DataFrame  # grid_cell, run_id, status, best_valid_pcc, best_test_pcc, seconds, params
    baselines: pd.DataFrame  # pair, pair_name, baseline, test_pcc, valid_pcc, ...
    pairs: pd.DataFrame  # pair, pair_name, epigenome_a, epigenome_b, imitates, label
    notes: list[str] = field(default_factory=list)
    replicates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPLICATE_COLUMNS))


def load_study(tracking_uri: str, experiment: str) -> Study:
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    rows = best_trials(tracking_uri, experiment)
    if not rows:
        raise ConfigError(f"--experiment {experiment!r}: no grid-cell runs in it at {tracking_uri}; nothing to report")
    parents = {r.data.tags[Tag.GRID_CELL]: r for r in study_runs(client, exp_id, Kind.GRID_CELL)}
    for row in rows:
        row.pop("_run")
        tags = parents[row["grid_cell"]].data.tags
        row["imitates"] = tags.get(Tag.IMITATES)
        row["cell_run_id"] = parents[row["grid_cell"]].info.run_id
        row["model"], row["model_missing"] = tags.get(Tag.MODEL), tags.get(Tag.MODEL_MISSING)
    cells = pd.DataFrame(rows)
    trial_rows = []
    for run in study_runs(client, exp_id, Kind.TRIAL):
        history = client.get_metric_history(run.info.run_id, "seconds")
        trial_rows.append({
            "grid_cell": run.data.tags.get(Tag.GRID_CELL), "run_id": run.info.run_id,
            "status": run.data.tags.get(Tag.STATUS, ""),
            "best_valid_pcc": run.data.metrics.get("best_valid_pcc", math.nan),
            "best_test_pcc": run.data.metrics.get("best_test_pcc", math.nan),
            "seconds": float(sum(m.value for m in history)), "params": dict(run.data.params),
        })
    trials = pd.DataFrame(trial_rows, columns=["grid_cell", "run_id", "status", "best_valid_pcc", "best_test_pcc",
                                               "seconds", "params"])
    base_rows = []
    for run in study_runs(client, exp_id, Kind.BASELINE):
        if run.info.status != "FINISHED":
            continue
        tags, m = run.data.tags, run.data.metrics
        base_rows.append({"pair": int(tags[Tag.PAIR]), "pair_name": tags.get(Tag.PAIR_NAME), "baseline": tags[Tag.BASELINE],
                          "imitates": tags.get(Tag.IMITATES), "input_transform": run.data.params.get("input_transform"),
                          **{k: m.get(k, math.nan) for k in ("valid_pcc", "valid_mse", "test_pcc", "test_mse", "seconds")}})
    baselines = pd.DataFrame(base_rows, columns=["pair", "pair_name", "baseline", "imitates", "input_transform",
                                                 "valid_pcc", "valid_mse", "test_pcc", "test_mse", "seconds"])
    # one baseline run per (pair, baseline) is what the study writes; should there be more, keep the latest
    baselines = baselines.drop_duplicates(["pair", "baseline"], keep="first")
    pairs = cells[["pair", "pair_name", "epigenome_a", "epigenome_b", "imitates"]].drop_duplicates("pair").sort_values("pair")
    pairs = pairs.assign(label=[pair_label(n, i) for n, i in zip(pairs.pair_name, pairs.imitates)]).reset_index(drop=True)
    replicates = pd.DataFrame([{
        "grid_cell": run.data.tags.get(Tag.GRID_CELL), "seed": int(run.data.tags[Tag.SEED]),
        "status": run.data.tags.get(Tag.STATUS, "") if run.info.status == "FINISHED" else "failed",
        "replicate_of": run.data.tags.get(Tag.REPLICATE_OF),
        "best_valid_pcc": run.data.metrics.get("best_valid_pcc", math.nan),
        "best_test_pcc": run.data.metrics.get("best_test_pcc", math.nan), "run_id": run.info.run_id,
    } for run in study_runs(client, exp_id, Kind.REPLICATE) if Tag.SEED in run.data.tags], columns=REPLICATE_COLUMNS)
    study = Study(tracking_uri, experiment, exp_id, cells, trials, baselines, pairs, replicates=replicates)
    if baselines.empty:
        study.notes.append("No baseline runs in the experiment (a study from before baselines were recorded): "
                           "Table 3 and the baseline columns are empty.")
    return study


# ---- Table 3 ------------------------------------------------------------------------------------------

def variant_best(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, variant): its best grid cell by valid PCC (as the paper picks a setting), with its test PCC."""
    scored = cells[np.isfinite(cells["best_valid_pcc"].astype(float))]
    if scored.empty:
        return scored.assign()
    best = scored.loc[scored.groupby(["pair", "variant"])["best_valid_pcc"].idxmax()]
    return best.sort_values(["pair", "variant"]).reset_index(drop=True)


def relative_percent(pcc: float, reference: float) -> float:
    """100 * (pcc - reference) / |reference| (NaN when the reference is 0 or missing)."""
    if not (math.isfinite(pcc) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (pcc - reference) / abs(reference)


def table3(study: Study) -> pd.DataFrame:
    """One row per variant: relative test PCC (%) vs the pair's svr2, a column per pair, then mean and median."""
    best = variant_best(study.cells)
    svr2 = {int(r.pair): float(r.test_pcc) for r in study.baselines.itertuples() if r.baseline == "svr2"}
    pairs = list(study.pairs["pair"])
    variants = [v for v in VARIANTS if v in set(best["variant"])]
    rows = []
    for variant in variants:
        row: dict[str, Any] = {"variant": variant}
        values = []
        for pair in pairs:
            hit = best[(best["pair"] == pair) & (best["variant"] == variant)]
            value = relative_percent(float(hit["best_test_pcc"].iloc[0]), svr2.get(pair, math.nan)) if len(hit) else math.nan
            row[f"pair {pair}"] = value
            values.append(value)
        finite = [v for v in values if math.isfinite(v)]
        row["mean"] = float(np.mean(finite)) if finite else math.nan
        row["median"] = float(np.median(finite)) if finite else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["variant", *[f"pair {p}" for p in pairs], "mean", "median"])


# ---- which axis matters ---------------------------------------------------------------------------------

def bootstrap_interval(diffs: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `diffs` (NaN, NaN when n < 2)."""
    if len(diffs) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(resamples, len(diffs)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def wilcoxon_p(diffs: np.ndarray) -> float | str:
    if len(diffs) < WILCOXON_MIN_N:
        return "n too small"
    if np.all(diffs == 0):
        return "all differences zero"
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs).pvalue)


def _paired(cells: pd.DataFrame, key: list[str], column: str, a: Any, b: Any) -> tuple[np.ndarray, list[str]]:
    """best_test_pcc(column == a) - best_test_pcc(column == b) over rows matching on `key`."""
    left = cells[cells[column] == a].set_index(key)["best_test_pcc"]
    right = cells[cells[column] == b].set_index(key)["best_test_pcc"]
    both = left.index.intersection(right.index)
    diffs = (left.loc[both] - right.loc[both]).astype(float)
    diffs = diffs[np.isfinite(diffs)]
    return diffs.to_numpy(), [_key_label(key, i) for i in diffs.index]


def _key_label(key: list[str], value: Any) -> str:
    """``pair 1 aux_siamese m2`` for a matched key (not-applicable parts left out)."""
    values = value if isinstance(value, tuple) else (value,)
    parts = []
    for name, v in zip(key, values):
        if name == "pair":
            parts.append(f"pair {v}")
        elif name == "margin_key":
            parts += [] if v < 0 else [f"m{v:g}"]
        elif v != NOT_APPLICABLE:
            parts.append(str(v))
    return " ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def axis_row(axis: str, comparison: str, diffs: np.ndarray, matched: list[str]) -> dict[str, Any]:
    n = len(diffs)
    low, high = bootstrap_interval(diffs)
    p = wilcoxon_p(diffs)
    mean = float(diffs.mean()) if n else math.nan
    if n == 0:
        sentence = f"{comparison}: no matching grid cells to compare."
    elif n < 2:
        sentence = f"{comparison}: {_fmt(mean)} test PCC (n=1, interval undefined): too few to tell."
    else:
        first = comparison.split(" vs ")[0]
        verdict = ("no clear effect" if low <= 0 <= high
                   else f"{first} {'higher' if low > 0 else 'lower'} (the interval excludes 0)")
        if n < WILCOXON_MIN_N:
            verdict += f"; only {n} comparisons, a hint at most"
        sentence = f"{comparison}: {_fmt(mean)} test PCC (95% interval {_fmt(low)} to {_fmt(high)}, n={n}): {verdict}."
    if isinstance(p, float):
        sentence = sentence[:-1] + f" (Wilcoxon p={p:.3g})."
    return {"axis": axis, "comparison": comparison, "n": n, "mean_diff": mean, "ci_low": low, "ci_high": high,
            "wilcoxon_p": p, "matched_on": "; ".join(matched), "sentence": sentence}


def axes_table(study: Study) -> pd.DataFrame:
    """Mean paired differences in best test PCC along each axis of the grid (see the module docstring)."""
    cells = study.cells.copy()
    cells["aux_key"] = cells["aux_mode"].fillna(NOT_APPLICABLE)
    cells["margin_key"] = cells["margin"].fillna(-1.0)
    rows = []
    best = variant_best(cells)
    if REFERENCE_VARIANT in set(best["variant"]):
        for variant in [v for v in VARIANTS if v in set(best["variant"]) and v != REFERENCE_VARIANT]:
            diffs, matched = _paired(best, ["pair"], "variant", variant, REFERENCE_VARIANT)
            rows.append(axis_row("variant", f"{VARIANT_LABELS[variant]} vs {VARIANT_LABELS[REFERENCE_VARIANT]}",
                                 diffs, matched))
    modes = set(cells["aux_mode"].dropna())
    if {"classification", "regression"} <= modes:
        diffs, matched = _paired(cells, ["pair", "variant", "margin_key"], "aux_mode", "classification", "regression")
        rows.append(axis_row("aux_mode", "Classification vs regression", diffs, matched))
    margins = sorted(set(cells["margin"].dropna()))
    if len(margins) >= 2:
        ref = PUBLISHED_MARGIN if PUBLISHED_MARGIN in margins else margins[0]
        for margin in [m for m in margins if m != ref]:
            diffs, matched = _paired(cells, ["pair", "variant", "aux_key"], "margin", margin, ref)
            rows.append(axis_row("margin", f"Margin {margin:g} vs {ref:g}", diffs, matched))
    return pd.DataFrame(rows, columns=["axis", "comparison", "n", "mean_diff", "ci_low", "ci_high", "wilcoxon_p",
                                       "matched_on", "sentence"])


# ---- hyperparameter importance ----------------------------------------------------------------------------

def _distributions(values: dict[str, list[Any]]):
    import optuna

    dists = {}
    for name, seen in values.items():
        distinct = sorted(set(seen), key=str)
        if len(distinct) < 2:
            continue  # constant in this grid cell: nothing to attribute
        if all(isinstance(v, float) for v in seen):
            low, high = min(seen), max(seen)
            dists[name] = optuna.distributions.FloatDistribution(low, high, log=name in LOG_PARAMS and low > 0)
        else:
            dists[name] = optuna.distributions.CategoricalDistribution(sorted(set(seen), key=lambda v: (str(type(v)), v)))
    return dists


def importance_table(study: Study) -> tuple[pd.DataFrame, list[str]]:
    """(grid_cell, param, importance) from each grid cell's scored trials, rebuilt as an Optuna study."""
    columns = ["grid_cell", "param", "importance", "trials"]
    try:
        import optuna
    except ImportError:
        return pd.DataFrame(columns=columns), ["optuna is not installed: no hyperparameter importances."]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, notes = [], []
    for cell in study.cells["grid_cell"]:
        mine = study.trials[(study.trials["grid_cell"] == cell)
                            & study.trials["status"].isin([s.value for s in TrialStatus if s.scored])]
        mine = mine[np.isfinite(mine["best_valid_pcc"].astype(float))]
        decoded = []
        for t in mine.itertuples():
            model_cfg, train_cfg = decode_params(t.params, source=f"MLflow run {t.run_id}")
            typed = {**model_cfg.__dict__, **train_cfg.__dict__}
            decoded.append(({k: typed[k] for k in t.params if k in typed}, float(t.best_valid_pcc)))
        values: dict[str, list[Any]] = {}
        for params, _ in decoded:
            for k, v in params.items():
                values.setdefault(k, []).append(v)
        dists = _distributions(values)
        if len(decoded) < 2 or not dists:
            notes.append(f"{cell}: {len(decoded)} scored trial(s)"
                         + ("" if len(decoded) < 2 else ", no hyperparameter varied") + "; importance skipped.")
            continue
        opt = optuna.create_study(direction="maximize")
        for params, value in decoded:
            opt.add_trial(optuna.trial.create_trial(
                params={k: params[k] for k in dists}, distributions=dists, value=value))
        try:
            found = optuna.importance.get_param_importances(
                opt, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as err:  # noqa: BLE001 - e.g. every value equal; one cell never stops the report
            notes.append(f"{cell}: importance not computed ({type(err).__name__}: {err}).")
            continue
        rows.extend({"grid_cell": cell, "param": k, "importance": float(v), "trials": len(decoded)} for k, v in found.items())
    return pd.DataFrame(rows, columns=columns), notes


# ---- cost -------------------------------------------------------------------------------------------------

def cost_table(study: Study) -> pd.DataFrame:
    rows = []
    for cell in study.cells.itertuples():
        mine = study.trials[study.trials["grid_cell"] == cell.grid_cell]
        seconds = float(mine["seconds"].sum())
        pcc = float(cell.best_test_pcc)
        rows.append({
            "grid_cell": cell.grid_cell, "variant": cell.variant, "pair": cell.pair, "trials": len(mine),
            "pruned": int((mine["status"] == TrialStatus.PRUNED).sum()),
            "failed": int((mine["status"] == TrialStatus.FAILED).sum()),
            "trial_seconds": seconds, "best_test_pcc": pcc,
            "pcc_per_trial_hour": pcc / (seconds / 3600.0) if seconds > 0 and math.isfinite(pcc) else math.nan,
        })
    return pd.DataFrame(rows, columns=["grid_cell", "variant", "pair", "trials", "pruned", "failed", "trial_seconds",
                                       "best_test_pcc", "pcc_per_trial_hour"])


# ---- replicates over seeds ----------------------------------------------------------------------------------

def _best_seed(study: Study, run_id: Any) -> int | None:
    """The training seed of a grid cell's best trial (its ``seed`` param)."""
    hit = study.trials[study.trials["run_id"] == run_id]
    if hit.empty or "seed" not in hit["params"].iloc[0]:
        return None
    return int(hit["params"].iloc[0]["seed"])


def replicate_runs(study: Study, k: int | None = None) -> pd.DataFrame:
    """The completed replicate runs that count: of each grid cell's current best trial, and with `k` only
    the seeds ``--seeds k`` trains (`records.replicate_seeds`); one row per (grid cell, seed)."""
    reps = study.replicates[study.replicates["status"] == TrialStatus.COMPLETED]
    keep = []
    for cell in study.cells.itertuples():
        mine = reps[(reps["grid_cell"] == cell.grid_cell) & (reps["replicate_of"] == cell.run_id)]
        if k is not None:
            base = _best_seed(study, cell.run_id)
            mine = mine[mine["seed"].isin(replicate_seeds(base, k))] if base is not None else mine.iloc[0:0]
        keep.append(mine.drop_duplicates("seed", keep="first"))
    rows = pd.concat(keep) if keep else reps.iloc[0:0]
    return rows[np.isfinite(rows["best_test_pcc"].astype(float))].sort_values(["grid_cell", "seed"])


def replicate_table(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell: seeds, n, mean and sample sd (ddof 1) of the replicates' test PCC, and the study's one run."""
    rows = []
    for cell in study.cells.itertuples():
        mine = runs[runs["grid_cell"] == cell.grid_cell]
        if mine.empty:
            continue
        pccs = mine["best_test_pcc"].astype(float).to_numpy()
        rows.append({"grid_cell": cell.grid_cell, "variant": cell.variant, "pair": cell.pair,
                     "aux_mode": cell.aux_mode, "margin": cell.margin,
                     "seeds": " ".join(str(s) for s in mine["seed"]), "n": len(pccs), "mean_test_pcc": float(pccs.mean()),
                     "sd_test_pcc": float(pccs.std(ddof=1)) if len(pccs) > 1 else math.nan,
                     "study_test_pcc": float(cell.best_test_pcc)})
    return pd.DataFrame(rows, columns=["grid_cell", "variant", "pair", "aux_mode", "margin", "seeds", "n",
                                       "mean_test_pcc", "sd_test_pcc", "study_test_pcc"])


def smallest_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value n nonzero differences can give: 2 / 2**n."""
    return 2.0 ** (1 - n)


def replicate_test_row(comparison: str, against: str, over: str, diffs: np.ndarray) -> dict[str, Any]:
    n = len(diffs)
    mean = float(diffs.mean()) if n else math.nan
    if n < 2:
        p: float | str = "n too small"
    elif np.all(diffs == 0):
        p = "all differences zero"
    else:
        from scipy.stats import wilcoxon

        p = float(wilcoxon(diffs).pvalue)
    if n == 0:
        sentence = f"{comparison} vs {against}: nothing to compare (no replicates of both)."
    else:
        sentence = f"{comparison} vs {against}, over {n} {over}: mean difference {_fmt(mean)} test PCC"
        if isinstance(p, float):
            sentence += f", Wilcoxon signed-rank p={p:.3g}"
            if smallest_wilcoxon_p(n) >= 0.05:
                sentence += (f"; with n={n} no p below {smallest_wilcoxon_p(n):.3g} is possible, so this cannot show "
                             "a difference at the 5% level")
            elif p < 0.05:
                sentence += f": {comparison} {'higher' if mean > 0 else 'lower'} at the 5% level"
            else:
                sentence += ": no difference shown at the 5% level"
        else:
            sentence += f" (no test: {p})"
        sentence += "."
    return {"comparison": comparison, "against": against, "over": over, "n": n, "mean_diff": mean,
            "wilcoxon_p": p, "sentence": sentence}


def replicate_tests(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """Each variant (its best grid cell per pair, as in Table 3) against raw_d and against the two-layer SVR:
    paired differences in test PCC over pairs (pair means over seeds) when >= 2 pairs have both, else over
    the seeds of the one pair (matched by seed value against raw_d; against the SVR's one score)."""
    best = variant_best(study.cells)
    cell_of = {(int(r.pair), r.variant): r.grid_cell for r in best.itertuples()}
    by_cell = {key: group.set_index("seed")["best_test_pcc"].astype(float) for key, group in runs.groupby("grid_cell")}
    svr2 = {int(r.pair): float(r.test_pcc) for r in study.baselines.itertuples() if r.baseline == "svr2"}
    pairs = sorted({p for p, _ in cell_of})
    rows = []
    for variant in [v for v in VARIANTS if any(v == w for _, w in cell_of)]:
        label = VARIANT_LABELS[variant]
        references = [] if variant == REFERENCE_VARIANT else [(VARIANT_LABELS[REFERENCE_VARIANT], REFERENCE_VARIANT)]
        for against, ref in [*references, (BASELINE_LABELS["svr2"], None)]:
            per_pair = {}
            for pair in pairs:
                mine = by_cell.get(cell_of.get((pair, variant)))
                other = by_cell.get(cell_of.get((pair, ref))) if ref else None
                if mine is None or (ref and other is None) or (not ref and not math.isfinite(svr2.get(pair, math.nan))):
                    continue
                per_pair[pair] = (mine, other if ref else svr2[pair])
            if len(per_pair) >= 2:
                diffs = np.array([m.mean() - (o.mean() if ref else o) for m, o in per_pair.values()])
                rows.append(replicate_test_row(label, against, "pairs (means over seeds)", diffs))
            elif per_pair:
                pair, (mine, other) = next(iter(per_pair.items()))
                if ref:
                    seeds = mine.index.intersection(other.index)
                    diffs = (mine.loc[seeds] - other.loc[seeds]).to_numpy()
                else:
                    diffs = (mine - other).to_numpy()
                rows.append(replicate_test_row(label, against, f"seeds of pair {pair}", diffs))
            else:
                rows.append(replicate_test_row(label, against, "pairs", np.array([])))
    return pd.DataFrame(rows, columns=["comparison", "against", "over", "n", "mean_diff", "wilcoxon_p", "sentence"])


# ---- attention of the best stored model -----------------------------------------------------------------------

@dataclass
class AttentionPart:
    """What the attention section of the page shows: the files written and a sentence each, or why not."""

    files: list[str] = field(default_factory=list)
    sentences: dict[str, str] = field(default_factory=dict)  # figure file -> its sentence
    note: str | None = None  # one sentence when there are no maps


def attention_cell(study: Study, pair: int | None) -> tuple[Any, str | None]:
    """(the grid cell whose model is drawn, None) or (None, why there is none): the stored model of the
    chosen pair (default: the first pair with one) with the best valid PCC."""
    stored = study.cells[study.cells["model"].notna() & np.isfinite(study.cells["best_valid_pcc"].astype(float))]
    if pair is None and not stored.empty:
        pair = int(stored["pair"].min())
    mine = stored[stored["pair"] == pair] if pair is not None else stored
    if mine.empty:
        where = study.cells if pair is None else study.cells[study.cells["pair"] == pair]
        reasons = sorted({r for r in where["model_missing"].dropna()})
        why = (f"their runs say: {reasons[0]}" if reasons else
               "their runs have no model artifact (a study from before models were kept)")
        return None, (f"No attention maps: no grid cell {'of pair ' + str(pair) + ' ' if pair is not None else ''}"
                      f"has a stored model ({why}).")
    return mine.loc[mine["best_valid_pcc"].astype(float).idxmax()], None


def attention_section(study: Study, out: Path, pair: int | None) -> AttentionPart:
    """Draw the attention of the chosen model (see the module docstring); never raises for a missing model,
    missing data or a missing torch: the returned note says so."""
    cell, why = attention_cell(study, pair)
    if cell is None:
        return AttentionPart(note=why)
    try:
        up, down, info = _attention_maps(study, cell)
    except ImportError as err:
        return AttentionPart(note=f"No attention maps: they need torch, which cannot be imported here ({err}).")
    except (DeepDiffError, OSError, MlflowException) as err:
        return AttentionPart(note=f"No attention maps for grid cell {cell.grid_cell}: {str(err).splitlines()[0]}")
    k = len(up.gene_ids)
    plot_bin_attention(up, down, out / "attention_bins.png", info)
    plot_mark_attention(up, down, out / "attention_marks.png", info)
    marks = [{"path": path, "channel": channel, "genes": group, "n_genes": k, "mean_beta": float(value)}
             for group, maps in (("up", up), ("down", down)) for path, beta in maps.mark_attention.items()
             for channel, value in zip(maps.mark_channels[path], beta.mean(axis=0))]
    pd.DataFrame(marks).to_csv(out / "attention_marks.csv", index=False)
    main = next(iter(up.mark_attention))
    top = {g: max(((c, float(v)) for c, v in zip(m.mark_channels[main], m.mark_attention[main].mean(axis=0))),
                  key=lambda cv: cv[1]) for g, m in (("up", up), ("down", down))}
    model = (f"the best stored model of pair {int(cell.pair)} (grid cell {cell.grid_cell}, "
             f"{VARIANT_LABELS.get(cell.variant, cell.variant)}, its best trial's model at epoch {info['epoch']}, "
             f"test PCC {float(cell.best_test_pcc):.3f}; {info['pair_label']})")
    genes = (f"the {k} most up-regulated and the {k} most down-regulated of its {info['test_genes']} test genes "
             f"(true log2 fold change of {info['cell_b']} vs {info['cell_a']})")
    return AttentionPart(files=list(ATTENTION_FILES), sentences={
        "attention_bins.png": (f"Where along the promoter region {model} looks, averaged over {genes}: one heat map per "
                               "encoder, one row per histone mark, the 200 bins from -10 to +10 kb around the TSS; 1 is "
                               "uniform attention, brighter bins weigh more in the prediction."),
        "attention_marks.png": (f"How much the same model weighs each mark (mark attention, mean over the same genes; "
                                f"{PATH_TITLES[main].format(**info)}): for up-regulated genes {top['up'][0]} most "
                                f"({top['up'][1]:.3f}), for down-regulated genes {top['down'][0]} ({top['down'][1]:.3f}); "
                                f"uniform would be {1 / len(up.mark_channels[main]):.3f}. Values in attention_marks.csv."),
    })


@contextlib.contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar on stderr for every download; not for one small file."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as switch

    before = os.environ.get(switch.name)
    os.environ[switch.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(switch.name, None)
        else:
            os.environ[switch.name] = before


PATH_TITLES = {"diff": "difference encoder f^d", "A": "cell-type A encoder f^A ({cell_a})",
               "B": "cell-type B encoder f^B ({cell_b})"}


def _attention_maps(study: Study, cell: Any):
    """(maps of the up-regulated genes, of the down-regulated ones, facts for titles) for a grid cell's model."""
    import tempfile

    from deepdiff.attention import attention_maps
    from deepdiff.cli import default_cache_dir
    from deepdiff.train import check_shapes, load_checkpoint, load_model
    from deepdiff_study.grid import Pair
    from deepdiff_study.pairs import load_sources, recorded_source

    if not isinstance(cell.data, dict):
        raise ConfigError("its grid-cell run has no data tag naming the pair's files")
    client = open_store(study.tracking_uri)
    with tempfile.TemporaryDirectory(prefix="deepdiff-report-model-") as tmp, _no_progress_bar():
        local = client.download_artifacts(cell.cell_run_id, MODEL_ARTIFACT, tmp)
        model, model_cfg, train_cfg = load_model(local)
        epoch = load_checkpoint(local)["epoch"]
    pair = Pair(int(cell.pair), cell.epigenome_a, cell.epigenome_b, cell.imitates)
    source = recorded_source(pair, cell.data, regenerate_root=default_cache_dir() / "synthetic")
    data = load_sources([source], cache_dir=default_cache_dir())[pair.number]
    check_shapes(model_cfg, data)
    test = data.test
    k = min(ATTENTION_GENES, len(test) // 2)
    order = np.argsort(test.diff.cpu().numpy(), kind="stable")
    chosen = np.concatenate([order[::-1][:k], order[:k]])
    maps = attention_maps(model, test.subset(chosen), train_cfg.input_transform, batch_size=train_cfg.eval_batch_size)
    info = {"epoch": epoch, "test_genes": len(test), "cell_a": pair.epigenome_a, "cell_b": pair.epigenome_b,
            "pair_label": pair_label(cell.pair_name, cell.imitates), "grid_cell": cell.grid_cell,
            "variant": VARIANT_LABELS.get(cell.variant, cell.variant)}
    return maps.select(range(k)), maps.select(range(k, 2 * k)), info


# ---- figures ----------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _pair_colors(study: Study) -> dict[int, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {int(p): cmap(i % 10) for i, p in enumerate(study.pairs["pair"])}


def plot_by_variant(study: Study, path: Path) -> None:
    """Test PCC of each variant's best grid cell per pair (points) and their mean (bar), baselines as extra columns."""
    plt = _pyplot()
    best = variant_best(study.cells)
    columns = [(VARIANT_LABELS[v], best[best["variant"] == v][["pair", "best_test_pcc"]].to_numpy())
               for v in VARIANTS if v in set(best["variant"])]
    columns += [(BASELINE_LABELS[b], study.baselines[study.baselines["baseline"] == b][["pair", "test_pcc"]].to_numpy())
                for b in BASELINES if b in set(study.baselines["baseline"])]
    colors = _pair_colors(study)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(columns) + 2), 5.0))
    labelled = set()
    for x, (_, points) in enumerate(columns):
        for k, (pair, pcc) in enumerate(points):
            jitter = (k - (len(points) - 1) / 2) * 0.06
            label = None if int(pair) in labelled else f"pair {int(pair)}"
            labelled.add(int(pair))
            ax.scatter(x + jitter, pcc, color=colors.get(int(pair), "grey"), s=28, zorder=3, label=label)
        finite = [p for _, p in points if math.isfinite(p)]
        if finite:
            ax.hlines(np.mean(finite), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4,
                      label="mean over pairs" if x == 0 else None)
    n_variants = sum(1 for v in VARIANTS if v in set(best["variant"]))
    if n_variants < len(columns):
        ax.axvline(n_variants - 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(columns)), [c for c, _ in columns], rotation=35, ha="right")
    ax.set_ylabel("test PCC (Pearson r, unitless)")
    ax.set_xlabel("DeepDiff variant (best grid cell per pair by valid PCC)  |  baselines")
    ax.set_title("Test PCC of predicted vs true log2 fold change, per variant and pair")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_aux_mode(study: Study, path: Path) -> None:
    """Per aux variant: best test PCC with regression vs classification aux heads, matched cells joined."""
    plt = _pyplot()
    cells = study.cells[study.cells["aux_mode"].notna()].copy()
    cells["margin_key"] = cells["margin"].fillna(-1.0)
    variants = [v for v in VARIANTS if v in set(cells["variant"])]
    colors = _pair_colors(study)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(variants) + 2), 4.5))
    ticks, labels = [], []
    for i, variant in enumerate(variants):
        mine = cells[cells["variant"] == variant]
        x_reg, x_cls = 3 * i, 3 * i + 1
        ticks += [x_reg, x_cls]
        labels += [f"{VARIANT_LABELS[variant]}\nregression", f"{VARIANT_LABELS[variant]}\nclassification"]
        for (pair, margin), group in mine.groupby(["pair", "margin_key"]):
            reg = group[group["aux_mode"] == "regression"]["best_test_pcc"]
            cls = group[group["aux_mode"] == "classification"]["best_test_pcc"]
            color = colors.get(int(pair), "grey")
            if len(reg) and len(cls):
                ax.plot([x_reg, x_cls], [reg.iloc[0], cls.iloc[0]], color=color, alpha=0.6, linewidth=1)
            ax.scatter([x_reg] * len(reg), reg, color=color, s=24, zorder=3)
            ax.scatter([x_cls] * len(cls), cls, color=color, s=24, zorder=3)
        for x, mode in ((x_reg, "regression"), (x_cls, "classification")):
            values = mine[mine["aux_mode"] == mode]["best_test_pcc"].astype(float)
            values = values[np.isfinite(values)]
            if len(values):
                ax.hlines(values.mean(), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4)
    ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("variant and mode of the cell-specific auxiliary task")
    ax.set_ylabel("best test PCC of the grid cell (Pearson r)")
    for pair, color in colors.items():
        ax.scatter([], [], color=color, s=24, label=f"pair {pair}")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Cell-specific auxiliary task: regression vs classification\n(lines join the same pair and margin; bars: means)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_margin(study: Study, path: Path) -> None:
    """Best test PCC against the contrastive margin m, one thin line per (pair, aux mode), mean per variant."""
    plt = _pyplot()
    cells = study.cells[study.cells["margin"].notna()].copy()
    variants = [v for v in VARIANTS if v in set(cells["variant"])]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, variant in enumerate(variants):
        mine = cells[cells["variant"] == variant]
        color = cmap(i % 10)
        modes = mine["aux_mode"].fillna(NOT_APPLICABLE)
        for (_, mode), group in mine.groupby(["pair", modes]):
            group = group.sort_values("margin")
            ax.plot(group["margin"], group["best_test_pcc"], color=color, alpha=0.35, linewidth=1, marker="o", markersize=3,
                    linestyle="--" if mode == "classification" else "-")
        for mode, group in mine.groupby(modes):
            means = group.groupby("margin")["best_test_pcc"].mean()
            ax.plot(means.index, means.to_numpy(), color=color, linewidth=2.5, marker="s",
                    linestyle="--" if mode == "classification" else "-",
                    label=f"{VARIANT_LABELS[variant]}, aux {mode} (mean)")
    margins = sorted(set(cells["margin"]))
    if margins:
        ax.set_xticks(margins, [f"{m:g}" for m in margins])
    ax.set_xlabel("contrastive margin m (embedding distance units)")
    ax.set_ylabel("best test PCC of the grid cell (Pearson r)")
    ax.set_title("Siamese variants: test PCC vs margin\n(thin lines: one pair each; thick: mean over pairs)")
    if variants:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bin_attention(up, down, path: Path, info: dict) -> None:
    """Heat maps of mean bin attention (x T: 1 = uniform), one row per Level I path, columns up / down genes."""
    from deepdiff.attention import bin_centers_kb

    plt = _pyplot()
    paths = list(up.bin_attention)
    n_bins = up.n_bins
    means = {(p, g): m.bin_attention[p].mean(axis=0) * n_bins for p in paths for g, m in (("up", up), ("down", down))}
    vmin, vmax = min(float(v.min()) for v in means.values()), max(float(v.max()) for v in means.values())
    heights = [max(1.6, 0.28 * up.bin_attention[p].shape[1] + 0.6) for p in paths]
    fig, axes = plt.subplots(len(paths), 2, figsize=(11.5, sum(heights) + 1.3), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    centers = bin_centers_kb(n_bins)
    half = (centers[1] - centers[0]) / 2
    image = None
    for row, p in enumerate(paths):
        channels = up.bin_channels[p]
        for col, (group, maps) in enumerate((("up", up), ("down", down))):
            ax = axes[row][col]
            image = ax.imshow(means[(p, group)], aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest",
                              extent=(centers[0] - half, centers[-1] + half, len(channels) - 0.5, -0.5))
            ax.set_yticks(range(len(channels)), channels if col == 0 else [""] * len(channels), fontsize=8)
            ax.set_xticks([-8, -4, 0, 4, 8])  # not the edges: neighbouring panels' end labels would touch
            ax.axvline(0, color="white", linewidth=0.6, linestyle=":")
            if row == len(paths) - 1:
                ax.set_xlabel("position relative to the TSS (kb)")
            else:
                ax.set_xticklabels([])
            what = f"{len(maps.gene_ids)} most {'up' if group == 'up' else 'down'}-regulated test genes"
            ax.set_title(f"{PATH_TITLES[p].format(**info)}\n{what}" if row == 0 else PATH_TITLES[p].format(**info), fontsize=9)
    fig.suptitle(f"Bin attention of {info['grid_cell']} ({info['variant']})\npair {info['pair_label']}", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.9, aspect=30).set_label(f"mean bin attention x {n_bins} (1 = uniform)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mark_attention(up, down, path: Path, info: dict) -> None:
    """Mean mark attention per channel of every Level II path (one panel each, stacked, bars of one
    thickness): up- vs down-regulated genes as paired bars."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    paths = list(up.mark_attention)
    sizes = [len(up.mark_channels[p]) for p in paths]
    fig, axes = plt.subplots(len(paths), 1, figsize=(7.5, 0.3 * sum(sizes) + 1.0 * len(paths) + 1.2), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": [n + 2 for n in sizes]})
    for ax, p in zip(axes[:, 0], paths):
        channels = up.mark_channels[p]
        y = np.arange(len(channels))
        ax.barh(y - 0.2, up.mark_attention[p].mean(axis=0), height=0.4, color="tab:red",
                label=f"{len(up.gene_ids)} most up-regulated test genes")
        ax.barh(y + 0.2, down.mark_attention[p].mean(axis=0), height=0.4, color="tab:blue",
                label=f"{len(down.gene_ids)} most down-regulated test genes")
        ax.axvline(1 / len(channels), color="black", linestyle=":", linewidth=1, label="uniform attention")
        ax.set_yticks(y, channels, fontsize=8)
        ax.set_ylim(len(channels) - 0.5, -0.5)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("mean mark attention (sums to 1 over the channels of this encoder)", fontsize=9)
        ax.set_title(PATH_TITLES[p].format(**info), fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=3, frameon=False)  # never over a bar
    fig.suptitle(f"Mark attention of {info['grid_cell']} ({info['variant']})\npair {info['pair_label']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the page -----------------------------------------------------------------------------------------------

def _table_html(df: pd.DataFrame, digits: int = 3) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.{digits}f}", na_rep="-", border=0, classes="t")


def _markdown(df: pd.DataFrame, digits: int = 1) -> str:
    cols = list(df.columns)
    cell = lambda v: "-" if isinstance(v, float) and not math.isfinite(v) else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_html(study: Study, out: Path, t3: pd.DataFrame, axes: pd.DataFrame, importance: pd.DataFrame,
               cost: pd.DataFrame, notes: list[str], *, attention: AttentionPart | None = None,
               replicates: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> None:
    e = html.escape
    synthetic = study.pairs["imitates"].notna().any()
    pair_rows = "".join(
        f"<tr><td>{int(p.pair)}</td><td>{e(p.label)}</td></tr>" for p in study.pairs.itertuples())
    t3_show = t3.assign(variant=[VARIANT_LABELS.get(v, v) for v in t3["variant"]])
    base = study.baselines[["pair", "baseline", "test_pcc", "valid_pcc", "input_transform"]] if not study.baselines.empty else None
    top = (importance.sort_values(["grid_cell", "importance"], ascending=[True, False]).groupby("grid_cell").head(3)
           if not importance.empty else importance)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>DeepDiff ablation study: {e(study.experiment)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table.t{border-collapse:collapse;font-size:90%}table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>DeepDiff ablation study: {e(study.experiment)}</h1>",
        f"<p>DeepDiff predicts how much a gene's expression changes between two cell types (log2 fold change) from "
        f"five histone marks around its promoter. This page summarises MLflow experiment <code>{e(study.experiment)}</code> "
        f"({e(study.tracking_uri)}): {len(study.cells)} grid cells (model variant x pair x auxiliary-task mode x "
        f"contrastive margin), {len(study.trials)} training runs, generated {time.strftime('%Y-%m-%d %H:%M')}.</p>",
        "<h2>Data</h2>",
        ("<p><b>Synthetic data.</b> These pairs are generated stand-ins with the statistics of the real data, "
         "not measurements: the numbers below test the pipeline, not biology.</p>" if synthetic else
         "<p>Real REMC data (Roadmap Epigenomics), cell types by epigenome id.</p>"),
        f"<table class='t'><tr><th>pair</th><th>cell type A vs cell type B</th></tr>{pair_rows}</table>",
        "<h2>Test PCC per variant</h2>",
        "<p>Each point is one cell-type pair: the test Pearson correlation of the variant's best setting (chosen on "
        "the validation genes); black bars are means over pairs, the columns right of the dotted line the baselines.</p>",
        "<img src='test_pcc_by_variant.png' alt='test PCC per variant'>",
        "<h2>Relative to the two-layer SVR (the paper's Table 3)</h2>",
        "<p>Percent change in test PCC against the two-layer SVR of the same pair: 100 x (variant - SVR) / |SVR|; "
        "positive means DeepDiff predicts better. Also in <a href='table3.csv'>table3.csv</a> and "
        "<a href='table3.md'>table3.md</a>.</p>",
        _table_html(t3_show, 1),
    ]
    if base is not None:
        parts += ["<p>The baselines' own scores (fitted on the training genes, inputs as the published setting):</p>",
                  _table_html(base)]
    parts += ["<h2>Which choice matters</h2>",
              "<p>Mean paired difference in best test PCC, with a 95% bootstrap interval over the matched comparisons "
              "(n). An interval that contains 0 means the study cannot tell the two apart. "
              "Details in <a href='axes.csv'>axes.csv</a>.</p><ul>"]
    parts += [f"<li>{e(s)}</li>" for s in axes["sentence"]] or ["<li>No axis has two settings in this study.</li>"]
    parts += ["</ul>",
              "<p>Auxiliary task as regression or classification, per variant; lines join the same pair and margin:</p>",
              "<img src='aux_mode.png' alt='aux mode'>",
              "<p>The contrastive margin of the siamese variants against test PCC:</p>",
              "<img src='margin.png' alt='margin'>",
              "<h2>Which hyperparameters mattered within a grid cell</h2>",
              "<p>The share of the variation in validation PCC among a grid cell's trials that each searched setting "
              "explains (Optuna fANOVA; top three per grid cell; all in <a href='importance.csv'>importance.csv</a>). "
              "With few trials these are rough.</p>",
              _table_html(top) if not top.empty else "<p>No grid cell had enough varied trials.</p>",
              *_replicates_html(replicates),
              *_attention_html(attention),
              "<h2>Cost</h2>",
              "<p>Training time summed over each grid cell's trials (trial-seconds), trials stopped early by ASHA "
              "(pruned) or failed, and the best test PCC per trial-hour. In <a href='cost.csv'>cost.csv</a>.</p>",
              _table_html(cost)]
    if notes:
        parts += ["<h2>Notes</h2><ul>", *[f"<li>{e(n)}</li>" for n in notes], "</ul>"]
    parts += ["</body></html>"]
    (out / "index.html").write_text("\n".join(parts))


# ---- entry ------------------------------------------------------------------------------------------------

def _replicates_html(replicates: tuple[pd.DataFrame, pd.DataFrame] | None) -> list[str]:
    e = html.escape
    parts = ["<h2>Does it hold with other seeds?</h2>"]
    if replicates is None or replicates[0].empty:
        return parts + ["<p>No replicates recorded: every number above is one training run per setting; "
                        "<code>--seeds K</code> retrains each grid cell's best setting with K other seeds.</p>"]
    table, tests = replicates
    seeds = int(table["n"].max())
    parts += [f"<p>Each grid cell's best setting trained again with up to {seeds} other random seeds (initial weights, "
              "dropout, batch order); the test PCC's mean and standard deviation (sd) over seeds show how much of a "
              "difference is noise. In <a href='replicates.csv'>replicates.csv</a>.</p>",
              _table_html(table.drop(columns=["aux_mode", "margin"])),
              "<p>Paired Wilcoxon signed-rank tests of each variant against Raw:d and against the two-layer SVR "
              "(in <a href='replicate_tests.csv'>replicate_tests.csv</a>):</p>",
              _table_html(tests.drop(columns=["sentence"])), "<ul>"]
    return parts + [f"<li>{e(x)}</li>" for x in tests["sentence"]] + ["</ul>"]


def _attention_html(attention: AttentionPart | None) -> list[str]:
    e = html.escape
    parts = ["<h2>What the model looks at</h2>"]
    if attention is None or attention.note:
        return parts + [f"<p>{e(attention.note if attention else 'Attention maps were not computed.')}</p>"]
    for name in ("attention_bins.png", "attention_marks.png"):
        parts += [f"<p>{e(attention.sentences[name])}</p>", f"<img src='{name}' alt='{name[:-4].replace('_', ' ')}'>"]
    return parts


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create it ({err.strerror})") from None


def write_report(tracking_uri: str, experiment: str, out_dir: str | Path, *, log: bool = True,
                 attention_pair: int | None = None, seeds: int | None = None, address: str | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float | None = None,
                 replicate_storage: str | None = None) -> Path:
    """Write every report file into `out_dir` (and log them as a ``kind=report`` run); returns index.html.

    seeds: train the missing replicates of every grid cell first (`deepdiff_study.replicates`, Ray) and
    report those K seeds; without it every recorded replicate of the grid cells' best trials is reported.
    """
    out = Path(out_dir)
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: expected a whole number >= 1")
    study = load_study(tracking_uri, experiment)  # the experiment exists and has grid cells
    if attention_pair is not None and attention_pair not in set(study.pairs["pair"]):
        raise ConfigError(f"--attention-pair {attention_pair}: not a pair of experiment {experiment!r}; expected one of "
                          f"{', '.join(str(p) for p in study.pairs['pair'])}")
    check_out(out)
    if seeds is not None:
        from deepdiff_study.replicates import run_replicates

        run_replicates(tracking_uri, experiment, seeds, address=address, cpus_per_trial=cpus_per_trial,
                       gpus_per_trial=gpus_per_trial, storage=replicate_storage)
        study = load_study(tracking_uri, experiment)
    t3 = table3(study)
    axes = axes_table(study)
    importance, notes = importance_table(study)
    cost = cost_table(study)
    written = list(REPORT_FILES)
    t3.to_csv(out / "table3.csv", index=False)
    (out / "table3.md").write_text(
        "Relative test PCC (%) of each variant's best grid cell vs the pair's two-layer SVR\n\n" + _markdown(t3))
    axes.to_csv(out / "axes.csv", index=False)
    importance.to_csv(out / "importance.csv", index=False)
    cost.to_csv(out / "cost.csv", index=False)
    plot_by_variant(study, out / "test_pcc_by_variant.png")
    plot_aux_mode(study, out / "aux_mode.png")
    plot_margin(study, out / "margin.png")
    runs = replicate_runs(study, seeds)
    replicates = None
    if not runs.empty:
        replicates = (replicate_table(study, runs), replicate_tests(study, runs))
        replicates[0].to_csv(out / "replicates.csv", index=False)
        replicates[1].to_csv(out / "replicate_tests.csv", index=False)
        written += REPLICATE_FILES
    attention = attention_section(study, out, attention_pair)
    written += attention.files
    write_html(study, out, t3, axes, importance, cost, [*study.notes, *notes], attention=attention, replicates=replicates)
    if log:
        client = open_store(tracking_uri)
        run = client.create_run(study.experiment_id, tags={Tag.KIND: str(Kind.REPORT)}, run_name="report")
        for name in written:
            client.log_artifact(run.info.run_id, str(out / name))
        client.set_terminated(run.info.run_id, "FINISHED")
    return out / "index.html"


def build_parser() -> argparse.ArgumentParser:
    from deepdiff.command import OneLineParser

    p = OneLineParser(prog="deepdiff-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"the study's MLflow experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, the tables and figures")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    p.add_argument("--no-log", action="store_true", help="do not log the files as a kind=report run in the experiment")
    p.add_argument("--attention-pair", type=int, metavar="N",
                   help="draw the attention of pair N's best stored model (default: the first pair with one)")
    r = p.add_argument_group("replicates (--seeds: retraining on Ray Tune)")
    r.add_argument("--seeds", type=int, metavar="K", help="retrain every grid cell's best configuration with K other "
                   "seeds first (replicates already in MLflow are reused) and report mean, sd and paired tests")
    r.add_argument("--address", help="with --seeds: join this Ray cluster (default: start a local one)")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="with --seeds: CPUs per trial (default 1)")
    r.add_argument("--gpus-per-trial", type=float,
                   help="with --seeds: GPUs per trial (default 0.25 if the cluster has GPUs, else 0)")
    r.add_argument("--replicate-storage", metavar="DIR|URI", help="with --seeds: where Tune keeps its files "
                   "(default a temporary folder, removed after; on a multi-node cluster one every node reaches)")
    return p


def main(argv: list[str] | None = None) -> int:
    from deepdiff.command import run_command

    args = build_parser().parse_args(argv)

    def body() -> int:
        index = write_report(args.mlflow_uri or default_mlflow_uri(), args.experiment, args.out, log=not args.no_log,
                             attention_pair=args.attention_pair, seeds=args.seeds, address=args.address,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             replicate_storage=args.replicate_storage)
        print(f"report: {index}")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
