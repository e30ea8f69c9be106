"""`load_pair`: the eight files of a cell-type pair -> a validated, gene-aligned `PairData`.

The one entry point of `deepdiff.data`: it asks the cache (`deepdiff.data.cache`) first, else reads the
files (`_read_raw`), parses and diagnoses each (`deepdiff.data.parse`), aligns them by gene id and
computes the targets (`deepdiff.data.pair`), and stores the result in the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from deepdiff.data.cache import (
    Progress,
    _cache_key,
    _cache_path,
    _read_cache,
    _read_stat_index,
    _stat_index_path,
    _write_cache,
    _write_stat_index,
)
from deepdiff.data.pair import PairData, SplitData, _expression_of, _pair_rows, _split_overlap_note
from deepdiff.data.parse import N_BINS, SPLITS, _fail, _pair_paths, _parse_expr_file, _parse_split_file, _read_raw

UNPAIRED_MODES = ("drop", "error")


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
    fingerprint: then the files are not even read; see `deepdiff.data.cache`). `progress`: optional
    callable receiving status lines (notes are not sent there: they are returned in `PairData.notes`,
    for the caller to report once).
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



def _build_pair(
    raw: dict, paths: dict, cell_a: str, cell_b: str, unpaired: str, n_bins: int, say: Progress
) -> PairData:
    """Parse, validate and align the eight files (already read into `raw`)."""
    expr = {}
    notes = []
    for cell in (cell_a, cell_b):
        say(f"reading {paths[cell, 'expr']}")
        expr[cell] = _parse_expr_file(raw[cell, "expr"])
        notes.append(expr[cell].nfc_note())
    medians = {cell: float(np.median(expr[cell].values)) for cell in (cell_a, cell_b)}
    splits, kept = {}, {}
    for name in SPLITS:
        files = {}
        for cell in (cell_a, cell_b):
            started = time.perf_counter()
            files[cell] = _parse_split_file(raw[cell, name], n_bins)
            notes.append(files[cell].nfc_note())
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
    return PairData(cell_a, cell_b, **splits, median_a=medians[cell_a], median_b=medians[cell_b],
                    notes=tuple(note for note in notes if note))
