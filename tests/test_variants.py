import pytest

from deepdiff.errors import ConfigError
from deepdiff.variants import VARIANTS, VariantSpec, get_variant


def test_table_has_the_papers_seven_variants_in_order():
    assert list(VARIANTS) == ["raw_d", "raw_c", "raw", "aux", "raw_aux", "aux_siamese", "raw_aux_siamese"]


@pytest.mark.parametrize(
    "name, inputs, cells, shared, aux, siamese, head",
    [
        ("raw_d", ("A-B",), False, False, False, False, "linear"),
        ("raw_c", ("A", "B"), False, False, False, False, "linear"),
        ("raw", ("A", "B", "A-B"), False, False, False, False, "linear"),
        ("aux", (), True, False, True, False, "mlp"),
        ("raw_aux", ("A", "B", "A-B"), True, False, True, False, "linear"),
        ("aux_siamese", (), True, True, True, True, "mlp"),
        ("raw_aux_siamese", ("A", "B", "A-B"), True, True, True, True, "linear"),
    ],
)
def test_rows_match_table_1(name, inputs, cells, shared, aux, siamese, head):
    spec = VARIANTS[name]
    assert (spec.level1_inputs, spec.cell_encoders, spec.share_cell_encoder, spec.aux, spec.siamese) == (
        inputs, cells, shared, aux, siamese,
    )
    assert spec.head == head


def test_inconsistent_rows_are_refused():
    with pytest.raises(ValueError):
        VariantSpec("x", ("A-B",), False, True, False, False)  # sharing without cell encoders
    with pytest.raises(ValueError):
        VariantSpec("x", ("C",), False, False, False, False)  # unknown channel group
    with pytest.raises(ValueError):
        VariantSpec("x", (), False, False, False, False)  # nothing to encode


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown variant 'raw_x'.*raw_d, raw_c"):
        get_variant("raw_x")


def test_each_row_carries_the_papers_label():
    assert [spec.label for spec in VARIANTS.values()] == [
        "Raw:d", "Raw:c", "Raw", "Aux", "Raw+Aux", "Aux+Siamese", "Raw+Aux+Siamese"]
    assert VariantSpec("x", ("A-B",), False, False, False, False).label == "x"  # a row without one: its name
