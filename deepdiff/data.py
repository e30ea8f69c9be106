"""DeepDiffChrome files -> validated, gene-aligned tensors and targets for one cell-type pair.

On disk (per cell type ``CELL``, all in one directory):

- ``CELL.{train,valid,test}.csv``: no header, one row per bin,
  ``ENSGID_SYMBOL_BIN,H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3`` (raw read counts), ``BIN`` = 1..T in
  order, T consecutive rows per gene. Gene id = text before the first ``_``, bin = text after the last.
  An optional first line ``<name>,H3K4me1,...,H3K36me3`` is skipped.
- ``CELL.expr.csv``: no header, ``ENSGID,expression`` for every gene of the cell.

`load_pair` reads and validates the eight files of a pair (A, B), aligns genes by gene id (never by row
order) across the two cells and with the expression files, computes the targets with `make_targets` and
returns a `PairData` of three `SplitData`. Tensor contracts (N genes of a split, M = 5 marks, T bins):

- ``x_a``, ``x_b``: (N, M, T) float32 raw counts, marks in `MARKS` order;
- ``expr_a``, ``expr_b``: (N,) float32 raw expression;
- ``diff`` = log2(expr_b + 1) - log2(expr_a + 1), ``aux_reg_*`` = log2(expr_* + 1): (N,) float32;
- ``aux_cls_*``: (N,) int64, 1 if expr > the median of the cell's whole expression file, else 0;
- ``similar``: (N,) float32, the siamese S = 1.0 if |diff| >= `SIMILARITY_THRESHOLD` else 0.0.

Every problem in the files is a `DataError` with a one-line message naming the file, the 1-based line
(as in a text editor), the field, and what was expected. A validated pair can be cached as one Arrow IPC
file, keyed by the contents of the eight files (an edited file is never served stale).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc  # noqa: F401  (pa.ipc)
import torch

from deepdiff.errors import DataError, path_problem
from deepdiff.files import write_atomic

MARKS = ("H3K4me1", "H3K4me3", "H3K9me3", "H3K27me3", "H3K36me3")
N_BINS = 200
SPLITS = ("train", "valid", "test")
SIMILARITY_THRESHOLD = 2.0
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger counts or expression values become inf in the tensors
UNPAIRED_MODES = ("drop", "error")

CACHE_FORMAT_VERSION = 2  # bump when parsing, validation or the cache layout changes
_ID_FIELD = "gene_bin id"
_EXPR_FIELD = "expression"
_HM_FIELDS = (_ID_FIELD, *MARKS)
_EXPR_FIELDS = ("gene id", _EXPR_FIELD)
FILE_KINDS = (*SPLITS, "expr")  # the four files of a cell: CELL.KIND.csv
_GENE_BIN_RE = r"^(?P<gene>[^_]+)_(?:.*_)?(?P<bin>[0-9]{1,9})$"
_NUMBER = r"\+?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # a non-negative decimal
_NUMBER_RE = re.compile(_NUMBER)
_CACHE_META_KEY = b"deepdiff"

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------
# Public containers and targets


def make_targets(expr_a: Any, expr_b: Any, median_a: float, median_b: float) -> dict[str, torch.Tensor]:
    """All training targets of N aligned genes from raw expression; the one place targets are computed.

    expr_a, expr_b: (N,) non-negative raw expression (tensor or array) of cells A and B, same genes.
    median_a, median_b: each cell's median over all genes of its expression file.
    Returns (N,) tensors on the device of `expr_a`: ``diff``, ``aux_reg_a``, ``aux_reg_b``, ``similar``
    (float32) and ``aux_cls_a``, ``aux_cls_b`` (int64); keys are the matching `SplitData` field names.
    """
    device = expr_a.device if isinstance(expr_a, torch.Tensor) else None
    a = torch.as_tensor(expr_a, dtype=torch.float64, device=device)
    b = torch.as_tensor(expr_b, dtype=torch.float64, device=device)
    reg_a, reg_b = torch.log2(a + 1.0), torch.log2(b + 1.0)
    diff = reg_b - reg_a
    return {
        "diff": diff.float(),
        "aux_reg_a": reg_a.float(),
        "aux_reg_b": reg_b.float(),
        "aux_cls_a": (a > float(median_a)).long(),
        "aux_cls_b": (b > float(median_b)).long(),
        "similar": (diff.abs() >= SIMILARITY_THRESHOLD).float(),
    }


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split of an aligned pair; row i of every tensor is gene ``gene_ids[i]``; same device for all.

    Shapes: x_a, x_b (N, M, T) float32 raw counts; every other tensor (N,); see the module docstring.
    Build from raw arrays with `SplitData.from_arrays` (which computes the targets with `make_targets`).
    """

    gene_ids: tuple[str, ...]
    x_a: torch.Tensor
    x_b: torch.Tensor
    expr_a: torch.Tensor
    expr_b: torch.Tensor
    diff: torch.Tensor
    aux_reg_a: torch.Tensor
    aux_reg_b: torch.Tensor
    aux_cls_a: torch.Tensor
    aux_cls_b: torch.Tensor
    similar: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.gene_ids)
        if self.x_a.ndim != 3 or self.x_a.shape != self.x_b.shape:
            raise ValueError(f"x_a {tuple(self.x_a.shape)} and x_b {tuple(self.x_b.shape)}: expected equal (N, M, T)")
        for name in self._tensor_fields():
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"{name} has {getattr(self, name).shape[0]} rows; expected {n} (one per gene id)")

    @classmethod
    def from_arrays(
        cls,
        gene_ids: Sequence[str],
        x_a: Any,
        x_b: Any,
        expr_a: Any,
        expr_b: Any,
        median_a: float,
        median_b: float,
    ) -> "SplitData":
        """A split from (N, M, T) counts and (N,) raw expression of both cells; targets via `make_targets`.

        Targets are computed from the float32 expression that the split stores, so a split rebuilt from
        its own tensors (e.g. from the cache) has bit-identical targets.
        """
        expr_a = torch.as_tensor(expr_a).float()
        expr_b = torch.as_tensor(expr_b).float()
        return cls(
            gene_ids=tuple(str(g) for g in gene_ids),
            x_a=torch.as_tensor(x_a, dtype=torch.float32),
            x_b=torch.as_tensor(x_b, dtype=torch.float32),
            expr_a=expr_a,
            expr_b=expr_b,
            **make_targets(expr_a, expr_b, median_a, median_b),
        )

    @classmethod
    def _tensor_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "gene_ids")

    def __len__(self) -> int:
        return len(self.gene_ids)

    def to(self, device: torch.device | str) -> "SplitData":
        """The same split with every tensor on `device`."""
        return dataclasses.replace(self, **{k: getattr(self, k).to(device) for k in self._tensor_fields()})

    def subset(self, index: Any) -> "SplitData":
        """Rows `index` (integer positions or a boolean mask: tensor, array or list), in that order."""
        idx = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx, as_tuple=False).flatten()
        idx = idx.long().flatten()
        ids = tuple(self.gene_ids[i] for i in idx.tolist())
        moved = {k: getattr(self, k)[idx.to(getattr(self, k).device)] for k in self._tensor_fields()}
        return dataclasses.replace(self, gene_ids=ids, **moved)


@dataclass(frozen=True, eq=False)
class PairData:
    """A validated, gene-aligned cell-type pair (A = `cell_a`, the first cell; diff = B - A)."""

    cell_a: str
    cell_b: str
    train: SplitData
    valid: SplitData
    test: SplitData
    median_a: float  # median expression over all genes of cell A's expression file
    median_b: float
    notes: tuple[str, ...]  # human messages produced while loading (e.g. dropped genes)

    def split(self, name: str) -> SplitData:
        """The split called `name`, one of `SPLITS`."""
        if name not in SPLITS:
            raise ValueError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def to(self, device: torch.device | str) -> "PairData":
        """The same pair with every tensor on `device`."""
        return dataclasses.replace(self, **{name: self.split(name).to(device) for name in SPLITS})


# ---------------------------------------------------------------------------------------------------
# Entry point


def load_pair(
    data_dir: str | Path,
    cell_a: str,
    cell_b: str,
    *,
    cache_dir: str | Path | None = None,
    unpaired: str = "drop",
    progress: Progress | None = None,
    n_bins: int = N_BINS,
) -> PairData:
    """Read, validate and align the eight files of cells `cell_a` (A) and `cell_b` (B) in `data_dir`.

    Genes are matched by gene id between the two cells and with each cell's expression file; the output
    order is cell A's file order. `unpaired`: "drop" genes listed by only one cell's split file (counted
    in `PairData.notes`) or "error" (a `DataError` naming the file, line and gene). `cache_dir`: if given,
    the validated pair is stored there (Arrow IPC, memory-mapped on read), keyed by the sha256 of the
    files' contents, and served from there while the files are unchanged (unchanged by their stat
    fingerprint: then the files are not even read; see the cache section below). `progress`: optional callable receiving status lines
    (notes are not sent there: they are returned in `PairData.notes`, for the caller to report once).
    `n_bins`: bins per gene (T) the split files must have (the paper's files: 200).
    Raises `DataError` (one line: file, line, field, what was expected) for any problem in the files.
    """
    say = progress or (lambda message: None)
    if unpaired not in UNPAIRED_MODES:
        raise ValueError(f"unpaired={unpaired!r}: expected one of {', '.join(UNPAIRED_MODES)}")
    if cell_a == cell_b:
        _fail(f"cells {cell_a!r} and {cell_b!r}", "expected two different cell types")
    paths = _pair_paths(Path(data_dir), cell_a, cell_b)
    cache_path = stat_path = None
    if cache_dir is not None:
        # Fast hit: the files' stat fingerprint, taken before any read, names the content key it had.
        stat_path = _stat_index_path(Path(cache_dir), paths, cell_a, cell_b, unpaired, n_bins)
        key = _read_stat_index(stat_path)
        if key is not None:
            cached = _read_cache(_cache_path(Path(cache_dir), cell_a, cell_b, key), key, say)
            if cached is not None:
                return cached
    raw = {key: _read_raw(path) for key, path in paths.items()}
    if cache_dir is not None:
        key = _cache_key(raw, cell_a, cell_b, unpaired, n_bins)
        cache_path = _cache_path(Path(cache_dir), cell_a, cell_b, key)
        cached = _read_cache(cache_path, key, say)
        if cached is not None:
            _write_stat_index(stat_path, key)
            return cached
    started = time.perf_counter()
    pair = _build_pair(raw, paths, cell_a, cell_b, unpaired, n_bins, say)
    say(f"{cell_a}/{cell_b}: read and validated in {time.perf_counter() - started:.1f} s")
    if cache_path is not None:
        pair = _write_cache(cache_path, key, pair, say)
        if not any("cache not written" in note for note in pair.notes):
            _write_stat_index(stat_path, key)
    return pair


def check_trainable(pair: PairData, data_dir: str | Path | None = None) -> None:
    """A `DataError` unless every split can be scored: at least 2 genes and a differential target that
    varies (PCC is undefined otherwise). `data_dir` names the split files in the message."""
    for name in SPLITS:
        split = pair.split(name)
        where = (" / ".join(str(pair_files(data_dir, pair.cell_a, pair.cell_b)[cell, name]) for cell in (pair.cell_a, pair.cell_b))
                 if data_dir is not None else f"pair {pair.cell_a}-{pair.cell_b}")
        if len(split) < 2:
            _fail(where, f"split {name} has {len(split)} gene(s) listed by both cells; expected at least 2 "
                  "(PCC is undefined for fewer)")
        if bool((split.diff == split.diff[0]).all()):
            _fail(where, f"the differential expression of all {len(split)} genes of split {name} is "
                  f"{float(split.diff[0]):g}; expected it to vary (PCC is undefined for a constant target)")


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
        _fail(raw.path, f"duplicate {what} {ids[second]}; expected each {what} once", line=lines)


@dataclass(frozen=True)
class _SplitFile:
    """One parsed split file of one cell: N genes in file order and their (N, M, T) counts."""

    raw: _RawFile
    gene_ids: np.ndarray  # (N,) object (str)
    x: np.ndarray  # (N, M, T) float32

    def line_of_gene(self, i: int) -> int:
        return self.raw.line_of(i * self.x.shape[2])


@dataclass(frozen=True)
class _ExprFile:
    raw: _RawFile
    gene_ids: np.ndarray  # (G,) object (str)
    values: np.ndarray  # (G,) float64


def _parse_split_file(raw: _RawFile, n_bins: int) -> _SplitFile:
    """Validate and parse one ``CELL.SPLIT.csv`` (T = `n_bins` rows per gene)."""
    raw.skip_header(MARKS)
    if not raw.body.strip():
        _fail(raw.path, f"file has no rows; expected {_expected_rows(raw.path)}")
    table = _read_table(raw, _HM_FIELDS, "a non-negative count")
    counts = np.column_stack([table.column(i).to_numpy() for i in range(1, len(_HM_FIELDS))])
    _check_values(raw, counts, _HM_FIELDS, "a non-negative count")
    gene_ids = _check_bins(raw, table.column(0), n_bins)
    _check_unique(raw, gene_ids, np.arange(len(gene_ids)) * n_bins, "gene id")
    x = counts.reshape(len(gene_ids), n_bins, len(MARKS)).transpose(0, 2, 1)
    return _SplitFile(raw, gene_ids, np.ascontiguousarray(x, dtype=np.float32))


def _check_bins(raw: _RawFile, ids: pa.ChunkedArray, n_bins: int) -> np.ndarray:
    """Rows must be genes of `n_bins` consecutive rows ``GENE_SYMBOL_1`` .. ``GENE_SYMBOL_T``; returns (N,) gene ids.

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
    return np.asarray(pc.struct_field(parts, [0]).to_pylist(), dtype=object)


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
    gene_ids = np.asarray(table.column(0).to_pylist(), dtype=object)
    _check_unique(raw, gene_ids, np.arange(len(gene_ids)), "gene id")
    return _ExprFile(raw, gene_ids, values)


# ---------------------------------------------------------------------------------------------------
# Alignment: HM genes with expression, cell A with cell B


def _expression_of(split: _SplitFile, expr: _ExprFile) -> np.ndarray:
    """(N,) float64 expression of the split's genes, looked up by gene id in the cell's expression file."""
    pos = pd.Index(expr.gene_ids).get_indexer(split.gene_ids)
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        _fail(split.raw.path, f"gene {split.gene_ids[i]} is not in {expr.raw.path}; expected every gene of the "
              "histone-mark files in its cell's expression file", line=split.line_of_gene(i))
    return expr.values[pos]


def _pair_rows(a: _SplitFile, b: _SplitFile, unpaired: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Row indices (idx_a, idx_b) of the genes both files list, in A's order, and a note on dropped genes."""
    pos_b = pd.Index(b.gene_ids).get_indexer(a.gene_ids)
    in_b = pos_b >= 0
    only_b = ~pd.Index(b.gene_ids).isin(a.gene_ids)
    note = None
    if not in_b.all() or only_b.any():
        lonely, other = (a, b) if not in_b.all() else (b, a)
        i = int(np.argmax(~in_b)) if lonely is a else int(np.argmax(only_b))
        if unpaired == "error":
            _fail(lonely.raw.path, f"gene {lonely.gene_ids[i]} is not in {other.raw.path} (unpaired='error'); "
                  "expected both cells to list the same genes in each split", line=lonely.line_of_gene(i))
        count = int((~in_b).sum() + only_b.sum())
        note = f"{a.raw.path} / {b.raw.path}: {count} genes only in one cell (e.g. {lonely.gene_ids[i]}), dropped"
    idx_a = np.flatnonzero(in_b)
    if len(idx_a) == 0:
        _fail(f"{a.raw.path} / {b.raw.path}", "no gene in common; expected both cells to share genes in each split")
    return idx_a, pos_b[idx_a], note


def _split_overlap_note(cell: str, genes: dict[str, np.ndarray]) -> str | None:
    """A note if a gene appears in more than one split (train/test leakage), else None."""
    seen: dict[str, str] = {}
    clashes = []
    for name in SPLITS:
        for gene in set(genes[name]) & set(seen):
            clashes.append(f"{gene} in {seen[gene]} and {name}")
        seen.update(dict.fromkeys(genes[name], name))
    if not clashes:
        return None
    return f"{cell}: {len(clashes)} genes appear in more than one split (e.g. {sorted(clashes)[0]})"


def _build_pair(
    raw: dict, paths: dict, cell_a: str, cell_b: str, unpaired: str, n_bins: int, say: Progress
) -> PairData:
    """Parse, validate and align the eight files (already read into `raw`)."""
    expr = {}
    for cell in (cell_a, cell_b):
        say(f"reading {paths[cell, 'expr']}")
        expr[cell] = _parse_expr_file(raw[cell, "expr"])
    medians = {cell: float(np.median(expr[cell].values)) for cell in (cell_a, cell_b)}
    splits, notes, kept = {}, [], {}
    for name in SPLITS:
        files = {}
        for cell in (cell_a, cell_b):
            started = time.perf_counter()
            files[cell] = _parse_split_file(raw[cell, name], n_bins)
            say(f"read {paths[cell, name]}: {len(files[cell].gene_ids)} genes in {time.perf_counter() - started:.1f} s")
        values = {cell: _expression_of(files[cell], expr[cell]) for cell in (cell_a, cell_b)}
        idx_a, idx_b, note = _pair_rows(files[cell_a], files[cell_b], unpaired)
        if note:
            notes.append(note)
        kept[name] = files[cell_a].gene_ids[idx_a]
        splits[name] = SplitData.from_arrays(
            kept[name],
            torch.from_numpy(files[cell_a].x[idx_a]),
            torch.from_numpy(files[cell_b].x[idx_b]),
            torch.from_numpy(values[cell_a][idx_a]),
            torch.from_numpy(values[cell_b][idx_b]),
            medians[cell_a],
            medians[cell_b],
        )
    overlap = _split_overlap_note(cell_a, kept)
    if overlap:
        notes.append(overlap)
    return PairData(cell_a, cell_b, **splits, median_a=medians[cell_a], median_b=medians[cell_b], notes=tuple(notes))


# ---------------------------------------------------------------------------------------------------
# Cache: one uncompressed Arrow IPC file per pair (rows = genes of train, valid, test in that order;
# medians, notes and row counts in schema metadata), memory-mapped on read. Its name holds the sha256
# of the eight files' contents (`_cache_key`). Hashing ~260 MB of paper-size CSVs costs more than
# reading the cache, so a small index file maps the files' stat fingerprint (path, size, mtime_ns,
# ctime_ns, inode, device of each) to that content key: any write to a file changes its ctime (which
# no user tool can set back) and a replacement changes its inode, so a changed file always misses the
# index and is hashed again. Unchanged files are neither read nor hashed.


def _cache_key(raw: dict, cell_a: str, cell_b: str, unpaired: str, n_bins: int) -> str:
    """sha256 over the format version, options, cell names and the contents of all eight files."""
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT_VERSION, cell_a, cell_b, unpaired, n_bins, MARKS]).encode())
    for cell in (cell_a, cell_b):
        for kind in FILE_KINDS:
            digest.update(f"{kind}:{len(raw[cell, kind].data)}:".encode())
            digest.update(hashlib.sha256(raw[cell, kind].data).digest())
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _cache_path(cache_dir: Path, cell_a: str, cell_b: str, key: str) -> Path:
    return cache_dir / f"{_safe(cell_a)}-{_safe(cell_b)}-{key[:24]}.arrow"


def _stat_index_path(cache_dir: Path, paths: dict, cell_a: str, cell_b: str, unpaired: str, n_bins: int) -> Path:
    """Where the content key of the files in their current state (by `os.stat`) is remembered."""
    stats = []
    for path in paths.values():
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    fingerprint = json.dumps([CACHE_FORMAT_VERSION, cell_a, cell_b, unpaired, n_bins, MARKS, stats])
    return cache_dir / f"{_safe(cell_a)}-{_safe(cell_b)}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:24]}.key"


def _read_stat_index(path: Path) -> str | None:
    try:
        key = path.read_text().strip()
    except OSError:
        return None
    return key if re.fullmatch(r"[0-9a-f]{64}", key) else None


def _write_stat_index(path: Path, key: str) -> None:
    """Best effort (a failure only costs a hash next time); atomic, so a reader never sees half a key."""
    with contextlib.suppress(OSError):
        write_atomic(path, key + "\n")


def _write_cache(path: Path, key: str, pair: PairData, say: Progress) -> PairData:
    """Store `pair` at `path` (`write_atomic`: never half a file); a failure is a note, not an error."""
    columns: dict[str, list] = {k: [] for k in ("gene_id", "expr_a", "expr_b", "x_a", "x_b")}
    for name in SPLITS:
        part = pair.split(name).to("cpu")
        width = part.x_a.shape[1] * part.x_a.shape[2]
        columns["gene_id"].append(pa.array(part.gene_ids, pa.string()))
        for col in ("expr_a", "expr_b"):
            columns[col].append(pa.array(getattr(part, col).numpy()))
        for col in ("x_a", "x_b"):
            flat = pa.array(getattr(part, col).reshape(-1).numpy())
            columns[col].append(pa.FixedSizeListArray.from_arrays(flat, width))
    table = pa.table({k: pa.concat_arrays(v) for k, v in columns.items()})
    meta = {"format": CACHE_FORMAT_VERSION, "key": key, "cell_a": pair.cell_a, "cell_b": pair.cell_b,
            "median_a": pair.median_a, "median_b": pair.median_b, "notes": list(pair.notes),
            "shape": list(pair.train.x_a.shape[1:]), "rows": {name: len(pair.split(name)) for name in SPLITS}}
    table = table.replace_schema_metadata({_CACHE_META_KEY: json.dumps(meta).encode()})

    def write(sink) -> None:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write)
    except (OSError, pa.ArrowException) as err:
        return dataclasses.replace(pair, notes=(*pair.notes, f"cache not written to {path}: {err}"))
    say(f"cached {pair.cell_a}/{pair.cell_b} at {path}")
    return pair


def _read_cache(path: Path, key: str, say: Progress) -> PairData | None:
    """The pair stored at `path` if it exists and matches `key`, else None (unreadable = miss)."""
    if not path.is_file():
        return None
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
            meta = json.loads(table.schema.metadata[_CACHE_META_KEY])
            if meta["format"] != CACHE_FORMAT_VERSION or meta["key"] != key:
                return None
            splits, start = {}, 0
            for name in SPLITS:
                splits[name] = _split_from_table(table.slice(start, meta["rows"][name]), meta)
                start += meta["rows"][name]
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as err:
        say(f"ignoring unreadable cache {path}: {err}")
        return None
    say(f"loaded {meta['cell_a']}/{meta['cell_b']} from cache {path}")
    return PairData(meta["cell_a"], meta["cell_b"], **splits, median_a=meta["median_a"], median_b=meta["median_b"],
                    notes=tuple(meta["notes"]))


def _split_from_table(part: pa.Table, meta: dict) -> SplitData:
    """One split's rows of the memory-mapped table, copied into tensors (the map is read-only)."""
    shape = (part.num_rows, *meta["shape"])

    def x(col: str) -> torch.Tensor:
        flat = part.column(col).combine_chunks().flatten().to_numpy()
        return torch.from_numpy(flat.reshape(shape).copy())

    def expr(col: str) -> torch.Tensor:
        return torch.from_numpy(part.column(col).to_numpy().copy())

    return SplitData.from_arrays(part.column("gene_id").to_pylist(), x("x_a"), x("x_b"), expr("expr_a"),
                                 expr("expr_b"), meta["median_a"], meta["median_b"])
