"""deepdiff.tracks.annotation: one TSS per gene from GTF (plain, gzipped), GFF3 and BED6; ids; errors."""

import pytest

from deepdiff.errors import DataError
from deepdiff.tracks.annotation import gene_key, read_annotation
from tracks_files import gene_attrs, gtf_line, write_text


def gtf_lines() -> list[str]:
    """Five genes (1-based GTF coordinates; the TSS the rule picks, 0-based, in the comments)."""
    g1, g2, g3, g4, g5 = "ENSG00000000001.5", "ENSG00000000002.12", "ENSG00000000003.1", "ENSG00000000004.2", "ENSG00000000005.3"
    return [
        "##description: test", "#!genome-build GRCh38",
        # + gene, three transcripts, the canonical one not the most 5' -> 1,199 (canonical starts at 1,200)
        gtf_line("chr1", "gene", 1_000, 9_000, "+", gene_attrs(g1, name="ONE")),
        gtf_line("chr1", "transcript", 1_000, 5_000, "+", gene_attrs(g1, name="ONE", tx="T1a")),
        gtf_line("chr1", "exon", 1_000, 1_500, "+", gene_attrs(g1, name="ONE", tx="T1a")),
        gtf_line("chr1", "transcript", 1_200, 9_000, "+", gene_attrs(g1, name="ONE", tx="T1b", canonical=True)),
        gtf_line("chr1", "transcript", 1_100, 4_000, "+", gene_attrs(g1, name="ONE", tx="T1c")),
        # - gene, no canonical tag: the most 5' start is the largest end -> 30,000 - 1
        gtf_line("chr1", "transcript", 20_000, 29_000, "-", gene_attrs(g2, name="TWO", tx="T2a")),
        gtf_line("chr1", "transcript", 21_000, 30_000, "-", gene_attrs(g2, name="TWO", tx="T2b")),
        # - gene with a canonical transcript that is not the most 5' -> 44_000 - 1
        gtf_line("chr2", "transcript", 40_000, 45_000, "-", gene_attrs(g3, name="THREE", tx="T3a")),
        gtf_line("chr2", "transcript", 40_000, 44_000, "-", gene_attrs(g3, name="THREE", tx="T3b", canonical=True)),
        # a lncRNA: dropped unless all genes
        gtf_line("chr2", "transcript", 50_000, 51_000, "+", gene_attrs(g4, kind="lncRNA", tx="T4")),
        # the chrY copy of a PAR gene: dropped always
        gtf_line("chrX", "transcript", 100, 900, "+", gene_attrs(g5, name="PAR", tx="T5")),
        gtf_line("chrY", "transcript", 100, 900, "+", gene_attrs(g5 + "_PAR_Y", name="PAR", tx="T5y")),
    ]


def test_gtf_one_tss_per_gene_by_the_rule(tmp_path):
    ann = read_annotation(write_text(tmp_path / "a.gtf", gtf_lines()))
    got = {g: (c, t, m, s) for g, c, t, m, s in zip(ann.genes.ids, ann.genes.chroms, ann.genes.tss, ann.genes.minus,
                                                      ann.genes.symbols)}
    assert got == {
        "ENSG00000000001": ("chr1", 1_199, False, "ONE"),
        "ENSG00000000002": ("chr1", 29_999, True, "TWO"),
        "ENSG00000000003": ("chr2", 43_999, True, "THREE"),
        "ENSG00000000005": ("chrX", 99, False, "PAR"),
    }
    assert ann.format == "gtf"
    assert ann.counts == {"records": 10, "not_protein_coding": 1, "par_y": 1, "genes": 4}
    assert ann.examples == {"not_protein_coding": "ENSG00000000004", "par_y": "ENSG00000000005.3_PAR_Y"}


def test_gzipped_gtf_and_all_genes(tmp_path):
    ann = read_annotation(write_text(tmp_path / "a.gtf.gz", gtf_lines(), gz=True), genes="all")
    assert list(ann.genes.ids) == [f"ENSG0000000000{i}" for i in (1, 2, 3, 4, 5)]
    assert ann.genes.symbols[3] == "0004"  # tracks_files.gene_attrs' default name


def test_gtf_with_exons_only_uses_exons(tmp_path):
    lines = [gtf_line("chr1", "exon", 500, 600, "-", gene_attrs("G1.1", tx="T1")),
             gtf_line("chr1", "exon", 800, 900, "-", gene_attrs("G1.1", tx="T1")),
             gtf_line("chr1", "exon", 100, 200, "+", gene_attrs("G2", tx="T2"))]
    ann = read_annotation(write_text(tmp_path / "ucsc.gtf", lines))
    assert list(zip(ann.genes.ids, ann.genes.tss)) == [("G1", 899), ("G2", 99)]


GFF3 = """##gff-version 3
##sequence-region 1 1 248956422
1\tensembl\tchromosome\t1\t248956422\t.\t.\t.\tID=chromosome:1
1\tensembl\tgene\t1000\t9000\t.\t+\t.\tID=gene:ENSG00000000001;Name=ONE;biotype=protein_coding;gene_id=ENSG00000000001;version=5
1\tensembl\tmRNA\t1000\t5000\t.\t+\t.\tID=transcript:T1a;Parent=gene:ENSG00000000001;biotype=protein_coding;tag=basic
1\tensembl\texon\t1000\t1500\t.\t+\t.\tParent=transcript:T1a
1\tensembl\tmRNA\t1200\t9000\t.\t+\t.\tID=transcript:T1b;Parent=gene:ENSG00000000001;tag=basic,Ensembl_canonical
1\tensembl\tgene\t20000\t30000\t.\t-\t.\tID=gene:ENSG00000000002;Name=TWO%2CB;biotype=protein_coding;gene_id=ENSG00000000002
1\tensembl\tlnc_RNA\t20000\t30000\t.\t-\t.\tID=transcript:T2;Parent=gene:ENSG00000000002
1\tensembl\tncRNA_gene\t50000\t51000\t.\t+\t.\tID=gene:ENSG00000000004;biotype=lncRNA;gene_id=ENSG00000000004
"""


def test_gff3_ensembl_style(tmp_path):
    path = tmp_path / "a.gff3"
    path.write_text(GFF3)
    ann = read_annotation(path)
    assert ann.format == "gff3"
    assert list(zip(ann.genes.ids, ann.genes.chroms, ann.genes.tss, ann.genes.minus)) == [
        ("ENSG00000000001", "1", 1_199, False), ("ENSG00000000002", "1", 29_999, True)]
    assert list(ann.genes.symbols) == ["ONE", "TWO-B"]  # %2C is a comma: no comma in a row id
    assert ann.counts["not_protein_coding"] == 1


def test_gff3_by_its_header_whatever_the_name(tmp_path):
    path = tmp_path / "annotation.txt"
    path.write_text(GFF3)
    assert read_annotation(path).format == "gff3"


def test_bed6_of_tsss(tmp_path):
    path = write_text(tmp_path / "tss.bed", [
        "track name=tss", "chr1\t1199\t1200\tENSG00000000001.5\t0\t+", "chr1\t1500\t1501\tENSG00000000001.5\t0\t+",
        "chr1\t29999\t30000\tENSG00000000002\t0\t-", "chr1\t29000\t29500\tENSG00000000002\t0\t-"])
    ann = read_annotation(path)
    assert ann.format == "bed"
    assert list(zip(ann.genes.ids, ann.genes.tss, ann.genes.minus)) == [
        ("ENSG00000000001", 1_199, False), ("ENSG00000000002", 29_999, True)]


@pytest.mark.parametrize("raw, key", [
    ("ENSG00000141510.17", "ENSG00000141510"), ("ENSG00000141510", "ENSG00000141510"),
    ("ENSG00000182378.14_PAR_Y", None), ("NM_000546.6", "NM_000546"), ("gene.with.dots.2", "gene.with.dots"),
])
def test_gene_key(raw, key):
    assert gene_key(raw) == key


@pytest.mark.parametrize("name, lines, message", [
    ("empty.gtf", [], "no transcript, exon or gene line with a gene_id"),
    ("lnc.gtf", [gtf_line("chr1", "transcript", 1, 9, "+", gene_attrs("G1", kind="lncRNA", tx="T"))],
     "none of its 1 records gives a usable gene (1 not protein coding (e.g. G1)); expected protein-coding genes"),
    ("refseq.gtf", [gtf_line("chr1", "transcript", 1, 9, "+", 'gene_id "TP53"; transcript_id "NM_1";')],
     "no gene has a biotype (gene_type, gene_biotype, biotype)"),
    ("under.bed", ["chr1\t5\t6\tNM_000546\t0\t+"], "none of its 1 rows gives a usable gene (1 bad id (e.g. NM_000546))"),
    ("short.gtf", ["chr1\ttest\ttranscript\t1\t9"], "line 1: expected 9 tab-separated fields (a GTF line), found 5"),
    ("start.gtf", [gtf_line("chr1", "transcript", 0, 9, "+", gene_attrs("G1", tx="T"))], "line 1 field start: expected a position >= 1, got 0"),
    ("strand.gtf", [gtf_line("chr1", "transcript", 1, 9, ".", gene_attrs("G1", tx="T"))], "line 1 field strand: expected + or -, got '.'"),
    ("noid.gtf", [gtf_line("chr1", "transcript", 1, 9, "+", 'transcript_id "T";')], "line 1 field attributes: expected a gene_id attribute"),
    ("bad.bed", ["chr1\t5\t6\tG1\t0"], "line 1: expected 6 tab-separated fields (BED6"),
])
def test_bad_annotations_are_one_line_errors_naming_the_file(tmp_path, name, lines, message):
    path = write_text(tmp_path / name, lines) if lines else (tmp_path / name)
    if not lines:
        path.write_text("##just a comment\n")
    with pytest.raises(DataError) as err:
        read_annotation(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value) and "\n" not in str(err.value)


def test_an_unreadable_gzip_or_a_missing_file(tmp_path):
    bad = tmp_path / "a.gtf.gz"
    bad.write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(DataError, match=r"a\.gtf\.gz: cannot be read as gzipped text"):
        read_annotation(bad)
    with pytest.raises(DataError, match=r"nowhere\.gtf: annotation file not found; expected a gene annotation"):
        read_annotation(tmp_path / "nowhere.gtf")


def test_gff3_gencode_style_with_par_y(tmp_path):
    path = tmp_path / "gencode.gff3.gz"
    rows = [
        "##gff-version 3",
        "chr1\tHAVANA\tgene\t1000\t9000\t.\t-\t.\tID=ENSG00000000001.5;gene_id=ENSG00000000001.5;gene_type=protein_coding;gene_name=ONE",
        "chr1\tHAVANA\ttranscript\t1000\t9000\t.\t-\t.\tID=ENST1.1;Parent=ENSG00000000001.5;gene_id=ENSG00000000001.5;tag=basic",
        "chr1\tHAVANA\ttranscript\t1000\t8000\t.\t-\t.\tID=ENST2.1;Parent=ENSG00000000001.5;gene_id=ENSG00000000001.5;tag=basic,Ensembl_canonical",
        "chr1\tHAVANA\texon\t1000\t1500\t.\t-\t.\tID=exon:ENST2.1:1;Parent=ENST2.1",
        "chrY\tHAVANA\tgene\t100\t900\t.\t+\t.\tID=ENSG00000000005.3_PAR_Y;gene_id=ENSG00000000005.3_PAR_Y;gene_type=protein_coding",
        "chrY\tHAVANA\ttranscript\t100\t900\t.\t+\t.\tID=ENST5.1_PAR_Y;Parent=ENSG00000000005.3_PAR_Y",
    ]
    write_text(path, rows, gz=True)
    ann = read_annotation(path)
    assert ann.format == "gff3"
    assert list(zip(ann.genes.ids, ann.genes.tss, ann.genes.minus, ann.genes.symbols)) == [
        ("ENSG00000000001", 7_999, True, "ONE")]  # the canonical transcript's 5' end, not the gene's
    assert ann.counts["par_y"] == 1
