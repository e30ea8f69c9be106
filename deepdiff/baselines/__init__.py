"""Baselines beside DeepDiff: the paper's three and the strongest simple models, one import for both.

- `paper`: linear regression, one- and two-layer RBF SVR exactly as the paper defines them (Table 3's
  comparison): `PAPER_BASELINES` (also `BASELINE_NAMES`), `run_baseline` -> `BaselineResult`;
- `simple`: ridge, RBF SVR and gradient boosting, each choosing its input transform, feature form and
  hyperparameters on the valid genes: `SIMPLE_MODELS`, `run_simple_model` -> `SimpleResult` (with every
  `Candidate` scored), `best_simple_model` (the best of them by valid PCC, reported on test; named
  `BEST_SIMPLE`);
- `features`: the feature matrices both read (pooled bins, per-mark sums over regions around the TSS).

`ALL_BASELINES` names every baseline a study records and `deepdiff baselines` runs, in this order: the
paper's three, the simple models, the best simple model.
"""

from deepdiff.baselines.features import (
    BIN_BP, FEATURE_FORMS, REGIONS_KB, bin_features, pooled_bins, region_slices, region_sums, simple_features,
)
from deepdiff.baselines.paper import (
    BASELINE_NAMES, C_GRID, PAPER_BASELINES, BaselineResult, TwoLayerSVR, chosen_c, region_columns, run_baseline,
    tss_window,
)
from deepdiff.baselines.simple import (
    BEST_SIMPLE, SIMPLE_MODELS, Candidate, SimpleModel, SimpleResult, best_of, best_simple_model, candidate_count,
    run_simple_model,
)

ALL_BASELINES = (*PAPER_BASELINES, *SIMPLE_MODELS, BEST_SIMPLE)

__all__ = [
    "ALL_BASELINES", "BASELINE_NAMES", "BEST_SIMPLE", "BIN_BP", "C_GRID", "FEATURE_FORMS", "PAPER_BASELINES",
    "REGIONS_KB", "SIMPLE_MODELS",
    "BaselineResult", "Candidate", "SimpleModel", "SimpleResult", "TwoLayerSVR", "best_of", "best_simple_model",
    "bin_features", "candidate_count", "chosen_c", "pooled_bins", "region_columns", "region_slices", "region_sums",
    "run_baseline", "run_simple_model", "simple_features", "tss_window",
]
