"""What the page may say about the report's numbers: sentences from the tables of `stats` and `seeds`.

Statements follow the data: a difference is called a win only when its interval (or, for one grid cell
against a baseline, every seed) lies on one side; otherwise the sentence says the study cannot tell. One
sentence per question, not one per pair of grid cells:

- `baseline_sentences`: each variant against the two-layer SVR and against the best simple model, saying
  so plainly when a simple model is above the variants;
- `axis_sentences`: one per axis of the grid (variant, aux mode, margin), from `stats.axes_table`;
- `replicate_sentence`: what the paired tests over seeds can and cannot show, from `seeds.replicate_tests`.
"""

from __future__ import annotations

import math

import pandas as pd

from deepdiff_study.report.names import variant_label
from deepdiff_study.report.stats import fmt

SHOWN = 4  # comparisons named in one sentence, then "and N more"
AXIS_TITLES = {"variant": "Variants against {ref}", "margin": "Margins against {ref}"}  # axes of several comparisons


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def baseline_sentence(against: pd.DataFrame, which: str, name: str) -> str | None:
    """The sentence about one baseline (`which`: "svr2" or "simple", the columns of `stats.against_baselines`)
    named `name` in the sentence; None when no pair has it recorded."""
    rows = against[against[f"{which}_side"] != ""]
    if rows.empty:
        return None
    seeded = bool((rows["seeds"] > 1).any())
    every = " in every seed" if seeded else ""
    below = rows[rows[f"{which}_side"] == "below"]
    above = rows[rows[f"{which}_side"] == "above"]
    unclear = rows[~rows[f"{which}_side"].isin(["below", "above"])]
    pairs = rows["pair"].nunique()
    where = "on the one pair" if pairs == 1 else f"on all {pairs} pairs"

    def listed(frame: pd.DataFrame) -> str:
        return _names([f"{variant_label(r.variant)}{'' if pairs == 1 else f' on pair {r.pair}'} "
                       f"({r.test_pcc:.3f} vs {getattr(r, f'{which}_pcc'):.3f})" for r in frame.itertuples()])

    if len(below) == len(rows):
        sentence = (f"{name[0].upper() + name[1:]} scores above every DeepDiff variant {where}{every}: "
                    f"{listed(below)}. On this study, a simple model wins.")
    elif len(above) == len(rows):
        sentence = f"Every DeepDiff variant scores above {name} {where}{every}: {listed(above)}."
    else:
        parts = []
        if len(below):
            parts.append(f"{name} scores above {len(below)} of the {len(rows)} variant-pair comparisons{every} "
                         f"({listed(below)}): there a simple model wins")
        if len(above):
            parts.append(f"{len(above)} {'is' if len(above) == 1 else 'are'} above it{every} ({listed(above)})")
        if len(unclear):
            how = "seeds on both sides of it" if seeded else "the same test PCC"
            parts.append(f"{len(unclear)} {'has' if len(unclear) == 1 else 'have'} {how} ({listed(unclear)}): "
                         "too close to call")
        sentence = "; ".join(parts) + "."
        sentence = sentence[0].upper() + sentence[1:]
    if not seeded:
        sentence += " Single runs: differences this small can be seed noise (see the note at the top)."
    return sentence


def baseline_sentences(against: pd.DataFrame, simple_name: str) -> list[str]:
    """The sentences of the first table: each variant against the two-layer SVR, then against the best
    simple model (`simple_name`: how the page names it), or why that comparison is missing."""
    sentences = [s for s in (baseline_sentence(against, "svr2", "the two-layer SVR (the paper's baseline)"),
                             baseline_sentence(against, "simple", simple_name)) if s]
    if not (against["simple_side"] != "").any():
        sentences.append("No best simple model is recorded (a study from before they were, or one interrupted "
                         "before its end, when they are fitted): the comparison with a well-fed simple model is "
                         "missing; `deepdiff baselines --data DIR --pair A B` fits them for a pair.")
    return sentences


def _reference(comparison: str) -> str:
    return comparison.split(" vs ", 1)[1] if " vs " in comparison else ""


def _subject(comparison: str) -> str:
    return comparison.split(" vs ", 1)[0]


def _n_text(rows: pd.DataFrame) -> str:
    """"n=2 seeds of pair 1 each", "n=3 grid cells each", "n=1 to 3"."""
    ns = sorted({int(n) for n in rows["n"]})
    overs = sorted(set(rows["over"]))
    unit = "seeds" if all(o.startswith("seeds") for o in overs) else "grid cells" if overs == ["grid cells"] else ""
    count = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]} to {ns[-1]}"
    return f"{count} {unit} each".replace("  ", " ").strip() if unit else count


def axis_sentence(rows: pd.DataFrame) -> str:
    """One sentence for one axis of `stats.axes_table` (its rows): which comparisons' 95% intervals exclude
    0 (higher / lower) and how many include it; without intervals (n < 2), that the study cannot tell."""
    if len(rows) == 1:
        return rows["sentence"].iloc[0]
    first = rows.iloc[0]
    title = AXIS_TITLES.get(first["axis"], "{ref}").format(ref=_reference(first["comparison"]))
    scored = rows[rows["n"] >= 2]
    if scored.empty:
        finite = rows[rows["n"] == 1].sort_values("mean_diff")
        if finite.empty:
            return f"{title}: no matching grid cells to compare."
        low, high = finite.iloc[0], finite.iloc[-1]
        return (f"{title}: {len(rows)} comparisons of one grid cell each (n=1), so no interval: the study cannot "
                f"tell them apart (single differences from {fmt(low['mean_diff'])}, {_subject(low['comparison'])}, "
                f"to {fmt(high['mean_diff'])}, {_subject(high['comparison'])}).")
    higher = scored[scored["ci_low"] > 0]
    lower = scored[scored["ci_high"] < 0]
    unclear = len(scored) - len(higher) - len(lower)

    def listed(frame: pd.DataFrame) -> str:
        return _names([f"{_subject(r.comparison)} {fmt(r.mean_diff)} (95% interval {fmt(r.ci_low)} to {fmt(r.ci_high)})"
                       for r in frame.itertuples()])

    parts = [f"{unclear} of {len(scored)} intervals include 0 ({_n_text(scored)}), so those cannot be told apart"
             if unclear else f"no interval of the {len(scored)} includes 0 ({_n_text(scored)})"]
    if len(higher):
        parts.append(f"higher: {listed(higher)}")
    if len(lower):
        parts.append(f"lower: {listed(lower)}")
    if len(scored) < len(rows):
        parts.append(f"{len(rows) - len(scored)} more with n < 2 (no interval)")
    return f"{title}: " + "; ".join(parts) + "."


def axis_sentences(axes: pd.DataFrame) -> list[str]:
    """One sentence per axis of `stats.axes_table`, in its order."""
    return [axis_sentence(rows) for _, rows in axes.groupby("axis", sort=False)]


def replicate_sentence(tests: pd.DataFrame) -> str:
    """One sentence for every paired test of `seeds.replicate_tests`: how many there are, over what, and what
    their n allows (with n <= 5 no two-sided p can fall below 0.05: 2 / 2**n)."""
    run = tests[tests["n"] > 0]
    if run.empty:
        return "No variant has replicates of both sides of a comparison: no paired test."
    overs = sorted(set(run["over"]))
    ns = sorted({int(n) for n in run["n"]})
    head = (f"Paired Wilcoxon signed-rank tests of each variant against Raw:d and against the two-layer SVR "
            f"({len(run)} tests, over {' / '.join(overs)}, n={'/'.join(str(n) for n in ns)})")
    floor = float(run["smallest_possible_p"].min())
    if floor >= 0.05:
        return (f"{head}: with so few, no p-value can fall below {floor:.3g}, so none of them can show a difference "
                "at the 5% level; the means and sds are the information there is (p-values in replicate_tests.csv).")
    ps = [(r, r.wilcoxon_p) for r in run.itertuples() if isinstance(r.wilcoxon_p, float) and math.isfinite(r.wilcoxon_p)]
    low = [f"{r.comparison} vs {r.against} (mean difference {fmt(r.mean_diff)}, p={p:.3g})" for r, p in ps if p < 0.05]
    if not low:
        return f"{head}: none below 0.05 (p-values in replicate_tests.csv)."
    return (f"{head}: {len(low)} below 0.05, uncorrected for the {len(run)} tests: {_names(low)} "
            "(all p-values in replicate_tests.csv).")
