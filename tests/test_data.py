"""Tests of deepdiff.data: reading, validation messages, gene-id alignment, targets, cache."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import deepdiff.data.load as data_module
from deepdiff.data import MARKS, N_BINS, SPLITS, PairData, SplitData, load_pair, make_targets
from deepdiff.errors import DataError

HEADER = "gene," + ",".join(MARKS)


# ---------------------------------------------------------------------------------------------------
# Tiny valid files: 2 genes per split, 200 bins, deterministic counts; corrupt one thing per test


def gene_rows(gene: str, offset: int = 0) -> list[str]:
    """The 200 rows of `gene`: counts (offset + bin + mark) % 7."""
    return [f"{gene}_SYM_{t}," + ",".join(str((offset + t + m) % 7) for m in range(len(MARKS))) for t in range(1, N_BINS + 1)]


SPLIT_GENES = {"train": ["G1", "G2"], "valid": ["G3", "G4"], "test": ["G5", "G6"]}


def write_cell(directory: Path, cell: str, offset: int, expr: dict[str, float], genes=SPLIT_GENES) -> None:
    for split, names in genes.items():
        rows = [row for i, gene in enumerate(names) for row in gene_rows(gene, offset + i)]
        (directory / f"{cell}.{split}.csv").write_text("\n".join(rows) + "\n")
    (directory / f"{cell}.expr.csv").write_text("".join(f"{g},{v:g}\n" for g, v in expr.items()))


EXPR_A = {"G1": 0, "G2": 3, "G3": 10, "G4": 100, "G5": 7, "G6": 1, "EXTRA": 50}
EXPR_B = {"G1": 3, "G2": 3, "G3": 1000, "G4": 1, "G5": 31, "G6": 0, "EXTRA": 5}


@pytest.fixture
def pair_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    write_cell(directory, "Cell1", 0, EXPR_A)
    write_cell(directory, "Cell2", 3, EXPR_B)
    return directory


def edit_line(path: Path, line: int, text: str | None) -> None:
    """Replace 1-based `line` of `path` by `text` (None deletes it)."""
    lines = path.read_text().split("\n")
    lines[line - 1 : line] = [] if text is None else [text]
    path.write_text("\n".join(lines))


def insert_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().split("\n")
    lines.insert(line - 1, text)
    path.write_text("\n".join(lines))


def load_error(directory: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_pair(directory, "Cell1", "Cell2", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------------
# Targets and containers


def test_make_targets_follow_the_spec():
    expr_a = torch.tensor([0.0, 3.0, 10.0, 7.0])
    expr_b = torch.tensor([3.0, 3.0, 1000.0, 31.0])
    t = make_targets(expr_a, expr_b, median_a=7.0, median_b=3.0)
    assert torch.allclose(t["diff"], torch.tensor([2.0, 0.0, math.log2(1001 / 11), 2.0]))
    assert torch.allclose(t["aux_reg_a"], torch.log2(expr_a + 1))
    assert torch.allclose(t["aux_reg_b"], torch.log2(expr_b + 1))
    assert t["similar"].tolist() == [1.0, 0.0, 1.0, 1.0]  # |diff| >= 2, boundary included
    assert t["aux_cls_a"].tolist() == [0, 0, 1, 0]  # strictly above the median
    assert t["aux_cls_b"].tolist() == [0, 0, 1, 1]
    assert t["aux_cls_a"].dtype == torch.int64 and t["diff"].dtype == torch.float32
    assert set(t) | {"gene_ids", "x_a", "x_b", "expr_a", "expr_b"} == {f for f in SplitData.__dataclass_fields__}


def test_tiny_pair_loads_with_targets_from_the_expression_files(pair_dir):
    pair = load_pair(pair_dir, "Cell1", "Cell2")
    assert isinstance(pair, PairData) and pair.notes == ()
    assert (pair.cell_a, pair.cell_b) == ("Cell1", "Cell2")
    assert pair.median_a == np.median(list(EXPR_A.values())) and pair.median_b == np.median(list(EXPR_B.values()))
    for name in SPLITS:
        split = pair.split(name)
        assert split.gene_ids == tuple(SPLIT_GENES[name])
        assert split.x_a.shape == (2, len(MARKS), N_BINS) and split.x_a.dtype == torch.float32
        assert split.expr_a.tolist() == [EXPR_A[g] for g in split.gene_ids]
        assert split.expr_b.tolist() == [EXPR_B[g] for g in split.gene_ids]
        expected = make_targets(split.expr_a, split.expr_b, pair.median_a, pair.median_b)
        for key, value in expected.items():
            assert torch.equal(getattr(split, key), value), key
    # counts of G1 in Cell1: (0 + bin + mark) % 7, bin 1-based; marks on axis 1, bins on axis 2
    x = pair.train.x_a[0]
    assert x[0, 0] == 1 and x[2, 0] == 3 and x[4, 199] == (200 + 4) % 7


def test_split_data_subset_to_and_len(pair_dir):
    pair = load_pair(pair_dir, "Cell1", "Cell2")
    sub = pair.train.subset(torch.tensor([1]))
    assert len(sub) == 1 and sub.gene_ids == ("G2",)
    assert torch.equal(sub.x_b[0], pair.train.x_b[1]) and sub.diff[0] == pair.train.diff[1]
    assert pair.train.subset(np.array([False, True])).gene_ids == ("G2",)
    assert pair.train.subset([1, 0]).gene_ids == ("G2", "G1")
    moved = pair.to("cpu")
    assert moved.test.x_a.device.type == "cpu" and moved.test.gene_ids == pair.test.gene_ids
    with pytest.raises(ValueError, match="expected one of train, valid, test"):
        pair.split("training")


def test_split_data_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="x_a has 3 rows; expected 2"):
        SplitData.from_arrays(("a", "b"), torch.zeros(3, 5, 4), torch.zeros(3, 5, 4), torch.zeros(2), torch.zeros(2), 1, 1)


# ---------------------------------------------------------------------------------------------------
# Alignment by gene id


def test_alignment_is_by_gene_id_not_row_order(tmp_path, pair_dir):
    reference = load_pair(pair_dir, "Cell1", "Cell2")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    write_cell(shuffled, "Cell1", 0, EXPR_A)
    # cell B: same genes (same per-gene counts) in another order, expression file reversed
    reordered = {split: names[::-1] for split, names in SPLIT_GENES.items()}
    for split, names in reordered.items():
        rows = [row for gene in names for row in gene_rows(gene, 3 + SPLIT_GENES[split].index(gene))]
        (shuffled / f"Cell2.{split}.csv").write_text("\n".join(rows) + "\n")
    (shuffled / "Cell2.expr.csv").write_text("".join(f"{g},{v}\n" for g, v in reversed(EXPR_B.items())))
    pair = load_pair(shuffled, "Cell1", "Cell2")
    for name in SPLITS:
        ref, got = reference.split(name), pair.split(name)
        assert got.gene_ids == ref.gene_ids  # cell A's order
        for field in SplitData.__dataclass_fields__:
            value = getattr(got, field)
            assert value == getattr(ref, field) if field == "gene_ids" else torch.equal(value, getattr(ref, field)), field


def test_unpaired_genes_are_counted_and_dropped(pair_dir):
    path_b = pair_dir / "Cell2.train.csv"
    path_b.write_text("\n".join(gene_rows("G2") + gene_rows("G9")) + "\n")  # G1 only in A, G9 only in B
    with (pair_dir / "Cell2.expr.csv").open("a") as f:
        f.write("G9,4\n")
    pair = load_pair(pair_dir, "Cell1", "Cell2")
    assert pair.train.gene_ids == ("G2",)
    assert pair.notes == (f"{pair_dir / 'Cell1.train.csv'} / {path_b}: 2 genes only in one cell (e.g. G1), dropped",)


def test_unpaired_error_names_file_line_and_gene(pair_dir):
    (pair_dir / "Cell2.valid.csv").write_text("\n".join(gene_rows("G3")) + "\n")
    message = load_error(pair_dir, unpaired="error")
    assert message.startswith(f"{pair_dir / 'Cell1.valid.csv'} line 201: gene G4 is not in {pair_dir / 'Cell2.valid.csv'}")


def test_gene_only_in_cell_b_is_an_error_with_unpaired_error(pair_dir):
    (pair_dir / "Cell2.test.csv").write_text("\n".join(gene_rows("G5") + gene_rows("G6") + gene_rows("G7")) + "\n")
    with (pair_dir / "Cell2.expr.csv").open("a") as f:
        f.write("G7,4\n")
    message = load_error(pair_dir, unpaired="error")
    assert message.startswith(f"{pair_dir / 'Cell2.test.csv'} line 401: gene G7 is not in {pair_dir / 'Cell1.test.csv'}")


def test_gene_in_two_splits_is_noted(pair_dir):
    for cell, offset in (("Cell1", 0), ("Cell2", 3)):
        (pair_dir / f"{cell}.test.csv").write_text("\n".join(gene_rows("G5", offset) + gene_rows("G1", offset)) + "\n")
    pair = load_pair(pair_dir, "Cell1", "Cell2")
    assert pair.test.gene_ids == ("G5", "G1")
    assert pair.notes == ("Cell1: 1 genes appear in more than one split (e.g. G1 in train and test)",)


def test_split_without_common_genes_is_an_error(pair_dir):
    (pair_dir / "Cell2.test.csv").write_text("\n".join(gene_rows("G8")) + "\n")
    with (pair_dir / "Cell2.expr.csv").open("a") as f:
        f.write("G8,4\n")
    message = load_error(pair_dir)
    assert message == f"{pair_dir / 'Cell1.test.csv'} / {pair_dir / 'Cell2.test.csv'}: no gene in common; expected both cells to share genes in each split"


def test_unknown_unpaired_mode_and_same_cell_are_refused(pair_dir):
    with pytest.raises(ValueError, match="unpaired='keep'"):
        load_pair(pair_dir, "Cell1", "Cell2", unpaired="keep")
    with pytest.raises(DataError, match="two different cell types"):
        load_pair(pair_dir, "Cell1", "Cell1")


# ---------------------------------------------------------------------------------------------------
# Validation messages (file, line, field, what was expected)

FIELDS = "(gene_bin id, H3K4me1, H3K4me3, H3K9me3, H3K27me3, H3K36me3)"


@pytest.mark.parametrize(
    "line, text, expected",
    [
        (7, "G1_SYM_7,1,2,3,4,5,6", f"line 7: expected 6 fields {FIELDS}, found 7"),
        (7, "G1_SYM_7,1,2,3,4", f"line 7: expected 6 fields {FIELDS}, found 5"),
        (12, "G1_SYM_12,1,2,3,abc,5", "line 12 field H3K27me3: expected a non-negative count, got 'abc'"),
        (12, "G1_SYM_12,1,-2,3,4,5", "line 12 field H3K4me3: expected a non-negative count, got '-2'"),
        (12, "G1_SYM_12,1,2,nan,4,5", "line 12 field H3K9me3: expected a non-negative count, got 'nan'"),
        (12, "G1_SYM_12,1,2,3,4,", "line 12 field H3K36me3: expected a non-negative count, got ''"),
        (12, "G1_SYM_12,inf,2,3,4,5", "line 12 field H3K4me1: expected a non-negative count, got 'inf'"),
        (12, "G1_SYM_12,1,2,1e308,4,5",
         "line 12 field H3K9me3: expected a non-negative count that fits float32 (at most 3.403e+38), got '1e308'"),
        (1, "G1,1,2,3,4,5", "line 1 field gene_bin id: expected ENSGID_SYMBOL_BIN with a numeric BIN after the last '_', got 'G1'"),
        (5, "G1_SYM_6,1,2,3,4,5", "line 5 field gene_bin id: expected 'G1_SYM_5' (bin 5 of gene G1, bins 1..200 in order), got 'G1_SYM_6'"),
        (5, "G1_OTHER_5,1,2,3,4,5", "line 5 field gene_bin id: expected 'G1_SYM_5' (bin 5 of gene G1"),
        (200, None, "line 200 field gene_bin id: gene G1 has only 199 bins (lines 1-199); expected 200 bins numbered 1..200, got 'G2_SYM_1'"),
        (1, None, "line 1 field gene_bin id: expected bin 1 of a new gene, got 'G1_SYM_2'"),
    ],
)
def test_split_file_errors_name_file_line_and_field(pair_dir, line, text, expected):
    path = pair_dir / "Cell1.train.csv"
    edit_line(path, line, text)
    assert load_error(pair_dir).startswith(f"{path} {expected}")


def test_invalid_utf8_is_located(pair_dir):
    path = pair_dir / "Cell1.train.csv"
    path.write_bytes(path.read_bytes().replace(b"G1_SYM_3,", b"G1_S\xe9M_3,", 1))
    assert load_error(pair_dir) == f"{path} line 3: expected UTF-8 text, got byte 0xe9 at column 5"


def test_gene_with_more_than_200_bins(pair_dir):
    path = pair_dir / "Cell1.valid.csv"
    insert_line(path, 201, "G3_SYM_201,1,1,1,1,1")
    assert load_error(pair_dir) == (
        f"{path} line 201 field gene_bin id: gene G3 has more than 200 bins; expected 200 bins numbered 1..200, got 'G3_SYM_201'"
    )


def test_truncated_last_gene(pair_dir):
    path = pair_dir / "Cell2.test.csv"
    edit_line(path, 400, None)
    assert load_error(pair_dir) == (
        f"{path} line 399 field gene_bin id: gene G6 ends after 199 bins (lines 201-399); expected 200 bins numbered 1..200"
    )


def test_duplicate_gene_in_split_file_names_both_lines(pair_dir):
    path = pair_dir / "Cell1.train.csv"
    path.write_text("\n".join(gene_rows("G1") + gene_rows("G2") + gene_rows("G1")) + "\n")
    assert load_error(pair_dir) == f"{path} lines 1 and 401: duplicate gene id G1; expected each gene id once"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bad", ["x", "-1"])  # found by the slow CSV diagnosis / by the vectorised check
def test_line_numbers_count_header_and_blank_lines(pair_dir, newline, bad):
    path = pair_dir / "Cell1.train.csv"
    insert_line(path, 1, HEADER)
    insert_line(path, 3, "")
    edit_line(path, 13, f"G1_SYM_11,1,2,3,{bad},5")  # line 13 = header + 11 rows + 1 blank line
    path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    assert load_error(pair_dir) == f"{path} line 13 field H3K27me3: expected a non-negative count, got '{bad}'"


def test_header_line_is_skipped_only_if_it_names_the_marks(pair_dir):
    clean = load_pair(pair_dir, "Cell1", "Cell2")
    path = pair_dir / "Cell1.train.csv"
    insert_line(path, 1, HEADER)
    assert torch.equal(load_pair(pair_dir, "Cell1", "Cell2").train.x_a, clean.train.x_a)
    edit_line(path, 1, "gene,a,b,c,d,e")
    assert load_error(pair_dir) == f"{path} line 1 field H3K4me1: expected a non-negative count, got 'a'"


def test_crlf_line_endings_are_read(pair_dir):
    clean = load_pair(pair_dir, "Cell1", "Cell2")
    for path in pair_dir.glob("Cell2.*.csv"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert torch.equal(load_pair(pair_dir, "Cell1", "Cell2").valid.x_b, clean.valid.x_b)


@pytest.mark.parametrize(
    "line, text, expected",
    [
        (2, "G2,3,1", "line 2: expected 2 fields (gene id, expression), found 3"),
        (2, "G2", "line 2: expected 2 fields (gene id, expression), found 1"),
        (3, "G3,lots", "line 3 field expression: expected a non-negative expression value, got 'lots'"),
        (3, "G3,-1", "line 3 field expression: expected a non-negative expression value, got '-1'"),
        (3, "G3,", "line 3 field expression: expected a non-negative expression value, got ''"),
        (4, "G2,5", "lines 2 and 4: duplicate gene id G2; expected each gene id once"),
    ],
)
def test_expression_file_errors(pair_dir, line, text, expected):
    path = pair_dir / "Cell2.expr.csv"
    edit_line(path, line, text)
    assert load_error(pair_dir) == f"{path} {expected}"


def test_gene_missing_from_expression_file(pair_dir):
    expr = pair_dir / "Cell1.expr.csv"
    edit_line(expr, 4, None)  # G4
    assert load_error(pair_dir) == (
        f"{pair_dir / 'Cell1.valid.csv'} line 201: gene G4 is not in {expr}; "
        "expected every gene of the histone-mark files in its cell's expression file"
    )


@pytest.mark.parametrize("decomposed", ["Cell2.valid.csv", "Cell1.expr.csv"])
def test_gene_ids_are_compared_in_unicode_nfc(tmp_path, decomposed):
    """The same-looking id composed (NFC) in one file and decomposed (NFD) in another is one gene, and a note
    names the file whose ids were not in NFC; every other id and every number is as before."""
    import unicodedata

    composed, nfd = "GÉNE\u00e9", unicodedata.normalize("NFD", "GÉNE\u00e9")
    assert composed != nfd and unicodedata.normalize("NFC", nfd) == composed
    directory = tmp_path / "data"
    directory.mkdir()
    genes = {**SPLIT_GENES, "valid": ["G3", composed]}
    write_cell(directory, "Cell1", 0, {**EXPR_A, composed: EXPR_A["G4"]}, genes)
    write_cell(directory, "Cell2", 3, {**EXPR_B, composed: EXPR_B["G4"]}, genes)
    path = directory / decomposed
    path.write_text(path.read_text(encoding="utf-8").replace(composed, nfd), encoding="utf-8")
    pair = load_pair(directory, "Cell1", "Cell2", unpaired="error")
    assert pair.valid.gene_ids == ("G3", composed)
    assert pair.valid.expr_a.tolist() == [EXPR_A["G3"], EXPR_A["G4"]] and pair.valid.expr_b.tolist() == [EXPR_B["G3"], EXPR_B["G4"]]
    line = 201 if decomposed.endswith("valid.csv") else len(EXPR_A) + 1  # the last line of the expression file
    assert pair.notes == (f"{path}: 1 gene id(s) not in Unicode NFC, e.g. {composed} ({ascii(composed)}) at line {line} "
                          "(decomposed there); gene ids are compared in NFC",)
    reference = tmp_path / "reference"
    reference.mkdir()
    write_cell(reference, "Cell1", 0, EXPR_A)
    write_cell(reference, "Cell2", 3, EXPR_B)
    expected = load_pair(reference, "Cell1", "Cell2")  # the same files with G4 for the accented id
    for name in SPLITS:
        for field in SplitData._tensor_fields():
            assert torch.equal(getattr(pair.split(name), field), getattr(expected.split(name), field)), (name, field)


def test_a_missing_gene_that_looks_like_another_shows_how_it_differs(pair_dir):
    """An id with a character NFC does not change (a Cyrillic 'А' for a Latin 'A') is another gene: the
    message shows its escapes, not two identical strings."""
    path = pair_dir / "Cell1.valid.csv"
    path.write_text(path.read_text().replace("G4_SYM", "G\u04104_SYM"), encoding="utf-8")
    assert load_error(pair_dir, unpaired="error") == (
        f"{path} line 201: gene G\u04104 ('G\\u04104') is not in {pair_dir / 'Cell1.expr.csv'}; expected every gene of "
        "the histone-mark files in its cell's expression file")


@pytest.mark.parametrize("content", ["", "\n\n", HEADER + "\n"])
def test_empty_split_file(pair_dir, content):
    path = pair_dir / "Cell2.valid.csv"
    path.write_text(content)
    message = load_error(pair_dir)
    assert message.startswith(f"{path}: file ")
    assert "expected one row per bin: gene_bin id, H3K4me1" in message


def test_empty_expression_file(pair_dir):
    path = pair_dir / "Cell1.expr.csv"
    path.write_text("")
    assert load_error(pair_dir) == f"{path}: file is empty; expected one row per gene: gene id, expression"


def test_missing_file_and_directory(pair_dir):
    (pair_dir / "Cell2.expr.csv").unlink()
    assert load_error(pair_dir) == (
        f"{pair_dir / 'Cell2.expr.csv'}: file not found; expected CELL.{{train,valid,test,expr}}.csv "
        f"for cells Cell1 and Cell2 in {pair_dir}"
    )
    assert load_error(pair_dir / "nowhere").startswith(f"{pair_dir / 'nowhere'}: directory not found; expected CELL.")


def test_expression_that_overflows_float32(pair_dir):
    path = pair_dir / "Cell2.expr.csv"
    edit_line(path, 2, "G2,4e38")
    assert load_error(pair_dir) == (f"{path} line 2 field expression: expected a non-negative expression value "
                                    "that fits float32 (at most 3.403e+38), got '4e38'")


def test_a_directory_or_symlink_where_a_file_should_be(pair_dir):
    path = pair_dir / "Cell2.valid.csv"
    path.unlink()
    path.mkdir()
    assert load_error(pair_dir).startswith(f"{path}: is a directory, not a file; expected CELL.")
    path.rmdir()
    path.symlink_to(path)
    assert load_error(pair_dir).startswith(f"{path}: is a symlink loop; expected CELL.")
    path.unlink()
    path.symlink_to(pair_dir / "gone.csv")
    assert load_error(pair_dir).startswith(f"{path}: is a symlink to {pair_dir / 'gone.csv'}, which is missing")


def test_an_unreadable_file(pair_dir, monkeypatch):
    # Tests may run as root, where chmod 000 does not stop a read: make the read itself fail.
    path = pair_dir / "Cell1.test.csv"
    read_bytes = Path.read_bytes

    def refuse(self):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert load_error(pair_dir) == f"{path}: cannot be read (Permission denied); expected a readable CSV file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode; covered by test_an_unreadable_file")
def test_an_unreadable_file_by_its_mode(pair_dir):
    path = pair_dir / "Cell1.test.csv"
    path.chmod(0)
    assert load_error(pair_dir) == f"{path}: cannot be read (Permission denied); expected a readable CSV file"


def test_splits_that_cannot_be_scored_are_refused(pair_dir):
    from deepdiff.data import check_trainable

    pair = load_pair(pair_dir, "Cell1", "Cell2")
    check_trainable(pair, pair_dir)  # two genes with different targets in every split
    one = dataclasses.replace(pair, valid=pair.valid.subset([0]))
    with pytest.raises(DataError) as info:
        check_trainable(one, pair_dir)
    assert str(info.value) == (f"{pair_dir / 'Cell1.valid.csv'} / {pair_dir / 'Cell2.valid.csv'}: split valid has 1 gene(s) "
                               "listed by both cells; expected at least 2 (PCC is undefined for fewer)")
    # G1: 0 -> 3 and G2: 3 -> 15 both have diff 2 (log2(4) - log2(1) = log2(16) - log2(4))
    write_cell(pair_dir, "Cell2", 3, {**EXPR_B, "G1": 3, "G2": 15})
    write_cell(pair_dir, "Cell1", 0, {**EXPR_A, "G1": 0, "G2": 3})
    with pytest.raises(DataError, match=r"Cell2.train.csv: the differential expression of all 2 genes of split train "
                                        r"is 2; expected it to vary \(PCC is undefined for a constant target\)"):
        check_trainable(load_pair(pair_dir, "Cell1", "Cell2"), pair_dir)
    with pytest.raises(DataError, match=r"^pair Cell1-Cell2: the differential"):
        check_trainable(load_pair(pair_dir, "Cell1", "Cell2"))


def test_a_cache_dir_that_is_a_file_is_a_note(tmp_path, pair_dir):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    pair = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    assert len(pair.train) == 2 and pair.notes[-1].startswith(f"cache not written to {cache}/")
    assert cache.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------------
# Cache (Arrow IPC)


def assert_same_pair(a: PairData, b: PairData) -> None:
    assert (a.cell_a, a.cell_b, a.median_a, a.median_b, a.notes) == (b.cell_a, b.cell_b, b.median_a, b.median_b, b.notes)
    for name in SPLITS:
        sa, sb = a.split(name), b.split(name)
        assert sa.gene_ids == sb.gene_ids
        for field in SplitData._tensor_fields():
            assert torch.equal(getattr(sa, field), getattr(sb, field)), (name, field)
            assert getattr(sa, field).dtype == getattr(sb, field).dtype


def refuse_to_parse(*args, **kwargs):
    raise AssertionError("the CSV parser ran although the cache should have been used")


def test_cache_is_used_for_unchanged_files(tmp_path, pair_dir, monkeypatch):
    (pair_dir / "Cell2.train.csv").write_text("\n".join(gene_rows("G2", 4)) + "\n")  # a note (G1 dropped)
    cache = tmp_path / "cache"
    before = sorted(p.name for p in pair_dir.iterdir())
    cold = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    assert len(cold.notes) == 1 and len(list(cache.glob("*.arrow"))) == 1
    assert sorted(p.name for p in pair_dir.iterdir()) == before  # nothing written beside the data
    monkeypatch.setattr(data_module, "_parse_split_file", refuse_to_parse)
    monkeypatch.setattr(data_module, "_parse_expr_file", refuse_to_parse)
    messages: list[str] = []
    cached = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache, progress=messages.append)
    assert any("from cache" in m for m in messages)
    assert_same_pair(cold, cached)


def test_cache_is_never_stale_after_an_edit_of_same_size_and_mtime(tmp_path, pair_dir, monkeypatch):
    cache = tmp_path / "cache"
    cold = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    path = pair_dir / "Cell1.test.csv"
    stat = path.stat()
    text = path.read_text()
    assert text.startswith("G5_SYM_1,1,")
    path.write_text(text.replace("G5_SYM_1,1,", "G5_SYM_1,6,", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    fresh = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    assert fresh.test.x_a[0, 0, 0] == 6 and cold.test.x_a[0, 0, 0] == 1
    assert len(list(cache.glob("*.arrow"))) == 2
    # the options are part of the key too
    monkeypatch.setattr(data_module, "_parse_split_file", refuse_to_parse)
    with pytest.raises(AssertionError, match="cache should have been used"):
        load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache, unpaired="error")


def test_cache_hit_on_unchanged_files_reads_no_file(tmp_path, pair_dir, monkeypatch):
    """Unchanged files (same stat fingerprint) are served without reading or hashing them; a file whose
    stat changed but whose contents did not is read and hashed once, and served from the cache."""
    cache = tmp_path / "cache"
    cold = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    monkeypatch.setattr(data_module, "_parse_split_file", refuse_to_parse)
    monkeypatch.setattr(data_module, "_parse_expr_file", refuse_to_parse)
    real_read_raw = data_module._read_raw
    monkeypatch.setattr(data_module, "_read_raw", refuse_to_parse)
    assert_same_pair(cold, load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache))
    path = pair_dir / "Cell2.valid.csv"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # same contents, new stat
    with pytest.raises(AssertionError, match="cache should have been used"):
        load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)  # it must read the files again
    monkeypatch.setattr(data_module, "_read_raw", real_read_raw)
    assert_same_pair(cold, load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache))  # hashed: same contents
    monkeypatch.setattr(data_module, "_read_raw", refuse_to_parse)
    assert_same_pair(cold, load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache))  # and remembered
    assert len(list(cache.glob("*.arrow"))) == 1


def test_unreadable_cache_is_rebuilt(tmp_path, pair_dir):
    cache = tmp_path / "cache"
    cold = load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache)
    (entry,) = cache.glob("*.arrow")
    entry.write_bytes(b"not arrow")
    messages: list[str] = []
    assert_same_pair(cold, load_pair(pair_dir, "Cell1", "Cell2", cache_dir=cache, progress=messages.append))
    assert any("ignoring unreadable cache" in m for m in messages)
    assert not list(cache.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------------
# The real sample (DeepDiffChrome's Cell1 = E123, Cell2 = E003; fixtures in conftest.py, skipped if absent)


def read_expr(path: Path) -> dict[str, float]:
    return {gene: float(value) for gene, value in (line.split(",") for line in path.read_text().split())}


def test_real_sample_shapes_and_medians(sample_pair, sample_dir):
    sample = sample_pair
    assert sample.notes == ()
    for name in SPLITS:
        split = sample.split(name)
        assert len(split) == 200 and split.x_a.shape == split.x_b.shape == (200, len(MARKS), N_BINS)
        assert len(set(split.gene_ids)) == 200
    for cell, median in (("Cell1", sample.median_a), ("Cell2", sample.median_b)):
        assert median == np.median(list(read_expr(sample_dir / f"{cell}.expr.csv").values()))


def test_real_sample_gene_by_hand(sample_pair, sample_dir):
    sample, test = sample_pair, sample_pair.test
    i = test.gene_ids.index("ENSG00000000003")
    assert (test.expr_a[i].item(), test.expr_b[i].item()) == (153.0, 22232.0)
    diff = math.log2(22233) - math.log2(154)
    assert test.diff[i].item() == pytest.approx(diff, rel=1e-6)
    assert test.aux_reg_a[i].item() == pytest.approx(math.log2(154), rel=1e-6)
    assert test.similar[i].item() == 1.0
    assert (test.aux_cls_a[i].item(), test.aux_cls_b[i].item()) == (int(153 > sample.median_a), int(22232 > sample.median_b))
    rows = [line.split(",") for line in (sample_dir / "Cell2.test.csv").read_text().split() if line.startswith("ENSG00000000003_")]
    assert len(rows) == N_BINS and rows[0][0].endswith("_1")
    expected = torch.tensor([[float(v) for v in row[1:]] for row in rows]).T  # (M, T)
    assert torch.equal(test.x_b[i], expected)


def test_real_sample_targets_match_expression_files_for_every_gene(sample_pair, sample_dir):
    expr_a, expr_b = read_expr(sample_dir / "Cell1.expr.csv"), read_expr(sample_dir / "Cell2.expr.csv")
    for name in SPLITS:
        split = sample_pair.split(name)
        a = torch.tensor([expr_a[g] for g in split.gene_ids])
        b = torch.tensor([expr_b[g] for g in split.gene_ids])
        assert torch.equal(split.expr_a, a) and torch.equal(split.expr_b, b)
        assert torch.allclose(split.diff, torch.log2(b + 1) - torch.log2(a + 1), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The package: one module per job, its API importable from `deepdiff.data`


def test_every_public_name_comes_from_its_module():
    import importlib

    import deepdiff.data

    for module, names in deepdiff.data.API.items():
        for name in names:
            assert getattr(deepdiff.data, name) is getattr(importlib.import_module(f"deepdiff.data.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'load_pairs'"):
        deepdiff.data.load_pairs  # noqa: B018


def test_the_file_format_alone_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from deepdiff.data import MARKS, pair_files; import deepdiff.synthetic; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
