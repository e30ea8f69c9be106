"""deepdiff.tracks.expression: plain CSV/TSV, featureCounts, RSEM; the column used; bad tables."""

import pytest

from deepdiff.errors import DataError
from deepdiff.tracks.expression import read_expression
from tracks_files import write_text

RSEM = ["gene_id\ttranscript_id(s)\tlength\teffective_length\texpected_count\tTPM\tFPKM",
        "ENSG00000000001.5\tT1,T2\t1000\t900\t120.00\t12.50\t10.00",
        "ENSG00000000002.1\tT3\t2000\t1900\t0.00\t0.00\t0.00",
        "ENSG00000000005.3_PAR_Y\tT9\t500\t400\t0.00\t0.00\t0.00"]
FEATURECOUNTS = ["# Program:featureCounts v2.0.3; Command:\"featureCounts\" \"-a\" \"genes.gtf\"",
                 "Geneid\tChr\tStart\tEnd\tStrand\tLength\tctrl.bam",
                 "ENSG00000000001.5\tchr1;chr1\t1000;2000\t1500;2500\t+;+\t1000\t340",
                 "ENSG00000000002.1\tchr1\t20000\t30000\t-\t10000\t7"]


def test_rsem_uses_tpm_by_default_and_drops_par_y(tmp_path):
    table = read_expression(write_text(tmp_path / "x.genes.results", RSEM))
    assert (table.format, table.column, table.par_y) == ("rsem", "TPM", 1)
    assert list(table.ids) == ["ENSG00000000001", "ENSG00000000002"] and list(table.values) == [12.5, 0.0]
    assert table.describe() == f"{tmp_path}/x.genes.results (rsem, column TPM, 2 genes)"
    assert list(read_expression(tmp_path / "x.genes.results", column="FPKM").values) == [10.0, 0.0]


def test_featurecounts_uses_its_counts_column(tmp_path):
    table = read_expression(write_text(tmp_path / "counts.txt", FEATURECOUNTS))
    assert (table.format, table.column) == ("featurecounts", "ctrl.bam")
    assert list(table.values) == [340.0, 7.0]


def test_featurecounts_with_several_samples_needs_a_column(tmp_path):
    lines = [FEATURECOUNTS[0], FEATURECOUNTS[1] + "\tko.bam", FEATURECOUNTS[2] + "\t500", FEATURECOUNTS[3] + "\t9"]
    path = write_text(tmp_path / "counts.txt", lines)
    with pytest.raises(DataError, match=r"counts\.txt line 2: 7 value columns \(Chr, Start, .*ko\.bam\); name the one to use"):
        read_expression(path)
    assert list(read_expression(path, column="ko.bam").values) == [500.0, 9.0]


@pytest.mark.parametrize("name, lines", [
    ("plain.csv", ["gene,value", "ENSG00000000001.5,3.5", "", "ENSG00000000002,0"]),
    ("plain.tsv", ["gene\tvalue", "ENSG00000000001\t3.5", "ENSG00000000002.7\t0"]),
])
def test_plain_two_columns_csv_or_tsv(tmp_path, name, lines):
    table = read_expression(write_text(tmp_path / name, lines))
    assert (table.format, table.column) == ("plain", "value")
    assert dict(zip(table.ids, table.values)) == {"ENSG00000000001": 3.5, "ENSG00000000002": 0.0}


def test_gzipped_tables(tmp_path):
    assert read_expression(write_text(tmp_path / "x.tsv.gz", RSEM, gz=True)).format == "rsem"


@pytest.mark.parametrize("lines, message", [
    ([], "no header line"),
    (["gene,value"], "no data rows after the header"),
    (["ENSG1,3.5", "ENSG2,1"], "line 1: looks like data ('ENSG1,3.5'); expected a header line"),
    (["gene"], "line 1: header 'gene' has one column"),
    (["gene,value", "G1,-1"], "line 2 column value: expected a number >= 0, got '-1'"),
    (["gene,value", "G1,NA"], "line 2 column value: expected a number >= 0, got 'NA'"),
    (["gene,value", "G1,inf"], "line 2 column value: expected a number >= 0, got 'inf'"),
    (["gene,value", "G1,1,2"], "line 2: expected 2 fields (gene, value), found 3"),
    (["gene,value", "G1.1,1", "G2,1", "G1.2,3"], "lines 2 and 4: gene G1 twice"),
    (["a\tb\tc", "G1\t1\t2"], "line 1: 2 value columns (b, c); name the one to use"),
])
def test_bad_tables_are_one_line_errors_naming_file_and_line(tmp_path, lines, message):
    path = write_text(tmp_path / "t.csv", lines) if lines else tmp_path / "t.csv"
    if not lines:
        path.write_text("# only a comment\n")
    with pytest.raises(DataError) as err:
        read_expression(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_a_column_that_is_not_there(tmp_path):
    path = write_text(tmp_path / "x.genes.results", RSEM)
    with pytest.raises(DataError, match=r"line 1: no column 'TMP'; expected one of gene_id, transcript_id\(s\), length"):
        read_expression(path, column="TMP")


def test_a_binary_or_missing_file(tmp_path):
    path = tmp_path / "x.bam"
    path.write_bytes(b"\x1f\x8b\x08\x04" + bytes(range(256)))
    with pytest.raises(DataError, match=r"x\.bam: cannot be read as text"):
        read_expression(path)
    with pytest.raises(DataError, match=r"gone\.tsv: expression table not found"):
        read_expression(tmp_path / "gone.tsv")
