"""Tests of deepdiff.synthetic: on-disk format, determinism, and that the planted signal is there."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from deepdiff.data import MARKS, N_BINS, SPLITS, SplitData, load_pair
from deepdiff.synthetic import tss_profiles, write_synthetic_pair

KINDS = (*SPLITS, "expr")


def test_writes_the_eight_files_in_the_deepdiffchrome_format(tmp_path):
    files = write_synthetic_pair(tmp_path, genes=40, seed=3, cell_a="E123", cell_b="E003")
    assert set(files) == {f"{cell}.{kind}" for cell in ("E123", "E003") for kind in KINDS}
    assert all(path == tmp_path / f"{key}.csv" and path.is_file() for key, path in files.items())
    lines = files["E123.train"].read_text().splitlines()
    assert len(lines) % N_BINS == 0
    first = lines[0].split(",")
    assert first[0] == "ENSGS030000000_SYN0_1" and len(first) == 1 + len(MARKS)
    assert all(value.isdigit() for line in lines for value in line.split(",")[1:])
    assert [line.split(",")[0].rsplit("_", 1)[1] for line in lines[:N_BINS]] == [str(t) for t in range(1, N_BINS + 1)]
    expr = [line.split(",") for line in files["E123.expr"].read_text().splitlines()]
    assert all(len(row) == 2 and row[1].isdigit() for row in expr)
    n_hm = sum(len(files[f"E123.{s}"].read_text().splitlines()) for s in SPLITS) // N_BINS
    assert n_hm == 40 and len(expr) == 44  # ~10 % extra genes only in the expression file


def test_round_trip_through_load_pair(synthetic_pair):
    """conftest's `synthetic_pair`: 2000 genes (the default), seed 0."""
    pair = synthetic_pair
    assert pair.notes == ()
    sizes = [len(pair.split(name)) for name in SPLITS]
    assert sum(sizes) == 2000 and sizes == [1080, 260, 660]  # ~54/13/33 %
    assert pair.train.x_a.shape == (1080, len(MARKS), N_BINS)
    assert 0 < pair.train.x_a.mean() < 5 and pair.train.x_a.max() < 200  # realistic counts
    assert pair.train.expr_a.max() < 1e5 and pair.train.expr_a.min() >= 0
    assert 0.2 < pair.train.similar.mean() < 0.6 and 0.3 < pair.train.aux_cls_a.float().mean() < 0.7


def test_cell_b_lists_genes_in_another_order(small_synthetic_dir, small_synthetic_pair):
    directory, pair = small_synthetic_dir, small_synthetic_pair
    ids_a = [line.split("_")[0] for line in (directory / "Cell1.test.csv").read_text().splitlines()[::N_BINS]]
    ids_b = [line.split("_")[0] for line in (directory / "Cell2.test.csv").read_text().splitlines()[::N_BINS]]
    assert ids_a != ids_b and sorted(ids_a) == sorted(ids_b)
    assert list(pair.test.gene_ids) == ids_a


def test_unshuffled_b_keeps_a_order(tmp_path):
    write_synthetic_pair(tmp_path, genes=12, shuffle_b=False)
    a = (tmp_path / "Cell1.valid.csv").read_text().splitlines()
    b = (tmp_path / "Cell2.valid.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in a] == [line.split(",")[0] for line in b]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    one = write_synthetic_pair(tmp_path / "one", genes=30, seed=7)
    two = write_synthetic_pair(tmp_path / "two", genes=30, seed=7)
    other = write_synthetic_pair(tmp_path / "other", genes=30, seed=8)
    assert all(one[key].read_bytes() == two[key].read_bytes() for key in one)
    assert one["Cell1.train"].read_bytes() != other["Cell1.train"].read_bytes()


def test_fewer_bins_and_minimum_genes(tmp_path):
    write_synthetic_pair(tmp_path, genes=3, n_bins=20)
    pair = load_pair(tmp_path, "Cell1", "Cell2", n_bins=20)
    assert [len(pair.split(name)) for name in SPLITS] == [1, 1, 1]
    assert pair.valid.x_b.shape == (1, len(MARKS), 20)
    with pytest.raises(ValueError, match="at least 3"):
        write_synthetic_pair(tmp_path, genes=2)


def test_tss_profiles_peak_at_the_centre():
    profiles = tss_profiles(N_BINS)
    assert profiles.shape == (len(MARKS), N_BINS) and profiles.max() == pytest.approx(1.0)
    assert int(np.argmax(profiles[MARKS.index("H3K4me3")])) == N_BINS // 2
    k36 = profiles[MARKS.index("H3K36me3")]
    assert k36[N_BINS - 1] > k36[0]  # extends downstream into the gene body


def window_features(split: SplitData) -> torch.Tensor:
    """(N, M + 1): log1p of each mark's TSS-window sum in A minus in B, and a constant."""
    window = slice(N_BINS // 2 - 20, N_BINS // 2 + 21)
    sums = torch.log1p(split.x_a[:, :, window].sum(-1)) - torch.log1p(split.x_b[:, :, window].sum(-1))
    return torch.cat([sums, torch.ones(len(split), 1)], 1).double()


def least_squares_test_fit(train: SplitData, test: SplitData, target: torch.Tensor) -> tuple[float, float]:
    """Fit `target` on train's window features; (PCC, R^2) of the prediction of test's diff."""
    weights = torch.linalg.lstsq(window_features(train), target.double()[:, None]).solution
    prediction = (window_features(test) @ weights).flatten()
    truth = test.diff.double()
    pcc = float(np.corrcoef(prediction.numpy(), truth.numpy())[0, 1])
    r2 = float(1 - ((prediction - truth) ** 2).mean() / truth.var())
    return pcc, r2


def test_planted_signal_is_found_by_least_squares(synthetic_pair):
    pair = synthetic_pair
    pcc, r2 = least_squares_test_fit(pair.train, pair.test, pair.train.diff)
    assert pcc > 0.5 and r2 > 0.25


def test_shuffled_labels_or_misaligned_genes_carry_no_signal(synthetic_pair):
    """R^2, not PCC: a fit to noise has tiny weights whose direction may still correlate with diff."""
    pair = synthetic_pair
    generator = torch.Generator().manual_seed(0)
    shuffled = pair.train.diff[torch.randperm(len(pair.train), generator=generator)]
    assert least_squares_test_fit(pair.train, pair.test, shuffled)[1] < 0.05
    # cell B's marks of another gene: the differential signal is gone
    misaligned = {
        name: SplitData.from_arrays(s.gene_ids, s.x_a, s.x_b.roll(1, 0), s.expr_a, s.expr_b, 1.0, 1.0)
        for name, s in (("train", pair.train), ("test", pair.test))
    }
    pcc, r2 = least_squares_test_fit(misaligned["train"], misaligned["test"], misaligned["train"].diff)
    assert r2 < 0.05 and abs(pcc) < 0.2


def test_ensure_synthetic_pair_writes_once_and_completes_a_partial_folder(tmp_path):
    from deepdiff.synthetic import ensure_synthetic_pair

    out = tmp_path / "pairs" / "p1"
    assert ensure_synthetic_pair(out, cell_a="E123", cell_b="E003", genes=30, seed=2)
    before = (out / "E003.test.csv").read_bytes()
    assert not ensure_synthetic_pair(out, cell_a="E123", cell_b="E003", genes=30, seed=2)  # complete: untouched
    (out / "E123.expr.csv").unlink()
    assert ensure_synthetic_pair(out, cell_a="E123", cell_b="E003", genes=30, seed=2)
    assert (out / "E123.expr.csv").is_file() and (out / "E003.test.csv").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["p1"]  # no temporary folder left
