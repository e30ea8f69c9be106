"""Reading and diagnosing DeepDiffChrome's CSV files, one file at a time (no alignment, no targets).

On disk (per cell type ``CELL``, all in one directory; `pair_files` names the eight files of a pair):

- ``CELL.{train,valid,test}.csv``: no header, one row per bin,
  ``ENSGID_SYMBOL_BIN,H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3`` (raw read counts), ``BIN`` = 1..T in
  order, T consecutive rows per gene. Gene id = text before the first ``_``, bin = text after the last.
  An optional first line ``<name>,H3K4me1,...,H3K36me3`` is skipped.
- ``CELL.expr.csv``: no header, ``ENSGID,expression`` for every gene of the cell.

`_read_raw` reads a file's bytes; `_parse_split_file` and `_parse_expr_file` validate and parse them
(pyarrow + numpy on the fast path). Gene ids are compared in Unicode NFC (`_nfc_ids`): the same-looking
id composed in one file (``é``) and decomposed in another (``e`` + U+0301) is one gene; a file whose ids
changed says so (`_SplitFile.nfc_note`). Every problem is a `DataError` with a one-line message naming the
file, the 1-based line (as in a text editor), the field and what was expected (`_fail`); the offending
row is located only when parsing fails. Names with a leading underscore are private to `deepdiff.data`.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from deepdiff.errors import ConfigError, DataError, path_problem

MARKS = ("H3K4me1", "H3K4me3", "H3K9me3", "H3K27me3", "H3K36me3")
N_BINS = 200
SPLITS = ("train", "valid", "test")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger counts or expression values become inf in the tensors

_ID_FIELD = "gene_bin id"
_EXPR_FIELD = "expression"
_HM_FIELDS = (_ID_FIELD, *MARKS)
_EXPR_FIELDS = ("gene id", _EXPR_FIELD)
FILE_KINDS = (*SPLITS, "expr")  # the four files of a cell: CELL.KIND.csv
_GENE_BIN_RE = r"^(?P<gene>[^_]+)_(?:.*_)?(?P<bin>[0-9]{1,9})$"
_NUMBER = r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # a non-negative decimal
_NUMBER_RE = re.compile(_NUMBER)
_CELL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_cell_name(name: str, flag: str) -> None:
    """A cell type names its files (``NAME.train.csv`` ...): a plain file-name prefix, never a path."""
    if not _CELL_NAME.fullmatch(name):
        raise ConfigError(f"{flag} {name!r}: expected a cell type name (letters, digits, '_', '-', '.'; "
                          "not starting with '.' or '-'), the prefix of its files CELL.train.csv ...")


def pair_files(data_dir: str | Path, cell_a: str, cell_b: str) -> dict[tuple[str, str], Path]:
    """The eight input files of a pair, keyed by (cell, kind): ``data_dir/CELL.KIND.csv``."""
    return {(cell, kind): Path(data_dir) / f"{cell}.{kind}.csv" for cell in (cell_a, cell_b) for kind in FILE_KINDS}


def _pair_paths(data_dir: Path, cell_a: str, cell_b: str) -> dict[tuple[str, str], Path]:
    """The eight input paths keyed by (cell, kind); a missing one is a `DataError` naming what is expected."""
    expected = f"expected CELL.{{{','.join(FILE_KINDS)}}}.csv for cells {cell_a} and {cell_b}"
    problem = path_problem(data_dir, "directory")
    if problem is not None:
        _fail(data_dir, f"{problem}; {expected} in it")
    paths = pair_files(data_dir, cell_a, cell_b)
    for path in paths.values():
        if not path.is_file():
            _fail(path, f"{path_problem(path, 'file')}; {expected} in {data_dir}")
    return paths


def _read_raw(path: Path) -> "_RawFile":
    try:
        data = path.read_bytes()
    except OSError as err:
        _fail(path, f"cannot be read ({err.strerror}); expected a readable CSV file")
    if not data.strip():
        _fail(path, f"file is empty; expected {_expected_rows(path)}")
    return _RawFile(str(path), data)


def _expected_rows(path: Path | str) -> str:
    if str(path).endswith(".expr.csv"):
        return "one row per gene: gene id, expression"
    return f"one row per bin: {', '.join(_HM_FIELDS)}"



# ---------------------------------------------------------------------------------------------------
# Error formatting and line numbers (error path only)


def _fail(
    path: str | Path, message: str, *, line: int | tuple[int, int] | None = None, field: str | None = None
) -> NoReturn:
    """Raise the one-line `DataError` ``PATH line L field F: message`` (``lines L1 and L2`` for a pair)."""
    where = str(path)
    if isinstance(line, tuple):
        where += f" lines {line[0]} and {line[1]}"
    elif line is not None:
        where += f" line {line}"
    where += f" field {field}" if field else ""
    raise DataError(f"{where}: {message}")


def _show_id(gene: str) -> str:
    """A gene id for a message; one with characters beyond printable ASCII also as escapes, so two ids that
    look the same on a terminal (a Cyrillic 'А', a zero-width space) show how they differ."""
    return gene if gene.isascii() and gene.isprintable() else f"{gene} ({ascii(gene)})"


def _show(text: str, limit: int = 60) -> str:
    """`text` quoted for a one-line message, shortened if long."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return repr(text)


class _RawFile:
    """One input file's bytes; its rows are the non-empty lines after the optional HM header line.

    Line bookkeeping (row -> 1-based line number, the text of a line) is computed lazily, on error only.
    """

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        self.header = False
        self.body = data  # the bytes after the header line, if any
        self._lines: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def skip_header(self, header_fields: Sequence[str]) -> None:
        """Skip the first non-empty line if it is a non-numeric name followed by `header_fields`."""
        start = len(self.data) - len(self.data.lstrip(b"\r\n"))
        end = self.data.find(b"\n", start)
        end = len(self.data) if end < 0 else end + 1
        fields = self.data[start:end].decode("utf-8", "replace").strip().split(",")
        names = [field.strip() for field in fields[1:]]
        if names == list(header_fields) and not _is_count(fields[0].strip()):
            self.header, self.body = True, self.data[end:]

    def _line_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(1-based numbers of the non-empty lines, start and end offsets of every line)."""
        if self._lines is None:
            buf = np.frombuffer(self.data or b"\n", np.uint8)
            newlines = np.flatnonzero(buf == ord("\n"))
            starts = np.concatenate([[0], newlines + 1])
            ends = np.concatenate([newlines, [len(buf)]])
            ends -= (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))  # CRLF: "\r" is not text
            self._lines = (np.flatnonzero(ends > starts) + 1, starts, ends)
        return self._lines

    def line_of(self, row: int) -> int:
        """The 1-based line number of data row `row` (blank lines and the header are not rows)."""
        return int(self._line_index()[0][row + int(self.header)])

    def fields_of(self, row: int) -> list[str]:
        """The CSV fields of data row `row`."""
        _, starts, ends = self._line_index()
        line = self.line_of(row) - 1
        return next(csv.reader([self.data[starts[line] : ends[line]].decode("utf-8", "replace")]), [])


def _is_count(text: str) -> bool:
    """Whether `text` is a finite non-negative decimal number (the slow-path twin of `_check_values`)."""
    return bool(_NUMBER_RE.fullmatch(text))


# ---------------------------------------------------------------------------------------------------
# Parsing one file (fast path: pyarrow + numpy; the first offending row is located only on failure)


def _read_table(raw: _RawFile, fields: Sequence[str], what: str) -> pa.Table:
    """Parse `raw.body` as CSV: column 0 a string, the others float64 (nulls where empty).

    `fields` names the expected columns (for messages); `what` is the expected value, e.g. "a
    non-negative count". A row with the wrong field count or an unparsable number is a `DataError`.
    """
    names = [f"c{i}" for i in range(len(fields))]
    types = {name: (pa.string() if i == 0 else pa.float64()) for i, name in enumerate(names)}
    try:
        return pa_csv.read_csv(
            _arrow_owned(raw.body),
            read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 24),
            convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=False),
        )
    except pa.ArrowInvalid as err:
        _diagnose(raw, fields, what)
        _fail(raw.path, f"could not be parsed as CSV ({str(err).splitlines()[0]}); expected {_expected_rows(raw.path)}")


def _arrow_owned(data: bytes) -> pa.Buffer:
    """A copy of `data` in memory that Arrow owns, for Arrow's reader threads.

    A buffer wrapping Python `bytes` (`pa.py_buffer`) must take the GIL to be released; Arrow's I/O
    threads may release it just after `read_csv` returns, and when the process is already exiting (an
    error found right after parsing) Python ends such a thread mid-C++ and the process aborts (SIGABRT,
    "terminate called without an active exception") instead of exiting with its status. The copy costs
    a memcpy (~30 ms for 90 MB); parsing stays multi-threaded.
    """
    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()


def _diagnose(raw: _RawFile, fields: Sequence[str], what: str) -> None:
    """Raise the `DataError` of the first row that is not UTF-8, has a wrong field count or a value that is
    not `what`. A regex finds candidate lines in C; each candidate is then checked as CSV (quotes)."""
    try:
        raw.data.decode("utf-8")
    except UnicodeDecodeError as err:
        column = err.start - raw.data.rfind(b"\n", 0, err.start)
        _fail(raw.path, f"expected UTF-8 text, got byte {raw.data[err.start]:#04x} at column {column}",
              line=raw.data.count(b"\n", 0, err.start) + 1)
    values = rb"(?:," + _NUMBER.encode() + rb"){%d}" % (len(fields) - 1)
    suspect = re.compile(rb"^(?!\r?$)(?![^,\r\n]*" + values + rb"\r?$).*$", re.M)
    line, position = 1, 0
    for match in suspect.finditer(raw.data, len(raw.data) - len(raw.body)):
        line, position = line + raw.data.count(b"\n", position, match.start()), match.start()
        row = next(csv.reader([match.group().decode("utf-8").rstrip("\r")]), [])
        if len(row) != len(fields):
            _fail(raw.path, f"expected {len(fields)} fields ({', '.join(fields)}), found {len(row)}", line=line)
        for name, value in zip(fields[1:], row[1:]):
            if not _is_count(value):
                _fail(raw.path, f"expected {what}, got {_show(value)}", line=line, field=name)


def _check_values(raw: _RawFile, values: np.ndarray, fields: Sequence[str], what: str) -> None:
    """`values` (rows, len(fields) - 1) must be finite and >= 0, and finite in float32 (the tensors' dtype);
    else a `DataError` at the first bad one."""
    bad = ~(np.isfinite(values) & (values >= 0))
    too_big = ~bad & (values > FLOAT32_MAX)
    if bad.any() or too_big.any():
        row, col = divmod(int(np.argmax((bad | too_big).ravel())), values.shape[1])
        got = raw.fields_of(row)[col + 1]
        if too_big[row, col]:
            what = f"{what} that fits float32 (at most {FLOAT32_MAX:.4g})"
        _fail(raw.path, f"expected {what}, got {_show(got)}", line=raw.line_of(row), field=fields[col + 1])


def _check_unique(raw: _RawFile, ids: np.ndarray, rows: np.ndarray, what: str) -> None:
    """Every id of `ids` (data rows `rows`) must occur once; else a `DataError` naming both lines."""
    dup = pd.Index(ids).duplicated()
    if dup.any():
        second = int(np.argmax(dup))
        first = int(np.flatnonzero(ids == ids[second])[0])
        lines = (raw.line_of(int(rows[first])), raw.line_of(int(rows[second])))
        _fail(raw.path, f"duplicate {what} {_show_id(ids[second])}; expected each {what} once", line=lines)


def _nfc_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int, int]:
    """(the ids in Unicode NFC as an object array, how many of them that changed, the first changed one's
    index or -1). Ids all in ASCII (the usual Ensembl ids) are unchanged by NFC and not looked at again."""
    given = np.asarray(ids.to_pylist(), dtype=object)
    if pc.all(pc.string_is_ascii(ids)).as_py() is not False:
        return given, 0, -1
    # Python's unicodedata: pyarrow's utf8_normalize (25.0) returned decomposed text unchanged.
    nfc = np.asarray([unicodedata.normalize("NFC", gene) for gene in given], dtype=object)
    changed = nfc != given
    return nfc, int(changed.sum()), int(np.argmax(changed)) if changed.any() else -1


@dataclass(frozen=True)
class _SplitFile:
    """One parsed split file of one cell: N genes in file order and their (N, M, T) counts."""

    raw: _RawFile
    gene_ids: np.ndarray  # (N,) object (str), in Unicode NFC
    x: np.ndarray  # (N, M, T) float32
    nfc_changed: tuple[int, int] = (0, -1)  # (ids not in NFC in the file, the first one's index) from `_nfc_ids`

    def line_of_gene(self, i: int) -> int:
        return self.raw.line_of(i * self.x.shape[2])

    def nfc_note(self) -> str | None:
        """A note if some gene ids of the file were not in NFC (they were compared in NFC), else None."""
        return _nfc_note(self.raw.path, self.nfc_changed, self.gene_ids, self.line_of_gene)


@dataclass(frozen=True)
class _ExprFile:
    raw: _RawFile
    gene_ids: np.ndarray  # (G,) object (str), in Unicode NFC
    values: np.ndarray  # (G,) float64
    nfc_changed: tuple[int, int] = (0, -1)  # as `_SplitFile.nfc_changed`

    def nfc_note(self) -> str | None:
        return _nfc_note(self.raw.path, self.nfc_changed, self.gene_ids, self.raw.line_of)


def _nfc_note(path: str, changed: tuple[int, int], gene_ids: np.ndarray, line_of) -> str | None:
    count, first = changed
    if not count:
        return None
    return (f"{path}: {count} gene id(s) not in Unicode NFC, e.g. {_show_id(gene_ids[first])} at line {line_of(first)} "
            "(decomposed there); gene ids are compared in NFC")


def _parse_split_file(raw: _RawFile, n_bins: int) -> _SplitFile:
    """Validate and parse one ``CELL.SPLIT.csv`` (T = `n_bins` rows per gene)."""
    raw.skip_header(MARKS)
    if not raw.body.strip():
        _fail(raw.path, f"file has no rows; expected {_expected_rows(raw.path)}")
    table = _read_table(raw, _HM_FIELDS, "a non-negative count")
    counts = np.column_stack([table.column(i).to_numpy() for i in range(1, len(_HM_FIELDS))])
    _check_values(raw, counts, _HM_FIELDS, "a non-negative count")
    gene_ids, changed, first = _nfc_ids(_check_bins(raw, table.column(0), n_bins))
    _check_unique(raw, gene_ids, np.arange(len(gene_ids)) * n_bins, "gene id")
    x = counts.reshape(len(gene_ids), n_bins, len(MARKS)).transpose(0, 2, 1)
    return _SplitFile(raw, gene_ids, np.ascontiguousarray(x, dtype=np.float32), (changed, first))


def _check_bins(raw: _RawFile, ids: pa.ChunkedArray, n_bins: int) -> pa.Array:
    """Rows must be genes of `n_bins` consecutive rows ``GENE_SYMBOL_1`` .. ``GENE_SYMBOL_T``; returns the (N,) gene ids.

    Fast path: each gene's first row gives its stem (``GENE_SYMBOL_``); every row must equal its block's
    stem + its expected bin number. Only the first failing row is parsed again, for the message.
    """
    n = len(ids)
    rows = np.arange(n)
    heads = ids.take(pa.array(rows[::n_bins]))
    parts = pc.extract_regex(heads, _GENE_BIN_RE)
    stems = pc.replace_substring_regex(heads, "[0-9]+$", "")
    bin_names = pc.cast(pa.array(np.arange(1, n_bins + 1)), pa.string())
    expected = pc.binary_join_element_wise(
        stems.take(pa.array(rows // n_bins)), bin_names.take(pa.array(rows % n_bins)), ""
    )
    ok = pc.equal(ids, expected).to_numpy(zero_copy_only=False)
    ok[::n_bins] &= pc.is_valid(parts).to_numpy(zero_copy_only=False)
    if not ok.all():
        _bin_error(raw, ids, int(np.argmin(ok)), n_bins)
    if n % n_bins:
        last = n - n % n_bins
        span = f"lines {raw.line_of(last)}-{raw.line_of(n - 1)}"
        _fail(raw.path, f"gene {_gene_bin(ids[last].as_py())[0]} ends after {n - last} bins ({span}); expected "
              f"{n_bins} bins numbered 1..{n_bins}", line=raw.line_of(n - 1), field=_ID_FIELD)
    return pc.struct_field(parts, [0])


def _gene_bin(text: str | None) -> tuple[str, int] | None:
    """(gene id, bin) of a row id ``GENE_SYMBOL_BIN``, or None if it has no ``_BIN`` suffix."""
    match = re.fullmatch(_GENE_BIN_RE, text or "")
    return (match["gene"], int(match["bin"])) if match else None


def _bin_error(raw: _RawFile, ids: pa.ChunkedArray, row: int, n_bins: int) -> NoReturn:
    """The `DataError` for the first row `row` that breaks the ``GENE_SYMBOL_BIN`` block structure."""
    text = ids[row].as_py()
    where = {"line": raw.line_of(row), "field": _ID_FIELD}
    parsed = _gene_bin(text)
    if parsed is None:
        _fail(raw.path, f"expected ENSGID_SYMBOL_BIN with a numeric BIN after the last '_', got {_show(text)}", **where)
    gene, bin_no, start = parsed[0], row % n_bins + 1, row - row % n_bins
    if bin_no == 1:
        previous = _gene_bin(ids[row - 1].as_py()) if row > 0 else None
        if previous is not None and previous[0] == gene:
            _fail(raw.path, f"gene {gene} has more than {n_bins} bins; expected {n_bins} bins numbered 1..{n_bins}, "
                  f"got {_show(text)}", **where)
        _fail(raw.path, f"expected bin 1 of a new gene, got {_show(text)}", **where)
    head = ids[start].as_py()
    block_gene = _gene_bin(head)[0]
    if gene != block_gene:
        span = f"lines {raw.line_of(start)}-{raw.line_of(row - 1)}"
        _fail(raw.path, f"gene {block_gene} has only {bin_no - 1} bins ({span}); expected {n_bins} bins numbered "
              f"1..{n_bins}, got {_show(text)}", **where)
    expected = re.sub("[0-9]+$", str(bin_no), head)
    _fail(raw.path, f"expected {_show(expected)} (bin {bin_no} of gene {gene}, bins 1..{n_bins} in order), "
          f"got {_show(text)}", **where)


def _parse_expr_file(raw: _RawFile) -> _ExprFile:
    """Validate and parse one ``CELL.expr.csv``: unique gene ids, non-negative expression."""
    table = _read_table(raw, _EXPR_FIELDS, "a non-negative expression value")
    values = table.column(1).to_numpy()
    _check_values(raw, values[:, None], _EXPR_FIELDS, "a non-negative expression value")
    gene_ids, changed, first = _nfc_ids(table.column(0))
    _check_unique(raw, gene_ids, np.arange(len(gene_ids)), "gene id")
    return _ExprFile(raw, gene_ids, values, (changed, first))

