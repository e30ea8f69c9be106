"""The record of a built pair, ``OUT/A-B.build-pair.json``: what it was built from (every source file's
path, size and sha256; the annotation; the rules; the split seed), what it wrote (each file's size and
sha256) and the pair's summary. It makes a second build of the same inputs a no-op and keeps a build
from overwriting files it did not write.

- **Key**: a sha256 over the record format, the cell names, the sources' checksums (by role: which mark
  of which cell) and the options. Same key and every written file unchanged: nothing is rebuilt.
- **Checksums** are taken once: a file whose stat fingerprint (size, mtime, ctime, inode) is the one
  recorded keeps its recorded sha256; any write to a file changes its ctime, so a changed file is read
  and hashed again.
- **Ownership**: a build writes ``A.{train,valid,test,expr}.csv`` and ``B...``; it refuses to replace
  such a file that no record claims (not written by a build) or that another pair's record claims (a
  cell shared by two pairs would have two different gene sets: build them into different folders).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from deepdiff.errors import ConfigError

RECORD_FORMAT = 1  # bump when what a build writes changes
RECORD_SUFFIX = ".build-pair.json"
_CHUNK = 1 << 22


def record_path(out: Path, cell_a: str, cell_b: str) -> Path:
    return out / f"{cell_a}-{cell_b}{RECORD_SUFFIX}"


def fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def is_known(path: Path, known: dict[str, dict[str, Any]]) -> bool:
    """Whether `known` (by resolved path) holds `path` with its current stat fingerprint and a sha256."""
    before = known.get(str(path.resolve()))
    return (before is not None and "sha256" in before
            and all(before.get(k) == v for k, v in fingerprint(path).items()))


def describe_file(path: Path, known: dict[str, dict[str, Any]], on_bytes: Callable[[int], None] | None = None) -> dict[str, Any]:
    """{path, size, sha256, and the stat fingerprint} of `path`; the sha256 of `known[str(path)]` is reused
    when its fingerprint is the current one (module docstring)."""
    resolved = str(path.resolve())
    stat = fingerprint(path)
    if is_known(path, known):
        return {"path": resolved, **stat, "sha256": known[resolved]["sha256"]}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return {"path": resolved, **stat, "sha256": digest.hexdigest()}


def build_key(cells: list[str], sources: dict[str, str], options: dict[str, Any]) -> str:
    """sha256 of what decides a build's output: `sources` maps a role (``annotation``, ``A/H3K4me1``,
    ``A/expression`` ...) to the file's sha256; `options` are the rules and the expression columns."""
    text = json.dumps([RECORD_FORMAT, cells, sorted(sources.items()), options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(path: Path) -> dict[str, Any] | None:
    """A record written by a build, or None (absent, unreadable, another format: rebuilt)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def known_files(record: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every file a record describes (sources and outputs), by resolved path."""
    if record is None:
        return {}
    files = [*record.get("sources", {}).values(), *record.get("outputs", {}).values()]
    return {f["path"]: f for f in files if isinstance(f, dict) and "path" in f}


def outputs_unchanged(record: dict[str, Any], out: Path) -> bool:
    """Whether every file the record says it wrote is in `out` with its recorded contents."""
    outputs = record.get("outputs", {})
    if not outputs:
        return False
    known = known_files(record)
    for name, entry in outputs.items():
        path = out / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
        if describe_file(path, known)["sha256"] != entry.get("sha256"):
            return False
    return True


def check_owner(out: Path, names: Iterable[str], pair: str) -> None:
    """A `ConfigError` if a file `names` in `out` exists and is not this pair's (module docstring)."""
    owners: dict[str, str] = {}
    for other in sorted(out.glob(f"*{RECORD_SUFFIX}")):
        record = read_record(other)
        if record is not None:
            owners.update(dict.fromkeys(record.get("outputs", {}), other.name))
    mine = f"{pair}{RECORD_SUFFIX}"
    for name in names:
        path = out / name
        if not (path.exists() or path.is_symlink()):
            continue
        owner = owners.get(name)
        if owner is None:
            raise ConfigError(f"--out {out}: already holds {name}, not written by deepdiff build-pair (no "
                              f"*{RECORD_SUFFIX} claims it); choose another --out (never overwritten)")
        if owner != mine:
            raise ConfigError(f"--out {out}: {name} belongs to the pair of {owner}; a cell shared by two pairs "
                              "needs its own folder per pair (or another name in one of them)")


def write_record(path: Path, record: dict[str, Any]) -> None:
    from deepdiff.config import write_atomic

    write_atomic(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


def file_entry(path: Path, data: bytes) -> dict[str, Any]:
    """The record of an output just written with `data` (its sha256 without reading it back)."""
    return {"path": str(path.resolve()), **fingerprint(path), "sha256": hashlib.sha256(data).hexdigest()}

