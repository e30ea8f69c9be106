"""The report's page: ``index.html`` rendered from ``templates/index.html.j2`` (Jinja2, autoescaped), and
``table3.md``.

Every value on the page (experiment, grid-cell, pair and cell-type names come from MLflow, possibly a
shared server) reaches it through Jinja2's autoescape; the template holds all markup and wording, this
module only turns DataFrames into rows of text (`table`: floats to `digits` places, missing values "-").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd

from deepdiff_study.report.names import variant_label

if TYPE_CHECKING:
    from deepdiff_study.report.attention import AttentionPart
    from deepdiff_study.report.load import Study

TEMPLATE = "index.html.j2"  # in templates/ beside this module (package data of the wheel)
ATTENTION_FIGURES = ("attention_bins.png", "attention_marks.png")  # shown in this order, each after its sentence
TOP_IMPORTANCES = 3  # hyperparameters shown per grid cell (all of them in importance.csv)


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


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the page: templates/ of this package, autoescaped, undefined names an error."""
    return jinja2.Environment(loader=jinja2.PackageLoader("deepdiff_study.report"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(study: Study, t3: pd.DataFrame, axes: pd.DataFrame, importance: pd.DataFrame, cost: pd.DataFrame,
           notes: list[str], *, attention: AttentionPart | None = None,
           replicates: tuple[pd.DataFrame, pd.DataFrame] | None = None, generated: str | None = None) -> str:
    """The page's HTML (see `write_html`)."""
    baselines = study.baselines
    top = (importance.sort_values(["grid_cell", "importance"], ascending=[True, False]).groupby("grid_cell")
           .head(TOP_IMPORTANCES) if not importance.empty else importance)
    figures = []
    if attention is not None and not attention.note:
        figures = [{"file": name, "alt": name[:-4].replace("_", " "), "sentence": attention.sentences[name]}
                   for name in ATTENTION_FIGURES]
    reps = None
    if replicates is not None and not replicates[0].empty:
        runs, tests = replicates
        reps = {"seeds": int(runs["n"].max()), "table": table(runs.drop(columns=["aux_mode", "margin"])),
                "tests": table(tests.drop(columns=["sentence"])), "sentences": list(tests["sentence"])}
    return environment().get_template(TEMPLATE).render(
        study=study, n_cells=len(study.cells), n_trials=len(study.trials),
        generated=generated or time.strftime("%Y-%m-%d %H:%M"),
        synthetic=bool(study.pairs["imitates"].notna().any()),
        pairs=[(int(p.pair), p.label) for p in study.pairs.itertuples()],
        table3=table(t3.assign(variant=[variant_label(v) for v in t3["variant"]]), 1),
        baselines=None if baselines.empty else table(
            baselines[["pair", "baseline", "test_pcc", "valid_pcc", "input_transform"]].sort_values("pair", kind="stable")),
        axes=list(axes["sentence"]), importance=None if top.empty else table(top), replicates=reps,
        attention_note=None if figures else (attention.note if attention else "Attention maps were not computed."),
        attention_figures=figures, cost=table(cost), notes=notes,
    )


def write_html(study: Study, out: Path, t3: pd.DataFrame, axes: pd.DataFrame, importance: pd.DataFrame,
               cost: pd.DataFrame, notes: list[str], *, attention: AttentionPart | None = None,
               replicates: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Path:
    """Write ``index.html`` into `out`: every figure and table inline, for a reader without code."""
    path = out / "index.html"
    path.write_text(render(study, t3, axes, importance, cost, notes, attention=attention, replicates=replicates))
    return path
