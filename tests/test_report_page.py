"""The report's page on hand-made frames: every value is escaped (names come from MLflow), tables are
formatted as before, each section says what it has, and every link names a file the report writes."""

import math
import re

import markupsafe
import pandas as pd
import pytest

from report_frames import baseline, cell, replicate, study
from deepdiff_study.report import ATTENTION_FILES, REPLICATE_FILES, REPORT_FILES, stats
from deepdiff_study.report.attention import AttentionPart
from deepdiff_study.report.page import cell_text, markdown_table, render, table, write_html

EVIL = "<script>alert(\"x\")</script>'"


def _page(s, **kwargs):
    importance = pd.DataFrame([{"grid_cell": g, "param": p, "importance": v, "trials": 2} for g, p, v in kwargs.pop(
        "importance", [])], columns=["grid_cell", "param", "importance", "trials"])
    return render(s, stats.table3(s), stats.axes_table(s), importance, stats.cost_table(s), kwargs.pop("notes", []),
                  generated="2026-01-01 00:00", **kwargs)


def test_every_name_from_mlflow_is_escaped():
    evil_cell = cell(1, "raw_d", valid=0.5, test=0.4, grid_cell=f"p1-{EVIL}", pair_name=f"E1{EVIL}-E2",
                     cell_type_a=f"K562{EVIL}", cell_type_b="H1")
    s = study([evil_cell, cell(1, "aux", "regression", valid=0.6, test=0.5)], [baseline(1, "svr2", 0.3)],
              experiment=f"study{EVIL}")
    runs = stats.replicate_runs(s)
    html = _page(s, importance=[(f"p1-{EVIL}", "lr", 1.0)], notes=[f"a note about {EVIL}"],
                 attention=AttentionPart(note=f"No attention maps for grid cell p1-{EVIL}: it failed"))
    assert "<script" not in html and "alert(\"x\")" not in html
    escaped = str(markupsafe.escape(EVIL))
    assert escaped == "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39;"
    for shown in (f"study{escaped}", f"<td>p1-{escaped}</td>", f"E1{escaped} K562{escaped} vs E2 H1",
                  f"a note about {escaped}", f"grid cell p1-{escaped}: it failed",
                  f"--replicates K --experiment study{escaped}</code>"):
        assert shown in html, shown
    assert runs.empty


def test_replicates_attention_and_notes_each_say_what_there_is(tmp_path):
    d, a = cell(1, "raw_d", valid=0.5, test=0.4), cell(1, "aux", "regression", valid=0.6, test=0.5)
    reps = [replicate(c["grid_cell"], seed, 0.4 + seed / 10, c["run_id"]) for c in (d, a) for seed in (1, 2)]
    s = study([d, a], [baseline(1, "svr2", 0.3)], replicates=reps)
    runs = stats.replicate_runs(s)
    tests = stats.replicate_tests(s, runs)
    attention = AttentionPart(files=list(ATTENTION_FILES), sentences={
        "attention_bins.png": "Where it looks.", "attention_marks.png": "Which mark it weighs."})
    path = write_html(s, tmp_path, stats.table3(s), stats.axes_table(s), pd.DataFrame(columns=["grid_cell", "param",
                      "importance", "trials"]), stats.cost_table(s), [], attention=attention,
                      replicates=(stats.replicate_table(s, runs), tests))
    html = path.read_text()
    assert path == tmp_path / "index.html"
    assert "up to 2 other random seeds" in html and "No replicates recorded" not in html
    for sentence in tests["sentence"]:
        assert f"<li>{markupsafe.escape(sentence)}</li>" in html
    assert html.index("Where it looks.") < html.index("<img src='attention_bins.png' alt='attention bins'>") < html.index(
        "Which mark it weighs.") < html.index("<img src='attention_marks.png' alt='attention marks'>")
    assert "No grid cell had enough varied trials." in html and "<h2>Notes</h2>" not in html
    links = set(re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html))
    assert links <= {*REPORT_FILES, *ATTENTION_FILES, *REPLICATE_FILES} and {*REPLICATE_FILES, *ATTENTION_FILES[:2]} <= links
    bare = _page(study([d]))
    assert "No replicates recorded" in bare and "Attention maps were not computed." in bare
    assert "No axis has two settings in this study." in bare and "replicates.csv" not in bare


def test_the_data_section_says_synthetic_and_names_the_stand_in():
    s = study([cell(1, "raw_d", valid=0.5, test=0.4, pair_name="syn1A-syn1B", imitates="E123-E003",
                    cell_type_a="K562", cell_type_b="H1")])
    html = _page(s)
    assert "<b>Synthetic data.</b>" in html
    assert "<tr><td>1</td><td>syn1A-syn1B (synthetic, standing in for E123 K562 vs E003 H1)</td></tr>" in html
    real = _page(study([cell(1, "raw_d", valid=0.5, test=0.4)]))  # no cell-type names recorded: the ids
    assert "Real REMC data" in real and "<td>E1A vs E1B</td>" in real


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
    assert ("The baselines' own scores" in html) == (missing != "baselines")
    assert ("No grid cell had enough varied trials." in html) == (missing == "importance")
