"""deepdiff.tracks.splits: the paper's proportions, seeded and order-free; held-out chromosomes; errors."""

import numpy as np
import pytest

from deepdiff.errors import ConfigError
from deepdiff.tracks.splits import PAPER_FRACTIONS, SPLIT_CODES, assign_splits

IDS = np.array([f"G{i:05d}" for i in range(18_460)], dtype=object)
CHROMS = np.array([f"chr{1 + i % 20}" for i in range(18_460)], dtype=object)


def test_paper_proportions_by_default():
    codes = assign_splits(IDS, CHROMS, seed=0)
    assert np.bincount(codes).tolist() == [10_000, 2_360, 6_100]
    assert PAPER_FRACTIONS == (10_000 / 18_460, 2_360 / 18_460)


def test_seeded_and_independent_of_the_annotation_order():
    codes = assign_splits(IDS, CHROMS, seed=3)
    order = np.random.default_rng(1).permutation(len(IDS))
    again = assign_splits(IDS[order], CHROMS[order], seed=3)
    assert (again == codes[order]).all()
    assert not (assign_splits(IDS, CHROMS, seed=4) == codes).all()


def test_held_out_chromosomes():
    codes = assign_splits(IDS, CHROMS, seed=0, test_chroms=("chr8", "9"))
    assert set(CHROMS[codes == SPLIT_CODES["test"]]) == {"chr8", "chr9"}
    rest = codes[codes != SPLIT_CODES["test"]]
    assert abs((rest == SPLIT_CODES["valid"]).mean() - 2_360 / 12_360) < 0.001
    codes = assign_splits(IDS, CHROMS, seed=0, test_chroms=("chr8",), valid_chroms=("chr9", "chr10"))
    assert set(CHROMS[codes == SPLIT_CODES["valid"]]) == {"chr9", "chr10"}


def test_custom_fractions():
    codes = assign_splits(IDS[:100], CHROMS[:100], seed=0, fractions=(0.5, 0.25))
    assert np.bincount(codes).tolist() == [50, 25, 25]


@pytest.mark.parametrize("kwargs, message", [
    ({"test_chroms": ("chr99",)}, "--test-chroms chr99: no gene of the pair lies on it; expected chromosomes of the annotation"),
    ({"valid_chroms": ("chr2",)}, "--valid-chroms needs --test-chroms"),
    ({"test_chroms": ("chr1",), "valid_chroms": ("1",)}, "--valid-chroms 1: shares chromosomes with --test-chroms chr1"),
])
def test_bad_chromosome_choices(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        assign_splits(IDS, CHROMS, seed=0, **kwargs)


def test_every_split_needs_two_genes():
    with pytest.raises(ConfigError, match=r"--split-fractions: split valid gets 1 gene\(s\) of 8; expected at least 2"):
        assign_splits(IDS[:8], CHROMS[:8], seed=0)
    with pytest.raises(ConfigError, match=r"--test-chroms: split test gets 1 gene\(s\) of 40"):
        assign_splits(IDS[:40], np.array(["chr1"] * 39 + ["chr2"], dtype=object), seed=0, test_chroms=("chr2",))
