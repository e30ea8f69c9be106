"""What the page says about the numbers (`deepdiff_study.report.words`), on hand-made frames: one sentence
per axis whose wording follows whether the intervals cross 0, the baseline sentences with and without
seeds, and one sentence for every paired test over seeds."""

import math

import numpy as np
import pandas as pd

from report_frames import baseline, cell, replicate, study
from deepdiff_study.report import seeds, stats, words


def _axes(diffs_by_variant):
    """axes_table rows of the variant axis from differences given per variant (the comparisons' data)."""
    rows = [stats.axis_row("variant", f"{name} vs Raw:d", np.array(diffs), []) for name, diffs in diffs_by_variant]
    return pd.DataFrame(rows, columns=stats.AXES_COLUMNS)


def test_one_sentence_per_axis_that_names_only_intervals_excluding_zero():
    axes = _axes([("Raw:c", [0.10, 0.12, 0.11]), ("Raw", [-0.2, 0.1, 0.05]), ("Aux", [-0.1, -0.12, -0.09])])
    raw_c, aux = axes.iloc[0], axes.iloc[2]
    assert raw_c["ci_low"] > 0 and axes.iloc[1]["ci_low"] < 0 < axes.iloc[1]["ci_high"] and aux["ci_high"] < 0
    [sentence] = words.axis_sentences(axes)
    assert sentence == (
        "Variants against Raw:d: 1 of 3 intervals include 0 (n=3 grid cells each), so those cannot be told apart; "
        f"higher: Raw:c +0.110 (95% interval {raw_c['ci_low']:+.3f} to {raw_c['ci_high']:+.3f}); "
        f"lower: Aux -0.103 (95% interval {aux['ci_low']:+.3f} to {aux['ci_high']:+.3f}).")
    crossing = _axes([("Raw:c", [-0.1, 0.1, 0.02]), ("Raw", [-0.2, 0.1, 0.05])])
    assert words.axis_sentences(crossing) == [
        "Variants against Raw:d: 2 of 2 intervals include 0 (n=3 grid cells each), so those cannot be told apart."]
    assert "higher" not in words.axis_sentences(crossing)[0] and "most" not in words.axis_sentences(crossing)[0]


def test_without_intervals_the_axis_sentence_says_the_study_cannot_tell():
    axes = _axes([("Raw:c", [0.05]), ("Raw", [-0.02]), ("Aux", [0.01])])
    assert words.axis_sentences(axes) == [
        "Variants against Raw:d: 3 comparisons of one grid cell each (n=1), so no interval: the study cannot tell "
        "them apart (single differences from -0.020, Raw, to +0.050, Raw:c)."]
    one = pd.DataFrame([stats.axis_row("aux_mode", "Classification vs regression", np.array([0.1, -0.1]), [])],
                       columns=stats.AXES_COLUMNS)
    assert words.axis_sentences(one) == list(one["sentence"])  # an axis of one comparison: its own sentence


def test_axes_sentences_over_seeds_of_one_pair_say_so():
    d, a = cell(1, "raw_d", valid=0.5, test=0.4), cell(1, "aux", "regression", valid=0.6, test=0.5)
    r = cell(1, "raw", valid=0.6, test=0.5)
    reps = [replicate(c["grid_cell"], seed, pcc, c["run_id"]) for c, pccs in ((d, (0.40, 0.42)), (a, (0.55, 0.50)),
                                                                             (r, (0.30, 0.50))) for seed, pcc in zip((1, 2), pccs)]
    s = seeds.with_seeds(study([d, a, r], replicates=reps))
    [sentence] = words.axis_sentences(stats.axes_table(s))
    assert sentence.startswith("Variants against Raw:d: ") and "(n=2 seeds each)" in sentence


def _against(sides, seeds_=1):
    rows = [{"pair": 1, "variant": v, "test_pcc": 0.5, "seeds": seeds_, "svr2_side": "", "svr2_pcc": math.nan,
             "simple_side": side, "simple_pcc": 0.6} for v, side in sides]
    return pd.DataFrame(rows)


def test_the_simple_model_sentence_wins_loses_or_cannot_tell():
    name = "the best simple model (ridge)"
    below = words.baseline_sentence(_against([("raw_d", "below"), ("aux", "below")], 3), "simple", name)
    assert below == ("The best simple model (ridge) scores above every DeepDiff variant on the one pair in every seed: "
                     "Raw:d (0.500 vs 0.600), Aux (0.500 vs 0.600). On this study, a simple model wins.")
    mixed = words.baseline_sentence(_against([("raw_d", "below"), ("aux", "above"), ("raw", "both sides")], 2),
                                    "simple", name)
    assert mixed == ("The best simple model (ridge) scores above 1 of the 3 variant-pair comparisons in every seed "
                     "(Raw:d (0.500 vs 0.600)): there a simple model wins; 1 is above it in every seed (Aux (0.500 vs "
                     "0.600)); 1 has seeds on both sides of it (Raw (0.500 vs 0.600)): too close to call.")
    above = words.baseline_sentence(_against([("raw_d", "above")]), "simple", name)
    assert above.startswith("Every DeepDiff variant scores above the best simple model (ridge) on the one pair: ")
    assert above.endswith("Single runs: differences this small can be seed noise (see the note at the top).")
    single = words.baseline_sentence(_against([("raw_d", "below"), ("aux", "equal")]), "simple", name)
    assert single == ("The best simple model (ridge) scores above 1 of the 2 variant-pair comparisons (Raw:d (0.500 vs "
                      "0.600)): there a simple model wins; 1 has the same test PCC (Aux (0.500 vs 0.600)): too close to "
                      "call. Single runs: differences this small can be seed noise (see the note at the top).")
    assert words.baseline_sentence(_against([("raw_d", "")]), "simple", name) is None


def test_baseline_sentences_from_a_study():
    s = seeds.with_seeds(study([cell(1, "raw_d", valid=0.5, test=0.6)],
                               [baseline(1, "svr2", 0.58), baseline(1, "best_simple", 0.68)]))
    svr2, simple = words.baseline_sentences(stats.against_baselines(s), "the best simple model")
    assert svr2.startswith("Every DeepDiff variant scores above the two-layer SVR (the paper's baseline) on the one pair")
    assert simple.startswith("The best simple model scores above every DeepDiff variant on the one pair: Raw:d (0.600 vs 0.680).")
    missing = words.baseline_sentences(stats.against_baselines(seeds.with_seeds(study([cell(1, "raw_d", valid=0.5, test=0.6)],
                                                                                       [baseline(1, "svr2", 0.58)]))), "x")
    assert missing[-1].startswith("No best simple model is recorded")


def test_every_paired_test_is_one_sentence():
    tests = pd.DataFrame([seeds.replicate_test_row(f"V{i}", "Raw:d", "seeds of pair 1", np.array([0.1, 0.2]))
                          for i in range(13)])
    assert words.replicate_sentence(tests) == (
        "Paired Wilcoxon signed-rank tests of each variant against Raw:d and against the two-layer SVR (13 tests, over "
        "seeds of pair 1, n=2): with so few, no p-value can fall below 0.5, so none of them can show a difference at "
        "the 5% level; the means and sds are the information there is (p-values in replicate_tests.csv).")
    big = pd.DataFrame([seeds.replicate_test_row("Aux", "Raw:d", "pairs (means over seeds)", np.arange(1, 8) / 10),
                        seeds.replicate_test_row("Raw", "Raw:d", "pairs (means over seeds)", np.array([-1, 2, -3, 4, -5, 6, -7]) / 10)])
    assert words.replicate_sentence(big) == (
        "Paired Wilcoxon signed-rank tests of each variant against Raw:d and against the two-layer SVR (2 tests, over "
        "pairs (means over seeds), n=7): 1 below 0.05, uncorrected for the 2 tests: Aux vs Raw:d (mean difference "
        f"+0.400, p={big['wilcoxon_p'].iloc[0]:.3g}) (all p-values in replicate_tests.csv).")
    assert words.replicate_sentence(big.iloc[0:0]) == "No variant has replicates of both sides of a comparison: no paired test."
