"""The replicates over seeds (``deepdiff-ablation --replicates K``): pure functions of the `Study`'s frames.

- `replicate_runs`: the completed replicate runs that count (of each grid cell's current best trial);
- `with_seeds`: the study with each grid cell's test PCC the **mean over its replicate seeds** where it
  has them, and their sd (ddof 1), min, max, count and values per seed; the search's own run (chosen among
  trials, so not a fresh draw) is kept aside as ``search_test_pcc`` and is not one of the seeds. A grid
  cell without replicates keeps its one run (seeds = 1, sd NaN). Every table and figure of the report
  reads the study through it, so with seeds they show means and spreads;
- `replicate_table`: per grid cell the seeds, their mean and sd, and the search's run;
- `replicate_tests`: per variant (its best grid cell per pair, chosen on valid PCC as in Table 3) a
  paired Wilcoxon signed-rank test against raw_d and against the two-layer SVR, over pairs (each pair's
  mean over seeds) when >= 2 pairs have both, else over the seeds of the one pair.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepdiff_study.records import TrialStatus
from deepdiff_study.report.names import REFERENCE_BASELINE, REFERENCE_VARIANT, baseline_label, variant_label
from deepdiff_study.report.stats import reference_scores, variant_best, variants_in, wilcoxon_p

if TYPE_CHECKING:
    from deepdiff_study.report.load import Study

SEED_COLUMNS = ["search_test_pcc", "test_sd", "test_min", "test_max", "seeds", "seed_test_pccs"]  # with_seeds adds


def replicate_runs(study: Study) -> pd.DataFrame:
    """The completed replicate runs that count: those of each grid cell's current best trial (tag
    ``replicate_of``), one per (grid cell, seed), with a finite test PCC."""
    reps = study.replicates[study.replicates["status"] == TrialStatus.COMPLETED]
    keep = [reps[(reps["grid_cell"] == cell.grid_cell) & (reps["replicate_of"] == cell.run_id)].drop_duplicates(
        "seed", keep="first") for cell in study.cells.itertuples()]
    rows = pd.concat(keep) if keep else reps.iloc[0:0]
    return rows[np.isfinite(rows["best_test_pcc"].astype(float))].sort_values(["grid_cell", "seed"])


def with_seeds(study: Study) -> Study:
    """`study` with `SEED_COLUMNS` on its cells and ``best_test_pcc`` the mean over seeds where there are
    replicates (see the module docstring). Applied twice, the same."""
    if "search_test_pcc" in study.cells.columns:
        return study
    runs = replicate_runs(study)
    by_cell = {key: group.set_index("seed")["best_test_pcc"].astype(float) for key, group in runs.groupby("grid_cell")}
    cells = study.cells.copy()
    rows = []
    for key, single in zip(cells["grid_cell"], cells["best_test_pcc"].astype(float)):
        values = by_cell.get(key)
        if values is None or values.empty:
            rows.append((single, single, math.nan, single, single, 1, {}))
        else:
            rows.append((float(values.mean()), single, float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                         float(values.min()), float(values.max()), len(values), {int(k): float(v) for k, v in values.items()}))
    columns = ["best_test_pcc", *SEED_COLUMNS]
    for i, name in enumerate(columns):
        cells[name] = [row[i] for row in rows]
    return dataclasses.replace(study, cells=cells)


def replicate_table(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell: seeds, n, mean and sample sd (ddof 1) of the replicates' test PCC, and the study's one run."""
    rows = []
    for cell in study.cells.itertuples():
        mine = runs[runs["grid_cell"] == cell.grid_cell]
        if mine.empty:
            continue
        pccs = mine["best_test_pcc"].astype(float).to_numpy()
        single = getattr(cell, "search_test_pcc", cell.best_test_pcc)
        rows.append({"grid_cell": cell.grid_cell, "variant": cell.variant, "pair": cell.pair,
                     "aux_mode": cell.aux_mode, "margin": cell.margin,
                     "seeds": " ".join(str(s) for s in mine["seed"]), "n": len(pccs), "mean_test_pcc": float(pccs.mean()),
                     "sd_test_pcc": float(pccs.std(ddof=1)) if len(pccs) > 1 else math.nan,
                     "study_test_pcc": float(single)})
    return pd.DataFrame(rows, columns=["grid_cell", "variant", "pair", "aux_mode", "margin", "seeds", "n",
                                       "mean_test_pcc", "sd_test_pcc", "study_test_pcc"])


def smallest_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value n nonzero differences can give: 2 / 2**n."""
    return 2.0 ** (1 - n)


def replicate_test_row(comparison: str, against: str, over: str, diffs: np.ndarray) -> dict[str, Any]:
    """One row of `replicate_tests`: n, mean difference, the Wilcoxon p-value and the smallest p its n allows."""
    n = len(diffs)
    return {"comparison": comparison, "against": against, "over": over, "n": n,
            "mean_diff": float(diffs.mean()) if n else math.nan, "wilcoxon_p": wilcoxon_p(diffs, min_n=2),
            "smallest_possible_p": smallest_wilcoxon_p(n) if n else math.nan}


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
    return pd.DataFrame(rows, columns=["comparison", "against", "over", "n", "mean_diff", "wilcoxon_p",
                                       "smallest_possible_p"])

