"""The report's page: ``index.html`` rendered from ``templates/index.html.j2`` (Jinja2, autoescaped), and
``table3.md``.

Every value on the page (experiment, grid-cell, pair and cell-type names come from MLflow, possibly a
shared server) reaches it through Jinja2's autoescape; the template holds all markup and wording, this
module only turns DataFrames into rows of text (`table`: floats to `digits` places, missing values "-";
`pm`: a mean +- its sd over seeds) and hands the template the sentences of `deepdiff_study.report.words`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd

from deepdiff_study.report.importance import MIN_TRIALS
from deepdiff_study.report.names import (
    BEST_SIMPLE,
    FEATURE_LABELS,
    MODEL_LABELS,
    REFERENCE_BASELINE,
    baseline_label,
    choice_label,
    text,
    variant_label,
)
from deepdiff_study.report.stats import has_seeds
from deepdiff_study.report.words import axis_sentences, baseline_sentences, replicate_sentence

if TYPE_CHECKING:
    from deepdiff_study.report.attention import AttentionPart
    from deepdiff_study.report.load import Study

TEMPLATE = "index.html.j2"  # in templates/ beside this module (package data of the wheel)
ATTENTION_FIGURES = ("attention_bins.png", "attention_marks.png")  # shown in this order, each after its sentence


@dataclass(frozen=True)
class Table:
    """A table as the page shows it: column names and rows of text."""

    columns: list[str]
    rows: list[list[str]]


def cell_text(value: Any, digits: int) -> str:
    """A table cell: a float to `digits` places, a missing value (None, NaN) as "-", anything else as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(df: pd.DataFrame, digits: int = 3) -> Table:
    """`df` as a `Table` (numpy scalars as Python's)."""
    rows = [[cell_text(v.item() if hasattr(v, "item") else v, digits) for v in row] for row in df.itertuples(index=False)]
    return Table([str(c) for c in df.columns], rows)


def markdown_table(df: pd.DataFrame, digits: int = 1) -> str:
    """`df` as a Markdown table (``table3.md``)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell_text(v.item() if hasattr(v, "item") else v, digits) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def pm(mean: float, sd: float, digits: int = 3) -> str:
    """``0.612 +- 0.031`` (the sd over seeds), ``0.612`` without one, "-" without a value."""
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" \u00b1 {sd:.{digits}f}" if math.isfinite(sd) else "")


def table3_shown(t3: pd.DataFrame) -> Table:
    """Table 3 as the page shows it: a variant's label, per pair the relative PCC (with seeds: +- its sd), mean, median."""
    pairs = [c for c in t3.columns if c.startswith("pair ") and not c.endswith(" sd")]
    rows = [[variant_label(r["variant"]), *[pm(r[c], r.get(f"{c} sd", math.nan), 1) for c in pairs],
             cell_text(r["mean"], 1), cell_text(r["median"], 1)] for _, r in t3.iterrows()]
    return Table(["variant", *pairs, "mean", "median"], rows)


def against_shown(against: pd.DataFrame, baselines: pd.DataFrame, pairs: list[int]) -> Table:
    """The first table: test PCC per variant (its best grid cell by valid PCC) and pair, +- sd over seeds,
    then the two-layer SVR's and the best simple model's rows; a mean over pairs when there are several."""
    columns = ["", *[f"pair {p}" for p in pairs], *(["mean over pairs"] if len(pairs) > 1 else [])]
    rows = []
    for variant in dict.fromkeys(against["variant"]):
        mine = against[against["variant"] == variant].set_index("pair")
        values = [pm(mine.loc[p, "test_pcc"], mine.loc[p, "test_sd"]) if p in mine.index else "-" for p in pairs]
        mean = [cell_text(float(mine["test_pcc"].mean()), 3)] if len(pairs) > 1 else []
        rows.append([variant_label(variant), *values, *mean])
    for name in (REFERENCE_BASELINE, BEST_SIMPLE):
        mine = baselines[baselines["baseline"] == name].set_index("pair")
        if mine.empty:
            continue
        values = [cell_text(float(mine.loc[p, "test_pcc"]), 3) if p in mine.index else "-" for p in pairs]
        mean = [cell_text(float(mine["test_pcc"].mean()), 3)] if len(pairs) > 1 else []
        rows.append([baseline_label(name), *values, *mean])
    return Table(columns, rows)


def baselines_shown(baselines: pd.DataFrame) -> Table:
    """Every baseline's scores and what it chose, by pair."""
    rows = []
    for r in baselines.sort_values("pair", kind="stable").itertuples():
        inputs = (f"{r.input_transform} {FEATURE_LABELS.get(r.features, r.features)}" if text(r.features)
                  else f"{r.input_transform or '-'} (the paper's features)")
        chosen = " ".join(filter(None, [MODEL_LABELS.get(r.model, r.model) if text(r.model) and r.baseline == BEST_SIMPLE
                                        else "", text(r.choice) or ""]))
        rows.append([str(r.pair), baseline_label(r.baseline), cell_text(r.test_pcc, 3), cell_text(r.valid_pcc, 3),
                     inputs, chosen or "-"])
    return Table(["pair", "baseline", "test PCC", "valid PCC", "inputs", "chosen on valid genes"], rows)


def simple_name(baselines: pd.DataFrame) -> str:
    """How the sentences name the best simple model: with its choice when the study has one pair."""
    mine = baselines[baselines["baseline"] == BEST_SIMPLE]
    if len(mine) == 1:
        r = mine.iloc[0]
        return f"the best simple model ({choice_label(r['model'], r['input_transform'], r['features'], r['choice'])})"
    return "the best simple model (chosen per pair on the valid genes)"


@dataclass(frozen=True)
class Tables:
    """What the page shows, computed from the study (`deepdiff_study.report.write.compute`)."""

    table3: pd.DataFrame  # stats.table3
    against: pd.DataFrame  # stats.against_baselines
    axes: pd.DataFrame  # stats.axes_table
    importance: pd.DataFrame  # importance.importance_table's rows
    importance_notes: list[str]  # and its notes (the first: why grid cells are left out)
    cost: pd.DataFrame  # stats.cost_table
    trial_hours: float  # the study's trial-hours in all
    replicates: tuple[pd.DataFrame, pd.DataFrame] | None = None  # seeds.replicate_table, replicate_tests


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the page: templates/ of this package, autoescaped, undefined names an error."""
    return jinja2.Environment(loader=jinja2.PackageLoader("deepdiff_study.report"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(study: Study, tables: Tables, notes: list[str], *, attention: AttentionPart | None = None,
           generated: str | None = None) -> str:
    """The page's HTML (see `write_html`)."""
    baselines = study.baselines
    cells = study.cells
    seeded = has_seeds(cells)
    figures = []
    if attention is not None and not attention.note:
        figures = [{"file": name, "alt": name[:-4].replace("_", " "), "sentence": attention.sentences[name]}
                   for name in ATTENTION_FIGURES]
    reps = None
    if tables.replicates is not None and not tables.replicates[0].empty:
        runs, tests = tables.replicates
        reps = {"seeds": int(runs["n"].max()), "table": table(runs.drop(columns=["aux_mode", "margin"])),
                "tests": table(tests), "sentence": replicate_sentence(tests)}
    pairs = [int(p) for p in study.pairs["pair"]]
    return environment().get_template(TEMPLATE).render(
        study=study, n_cells=len(cells), n_trials=len(study.trials),
        generated=generated or time.strftime("%Y-%m-%d %H:%M"),
        synthetic=bool(study.pairs["imitates"].notna().any()),
        pairs=[(int(p.pair), p.label) for p in study.pairs.itertuples()],
        seeds=int(cells["seeds"].max()) if seeded else 0,
        unreplicated=int((cells["seeds"] <= 1).sum()) if seeded else 0,
        against=against_shown(tables.against, baselines, pairs),
        against_sentences=baseline_sentences(tables.against, simple_name(baselines)),
        table3=table3_shown(tables.table3),
        baselines=None if baselines.empty else baselines_shown(baselines),
        axes=axis_sentences(tables.axes), replicates=reps,
        importance=not tables.importance.empty, importance_notes=tables.importance_notes,
        importance_min=MIN_TRIALS,
        attention_note=None if figures else (attention.note if attention else "Attention maps were not computed."),
        attention_figures=figures, cost=table(tables.cost), trial_hours=tables.trial_hours, notes=notes,
    )


def write_html(study: Study, out: Path, tables: Tables, notes: list[str], *,
               attention: AttentionPart | None = None) -> Path:
    """Write ``index.html`` into `out`: every figure and table inline, for a reader without code."""
    path = out / "index.html"
    path.write_text(render(study, tables, notes, attention=attention))
    return path
