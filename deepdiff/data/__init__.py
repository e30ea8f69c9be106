"""DeepDiffChrome files -> validated, gene-aligned tensors and targets for one cell-type pair.

`load_pair` reads and validates the eight files of a pair (A, B), aligns genes by gene id (never by row
order) across the two cells and with the expression files, computes the targets with `make_targets` and
returns a `PairData` of three `SplitData`. One module per job:

- `deepdiff.data.parse`  the on-disk format; reading, validating and diagnosing one CSV file
- `deepdiff.data.pair`   targets, `SplitData` / `PairData` (tensor contracts), alignment by gene id
- `deepdiff.data.cache`  the Arrow IPC cache of validated pairs, keyed by the files' contents
- `deepdiff.data.load`   `load_pair`, the entry point joining the three

Every problem in the files is a `DataError` with a one-line message naming the file, the 1-based line
(as in a text editor), the field, and what was expected.

The package's API is `API` below: ``from deepdiff.data import load_pair, MARKS, ...``. Each name is
imported from its module on first use, so what needs only the file format (``MARKS``, `pair_files`,
e.g. `deepdiff.synthetic` and the study's command line) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

API = {  # the module of each public name
    "parse": ("FILE_KINDS", "FLOAT32_MAX", "MARKS", "N_BINS", "SPLITS", "check_cell_name", "pair_files"),
    "pair": ("SIMILARITY_THRESHOLD", "PairData", "SplitData", "check_trainable", "make_targets"),
    "cache": ("CACHE_FORMAT_VERSION", "default_cache_dir"),
    "load": ("UNPAIRED_MODES", "load_pair"),
}
_HOME = {name: module for module, names in API.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
