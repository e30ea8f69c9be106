"""deepdiff.tracks.build: a pair built from tracks is what deepdiff.data reads; the genes kept and
dropped; the checks across files; a second build of the same inputs does nothing."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepdiff.data import MARKS, load_pair
from deepdiff.errors import ConfigError, DataError
from deepdiff.tracks.build import build_pair
from deepdiff.tracks.example import write_example
from deepdiff.tracks.manifest import read_manifest
from tracks_files import expression_tsv, gene_attrs, gtf_line, write_bam, write_bigwig, write_text

SIZES = {"chr1": 70_000, "chr2": 70_000, "chrY": 40_000}
ENSEMBL_NAMES = {"chr1": "1", "chr2": "2", "chrY": "Y"}
# 14 genes: 6 on chr1, 6 on chr2 (alternating strands), 2 on chrY; ids with versions
GENES = [(f"ENSG{i:011d}.{i % 3 + 1}", chrom, 10_000 * (k + 1) - 5_000, "+-"[k % 2])
         for i, (chrom, k) in enumerate([(c, k) for c in ("chr1", "chr2") for k in range(6)] + [("chrY", 0), ("chrY", 1)])]


def tiny_pair(folder: Path, *, b_sizes: dict[str, int] | None = None, b_chroms: dict[str, str] = ENSEMBL_NAMES,
              b_expression: dict[str, float] | None = None, options: dict | None = None) -> Path:
    """Cell A: bigWigs (UCSC names, no chrY: a female sample); cell B: BAMs (Ensembl names: 1, 2, Y);
    one GTF (UCSC names)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for gene, chrom, tss, strand in GENES:
        start, end = (tss + 1, tss + 2_000) if strand == "+" else (tss - 1_999, tss + 1)
        lines.append(gtf_line(chrom, "transcript", start, end, strand, gene_attrs(gene, tx=gene.replace("G", "T"))))
    write_text(folder / "genes.gtf", lines)
    rng = np.random.default_rng(0)
    a_marks, b_marks = {}, {}
    b_sizes = b_sizes or SIZES
    for m, mark in enumerate(MARKS):
        female = {c: n for c, n in SIZES.items() if c != "chrY"}
        intervals = [(c, s, s + 500, float(m + 1 + rng.integers(0, 5))) for c in female for s in range(0, female[c], 1_000)]
        a_marks[mark] = write_bigwig(folder / f"A.{mark}.bw", female, intervals).name
        reads = [{"chrom": b_chroms[c], "start": int(s)} for c in SIZES for s in rng.integers(0, SIZES[c] - 50, 300 * (m + 1))]
        b_marks[mark] = write_bam(folder / f"B.{mark}.bam", {b_chroms[c]: n for c, n in b_sizes.items()}, reads).name
    ids = [g.split(".")[0] for g, *_ in GENES]
    expression_tsv(folder / "A.tsv", {g: float(i * 3) for i, g in enumerate(ids)})
    expression_tsv(folder / "B.tsv", b_expression or {g: float((i * 7) % 11) for i, g in enumerate(ids)})
    manifest = {"annotation": "genes.gtf", "cells": {"A": {"expression": "A.tsv", "marks": a_marks},
                                                     "B": {"expression": "B.tsv", "marks": b_marks}},
                "options": {"split_fractions": [0.5, 0.2], **(options or {})}}
    path = folder / "pair.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def build(manifest: Path, out: Path, **kwargs):
    return build_pair(read_manifest(manifest, MARKS), out, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    manifest = tiny_pair(folder / "src")
    return manifest, build(manifest, folder / "out"), folder / "out"


def test_the_built_pair_is_what_load_pair_reads(built):
    _, result, out = built
    assert result.rebuilt
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.{k}.csv" for c in "AB" for k in ("train", "valid", "test", "expr")] + ["A-B.build-pair.json"])
    pair = load_pair(out, "A", "B")
    assert pair.notes == ()  # both cells list the same genes in every split
    sizes = {name: len(pair.split(name)) for name in ("train", "valid", "test")}
    assert result.summary["genes"] == {"annotation": 14, "kept": 12, **sizes} == {
        "annotation": 14, "kept": 12, "train": 6, "valid": 2, "test": 4}
    first = (out / "A.train.csv").read_text().splitlines()[0]
    assert first.split(",")[0].startswith("ENSG") and first.split(",")[0].endswith("_1")
    assert pair.train.x_a.shape == (6, 5, 200)
    assert float(pair.train.x_b.sum()) > 0  # the BAMs of cell B, named 1, 2, Y, were read


def test_the_record_holds_sources_rules_split_and_summary(built):
    manifest, result, _ = built
    record = json.loads(result.record.read_text())
    assert set(record["sources"]) == {"annotation", "A/expression", "B/expression", *(f"{c}/{m}" for c in "AB" for m in MARKS)}
    entry = record["sources"]["B/H3K4me3"]
    path = manifest.parent / "B.H3K4me3.bam"
    assert entry["path"] == str(path.resolve()) and entry["size"] == path.stat().st_size and entry["format"] == "bam"
    assert len(entry["sha256"]) == 64
    assert record["split"] == {"mode": "random", "seed": 0, "fractions": [0.5, 0.2], "test_chroms": [], "valid_chroms": []}
    assert record["rules"]["bins"] == 200 and record["rules"]["bin_size"] == 100
    assert record["annotation"]["genes"] == "protein_coding" and "Ensembl_canonical" in record["annotation"]["tss_rule"]
    assert record["expression"] == {"A": {"format": "plain", "column": "TPM"}, "B": {"format": "plain", "column": "TPM"}}
    summary = record["summary"]
    assert summary["dropped"] == {"chromosome_not_in_every_track": 2}  # chrY: not in cell A's bigWigs
    assert set(summary["zero_bin_share"]) == {"A", "B"} and set(summary["zero_bin_share"]["A"]) == set(MARKS)
    assert summary["expression"]["A"] == {"min": 0.0, "median": 16.5, "max": 33.0, "zero_share": round(1 / 12, 4)}
    assert any("matched by adding or removing 'chr'" in note for note in record["notes"])
    assert set(record["outputs"]) == {f"{c}.{k}.csv" for c in "AB" for k in ("train", "valid", "test", "expr")}


def test_the_same_inputs_again_rebuild_nothing(built):
    manifest, first, out = built
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = build(manifest, out)
    assert not again.rebuilt and again.summary == first.summary
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_touched_source_is_hashed_not_rebuilt_and_a_changed_one_rebuilds(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    out = tmp_path / "out"
    build(manifest, out)
    table = manifest.parent / "B.tsv"
    os.utime(table, ns=(1, 1))
    assert not build(manifest, out).rebuilt
    recorded = json.loads((out / "A-B.build-pair.json").read_text())["sources"]["B/expression"]
    assert recorded["mtime_ns"] == 1  # the new fingerprint is remembered
    table.write_text(table.read_text().replace("\t2\n", "\t20\n"))
    result = build(manifest, out)
    assert result.rebuilt and "\t20\n" not in (out / "B.expr.csv").read_text() and ",20\n" in (out / "B.expr.csv").read_text()


def test_an_edited_output_is_rebuilt(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    out = tmp_path / "out"
    build(manifest, out)
    good = (out / "A.valid.csv").read_bytes()
    (out / "A.valid.csv").write_bytes(good.replace(b"_1,", b"_1,9", 1))
    assert build(manifest, out).rebuilt
    assert (out / "A.valid.csv").read_bytes() == good


def test_a_build_stopped_while_writing_is_rebuilt_by_the_next_run(tmp_path, monkeypatch):
    import deepdiff.tracks.build as build_module

    manifest = tiny_pair(tmp_path / "src")
    out = tmp_path / "out"
    real = build_module.write_atomic
    written = []

    def stop_after_three(path, data):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        real(path, data)

    monkeypatch.setattr(build_module, "write_atomic", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        build(manifest, out)
    monkeypatch.setattr(build_module, "write_atomic", real)
    assert len(list(out.glob("*.csv"))) == 3
    result = build(manifest, out)
    assert result.rebuilt and len(list(out.glob("*.csv"))) == 8
    assert not build(manifest, out).rebuilt


def test_files_not_written_by_a_build_are_never_overwritten(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "A.train.csv").write_text("mine\n")
    with pytest.raises(ConfigError, match=r"already holds A\.train\.csv, not written by deepdiff build-pair"):
        build(manifest, out)
    assert (out / "A.train.csv").read_text() == "mine\n" and sorted(p.name for p in out.iterdir()) == ["A.train.csv"]


def test_a_cell_of_another_pair_in_the_folder_is_not_replaced(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    out = tmp_path / "out"
    build(manifest, out)
    doc = yaml.safe_load(manifest.read_text())
    doc["cells"] = {"C": doc["cells"]["B"], "A": doc["cells"]["A"]}
    other = manifest.with_name("other.yaml")
    other.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"A\.train\.csv belongs to the pair of A-B\.build-pair\.json; a cell shared by two pairs"):
        build(other, out)


def test_genes_missing_from_an_expression_table_are_dropped_and_counted(tmp_path):
    ids = [g.split(".")[0] for g, *_ in GENES]
    manifest = tiny_pair(tmp_path / "src", b_expression={g: float(i) for i, g in enumerate(ids) if i not in (1, 2)})
    result = build(manifest, tmp_path / "out")
    assert result.summary["dropped"] == {"chromosome_not_in_every_track": 2, "not_in_expression_B": 2}
    assert result.summary["genes"]["kept"] == 10
    assert any(f"2 genes not in {manifest.parent / 'B.tsv'} dropped (e.g. {ids[1]})" in n for n in result.notes)


def test_an_expression_table_matching_no_gene_is_an_error(tmp_path):
    manifest = tiny_pair(tmp_path / "src", b_expression={"TP53": 1.0, "MYC": 2.0})
    with pytest.raises(DataError, match=r"B\.tsv: none of its 2 gene ids \(e\.g\. TP53\) is a gene of .*genes\.gtf "
                                        r"\(e\.g\. ENSG00000000000\); expected the annotation's gene ids"):
        build(manifest, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_tracks_of_different_assemblies_are_an_error_naming_both(tmp_path):
    manifest = tiny_pair(tmp_path / "src", b_sizes={**SIZES, "chr2": 80_000})
    with pytest.raises(DataError, match=r"B\.H3K4me1\.bam: chromosome 2 is 80,000 bp, but 70,000 bp in .*A\.H3K4me1\.bw; "
                                        r"expected all files from one genome assembly"):
        build(manifest, tmp_path / "out")


def test_a_tss_beyond_its_chromosome_is_an_error(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    gtf = manifest.parent / "genes.gtf"
    gtf.write_text(gtf.read_text() + gtf_line("chr1", "transcript", 90_001, 92_000, "+", gene_attrs("ENSG99.1", tx="T")) + "\n")
    with pytest.raises(DataError, match=r"genes\.gtf: gene ENSG99 starts at chr1:90,001, beyond the end of chr1 "
                                        r"\(70,000 bp in .*\); expected the annotation of the tracks' assembly"):
        build(manifest, tmp_path / "out")


def test_a_missing_source_file_is_named_before_anything_is_read(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    (manifest.parent / "B.H3K9me3.bam").unlink()
    with pytest.raises(DataError, match=r"B\.H3K9me3\.bam: file not found; expected the B H3K9me3 file of .*pair\.yaml"):
        build(manifest, tmp_path / "out")


def test_held_out_test_chromosome(tmp_path):
    manifest = tiny_pair(tmp_path / "src", options={"test_chroms": ["2"]})
    result = build(manifest, tmp_path / "out")
    assert result.summary["genes"]["test"] == 6
    test_genes = {line.split("_")[0] for line in (tmp_path / "out" / "A.test.csv").read_text().splitlines()}
    assert test_genes == {g.split(".")[0] for g, c, *_ in GENES if c == "chr2"}


@pytest.mark.slow
def test_worker_processes_write_the_same_files(tmp_path):
    manifest = tiny_pair(tmp_path / "src")
    build(manifest, tmp_path / "one", jobs=1)
    build(manifest, tmp_path / "two", jobs=2)
    for name in ("A.train.csv", "B.test.csv", "B.expr.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_the_planted_example_puts_the_tss_peak_in_the_middle_on_both_strands(tmp_path):
    """deepdiff.tracks.example plants H3K4me3 at each TSS and H3K36me3 over the gene body (downstream):
    read back strand-aware, both strands show the peak centred on bin 101 (index 100: the 100 bases from the
    TSS on; the median over genes, as a neighbour's peak can fall into a gene's window) and the body on
    bins 101-200."""
    manifest = write_example(tmp_path / "ex", genes=40, chroms=2, chrom_size=1_000_000)
    build(manifest, tmp_path / "out")
    pair = load_pair(tmp_path / "out", "CTRL", "KO")
    minus = {gene for gene, strand in _strands(manifest.parent / "genes.gtf").items() if strand == "-"}
    x = pair.train.x_a.numpy()
    for rows in ([i for i, g in enumerate(pair.train.gene_ids) if g in minus],
                 [i for i, g in enumerate(pair.train.gene_ids) if g not in minus]):
        assert len(rows) >= 5
        k4me3 = x[rows, MARKS.index("H3K4me3"), 70:131]
        excess = np.clip(k4me3 - np.median(x[rows, MARKS.index("H3K4me3"), :40], axis=1, keepdims=True), 0, None)
        centres = 70 + (excess * np.arange(61)).sum(axis=1) / excess.sum(axis=1)
        assert abs(np.median(centres) - 100) < 1
        k36me3 = x[rows, MARKS.index("H3K36me3")].mean(axis=0)
        assert k36me3[150:190].mean() > 2 * k36me3[10:50].mean()


def _strands(gtf: Path) -> dict[str, str]:
    strands = {}
    for line in gtf.read_text().splitlines():
        if "\ttranscript\t" in line:
            gene = line.split('gene_id "')[1].split(".")[0]
            strands[gene] = line.split("\t")[6]
    return strands
