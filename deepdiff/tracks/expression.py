"""An expression table -> gene id and value: `read_expression` (a plain two-column CSV/TSV with a header,
featureCounts output, RSEM ``genes.results``; gzipped or not).

The format is recognised from the header line (`TABLE_FORMATS`, first match wins); the value column is
the format's default unless one is named (``column``), and the column used is reported:

    format          recognised by                                 gene id     value (default)
    rsem            gene_id, expected_count and TPM columns       gene_id     TPM
    featurecounts   Geneid Chr Start End Strand Length ...        Geneid      the counts column after
                                                                              Length (one sample; name it
                                                                              when the file has several)
    plain           exactly two columns                           the first   the second
    (other)         any header, with a column named               the first   the column named

Lines starting with ``#`` before the header are skipped (featureCounts writes one), the delimiter is a tab
if the header has one, else a comma. Gene ids lose their version suffix as in the annotation
(`deepdiff.tracks.annotation.gene_key`; ``_PAR_Y`` rows are dropped and counted). Every value must be a
finite number >= 0 and every id occur once; else a one-line `DataError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepdiff.errors import DataError, path_problem
from deepdiff.tracks.annotation import gene_key, open_text

_FEATURECOUNTS_HEAD = ["Geneid", "Chr", "Start", "End", "Strand", "Length"]


@dataclass(frozen=True)
class TableFormat:
    name: str  # recorded in the build's manifest
    recognise: Callable[[list[str]], bool]  # header fields -> whether a table of this format
    id_column: Callable[[list[str]], str]  # header fields -> the gene id column
    value_column: Callable[[list[str]], str | None]  # header fields -> the default value column (None: ask)


TABLE_FORMATS = (
    TableFormat("rsem", lambda h: {"gene_id", "expected_count", "TPM"} <= set(h),
                lambda h: "gene_id", lambda h: "TPM"),
    TableFormat("featurecounts", lambda h: h[:6] == _FEATURECOUNTS_HEAD and len(h) > 6,
                lambda h: "Geneid", lambda h: h[6] if len(h) == 7 else None),
    TableFormat("plain", lambda h: len(h) == 2, lambda h: h[0], lambda h: h[1]),
    TableFormat("other", lambda h: len(h) > 2, lambda h: h[0], lambda h: None),
)


@dataclass(frozen=True)
class ExpressionTable:
    path: Path  # the file read
    format: str  # a TableFormat name
    column: str  # the value column used
    ids: np.ndarray  # (G,) str: gene ids without version suffix, each once
    values: np.ndarray  # (G,) float64: expression, finite and >= 0
    par_y: int  # rows dropped as GENCODE _PAR_Y copies

    def describe(self) -> str:
        return f"{self.path} ({self.format}, column {self.column}, {len(self.ids)} genes)"


def read_expression(path: str | Path, column: str | None = None) -> ExpressionTable:
    """The table at `path`, its value column `column` (default: the format's, see the module docstring)."""
    path = Path(path)
    problem = path_problem(path, "expression table")
    if problem is not None:
        raise DataError(f"{path}: {problem}; expected an expression table (gene id and value, with a header)")
    try:
        with open_text(path) as fh:
            lines = fh.read().splitlines()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read as text ({type(err).__name__}: {err}); expected an expression "
                        "table (CSV/TSV with a header, featureCounts or RSEM genes.results)") from None
    start = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), None)
    if start is None:
        raise DataError(f"{path}: no header line; expected an expression table (gene id and value, with a header)")
    delimiter = "\t" if "\t" in lines[start] else ","
    rows = csv.reader(lines[start:], delimiter=delimiter)
    header = [name.strip() for name in next(rows)]
    fmt = next((f for f in TABLE_FORMATS if f.recognise(header)), None)
    if fmt is None:
        raise DataError(f"{path} line {start + 1}: header {delimiter.join(header)!r} has one column; expected a gene "
                        "id column and a value column (CSV or TSV with a header)")
    if len(header) == 2 and _is_number(header[1]):
        raise DataError(f"{path} line {start + 1}: looks like data ({delimiter.join(header)!r}); expected a header "
                        "line naming the gene id and value columns first")
    chosen = column if column is not None else fmt.value_column(header)
    if chosen is None:
        raise DataError(f"{path} line {start + 1}: {len(header) - 1} value columns ({', '.join(header[1:][:8])}); "
                        "name the one to use (expression column)")
    if chosen not in header:
        raise DataError(f"{path} line {start + 1}: no column {chosen!r}; expected one of {', '.join(header)}")
    id_at, value_at = header.index(fmt.id_column(header)), header.index(chosen)
    ids, values, lines_of, par_y = [], [], [], 0
    for offset, row in enumerate(rows, start + 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {offset}: expected {len(header)} fields ({', '.join(header[:8])}), "
                            f"found {len(row)}")
        key = gene_key(row[id_at].strip())
        if key is None:
            par_y += 1
            continue
        text = row[value_at].strip()
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{path} line {offset} column {chosen}: expected a number >= 0, got {text[:40]!r}")
        ids.append(key)
        values.append(value)
        lines_of.append(offset)
    if not ids:
        raise DataError(f"{path}: no data rows after the header; expected one row per gene")
    seen: dict[str, int] = {}
    for key, line in zip(ids, lines_of):
        if key in seen:
            raise DataError(f"{path} lines {seen[key]} and {line}: gene {key} twice (ids are compared without "
                            "version suffix); expected each gene once")
        seen[key] = line
    return ExpressionTable(path, fmt.name, chosen, np.array(ids, dtype=object), np.array(values), par_y)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
