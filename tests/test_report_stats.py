"""The report's statistics on hand-made DataFrames: Table 3, each variant against both baselines, the axes,
cost, and the means over seeds and replicate tables, each against a hand computation (no MLflow, no files)."""

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from report_frames import baseline, cell, replicate, study, trial
from deepdiff.variants import VARIANTS, VariantSpec
from deepdiff_study.report import seeds, stats


def _two_pairs():
    cells = []
    for pair, shift in ((1, 0.0), (2, 0.1)):
        cells += [cell(pair, "raw_d", valid=0.5, test=0.40 + shift),
                  cell(pair, "aux", "regression", valid=0.6, test=0.50 + shift),   # best aux grid cell by valid PCC
                  cell(pair, "aux", "classification", valid=0.4, test=0.70 + shift)]  # best test, but not chosen
    return study(cells, [baseline(1, "svr2", 0.25), baseline(2, "svr2", -0.5), baseline(1, "linear", 0.9)])


def test_table3_is_relative_to_each_pairs_two_layer_svr():
    t3 = stats.table3(_two_pairs()).set_index("variant")
    assert list(t3.index) == ["raw_d", "aux"] and list(t3.columns) == ["pair 1", "pair 2", "mean", "median"]
    assert t3.loc["aux", "pair 1"] == pytest.approx(100 * (0.50 - 0.25) / 0.25)
    assert t3.loc["aux", "pair 2"] == pytest.approx(100 * (0.60 + 0.5) / 0.5)
    assert t3.loc["aux", "mean"] == pytest.approx((100.0 + 220.0) / 2)
    assert t3.loc["raw_d", "median"] == pytest.approx((60.0 + 200.0) / 2)


def test_axes_over_several_pairs():
    axes = stats.axes_table(_two_pairs()).set_index("comparison")
    assert list(axes.index) == ["Aux vs Raw:d", "Classification vs regression"]
    assert axes.loc["Aux vs Raw:d", "n"] == 2 and axes.loc["Aux vs Raw:d", "mean_diff"] == pytest.approx(0.10)
    assert axes.loc["Classification vs regression", "mean_diff"] == pytest.approx(0.20)
    assert axes.loc["Classification vs regression", "matched_on"] == "pair 1 aux; pair 2 aux"


def test_the_margin_axis_is_against_the_published_margin_and_matches_aux_mode():
    cells = [cell(1, "aux_siamese", mode, m, valid=0.5, test=t) for mode, m, t in
             (("regression", 1.0, 0.30), ("regression", 2.0, 0.35), ("regression", 4.0, 0.45),
              ("classification", 1.0, 0.20), ("classification", 2.0, 0.10))]
    axes = stats.axes_table(study(cells)).set_index("comparison")
    assert list(axes.index) == ["Classification vs regression", "Margin 1 vs 2", "Margin 4 vs 2"]
    assert axes.loc["Margin 1 vs 2", "mean_diff"] == pytest.approx(((0.30 - 0.35) + (0.20 - 0.10)) / 2)
    assert axes.loc["Margin 1 vs 2", "matched_on"] == "pair 1 aux_siamese regression; pair 1 aux_siamese classification"
    assert axes.loc["Margin 4 vs 2", "n"] == 1 and "interval undefined" in axes.loc["Margin 4 vs 2", "sentence"]
    assert axes.loc["Classification vs regression", "matched_on"] == "pair 1 aux_siamese m1; pair 1 aux_siamese m2"


def test_axis_statistics_small_and_large_n():
    assert all(math.isnan(x) for x in stats.bootstrap_interval(np.array([0.1])))
    diffs = np.array([0.1, 0.2, 0.15, 0.12, 0.3, 0.22])
    row = stats.axis_row("aux_mode", "Classification vs regression", diffs, [])
    assert row["ci_low"] > 0 and row["wilcoxon_p"] == pytest.approx(wilcoxon(diffs).pvalue) and row["wilcoxon_p"] < 0.05
    rng = np.random.default_rng(0)
    means = rng.choice(diffs, size=(2000, 6), replace=True).mean(axis=1)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert row["sentence"].startswith("Classification vs regression: +0.182 test PCC (95% interval +")
    assert row["sentence"].endswith(f"n=6): Classification higher (the interval excludes 0) (Wilcoxon p={row['wilcoxon_p']:.3g}).")
    assert stats.axis_row("a", "X vs Y", np.array([]), [])["sentence"] == "X vs Y: no matching grid cells to compare."
    assert stats.wilcoxon_p(np.zeros(6)) == "all differences zero" and stats.wilcoxon_p(diffs[:4]) == "n too small"
    assert stats.relative_percent(0.5, -0.25) == pytest.approx(300.0)
    assert math.isnan(stats.relative_percent(0.5, 0.0)) and math.isnan(stats.relative_percent(math.nan, 0.3))


def test_an_eighth_variant_is_one_row_of_the_table(monkeypatch):
    """A variant added to deepdiff.variants appears under its label, in the table's order, with no edit here."""
    monkeypatch.setitem(VARIANTS, "raw_c_aux", VariantSpec("raw_c_aux", ("A", "B"), True, False, True, False, "Raw:c+Aux"))
    s = study([cell(1, "raw_d", valid=0.5, test=0.4), cell(1, "raw_c_aux", "regression", valid=0.5, test=0.6)],
              [baseline(1, "svr2", 0.5)])
    assert list(stats.table3(s)["variant"]) == ["raw_d", "raw_c_aux"]
    assert list(stats.axes_table(s)["comparison"]) == ["Raw:c+Aux vs Raw:d"]


def test_cost_is_trial_hours_and_what_the_search_took_to_reach_its_best():
    key = "p1-raw_d"
    s = study([cell(1, "raw_d", valid=0.6, test=0.4), cell(1, "raw_c", valid=0.5, test=math.nan)], trials=[
        trial(key, "a", valid=0.5, seconds=1800.0, start=1), trial(key, "c", "failed", seconds=0.0, start=3),
        trial(key, "b", "pruned", valid=0.6, seconds=900.0, start=2, warm="p1-raw/t7"),  # reached the best 2nd
        trial(key, "d", valid=0.6, seconds=3600.0, start=4),  # reached it again, later
        trial("p1-raw_c", "e", "failed", seconds=0.0)])
    cost = stats.cost_table(s).set_index("grid_cell")
    assert "pcc_per_trial_hour" not in cost.columns
    assert cost.loc[key, ["trials", "pruned", "failed", "warm_starts"]].tolist() == [4, 1, 1, 1]
    assert cost.loc[key, "trial_hours"] == pytest.approx(1.75) and cost.loc[key, "best_test_pcc"] == 0.4
    assert cost.loc[key, "trials_to_best"] == 2 and cost.loc[key, "hours_to_best"] == pytest.approx(0.75)
    assert cost.loc[key, "best_from"] == "p1-raw/t7"
    assert math.isnan(cost.loc["p1-raw_c", "trials_to_best"]) and cost.loc["p1-raw_c", "best_from"] == ""
    assert stats.study_trial_hours(s) == pytest.approx(1.75)


def test_each_variant_against_both_baselines_single_runs():
    s = seeds.with_seeds(study(
        [cell(1, "raw_d", valid=0.5, test=0.60), cell(1, "aux", "regression", valid=0.6, test=0.70)],
        [baseline(1, "svr2", 0.58), baseline(1, "best_simple", 0.68, model="ridge")]))
    rows = stats.against_baselines(s).set_index("variant")
    assert list(rows.index) == ["raw_d", "aux"] and set(rows["seeds"]) == {1}
    assert rows.loc["raw_d", "vs_svr2"] == pytest.approx(0.02) and rows.loc["raw_d", "svr2_side"] == "above"
    assert rows.loc["raw_d", "vs_simple"] == pytest.approx(-0.08) and rows.loc["raw_d", "simple_side"] == "below"
    assert rows.loc["aux", "simple_side"] == "above"
    bare = stats.against_baselines(seeds.with_seeds(study([cell(1, "raw_d", valid=0.5, test=0.6)])))
    assert bare["simple_side"].tolist() == [""] and math.isnan(bare["simple_pcc"].iloc[0])


def _replicated(pairs):
    cells, reps = [], []
    for pair in pairs:
        d, a = cell(pair, "raw_d", valid=0.5, test=0.4), cell(pair, "aux", "regression", valid=0.6, test=0.5)
        cells += [d, a]
        for seed, (pd_, pa) in zip((1, 2, 3), ((0.40, 0.55), (0.42, 0.50), (0.38, 0.61))):
            reps += [replicate(d["grid_cell"], seed, pd_ + pair / 100, d["run_id"]),
                     replicate(a["grid_cell"], seed, pa + pair / 100, a["run_id"])]
        reps += [replicate(d["grid_cell"], 4, 0.9, "an older best trial"),  # not of the current best trial
                 replicate(d["grid_cell"], 5, 0.9, d["run_id"], status="failed")]
    return study(cells, [baseline(p, "svr2", 0.3) for p in pairs] + [baseline(p, "best_simple", 0.55) for p in pairs],
                 replicates=reps)


def test_with_seeds_every_test_pcc_is_the_mean_over_the_fresh_seeds():
    s = seeds.with_seeds(_replicated([1]))
    assert seeds.with_seeds(s) is s  # applied twice, the same
    cells = s.cells.set_index("grid_cell")
    aux = [0.56, 0.51, 0.62]
    assert cells.loc["p1-aux-regression", "best_test_pcc"] == pytest.approx(np.mean(aux))
    assert cells.loc["p1-aux-regression", "search_test_pcc"] == 0.5  # the search's run is kept aside, not a seed
    assert cells.loc["p1-aux-regression", "test_sd"] == pytest.approx(np.std(aux, ddof=1))
    assert (cells.loc["p1-aux-regression", "test_min"], cells.loc["p1-aux-regression", "test_max"]) == (0.51, 0.62)
    assert cells.loc["p1-aux-regression", "seeds"] == 3 and cells.loc["p1-raw_d", "seed_test_pccs"] == {
        1: pytest.approx(0.41), 2: pytest.approx(0.43), 3: pytest.approx(0.39)}
    assert cells.loc["p1-aux-regression", "best_valid_pcc"] == 0.6  # selection stays on the search's valid PCC
    assert stats.has_seeds(s.cells) and not stats.has_seeds(seeds.with_seeds(study([cell(1, "raw_d", valid=0.5)])).cells)


def test_table3_and_the_comparisons_use_the_mean_over_seeds_and_its_spread():
    s = seeds.with_seeds(_replicated([1]))
    t3 = stats.table3(s).set_index("variant")
    assert list(t3.columns) == ["pair 1", "pair 1 sd", "mean", "median"]
    aux = np.array([0.56, 0.51, 0.62])
    assert t3.loc["aux", "pair 1"] == pytest.approx(100 * (aux.mean() - 0.3) / 0.3)
    assert t3.loc["aux", "pair 1 sd"] == pytest.approx(100 * aux.std(ddof=1) / 0.3)
    rows = stats.against_baselines(s).set_index("variant")
    assert rows.loc["aux", "test_pcc"] == pytest.approx(aux.mean()) and rows.loc["aux", "seeds"] == 3
    assert rows.loc["aux", "simple_side"] == "both sides"  # seeds 0.51 .. 0.62 around the simple model's 0.55
    assert rows.loc["raw_d", "simple_side"] == "below" and rows.loc["aux", "svr2_side"] == "above"


def test_one_matched_grid_cell_with_seeds_is_compared_over_its_seeds():
    s = seeds.with_seeds(_replicated([1]))
    row = stats.axes_table(s).set_index("comparison").loc["Aux vs Raw:d"]
    diffs = np.array([0.55 - 0.40, 0.50 - 0.42, 0.61 - 0.38])
    assert (row["n"], row["over"]) == (3, "seeds of pair 1") and row["mean_diff"] == pytest.approx(diffs.mean())
    assert row["ci_low"] > 0 and "n=3 seeds of pair 1" in row["sentence"]
    single = stats.axes_table(_replicated([1])).set_index("comparison").loc["Aux vs Raw:d"]  # without with_seeds
    assert (single["n"], single["over"]) == (1, "grid cells")


def test_replicate_table_is_mean_and_sample_sd_over_the_best_trials_seeds():
    s = _replicated([1])
    runs = seeds.replicate_runs(s)
    assert sorted(set(runs["seed"])) == [1, 2, 3]
    table = seeds.replicate_table(s, runs).set_index("grid_cell")
    aux = [0.56, 0.51, 0.62]
    assert table.loc["p1-aux-regression", "seeds"] == "1 2 3" and table.loc["p1-aux-regression", "n"] == 3
    assert table.loc["p1-aux-regression", "mean_test_pcc"] == pytest.approx(np.mean(aux))
    assert table.loc["p1-aux-regression", "sd_test_pcc"] == pytest.approx(np.std(aux, ddof=1))
    assert table.loc["p1-aux-regression", "study_test_pcc"] == 0.5
    assert seeds.replicate_table(seeds.with_seeds(s), runs).equals(table.reset_index())  # the search's run either way


def test_replicate_tests_over_the_seeds_of_one_pair():
    s = _replicated([1])
    tests = seeds.replicate_tests(s, seeds.replicate_runs(s)).set_index(["comparison", "against"])
    assert list(tests.index) == [("Raw:d", "SVR (two layers)"), ("Aux", "Raw:d"), ("Aux", "SVR (two layers)")]
    diffs = np.array([0.55 - 0.40, 0.50 - 0.42, 0.61 - 0.38])
    row = tests.loc[("Aux", "Raw:d")]
    assert (row["over"], row["n"]) == ("seeds of pair 1", 3) and row["mean_diff"] == pytest.approx(diffs.mean())
    assert row["wilcoxon_p"] == pytest.approx(wilcoxon(diffs).pvalue) == 0.25
    assert row["smallest_possible_p"] == 0.25
    assert tests.loc[("Aux", "SVR (two layers)"), "mean_diff"] == pytest.approx(np.mean([0.56, 0.51, 0.62]) - 0.3)


def test_replicate_tests_over_pairs_use_each_pairs_mean():
    s = _replicated([1, 2])
    tests = seeds.replicate_tests(s, seeds.replicate_runs(s)).set_index(["comparison", "against"])
    row = tests.loc[("Aux", "Raw:d")]
    assert (row["over"], row["n"]) == ("pairs (means over seeds)", 2)
    assert row["mean_diff"] == pytest.approx(np.mean([0.55, 0.50, 0.61]) - np.mean([0.40, 0.42, 0.38]))
    assert seeds.smallest_wilcoxon_p(2) == 0.5 and seeds.smallest_wilcoxon_p(6) == 2 / 64
