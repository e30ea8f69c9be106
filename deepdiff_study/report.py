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
- ``index.html``: one page for a reader without code, every figure and table inline.

Imports MLflow, pandas, numpy, scipy and matplotlib (Agg); never Ray or torch; optuna at call time.
Not here yet: replicate retraining (``--seeds K``) and attention heat maps (``deepdiff evaluate``).
"""

from __future__ import annotations

import argparse
import html
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepdiff.errors import ConfigError, DeepDiffError
from deepdiff.variants import VARIANTS
from deepdiff_study.records import (
    DEFAULT_EXPERIMENT,
    NOT_APPLICABLE,
    Kind,
    Tag,
    TrialStatus,
    best_trials,
    decode_params,
    default_mlflow_uri,
    experiment_id,
    open_store,
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
                "test_pcc_by_variant.png", "aux_mode.png", "margin.png")


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


def load_study(tracking_uri: str, experiment: str) -> Study:
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    rows = best_trials(tracking_uri, experiment)
    if not rows:
        raise ConfigError(f"--experiment {experiment!r}: no grid-cell runs in it at {tracking_uri}; nothing to report")
    parents = {r.data.tags[Tag.GRID_CELL]: r for r in study_runs(client, exp_id, Kind.GRID_CELL)}
    for row in rows:
        row.pop("_run")
        row.pop("data")
        row["imitates"] = parents[row["grid_cell"]].data.tags.get(Tag.IMITATES)
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
    study = Study(tracking_uri, experiment, exp_id, cells, trials, baselines, pairs)
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
               cost: pd.DataFrame, notes: list[str]) -> None:
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
              "<h2>Cost</h2>",
              "<p>Training time summed over each grid cell's trials (trial-seconds), trials stopped early by ASHA "
              "(pruned) or failed, and the best test PCC per trial-hour. In <a href='cost.csv'>cost.csv</a>.</p>",
              _table_html(cost)]
    if notes:
        parts += ["<h2>Notes</h2><ul>", *[f"<li>{e(n)}</li>" for n in notes], "</ul>"]
    parts += ["<p>Not in this report yet: replicate retraining with several seeds, attention heat maps.</p>",
              "</body></html>"]
    (out / "index.html").write_text("\n".join(parts))


# ---- entry ------------------------------------------------------------------------------------------------

def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create it ({err.strerror})") from None


def write_report(tracking_uri: str, experiment: str, out_dir: str | Path, *, log: bool = True) -> Path:
    """Write every report file into `out_dir` (and log them as a ``kind=report`` run); returns index.html."""
    out = Path(out_dir)
    check_out(out)
    study = load_study(tracking_uri, experiment)
    t3 = table3(study)
    axes = axes_table(study)
    importance, notes = importance_table(study)
    cost = cost_table(study)
    t3.to_csv(out / "table3.csv", index=False)
    (out / "table3.md").write_text(
        "Relative test PCC (%) of each variant's best grid cell vs the pair's two-layer SVR\n\n" + _markdown(t3))
    axes.to_csv(out / "axes.csv", index=False)
    importance.to_csv(out / "importance.csv", index=False)
    cost.to_csv(out / "cost.csv", index=False)
    plot_by_variant(study, out / "test_pcc_by_variant.png")
    plot_aux_mode(study, out / "aux_mode.png")
    plot_margin(study, out / "margin.png")
    write_html(study, out, t3, axes, importance, cost, [*study.notes, *notes])
    if log:
        client = open_store(tracking_uri)
        run = client.create_run(study.experiment_id, tags={Tag.KIND: str(Kind.REPORT)}, run_name="report")
        for name in REPORT_FILES:
            client.log_artifact(run.info.run_id, str(out / name))
        client.set_terminated(run.info.run_id, "FINISHED")
    return out / "index.html"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepdiff-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"the study's MLflow experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, the tables and figures")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default sqlite:///mlruns.db in this folder)")
    p.add_argument("--no-log", action="store_true", help="do not log the files as a kind=report run in the experiment")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        index = write_report(args.mlflow_uri or default_mlflow_uri(), args.experiment, args.out, log=not args.no_log)
    except DeepDiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
