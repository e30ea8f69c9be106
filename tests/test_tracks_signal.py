"""deepdiff.tracks.signal: bins of bigWigs and BAMs checked against hand computations, and each bad file."""

import sys
from pathlib import Path

import numpy as np
import pytest

from deepdiff.errors import ConfigError, DataError
from deepdiff.tracks.signal import BinRules, bin_track, chrom_sizes, track_format
from tracks_files import PAIRED, write_bam, write_bigwig

SIZES = {"chrA": 45_000, "chrB": 60_000}
# Two genes on chrA (0-based TSS): a + gene at 20,000 (window [10,000, 30,000): bin k covers
# [10,000 + 100 (k - 1), ...)) and a - gene at 40,000 (window [30,001, 50,001) read right to left: bin k
# covers [50,001 - 100 k, 50,101 - 100 k)); the chromosome ends at 45,000, so the - gene's bins 1-51 reach
# beyond it (bin 51 = [44,901, 45,001) has 99 bases inside).
TSS = np.array([20_000, 40_000])
MINUS = np.array([False, True])


def rules(**changes) -> BinRules:
    base = dict(n_bins=200, bin_size=100, bigwig_stat="sum", bam_position="five_prime", fragment_length=200,
                min_mapq=10, keep_duplicates=False)
    return BinRules(**{**base, **changes})


@pytest.fixture
def bigwig(tmp_path) -> Path:
    return write_bigwig(tmp_path / "t.bw", SIZES, [
        ("chrA", 10_050, 10_150, 1.0),  # + gene: 50 bases in bin 1, 50 in bin 2
        ("chrA", 20_000, 20_050, 2.0),  # + gene: the TSS, bin 101: 50 bases x 2
        ("chrA", 29_990, 30_001, 4.0),  # + gene: 10 bases in bin 200; base 30,000 is in neither window
        ("chrA", 40_000, 40_001, 5.0),  # - gene: its TSS base, the last base (genome order) of bin 101
        ("chrA", 40_001, 40_101, 1.0),  # - gene: just upstream of the TSS, bin 100
        ("chrA", 44_950, 45_000, 3.0),  # - gene: bin 51 (50 bases with data; the bin runs off the end)
        ("chrB", 100, 200, 9.0),  # another chromosome: never read
    ])


def test_bigwig_sum_bins_by_hand_for_a_plus_and_a_minus_strand_gene(bigwig):
    out = bin_track(bigwig, "chrA", SIZES["chrA"], TSS, MINUS, rules())
    assert out.shape == (2, 200) and out.dtype == np.float32
    plus = {1: 50.0, 2: 50.0, 101: 100.0, 200: 40.0}
    minus = {51: 150.0, 100: 100.0, 101: 5.0}
    for row, expected in ((0, plus), (1, minus)):
        want = np.zeros(200)
        for b, v in expected.items():
            want[b - 1] = v
        np.testing.assert_array_equal(out[row], want)


def test_bigwig_mean_is_over_the_bases_with_data(bigwig):
    out = bin_track(bigwig, "chrA", SIZES["chrA"], TSS, MINUS, rules(bigwig_stat="mean"))
    assert out[0, 100] == 2.0 and out[0, 0] == 1.0 and out[0, 199] == 4.0
    assert out[1, 100] == 5.0 and out[1, 99] == 1.0 and out[1, 50] == 3.0
    assert np.count_nonzero(out) == 7


def test_strand_aware_gene_order_does_not_matter(bigwig):
    one = bin_track(bigwig, "chrA", SIZES["chrA"], TSS[::-1], MINUS[::-1], rules())
    two = bin_track(bigwig, "chrA", SIZES["chrA"], TSS, MINUS, rules())
    np.testing.assert_array_equal(one[::-1], two)


@pytest.fixture
def bam(tmp_path) -> Path:
    reads = [
        {"chrom": "chrA", "start": 20_000},  # + gene: 5' end 20,000, bin 101
        {"chrom": "chrA", "start": 19_950, "flag": 0x10},  # reverse: 5' end 19,985, bin 100
        {"chrom": "chrA", "start": 20_010, "flag": 0x400},  # duplicate: skipped by default
        {"chrom": "chrA", "start": 20_020, "mapq": 5},  # MAPQ 5 < 10: skipped
        {"chrom": "chrA", "start": 20_030, "flag": 0x100},  # secondary: skipped
        {"chrom": "chrA", "start": 20_040, "flag": 0x800},  # supplementary: skipped
        {"chrom": "chrA", "start": 20_060, "flag": 0x200},  # QC fail: skipped
        {"chrom": "chrA", "start": 9_900},  # 5' end before the + window: not counted
        {"chrom": "chrA", "start": 40_050},  # - gene: 40,050 is in bin 100
        {"chrom": "chrA", "start": 15_000},  # single-end, + strand: 5' end 15,000 (bin 51); centre 15,100 (bin 52)
        # a proper pair: mates at 25,000 and 25,164 (36 bp), fragment 25,000-25,200, centre 25,100 (bin 152)
        {"chrom": "chrA", "start": 25_000, "flag": PAIRED | 0x20 | 0x40, "tlen": 200, "mate_start": 25_164, "name": "p"},
        {"chrom": "chrA", "start": 25_164, "flag": PAIRED | 0x10 | 0x80, "tlen": -200, "mate_start": 25_000, "name": "p"},
    ]
    return write_bam(tmp_path / "t.bam", SIZES, reads)


def expected(counts: dict[int, float]) -> np.ndarray:
    want = np.zeros(200, np.float32)
    for b, v in counts.items():
        want[b - 1] = v
    return want


def test_bam_five_prime_counts_by_hand(bam):
    out = bin_track(bam, "chrA", SIZES["chrA"], TSS, MINUS, rules())
    # + gene: 20,000 -> 101; 19,985 -> 100; 15,000 -> 51; mates' 5' ends 25,000 -> 151 and 25,199 -> 152
    np.testing.assert_array_equal(out[0], expected({101: 1, 100: 1, 51: 1, 151: 1, 152: 1}))
    np.testing.assert_array_equal(out[1], expected({100: 1}))


def test_bam_filters_are_options(bam):
    out = bin_track(bam, "chrA", SIZES["chrA"], TSS, MINUS, rules(keep_duplicates=True, min_mapq=0))
    assert out[0, 100] == 3  # + the duplicate at 20,010 and the MAPQ-5 read at 20,020


def test_bam_fragment_centre_counts_a_pair_once_and_shifts_single_reads(bam):
    out = bin_track(bam, "chrA", SIZES["chrA"], TSS, MINUS, rules(bam_position="centre"))
    # single-end reads move 100 bp downstream: 20,100 -> 102; 19,985 - 100 = 19,885 -> 99; 15,100 -> 52;
    # 9,900 (before the window) -> 10,000, bin 1; the pair once, at its centre
    np.testing.assert_array_equal(out[0], expected({102: 1, 99: 1, 52: 1, 152: 1, 1: 1}))
    assert bin_track(bam, "chrA", SIZES["chrA"], TSS, MINUS, rules(bam_position="centre", fragment_length=2))[0, 100] == 1


def test_the_track_format_comes_from_the_file_name(tmp_path):
    assert track_format("x.bigWig") == track_format("x.BW") == "bigwig" and track_format("a/b.bam") == "bam"
    with pytest.raises(DataError, match=r"^x\.bed: not a track by its name; expected a bigWig \(\.bw, \.bigwig\)"):
        track_format("x.bed")


def test_chromosome_sizes(bigwig, bam):
    assert chrom_sizes(bigwig) == SIZES == chrom_sizes(bam)


def test_a_bam_without_index_is_refused(tmp_path):
    path = write_bam(tmp_path / "noindex.bam", SIZES, [{"chrom": "chrA", "start": 10}], index=False)
    with pytest.raises(DataError, match=r"noindex\.bam: has no index; expected noindex\.bam\.bai \(or \.csi\) beside it"):
        chrom_sizes(path)


@pytest.mark.parametrize("name, data, message", [
    ("empty.bw", b"", "file is empty; expected a bigWig file"),
    ("empty.bam", b"", "file is empty; expected a BAM file"),
    ("text.bw", b"chr1\t0\t10\t1.0\n", "not a bigWig file (its first bytes are not the format's signature)"),
    ("text.bam", b"@HD\tVN:1.6\n", "not a BAM file"),
    ("short.bw", b"\x26\xfc\x8f\x88" + b"\0" * 20, "cannot be opened as a bigWig (corrupt or truncated)"),
    ("junk.bam", b"\x1f\x8b" + b"\0" * 40, "cannot be opened as a BAM"),
])
def test_empty_and_corrupt_files_are_one_line_errors_naming_the_file(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        chrom_sizes(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_bigwig_fails_on_reading_with_the_file_named(tmp_path, bigwig):
    data = bigwig.read_bytes()
    cut = tmp_path / "cut.bw"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut\.bw: (cannot read chrA|cannot be opened|holds no data)"):
        chrom_sizes(cut)
        bin_track(cut, "chrA", SIZES["chrA"], TSS, MINUS, rules())


def test_a_bigwig_with_negative_values_is_refused(tmp_path):
    path = write_bigwig(tmp_path / "log2ratio.bw", SIZES, [("chrA", 19_990, 20_010, -0.25)])
    with pytest.raises(DataError, match=r"log2ratio\.bw: signal -0\.25 at chrA:19991; expected values >= 0"):
        bin_track(path, "chrA", SIZES["chrA"], TSS, MINUS, rules())


def test_a_bigwig_without_data_is_refused(tmp_path):
    path = write_bigwig(tmp_path / "nodata.bw", SIZES, [])
    with pytest.raises(DataError, match=r"nodata\.bw: holds no data"):
        chrom_sizes(path)


def test_a_bam_without_reads_is_refused(tmp_path):
    path = write_bam(tmp_path / "noreads.bam", SIZES, [])
    with pytest.raises(DataError, match=r"noreads\.bam: holds no mapped read"):
        chrom_sizes(path)


def test_a_missing_library_names_the_extra(bigwig, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyBigWig", None)  # import pyBigWig now raises ImportError
    with pytest.raises(ConfigError, match=r"needs pyBigWig, which is not installed; install the extra: "
                                          r"pip install 'deepdiff-tune\[tracks\]'"):
        chrom_sizes(bigwig)


@pytest.mark.parametrize("max_region", [1_000_000, 25_000])
def test_overlapping_windows_read_together_give_each_gene_its_own_bins(bigwig, bam, monkeypatch, max_region):
    import deepdiff.tracks.signal as signal_module

    monkeypatch.setattr(signal_module, "MAX_REGION", max_region)
    tss, minus = np.array([20_000, 24_000, 21_000, 40_000]), np.array([False, True, False, True])
    for track in (bigwig, bam):
        together = bin_track(track, "chrA", SIZES["chrA"], tss, minus, rules())
        alone = [bin_track(track, "chrA", SIZES["chrA"], tss[i:i + 1], minus[i:i + 1], rules())[0] for i in range(4)]
        np.testing.assert_array_equal(together, np.stack(alone))
        assert together[0, 100] > 0 and together[2, 90] > 0  # the TSS of gene 0 is bin 91 of gene 2
