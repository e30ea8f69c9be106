"""The seven DeepDiff variants as rows of one table (the paper's appendix Table 1).

`deepdiff.model.DeepDiff` assembles any row; adding an eighth variant is one new row plus a test.

Channel groups entering Level I are named "A" (X_A), "B" (X_B) and "A-B" (X_A - X_B), in the
reference's order [X_A, X_B, X_A - X_B].
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNEL_GROUPS = ("A", "B", "A-B")


@dataclass(frozen=True)
class VariantSpec:
    name: str  # the variant's name as used on the command line and in MLflow
    level1_inputs: tuple[str, ...]  # channel groups of the "difference" Level I f1^d ("" = no f1^d)
    cell_encoders: bool  # separate Level I/II stacks f1^A,f2^A and f1^B,f2^B over X_A and X_B
    share_cell_encoder: bool  # siamese: f1^A and f1^B are one module (shared weights)
    aux: bool  # cell-specific auxiliary heads and losses on v_A, v_B
    siamese: bool  # contrastive loss between the Level I outputs of A and B
    label: str = ""  # the paper's name for it on figures and tables (Raw:d, Aux+Siamese, ...); "" = `name`

    def __post_init__(self) -> None:
        if any(group not in CHANNEL_GROUPS for group in self.level1_inputs):
            raise ValueError(f"{self.name}: level1_inputs must be drawn from {CHANNEL_GROUPS}")
        if not self.level1_inputs and not self.cell_encoders:
            raise ValueError(f"{self.name}: a variant needs f1^d inputs or cell encoders")
        if (self.share_cell_encoder or self.aux or self.siamese) and not self.cell_encoders:
            raise ValueError(f"{self.name}: sharing, aux and siamese need cell encoders")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def head(self) -> str:
        """Main head: "linear" on v_d when there is an f2^d, else "mlp" on [v_A, v_B]."""
        return "linear" if self.level1_inputs else "mlp"


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        #           name               level1_inputs        cells  share  aux    siamese  label
        VariantSpec("raw_d", ("A-B",), False, False, False, False, "Raw:d"),
        VariantSpec("raw_c", ("A", "B"), False, False, False, False, "Raw:c"),
        VariantSpec("raw", ("A", "B", "A-B"), False, False, False, False, "Raw"),
        VariantSpec("aux", (), True, False, True, False, "Aux"),
        VariantSpec("raw_aux", ("A", "B", "A-B"), True, False, True, False, "Raw+Aux"),
        VariantSpec("aux_siamese", (), True, True, True, True, "Aux+Siamese"),
        VariantSpec("raw_aux_siamese", ("A", "B", "A-B"), True, True, True, True, "Raw+Aux+Siamese"),
    )
}


def get_variant(name: str) -> VariantSpec:
    """The spec named `name`; a ConfigError lists the valid names otherwise."""
    from deepdiff.errors import ConfigError

    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}") from None
