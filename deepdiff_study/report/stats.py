"""The report's numbers: pure functions of the `Study`'s DataFrames (no MLflow, no files, no figures).
Each reads the grid cells' test PCC as `deepdiff_study.report.seeds.with_seeds` left it: the mean over
seeds where there are replicates; a variant's grid cell is still chosen by the search's valid PCC.

- `table3`: the paper's Table 3: test PCC of each variant's best grid cell per pair (by valid PCC)
  relative to the pair's two-layer SVR, in percent (100 * (pcc - pcc_svr2) / |pcc_svr2|), with mean and
  median, and with seeds the sd over them in the same unit;
- `against_baselines`: each variant's best grid cell per pair against the two-layer SVR and the best simple
  model: test PCC (mean, sd, min, max over seeds), the differences, and on which side every seed lies;
- `axes_table`: which axis of the grid matters: the mean paired difference in best test PCC for variant
  (vs raw_d), aux mode (classification - regression) and margin (vs 2, the published one, or the
  smallest), with a seeded percentile-bootstrap 95% interval and a Wilcoxon p-value when n >= 5; over
  pairs, or over the seeds of one pair when only one pair is matched and seeds exist;
- `cost_table`: per grid cell trials, pruned, failed, warm starts, trial-hours, best valid and test PCC,
  and the trials and trial-hours its search took to reach its best valid PCC (`deepdiff_study.search_cost`).

The sentences the page says about these numbers are `deepdiff_study.report.words`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepdiff.variants import VARIANTS
from deepdiff_study.records import NOT_APPLICABLE, TrialStatus
from deepdiff_study.report.names import (
    BEST_SIMPLE,
    REFERENCE_BASELINE,
    REFERENCE_VARIANT,
    variant_label,
)
from deepdiff_study.search_cost import search_cost, total_trial_hours

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


def reference_scores(baselines: pd.DataFrame, baseline: str = REFERENCE_BASELINE) -> dict[int, float]:
    """pair -> test PCC of its `baseline` run (default the two-layer SVR, the reference of Table 3)."""
    return {int(r.pair): float(r.test_pcc) for r in baselines.itertuples() if r.baseline == baseline}


def relative_percent(pcc: float, reference: float) -> float:
    """100 * (pcc - reference) / |reference| (NaN when the reference is 0 or missing)."""
    if not (math.isfinite(pcc) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (pcc - reference) / abs(reference)


def has_seeds(cells: pd.DataFrame) -> bool:
    """Whether any grid cell's test PCC is a mean over two or more seeds (`seeds.with_seeds`)."""
    return "seeds" in cells.columns and bool((cells["seeds"] > 1).any())


def table3(study: Study) -> pd.DataFrame:
    """One row per variant: relative test PCC (%) vs the pair's svr2, a column per pair, then mean and median.
    With seeds (`seeds.with_seeds`): of the mean over seeds, and a column ``pair N sd`` after each pair's:
    the sd over seeds in the same unit (100 * sd / |svr2|)."""
    best = variant_best(study.cells)
    svr2 = reference_scores(study.baselines)
    pairs = list(study.pairs["pair"])
    seeded = has_seeds(best)
    rows = []
    for variant in variants_in(best["variant"]):
        row: dict[str, Any] = {"variant": variant}
        values = []
        for pair in pairs:
            hit = best[(best["pair"] == pair) & (best["variant"] == variant)]
            reference = svr2.get(pair, math.nan)
            value = relative_percent(float(hit["best_test_pcc"].iloc[0]), reference) if len(hit) else math.nan
            row[f"pair {pair}"] = value
            if seeded:
                sd = float(hit["test_sd"].iloc[0]) if len(hit) else math.nan
                row[f"pair {pair} sd"] = 100.0 * sd / abs(reference) if math.isfinite(reference) and reference else math.nan
            values.append(value)
        finite = [v for v in values if math.isfinite(v)]
        row["mean"] = float(np.mean(finite)) if finite else math.nan
        row["median"] = float(np.median(finite)) if finite else math.nan
        rows.append(row)
    columns = [c for p in pairs for c in ([f"pair {p}", f"pair {p} sd"] if seeded else [f"pair {p}"])]
    return pd.DataFrame(rows, columns=["variant", *columns, "mean", "median"])


# ---- against both baselines -----------------------------------------------------------------------------

AGAINST_COLUMNS = ["pair", "variant", "grid_cell", "test_pcc", "test_sd", "test_min", "test_max", "seeds",
                   "svr2_pcc", "vs_svr2", "svr2_side", "simple_pcc", "vs_simple", "simple_side"]


def side(low: float, high: float, mean: float, seeds: int, reference: float) -> str:
    """Where a variant's test PCC lies against a baseline's: with seeds, "above" / "below" when every seed
    is (min above or max below the reference), "both sides" otherwise; a single run: "above" / "below" /
    "equal"; "" without a reference."""
    if not (math.isfinite(reference) and math.isfinite(mean)):
        return ""
    if seeds > 1:
        return "above" if low > reference else "below" if high < reference else "both sides"
    return "above" if mean > reference else "below" if mean < reference else "equal"


def against_baselines(study: Study) -> pd.DataFrame:
    """Per (pair, variant): its best grid cell by valid PCC, its test PCC (mean, sd, min, max over seeds, and
    how many; a single run: seeds 1), the pair's two-layer SVR and best simple model, the differences
    (variant - baseline) and `side` of each."""
    best = variant_best(study.cells)
    svr2, simple = reference_scores(study.baselines), reference_scores(study.baselines, BEST_SIMPLE)
    rows = []
    for r in best.itertuples():
        pcc = float(r.best_test_pcc)
        low, high = (float(getattr(r, "test_min", pcc)), float(getattr(r, "test_max", pcc)))
        seeds = int(getattr(r, "seeds", 1))
        row = {"pair": int(r.pair), "variant": r.variant, "grid_cell": r.grid_cell, "test_pcc": pcc,
               "test_sd": float(getattr(r, "test_sd", math.nan)), "test_min": low, "test_max": high, "seeds": seeds}
        for name, scores in (("svr2", svr2), ("simple", simple)):
            reference = scores.get(int(r.pair), math.nan)
            row |= {f"{name}_pcc": reference, f"vs_{name}": pcc - reference,
                    f"{name}_side": side(low, high, pcc, seeds, reference)}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=AGAINST_COLUMNS)
    order = {v: i for i, v in enumerate(VARIANTS)}
    return frame.sort_values(["pair", "variant"], key=lambda c: c.map(order) if c.name == "variant" else c,
                             kind="stable").reset_index(drop=True)


# ---- which axis matters ---------------------------------------------------------------------------------

def bootstrap_interval(diffs: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
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


def _paired(cells: pd.DataFrame, key: list[str], column: str, a: Any, b: Any) -> tuple[np.ndarray, list[str], str]:
    """best_test_pcc(column == a) - best_test_pcc(column == b) over rows matching on `key`, their labels and
    what they are over ("grid cells"). When only one pair of rows matches and both have seeds in common
    (`seeds.with_seeds`), the differences are over those seeds instead (matched by seed value)."""
    left = cells[cells[column] == a].set_index(key)
    right = cells[cells[column] == b].set_index(key)
    both = left.index.intersection(right.index)
    diffs = (left.loc[both, "best_test_pcc"] - right.loc[both, "best_test_pcc"]).astype(float)
    diffs = diffs[np.isfinite(diffs)]
    labels = [_key_label(key, i) for i in diffs.index]
    if len(diffs) == 1 and "seed_test_pccs" in cells.columns:
        mine, other = left.loc[diffs.index[0], "seed_test_pccs"], right.loc[diffs.index[0], "seed_test_pccs"]
        common = sorted(set(mine) & set(other))
        if len(common) >= 2:
            return np.array([mine[s] - other[s] for s in common]), labels, f"seeds of {labels[0]}"
    return diffs.to_numpy(), labels, "grid cells"


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


def fmt(x: float) -> str:
    """A difference in PCC as the page writes it: signed, 3 places."""
    return f"{x:+.3f}"


def axis_row(axis: str, comparison: str, diffs: np.ndarray, matched: list[str], over: str = "grid cells") -> dict[str, Any]:
    """One row of `axes_table`: n (over what), mean difference, interval, p-value and the row's sentence."""
    n = len(diffs)
    low, high = bootstrap_interval(diffs)
    p = wilcoxon_p(diffs)
    mean = float(diffs.mean()) if n else math.nan
    unit = "" if over == "grid cells" else f" {over}"
    if n == 0:
        sentence = f"{comparison}: no matching grid cells to compare."
    elif n < 2:
        sentence = f"{comparison}: {fmt(mean)} test PCC (n=1, interval undefined): too few to tell."
    else:
        first = comparison.split(" vs ")[0]
        verdict = ("no clear effect" if low <= 0 <= high
                   else f"{first} {'higher' if low > 0 else 'lower'} (the interval excludes 0)")
        if n < WILCOXON_MIN_N:
            verdict += f"; only {n} comparisons, a hint at most"
        sentence = f"{comparison}: {fmt(mean)} test PCC (95% interval {fmt(low)} to {fmt(high)}, n={n}{unit}): {verdict}."
    if isinstance(p, float):
        sentence = sentence[:-1] + f" (Wilcoxon p={p:.3g})."
    return {"axis": axis, "comparison": comparison, "n": n, "over": over, "mean_diff": mean, "ci_low": low,
            "ci_high": high, "wilcoxon_p": p, "matched_on": "; ".join(matched), "sentence": sentence}


AXES_COLUMNS = ["axis", "comparison", "n", "over", "mean_diff", "ci_low", "ci_high", "wilcoxon_p", "matched_on",
                "sentence"]


def axes_table(study: Study) -> pd.DataFrame:
    """Mean paired differences in best test PCC (means over seeds where there are seeds) along each axis of
    the grid (see the module docstring)."""
    cells = study.cells.copy()
    cells["aux_key"] = cells["aux_mode"].fillna(NOT_APPLICABLE)
    cells["margin_key"] = cells["margin"].fillna(-1.0)
    rows = []
    best = variant_best(cells)
    if REFERENCE_VARIANT in set(best["variant"]):
        for variant in [v for v in variants_in(best["variant"]) if v != REFERENCE_VARIANT]:
            rows.append(axis_row("variant", f"{variant_label(variant)} vs {variant_label(REFERENCE_VARIANT)}",
                                 *_paired(best, ["pair"], "variant", variant, REFERENCE_VARIANT)))
    modes = set(cells["aux_mode"].dropna())
    if {"classification", "regression"} <= modes:
        rows.append(axis_row("aux_mode", "Classification vs regression", *_paired(
            cells, ["pair", "variant", "margin_key"], "aux_mode", "classification", "regression")))
    margins = sorted(set(cells["margin"].dropna()))
    if len(margins) >= 2:
        ref = PUBLISHED_MARGIN if PUBLISHED_MARGIN in margins else margins[0]
        for margin in [m for m in margins if m != ref]:
            rows.append(axis_row("margin", f"Margin {margin:g} vs {ref:g}",
                                 *_paired(cells, ["pair", "variant", "aux_key"], "margin", margin, ref)))
    return pd.DataFrame(rows, columns=AXES_COLUMNS)


# ---- cost -------------------------------------------------------------------------------------------------

COST_COLUMNS = ["grid_cell", "variant", "pair", "trials", "pruned", "failed", "warm_starts", "trial_hours",
                "best_valid_pcc", "best_test_pcc", "trials_to_best", "hours_to_best", "best_from"]


def cost_table(study: Study) -> pd.DataFrame:
    """Per grid cell: trials (pruned, failed, warm starts among them), trial-hours (training time summed over
    its trials), its best valid PCC and the search's test PCC of that trial, and what its search took to
    reach that best valid PCC: trials (in the order they started) and trial-hours up to and including the
    first trial that reached it, and that trial's warm-start source ("" when the grid cell's own)."""
    trials = study.trials.rename(columns={"start_time": "order"})
    spent = search_cost(trials).set_index("grid_cell") if len(trials) else None
    rows = []
    for cell in study.cells.itertuples():
        mine = study.trials[study.trials["grid_cell"] == cell.grid_cell]
        found = spent.loc[cell.grid_cell] if spent is not None and cell.grid_cell in spent.index else None
        rows.append({
            "grid_cell": cell.grid_cell, "variant": cell.variant, "pair": cell.pair, "trials": len(mine),
            "pruned": int((mine["status"] == TrialStatus.PRUNED).sum()),
            "failed": int((mine["status"] == TrialStatus.FAILED).sum()),
            "warm_starts": 0 if found is None else int(found["warm_starts"]),
            "trial_hours": float(mine["seconds"].sum()) / 3600.0, "best_valid_pcc": float(cell.best_valid_pcc),
            "best_test_pcc": float(getattr(cell, "search_test_pcc", cell.best_test_pcc)),
            "trials_to_best": math.nan if found is None else found["trials_to_target"],
            "hours_to_best": math.nan if found is None else found["hours_to_target"],
            "best_from": "" if found is None else found["target_reached_by"],
        })
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def study_trial_hours(study: Study) -> float:
    """The study's trial-hours: the training time of all its trials, summed."""
    return total_trial_hours(study.trials) if len(study.trials) else 0.0
