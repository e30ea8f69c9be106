"""deepdiff.tracks.manifest: the YAML manifest, the --cell form, the options and their one-line errors."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from deepdiff.data import MARKS
from deepdiff.errors import ConfigError
from deepdiff.tracks.manifest import OPTION_CHECKS, BuildOptions, parse_options, read_manifest, spec_from_cells


def manifest(tmp_path: Path, **changes) -> Path:
    doc = {
        "annotation": "genes.gtf.gz",
        "cells": {
            "CTRL": {"expression": "ctrl.genes.results", "marks": {m: f"ctrl.{m}.bw" for m in MARKS}},
            "KO": {"expression": {"file": "/data/ko.tsv", "column": "TPM"}, "marks": {m: f"ko/{m}.bam" for m in MARKS}},
        },
        "options": {"seed": 7, "test_chroms": ["chr8"], "bigwig_stat": "mean"},
    }
    doc.update(changes)
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_manifest_with_paths_relative_to_it(tmp_path):
    spec = read_manifest(manifest(tmp_path), MARKS)
    assert spec.annotation == tmp_path / "genes.gtf.gz"
    a, b = spec.cells
    assert (a.name, b.name) == ("CTRL", "KO")
    assert a.marks == tuple((m, tmp_path / f"ctrl.{m}.bw") for m in MARKS)
    assert b.marks[4] == ("H3K36me3", tmp_path / "ko" / "H3K36me3.bam")
    assert (a.expression, a.expression_column) == (tmp_path / "ctrl.genes.results", None)
    assert (b.expression, b.expression_column) == (Path("/data/ko.tsv"), "TPM")
    assert spec.options == BuildOptions(seed=7, test_chroms=("chr8",), bigwig_stat="mean")
    assert spec.source == str(tmp_path / "pair.yaml")


def test_every_option_has_a_check():
    assert set(OPTION_CHECKS) == {f.name for f in dataclasses.fields(BuildOptions)}



@pytest.mark.parametrize("edit, message", [
    (lambda d: d["cells"]["KO"]["marks"].pop("H3K27me3"),
     "field cells.KO.marks: missing H3K27me3; expected a track (bigWig or BAM) for each of H3K4me1, H3K4me3, H3K9me3, H3K27me3, H3K36me3"),
    (lambda d: d["cells"]["KO"]["marks"].update(H3K4me2="x.bw"), "field cells.KO.marks: unknown mark 'H3K4me2'"),
    (lambda d: d["cells"].pop("KO"), "field cells: expected two cell types (cell A first), got 1 cells"),
    (lambda d: d.pop("annotation"), "field annotation: expected the gene annotation file (a path), got None"),
    (lambda d: d.update(extra=1), "unknown key 'extra'; expected annotation, cells, options"),
    (lambda d: d["cells"]["CTRL"].update(rna="x"), "field cells.CTRL: unknown key 'rna'; expected expression, marks"),
    (lambda d: d["cells"]["CTRL"].update(expression={"file": "x", "col": "TPM"}), "field cells.CTRL.expression: unknown key 'col'"),
    (lambda d: d["options"].update(seed=-1), "field options.seed: expected a whole number from 0 to 4294967295, got -1"),
    (lambda d: d["options"].update(genes="coding"), "field options.genes: expected one of protein_coding, all, got 'coding'"),
    (lambda d: d["options"].update(split_fractions=[0.9, 0.2]), "field options.split_fractions: expected two shares TRAIN VALID"),
    (lambda d: d["options"].update(min_mapq=300), "field options.min_mapq: expected a whole number from 0 to 255"),
    (lambda d: d["options"].update(keep_duplicates="yes"), "field options.keep_duplicates: expected true or false"),
    (lambda d: d["options"].update(fragment=1), "field options.fragment: unknown option"),
    (lambda d: d["cells"].update({"bad/name": d["cells"].pop("KO")}), "field cells 'bad/name': expected a cell type name"),
])
def test_bad_manifests_are_one_line_errors_naming_file_and_field(tmp_path, edit, message):
    path = manifest(tmp_path)
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        read_manifest(path, MARKS)
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_not_yaml_or_not_there(tmp_path):
    path = tmp_path / "pair.yaml"
    path.write_text("cells: [\n")
    with pytest.raises(ConfigError, match=r"pair\.yaml line 2: not valid YAML"):
        read_manifest(path, MARKS)
    with pytest.raises(ConfigError, match=r"gone\.yaml: manifest file not found"):
        read_manifest(tmp_path / "gone.yaml", MARKS)


def test_the_cell_flags_and_flag_options():
    spec = spec_from_cells("g.gtf", [["A", "a.tsv", *"12345"], ["B", "b.tsv", *"abcde"]], MARKS, "TPM")
    assert spec.cells[1].marks[0] == ("H3K4me1", Path("a")) and spec.cells[0].expression_column == "TPM"
    with pytest.raises(ConfigError, match="--cell: given 1 time"):
        spec_from_cells("g.gtf", [["A", "a.tsv", *"12345"]], MARKS, None)
    with pytest.raises(ConfigError, match="--cell: both cells are named 'A'"):
        spec_from_cells("g.gtf", [["A", "a.tsv", *"12345"], ["A", "b.tsv", *"12345"]], MARKS, None)
    options = parse_options({"test_chroms": "chr8,chr9", "split_fractions": [0.6, 0.2]}, BuildOptions(), lambda n: n)
    assert options.test_chroms == ("chr8", "chr9") and options.split_fractions == (0.6, 0.2)
    with pytest.raises(ConfigError, match=r"^--min-mapq: expected a whole number from 0 to 255, got -1$"):
        parse_options({"min_mapq": -1}, BuildOptions(), lambda n: "--min-mapq")
