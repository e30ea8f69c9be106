"""How the report names things for a reader: variants, baselines, cell types and pairs.

Every name comes from where it is defined: a variant's label from its `deepdiff.variants.VariantSpec`
row, a cell type's name from the grid-cell run's tags (`records.Tag.CELL_TYPE_A` / ``CELL_TYPE_B``,
written from the grid file's ``cell_types``), the baselines' names from `deepdiff.baselines` (read by
`deepdiff_study.report.load`). What stays here is the wording of the page: the baselines' long labels and
the words for what a simple model chose.
A name nothing defines is shown as it is recorded, never an error.
"""

from __future__ import annotations

from deepdiff.variants import VARIANTS

REFERENCE_VARIANT = "raw_d"  # the variant every other one is compared against (the paper's simplest)
REFERENCE_BASELINE = "svr2"  # Table 3's reference: the two-layer SVR (Cheng & Gerstein 2012)
BEST_SIMPLE = "best_simple"  # the other reference: the pair's best simple model (deepdiff.baselines.BEST_SIMPLE)
# The page's words for the baselines of `deepdiff.baselines.ALL_BASELINES` (another one shows its name).
BASELINE_LABELS = {"linear": "linear regression", "svr": "SVR (one layer)", "svr2": "SVR (two layers)",
                   "ridge": "ridge (tuned)", "rbf_svr": "RBF SVR (tuned)", "gboost": "gradient boosting (tuned)",
                   BEST_SIMPLE: "best simple model"}
MODEL_LABELS = {"ridge": "ridge regression", "rbf_svr": "RBF SVR", "gboost": "gradient boosting"}  # a simple model
FEATURE_LABELS = {"bins": "pooled bins", "regions": "region sums"}  # a simple model's feature form


def text(value: object) -> str | None:
    """A recorded name, or None where there is none (a missing tag: None, or NaN once in a DataFrame)."""
    return value if isinstance(value, str) and value else None


def variant_label(variant: str) -> str:
    """``Raw:d`` for raw_d (`VariantSpec.label`); a variant this version does not know: its name."""
    spec = VARIANTS.get(variant)
    return spec.label if spec is not None else variant


def baseline_label(baseline: str) -> str:
    """``SVR (two layers)`` for svr2; a baseline without words here: its name."""
    return BASELINE_LABELS.get(baseline, baseline)


def choice_label(model: object, transform: object, features: object, choice: object) -> str:
    """``ridge regression on log1p region sums (alpha=100)``: what a simple model chose; "" when unrecorded."""
    if not text(model):
        return ""
    inputs = " ".join(filter(None, [text(transform), FEATURE_LABELS.get(text(features) or "", text(features))]))
    return (f"{MODEL_LABELS.get(model, model)}{' on ' + inputs if inputs else ''}"
            f"{' (' + choice + ')' if text(choice) else ''}")


def cell_label(epigenome: str, cell_type: str | None) -> str:
    """``E123 K562`` when the cell type's name is known, the epigenome id itself otherwise."""
    return f"{epigenome} {cell_type}" if text(cell_type) else epigenome


def pair_label(pair_name: str, imitates: str | None = None, cell_type_a: str | None = None,
               cell_type_b: str | None = None) -> str:
    """``E123 K562 vs E003 H1``; a synthetic pair: ``syn1A-syn1B (synthetic, standing in for E123 K562 vs
    E003 H1)`` (its cell-type names are those of the real pair it imitates)."""
    a, _, b = (text(imitates) or pair_name).partition("-")
    spelled = f"{cell_label(a, cell_type_a)} vs {cell_label(b, cell_type_b)}"
    return f"{pair_name} (synthetic, standing in for {spelled})" if text(imitates) else spelled
