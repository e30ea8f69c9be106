"""The report's page on hand-made frames: every value is escaped (names come from MLflow), tables are
formatted as before, each section says what it has, every link names a file the report writes, and the
top of the page says whether its numbers are single runs or means over seeds."""

import dataclasses
import math
import re

import markupsafe
import numpy as np
import pandas as pd
import pytest

from report_frames import baseline, cell, replicate, study
from deepdiff_study.report import ATTENTION_FILES, IMPORTANCE_FIGURE, REPLICATE_FILES, REPORT_FILES, seeds
from deepdiff_study.report.attention import AttentionPart
from deepdiff_study.report.page import cell_text, markdown_table, pm, render, table, write_html
from deepdiff_study.report.write import compute

EVIL = "<script>alert(\"x\")</script>'"


def _tables(s, importance=(), importance_notes=None):
    tables = compute(s)
    rows = pd.DataFrame([{"grid_cell": g, "param": p, "importance": v, "trials": 12} for g, p, v in importance],
                        columns=["grid_cell", "param", "importance", "trials"])
    return dataclasses.replace(tables, importance=rows, importance_notes=importance_notes or [])


def _page(s, **kwargs):
    s = seeds.with_seeds(s)
    tables = _tables(s, kwargs.pop("importance", []), kwargs.pop("importance_notes", None))
    return render(s, tables, kwargs.pop("notes", []), generated="2026-01-01 00:00", **kwargs)


def test_every_name_from_mlflow_is_escaped():
    evil_cell = cell(1, "raw_d", valid=0.5, test=0.4, grid_cell=f"p1-{EVIL}", pair_name=f"E1{EVIL}-E2",
                     cell_type_a=f"K562{EVIL}", cell_type_b="H1")
    s = study([evil_cell, cell(1, "aux", "regression", valid=0.6, test=0.5)],
              [baseline(1, "svr2", 0.3), baseline(1, "best_simple", 0.45, model="ridge", input_transform="log1p",
                                                  features="regions", choice=f"alpha={EVIL}")],
              experiment=f"study{EVIL}")
    html = _page(s, importance=[(f"p1-{EVIL}", "lr", 1.0)], notes=[f"a note about {EVIL}"],
                 importance_notes=[f"importance of {EVIL}"],
                 attention=AttentionPart(note=f"No attention maps for grid cell p1-{EVIL}: it failed"))
    assert "<script" not in html and "alert(\"x\")" not in html
    escaped = str(markupsafe.escape(EVIL))
    assert escaped == "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;"
    for shown in (f"study{escaped}", f"<td>p1-{escaped}</td>", f"E1{escaped} K562{escaped} vs E2 H1",
                  f"a note about {escaped}", f"grid cell p1-{escaped}: it failed", f"importance of {escaped}",
                  f"--replicates K --experiment study{escaped}</code>", f"(alpha={escaped})"):
        assert shown in html, shown


def _two_variants(with_replicates):
    d, a = cell(1, "raw_d", valid=0.5, test=0.4), cell(1, "aux", "regression", valid=0.6, test=0.5)
    reps = [replicate(c["grid_cell"], seed, 0.4 + seed / 10 + (c is a) / 100, c["run_id"]) for c in (d, a)
            for seed in (1, 2)] if with_replicates else []
    return study([d, a], [baseline(1, "svr2", 0.3), baseline(1, "best_simple", 0.65, model="ridge",
                                                             input_transform="log1p", features="regions",
                                                             choice="alpha=100")], replicates=reps)


def test_the_top_says_single_runs_or_means_over_seeds_next_to_the_first_table():
    single = _page(_two_variants(False))
    first_table = single.index("<table")
    warning = single.index("<b>Single runs.</b>")
    assert warning < first_table and single.index("<h2>") > warning  # above the first heading and table
    assert "--replicates K --experiment e</code>" in single[warning:first_table]
    assert "Means over seeds" not in single and "\u00b1" not in single
    assert "<tr><td>Aux</td><td>0.500</td></tr>" in single and "<tr><td>best simple model</td><td>0.650</td></tr>" in single
    seeded = _page(_two_variants(True))
    top = seeded.index("<b>Means over seeds.</b>")
    assert top < seeded.index("<table") and "Single runs" not in seeded
    assert "mean over 2 fresh training runs (seeds)" in seeded
    # the first table and Table 3: mean +- sd over the seeds (aux: 0.51, 0.61)
    assert f"<tr><td>Aux</td><td>{pm(0.56, np.std([0.51, 0.61], ddof=1))}</td></tr>" in seeded
    sd3 = 100 * np.std([0.51, 0.61], ddof=1) / 0.3
    assert f"<td>{100 * (0.56 - 0.3) / 0.3:.1f} \u00b1 {sd3:.1f}</td>" in seeded


def test_the_sentences_under_the_first_table_follow_the_seeds():
    single = _page(_two_variants(False))
    assert ("The best simple model (ridge regression on log1p region sums (alpha=100)) scores above every DeepDiff "
            "variant on the one pair: Raw:d (0.400 vs 0.650), Aux (0.500 vs 0.650). On this study, a simple model wins. "
            "Single runs: differences this small can be seed noise (see the note at the top).") in single
    seeded = _page(_two_variants(True))  # raw_d seeds 0.5, 0.6; aux 0.51, 0.61: every seed below 0.65
    assert "scores above every DeepDiff variant on the one pair in every seed" in seeded
    assert "Single runs: differences" not in seeded


def test_replicates_attention_and_notes_each_say_what_there_is(tmp_path):
    s = seeds.with_seeds(_two_variants(True))
    attention = AttentionPart(files=list(ATTENTION_FILES), sentences={
        "attention_bins.png": "Where it looks.", "attention_marks.png": "Which mark it weighs."})
    tables = _tables(s)
    path = write_html(s, tmp_path, tables, [], attention=attention)
    html = path.read_text()
    assert path == tmp_path / "index.html"
    assert "up to 2 other random seeds" in html and "No replicates recorded" not in html
    # the paired tests are one sentence, not one per test
    assert html.count("Paired Wilcoxon signed-rank tests") == 1 and "no p-value can fall below 0.5" in html
    assert html.index("Where it looks.") < html.index("<img src='attention_bins.png' alt='attention bins'>") < html.index(
        "Which mark it weighs.") < html.index("<img src='attention_marks.png' alt='attention marks'>")
    assert "No grid cell had enough varied trials." in html and "<h2>Notes</h2>" not in html
    links = set(re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html))
    assert links <= {*REPORT_FILES, *ATTENTION_FILES, *REPLICATE_FILES, IMPORTANCE_FIGURE}
    assert {*REPLICATE_FILES, *ATTENTION_FILES[:2]} <= links
    bare = _page(study([cell(1, "raw_d", valid=0.5, test=0.4)]))
    assert "No replicates recorded" in bare and "Attention maps were not computed." in bare
    assert "No axis has two settings in this study." in bare and "replicates.csv" not in bare
    assert "No best simple model is recorded" in bare


def test_the_data_section_says_synthetic_and_names_the_stand_in():
    s = study([cell(1, "raw_d", valid=0.5, test=0.4, pair_name="syn1A-syn1B", imitates="E123-E003",
                    cell_type_a="K562", cell_type_b="H1")])
    html = _page(s)
    assert "<b>Synthetic data.</b>" in html
    assert "<tr><td>1</td><td>syn1A-syn1B (synthetic, standing in for E123 K562 vs E003 H1)</td></tr>" in html
    real = _page(study([cell(1, "raw_d", valid=0.5, test=0.4)]))  # no cell-type names recorded: the ids
    assert "Real data (not synthetic)" in real and "<td>E1A vs E1B</td>" in real


def test_tables_are_formatted_as_the_csvs_numbers_rounded():
    df = pd.DataFrame({"variant": ["Raw:d", "Aux"], "n": [1, 2], "x": [0.12345, math.nan], "p": [0.5, "n too small"],
                       "m": [None, 2.0]})
    t = table(df, 2)
    assert t.columns == ["variant", "n", "x", "p", "m"]
    assert t.rows == [["Raw:d", "1", "0.12", "0.50", "-"], ["Aux", "2", "-", "n too small", "2.00"]]
    assert markdown_table(df) == ("| variant | n | x | p | m |\n|---|---|---|---|---|\n"
                                  "| Raw:d | 1 | 0.1 | 0.5 | - |\n| Aux | 2 | - | n too small | 2.0 |\n")
    assert [cell_text(v, 3) for v in (None, math.nan, 1.0, 3, "a")] == ["-", "-", "1.000", "3", "a"]


@pytest.mark.parametrize("missing", ["baselines", "importance"])
def test_an_empty_part_is_a_sentence_not_an_empty_table(missing):
    s = study([cell(1, "raw_d", valid=0.5, test=0.4)], [] if missing == "baselines" else [baseline(1, "svr2", 0.3)])
    html = _page(s, importance=[] if missing == "importance" else [("p1-raw_d", "lr", 1.0)])
    assert ("<h2>The baselines</h2>" in html) == (missing != "baselines")
    assert ("No grid cell had enough varied trials." in html) == (missing == "importance")
    assert (f"<img src='{IMPORTANCE_FIGURE}'" in html) == (missing != "importance")
    omitted = _page(s, importance_notes=["Hyperparameter importance omitted for 1 of 1 grid cell(s): few."])
    assert "<p>Hyperparameter importance omitted for 1 of 1 grid cell(s): few.</p>" in omitted
    assert "No grid cell had enough varied trials." not in omitted and f"<img src='{IMPORTANCE_FIGURE}'" not in omitted
