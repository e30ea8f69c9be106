"""deepdiff_study.grid + ablations/paper.yaml: the paper's grid, sub-grid selection, validation of grid files."""

from collections import Counter

import pytest

from deepdiff_study.grid import PAPER_GRID, load_grid
from deepdiff.errors import ConfigError
from deepdiff.variants import VARIANTS


@pytest.fixture(scope="module")
def grid():
    return load_grid(PAPER_GRID)


def test_paper_grid_has_230_valid_cells_each_once(grid):
    cells = grid.grid_cells("all")
    assert len(cells) == 230
    assert len({c.key for c in cells}) == 230
    assert len(set(cells)) == 230
    per_variant = Counter(c.variant for c in cells)
    for name, spec in VARIANTS.items():
        expected = 10 * (2 if spec.aux else 1) * (4 if spec.siamese else 1)
        assert per_variant[name] == expected
    assert sum(1 for c in cells if not VARIANTS[c.variant].aux) == 30
    assert sum(1 for c in cells if VARIANTS[c.variant].aux and not VARIANTS[c.variant].siamese) == 40
    assert sum(1 for c in cells if VARIANTS[c.variant].siamese) == 160


def test_only_applicable_coordinates_are_set(grid):
    for cell in grid.grid_cells("all"):
        spec = VARIANTS[cell.variant]
        assert (cell.aux_mode is not None) == spec.aux
        assert (cell.margin is not None) == spec.siamese


def test_pairs_of_the_paper(grid):
    assert [(p.number, p.name) for p in grid.pairs.values()] == [
        (1, "E123-E003"), (2, "E116-E003"), (3, "E123-E116"), (4, "E003-E005"), (5, "E003-E006"),
        (6, "E006-E007"), (7, "E005-E006"), (8, "E003-E004"), (9, "E004-E006"), (10, "E037-E038"),
    ]


@pytest.mark.parametrize("spec, numbers", [("all", list(range(1, 11))), ("1,3", [1, 3]), ("E123-E003", [1]),
                                           ("e116-e003, 10", [2, 10]), ("3,3", [3])])
def test_select_pairs(grid, spec, numbers):
    assert [p.number for p in grid.select_pairs(spec)] == numbers


def test_sub_grid(grid):
    cells = grid.grid_cells("1,3", variants="raw,aux_siamese", aux_modes="regression", margins="0.5,4")
    assert [c.key for c in cells] == [
        "p1-raw", "p1-aux_siamese-regression-m0.5", "p1-aux_siamese-regression-m4",
        "p3-raw", "p3-aux_siamese-regression-m0.5", "p3-aux_siamese-regression-m4",
    ]


def test_quick_preset_covers_every_cell_shape(grid):
    preset = grid.presets["quick"]
    cells = grid.grid_cells(preset["pairs"], margins=preset["margins"])
    assert {c.variant for c in cells} == set(VARIANTS)
    assert {c.aux_mode for c in cells} == {None, "regression", "classification"}
    assert len({c.margin for c in cells if c.margin is not None}) >= 2


def test_space_and_published_point_follow_the_variant(grid):
    by_key = {c.key: c for c in grid.grid_cells("1", margins="2")}
    names = lambda key: {p.name for p in grid.space_for(by_key[key])}  # noqa: E731
    base = {"lr", "batch_size", "dropout", "level1_hidden", "level2_hidden", "input_transform"}
    assert names("p1-raw") == base
    assert names("p1-aux-regression") == base | {"aux_weight"}
    assert names("p1-aux_siamese-regression-m2") == base | {"aux_weight", "gamma"}
    published = grid.published_for(by_key["p1-aux_siamese-regression-m2"])
    assert published == {"lr": 1e-4, "batch_size": 10, "dropout": 0.5, "level1_hidden": 32, "level2_hidden": 16,
                         "input_transform": "raw", "aux_weight": 1.0, "gamma": 4.0}
    assert by_key["p1-aux_siamese-regression-m2"].fixed_config() == {"variant": "aux_siamese", "aux_mode": "regression", "margin": 2.0}


@pytest.mark.parametrize("call, message", [
    (lambda g: g.select_pairs("11"), "--pairs '11': no such pair"),
    (lambda g: g.select_pairs("E1-E2"), "--pairs 'E1-E2'"),
    (lambda g: g.grid_cells("1", variants="rawish"), "--variants 'rawish'"),
    (lambda g: g.grid_cells("1", aux_modes="both"), "--aux 'both'"),
    (lambda g: g.grid_cells("1", margins="3"), "--margins '3'"),
    (lambda g: g.grid_cells("1", margins="x"), "--margins 'x'"),
])
def test_bad_selection_is_one_line_error(grid, call, message):
    with pytest.raises(ConfigError, match=message) as err:
        call(grid)
    assert "\n" not in str(err.value)


def _edited(tmp_path, old, new):
    text = PAPER_GRID.read_text()
    assert old in text
    path = tmp_path / "grid.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("variants: [raw_d,", "variants: [raw_x,", "variants: unknown variant 'raw_x'"),
    ("  lr: 1.0e-4", "  lr: 1.0", "published.lr: 1.0 lies outside search_space.lr"),
    ("  batch_size: 10\n", "  batch_size: 12\n", "published.batch_size: 12 lies outside"),
    ("{kind: log_uniform, low: 1.0e-5", "{kind: loguniform, low: 1.0e-5", "search_space.lr.kind: expected one of"),
    ("  dropout:         {kind: uniform", "  dropouts:         {kind: uniform", "search_space.dropouts: not a searchable field"),
    ("applies_to: aux}", "applies_to: cells}", "applies_to: expected one of all, aux, siamese"),
    ("  1: [E123, E003]", "  1: [E123]", "pairs.1: expected [EPIGENOME_A, EPIGENOME_B]"),
    ("margins: [0.5, 1, 2, 4]\n\n", "margins: [0.5, -1]\n\n", "margins: expected a number > 0"),
    ("presets:", "preset:", "unknown section 'preset'"),
    ("    samples: 4 ", "    samples: 0 ", "presets.quick.samples: expected a whole number >= 1"),
    ("    pairs: \"1\"", "    pairs: \"12\"", "--pairs '12'"),
    ("variants: [raw_d,", "variants: [raw_d,\n  bad: [", "line"),
])
def test_bad_grid_file_is_one_line_error_naming_file_and_field(tmp_path, old, new, message):
    path = _edited(tmp_path, old, new)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as err:
        load_grid(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_grid_file(tmp_path):
    with pytest.raises(ConfigError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")


def test_cell_types_of_the_paper_and_a_grid_without_them(tmp_path):
    from pathlib import Path

    from ray_session import write_tiny_grid

    paper = load_grid(Path(__file__).resolve().parents[1] / "ablations" / "paper.yaml")  # this tree's, not the installed
    assert len(paper.cell_types) == 9 and paper.cell_types["E123"] == "K562"
    assert {e for p in paper.pairs.values() for e in (p.epigenome_a, p.epigenome_b)} == set(paper.cell_types)
    assert paper.cell_names(paper.pairs[1]) == ("K562", "H1")
    assert paper.cell_names(paper.pairs[1].synthetic()) == ("K562", "H1")  # the real pair a stand-in imitates
    tiny = load_grid(write_tiny_grid(tmp_path))
    assert tiny.cell_types == {} and tiny.cell_names(tiny.pairs[1]) == (None, None)


@pytest.mark.parametrize("text, message", [
    ("cell_types: [E123]\n", "cell_types: expected a mapping epigenome id: cell type name"),
    ("cell_types: {E123: ''}\n", "cell_types.E123: expected a non-empty string, got ''"),
])
def test_bad_cell_types_are_one_line_errors(tmp_path, text, message):
    from ray_session import TINY_GRID, write_tiny_grid

    path = write_tiny_grid(tmp_path, TINY_GRID + text)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(err.value) == f"{path} {message}"
