"""Tests of deepdiff.synthetic: on-disk format, determinism, and that the planted signal is there."""

from __future__ import annotations


import re

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


# ---------------------------------------------------------------------------------------------------
# The default ("realistic") generator imitates the real sample pair (Cell1 = E123, Cell2 = E003)

CALIBRATION_SEED = 0


@pytest.fixture(scope="module")
def calibrated_pair(tmp_path_factory):
    """A default synthetic pair with the real sample's 200 training genes; valid 200, test 1000 genes
    (a larger test split only makes its PCC less noisy)."""
    out = tmp_path_factory.mktemp("calibrated")
    write_synthetic_pair(out, genes=1400, seed=CALIBRATION_SEED, split_fractions=(1 / 7, 1 / 7))
    return load_pair(out, "Cell1", "Cell2")


def _all_genes(pair, field):
    return torch.cat([getattr(pair.split(name), field) for name in SPLITS]).double().numpy()


def test_calibrated_pair_has_the_real_samples_training_size(calibrated_pair, sample_pair):
    assert [len(calibrated_pair.split(s)) for s in SPLITS] == [200, 200, 1000]
    assert len(calibrated_pair.train) == len(sample_pair.train)


STATISTICS = {
    "mean": np.mean,
    "share of zeros": lambda v: np.mean(v == 0),
    "99th percentile": lambda v: np.quantile(v, 0.99),
}


@pytest.mark.parametrize("statistic", list(STATISTICS))
@pytest.mark.parametrize("cell", ["x_a", "x_b"])
def test_per_mark_count_statistics_are_within_a_factor_1_5_of_the_real_sample(calibrated_pair, sample_pair, cell,
                                                                              statistic):
    real, synthetic = _all_genes(sample_pair, cell), _all_genes(calibrated_pair, cell)
    for j, mark in enumerate(MARKS):
        want, got = STATISTICS[statistic](real[:, j]), STATISTICS[statistic](synthetic[:, j])
        assert want / 1.5 <= got <= want * 1.5, f"{cell} {mark} {statistic}: real {want:.3g}, synthetic {got:.3g}"


def test_signal_is_concentrated_around_the_tss_as_on_the_real_sample(calibrated_pair, sample_pair):
    """H3K4me3 peaks at the TSS bins (100/101), H3K36me3 dips there, in both cells."""
    tss, flank = slice(N_BINS // 2 - 10, N_BINS // 2 + 10), np.r_[0:40, N_BINS - 40:N_BINS]
    for pair in (sample_pair, calibrated_pair):
        for cell in ("x_a", "x_b"):
            profile = _all_genes(pair, cell).mean(0)  # (M, T)
            ratio = profile[:, tss].mean(1) / profile[:, flank].mean(1)
            assert ratio[MARKS.index("H3K4me3")] > 5 and ratio[MARKS.index("H3K36me3")] < 0.9
            assert abs(int(np.argmax(profile[MARKS.index("H3K4me3")])) - N_BINS // 2) <= 5


def test_differential_target_is_distributed_as_on_the_real_sample(calibrated_pair, sample_pair):
    real, synthetic = _all_genes(sample_pair, "diff"), _all_genes(calibrated_pair, "diff")
    assert abs(np.mean(np.abs(synthetic) >= 2) - np.mean(np.abs(real) >= 2)) < 0.1
    assert real.std() / 1.25 < synthetic.std() < real.std() * 1.25
    assert abs(np.median(synthetic) - np.median(real)) < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("input_transform", ["raw", "log1p"])
@pytest.mark.parametrize("baseline", ["linear", "svr"])
def test_baselines_score_within_0_1_pcc_of_the_real_sample(calibrated_pair, sample_pair, baseline, input_transform):
    """Mean of valid and test PCC, same baseline settings (200 training genes on both)."""
    from deepdiff.baselines import run_baseline

    real = run_baseline(baseline, sample_pair, input_transform=input_transform)
    synthetic = run_baseline(baseline, calibrated_pair, input_transform=input_transform)
    real_pcc, synthetic_pcc = (real.valid_pcc + real.test_pcc) / 2, (synthetic.valid_pcc + synthetic.test_pcc) / 2
    assert abs(synthetic_pcc - real_pcc) < 0.1, (real, synthetic)


def test_easy_signal_is_kept_and_much_easier(tmp_path, calibrated_pair):
    from deepdiff.baselines import run_baseline

    write_synthetic_pair(tmp_path, genes=1400, seed=CALIBRATION_SEED, split_fractions=(1 / 7, 1 / 7), signal="easy")
    easy = run_baseline("linear", load_pair(tmp_path, "Cell1", "Cell2"), input_transform="log1p")
    realistic = run_baseline("linear", calibrated_pair, input_transform="log1p")
    assert easy.test_pcc > 0.85 and easy.test_pcc > realistic.test_pcc + 0.15


def test_synthetic_json_records_the_arguments_and_what_it_imitates(tmp_path):
    import json

    files = write_synthetic_pair(tmp_path / "p", genes=12, seed=4, imitates="E123-E003")
    assert set(files) == {f"{cell}.{kind}" for cell in ("Cell1", "Cell2") for kind in KINDS}  # no real names
    record = json.loads((tmp_path / "p" / "synthetic.json").read_text())
    assert record["signal"] == "realistic" and record["imitates"] == "E123-E003"
    assert record["calibrated_on"] == "E123-E003" and (record["genes"], record["seed"]) == (12, 4)
    assert (record["cell_a"], record["cell_b"]) == ("Cell1", "Cell2")
    write_synthetic_pair(tmp_path / "q", genes=12, signal="easy")
    record = json.loads((tmp_path / "q" / "synthetic.json").read_text())
    assert record["signal"] == "easy" and record["imitates"] is None and record["calibrated_on"] is None


@pytest.mark.parametrize("kwargs, message", [
    ({"signal": "hard"}, "signal='hard'"),
    ({"split_fractions": (0.7, 0.3)}, "split_fractions"),
])
def test_bad_generator_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write_synthetic_pair(tmp_path, genes=12, **kwargs)


def test_synth_command_takes_signal_split_fractions_and_imitates(tmp_path, capsys):
    import json

    from deepdiff.cli import main

    assert main(["synth", str(tmp_path / "p"), "--genes", "30", "--signal", "easy", "--split-fractions", "0.5", "0.25",
                 "--imitates", "E123-E003"]) == 0
    record = json.loads((tmp_path / "p" / "synthetic.json").read_text())
    assert (record["signal"], record["split_fractions"], record["imitates"]) == ("easy", [0.5, 0.25], "E123-E003")
    assert len(load_pair(tmp_path / "p", "Cell1", "Cell2").train) == 15
    assert main(["synth", str(tmp_path / "q"), "--genes", "30", "--split-fractions", "0.9", "0.2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: synth: split_fractions=")
