"""The report's numbers: pure functions of the `Study`'s DataFrames (no MLflow, no files, no figures).

- `table3`: the paper's Table 3: test PCC of each variant's best grid cell per pair (by valid PCC)
  relative to the pair's two-layer SVR, in percent (100 * (pcc - pcc_svr2) / |pcc_svr2|), with mean and median;
- `axes_table`: which axis of the grid matters: the mean paired difference in best test PCC for variant
  (vs raw_d), aux mode (classification - regression) and margin (vs 2, the published one, or the
  smallest), with a seeded percentile-bootstrap 95% interval and a Wilcoxon p-value when n >= 5;
- `cost_table`: trials, pruned, failed, trial-seconds, best test PCC and PCC per trial-hour per grid cell;
- `replicate_runs`, `replicate_table`, `replicate_tests`: over the recorded replicate runs, per grid cell
  the mean and sd of test PCC over seeds; per variant a paired Wilcoxon test against raw_d and against
  the two-layer SVR, over pairs when >= 2 pairs have both, else over the seeds of the one pair.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepdiff.variants import VARIANTS
from deepdiff_study.records import NOT_APPLICABLE, TrialStatus
from deepdiff_study.report.names import REFERENCE_BASELINE, REFERENCE_VARIANT, baseline_label, variant_label

if TYPE_CHECKING:
    from deepdiff_study.report.load import Study

PUBLISHED_MARGIN = 2.0  # the margin axis is compared against the paper's margin when the study has it
BOOTSTRAP_RESAMPLES = 2000  # resamples of the percentile bootstrap
BOOTSTRAP_SEED = 0  # its seed: the same study gives the same intervals
WILCOXON_MIN_N = 5  # fewer paired differences than this: no Wilcoxon test on an axis


# ---- Table 3 ------------------------------------------------------------------------------------------

def variant_best(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, variant): its best grid cell by valid PCC (as the paper picks a setting), with its test PCC."""
    scored = cells[np.isfinite(cells["best_valid_pcc"].astype(float))]
    if scored.empty:
        return scored.assign()
    best = scored.loc[scored.groupby(["pair", "variant"])["best_valid_pcc"].idxmax()]
    return best.sort_values(["pair", "variant"]).reset_index(drop=True)


def variants_in(names: Any) -> list[str]:
    """The variants among `names`, in the table's order (`deepdiff.variants.VARIANTS`)."""
    present = set(names)
    return [v for v in VARIANTS if v in present]


def reference_scores(baselines: pd.DataFrame) -> dict[int, float]:
    """pair -> test PCC of its two-layer SVR (the reference of Table 3)."""
    return {int(r.pair): float(r.test_pcc) for r in baselines.itertuples() if r.baseline == REFERENCE_BASELINE}


def relative_percent(pcc: float, reference: float) -> float:
    """100 * (pcc - reference) / |reference| (NaN when the reference is 0 or missing)."""
    if not (math.isfinite(pcc) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (pcc - reference) / abs(reference)


def table3(study: Study) -> pd.DataFrame:
    """One row per variant: relative test PCC (%) vs the pair's svr2, a column per pair, then mean and median."""
    best = variant_best(study.cells)
    svr2 = reference_scores(study.baselines)
    pairs = list(study.pairs["pair"])
    rows = []
    for variant in variants_in(best["variant"]):
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


def wilcoxon_p(diffs: np.ndarray, min_n: int = WILCOXON_MIN_N) -> float | str:
    """The two-sided Wilcoxon signed-rank p-value of `diffs`, or why there is none."""
    if len(diffs) < min_n:
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
    """One row of `axes_table`: n, mean difference, interval, p-value and the page's sentence."""
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
        for variant in [v for v in variants_in(best["variant"]) if v != REFERENCE_VARIANT]:
            diffs, matched = _paired(best, ["pair"], "variant", variant, REFERENCE_VARIANT)
            rows.append(axis_row("variant", f"{variant_label(variant)} vs {variant_label(REFERENCE_VARIANT)}",
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


# ---- cost -------------------------------------------------------------------------------------------------

def cost_table(study: Study) -> pd.DataFrame:
    """Per grid cell: trials, pruned, failed, summed trial-seconds, best test PCC and PCC per trial-hour."""
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

def replicate_runs(study: Study) -> pd.DataFrame:
    """The completed replicate runs that count: those of each grid cell's current best trial (tag
    ``replicate_of``), one per (grid cell, seed), with a finite test PCC."""
    reps = study.replicates[study.replicates["status"] == TrialStatus.COMPLETED]
    keep = [reps[(reps["grid_cell"] == cell.grid_cell) & (reps["replicate_of"] == cell.run_id)].drop_duplicates(
        "seed", keep="first") for cell in study.cells.itertuples()]
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
    """One row of `replicate_tests`: n, mean difference, the Wilcoxon p-value and what it can show."""
    n = len(diffs)
    mean = float(diffs.mean()) if n else math.nan
    p = wilcoxon_p(diffs, min_n=2)
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
    svr2 = reference_scores(study.baselines)
    pairs = sorted({p for p, _ in cell_of})
    rows = []
    for variant in variants_in(v for _, v in cell_of):
        label = variant_label(variant)
        references = [] if variant == REFERENCE_VARIANT else [(variant_label(REFERENCE_VARIANT), REFERENCE_VARIANT)]
        for against, ref in [*references, (baseline_label(REFERENCE_BASELINE), None)]:
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
