"""deepdiff.tracks.genome: chromosome names matched across files (chr1 vs 1), one assembly, missing ones."""

from pathlib import Path

import pytest

from deepdiff.errors import DataError
from deepdiff.tracks.genome import chrom_key, match_names, reconcile

HG38 = {"chr1": 248_956_422, "chr2": 242_193_529, "chrX": 156_040_895, "chrM": 16_569}
ENSEMBL = {"1": 248_956_422, "2": 242_193_529, "X": 156_040_895, "MT": 16_569}


@pytest.mark.parametrize("name, key", [("chr1", "1"), ("Chr1", "1"), ("1", "1"), ("chrM", "MT"), ("MT", "MT"),
                                       ("M", "MT"), ("chrUn_KI270302v1", "Un_KI270302v1"), ("chr", "chr")])
def test_chrom_key(name, key):
    assert chrom_key(name) == key


def test_names_match_with_chr_added_or_removed_and_it_is_said():
    genome = reconcile(["chr1", "chr2", "chrM"], {Path("a.bw"): HG38, Path("b.bam"): ENSEMBL})
    assert genome.names[Path("b.bam")] == {"chr1": "1", "chr2": "2", "chrM": "MT"}
    assert genome.names[Path("a.bw")] == {"chr1": "chr1", "chr2": "chr2", "chrM": "chrM"}
    assert genome.sizes == {"chr1": 248_956_422, "chr2": 242_193_529, "chrM": 16_569}
    assert genome.notes == ("chromosome names matched by adding or removing 'chr' in 1 file(s) "
                            "(e.g. the annotation's chr1 is 1 in b.bam)",)
    assert genome.missing == {}


def test_a_chromosome_a_track_lacks_is_missing_with_the_file():
    female = {k: v for k, v in HG38.items() if k != "chrX"}
    genome = reconcile(["chr1", "chrX"], {Path("a.bw"): HG38, Path("f.bw"): female})
    assert genome.missing == {"chrX": Path("f.bw")} and genome.sizes == {"chr1": 248_956_422}


def test_different_assemblies_are_an_error_naming_both_files():
    hg19 = {**HG38, "chr1": 249_250_621}
    with pytest.raises(DataError, match=r"^b\.bw: chromosome chr1 is 249,250,621 bp, but 248,956,422 bp in a\.bw "
                                        r"\(hg19/GRCh37 vs hg38/GRCh38\); expected all files from one genome assembly$"):
        reconcile(["chr1"], {Path("a.bw"): HG38, Path("b.bw"): hg19})
    with pytest.raises(DataError, match=r"^b\.bw: chromosome chr2 is 5 bp, but 242,193,529 bp in a\.bw; expected"):
        reconcile(["chr2"], {Path("a.bw"): HG38, Path("b.bw"): {"chr2": 5}})


def test_no_chromosome_in_common_and_ambiguous_names():
    with pytest.raises(DataError, match=r"^mouse\.bw: none of its chromosomes \(NC_000067, NC_000068\) is one of the "
                                        r"annotation's \(chr1, chr2\), even with 'chr' added or removed"):
        match_names(["chr1", "chr2"], {"NC_000067": 1, "NC_000068": 2}, Path("mouse.bw"))
    with pytest.raises(DataError, match=r"^odd\.bw: chromosome 1 of the annotation could be chr1 or Chr1 here"):
        match_names(["1"], {"chr1": 5, "Chr1": 5}, Path("odd.bw"))
