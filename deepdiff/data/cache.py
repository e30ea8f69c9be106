"""The cache of validated pairs: one uncompressed Arrow IPC file per pair, memory-mapped on read.

Rows are the genes of train, valid, test in that order; medians, notes and row counts sit in the schema
metadata. A file's name holds the sha256 of the eight input files' contents (`_cache_key`), so an
edited file is never served stale. Hashing ~260 MB of paper-size CSVs costs more than reading the
cache, so a small index file maps the files' stat fingerprint (path, size, mtime_ns, ctime_ns, inode,
device of each) to that content key: any write to a file changes its ctime (which no user tool can set
back) and a replacement changes its inode, so a changed file always misses the index and is hashed
again. Unchanged files are neither read nor hashed. Writing the cache is best effort: a failure is a
note on the pair, never an error. Where the command lines keep it: `default_cache_dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc)
import torch

from deepdiff.data.parse import MARKS, SPLITS, FILE_KINDS
from deepdiff.data.pair import PairData, SplitData
from deepdiff.files import write_atomic

CACHE_FORMAT_VERSION = 3  # bump when parsing, validation or the cache layout changes (3: gene ids in NFC)
_CACHE_META_KEY = b"deepdiff"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """Where validated pairs are cached: $XDG_CACHE_HOME/deepdiff-tune or ~/.cache/deepdiff-tune."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepdiff-tune"


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
