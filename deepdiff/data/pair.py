"""A gene-aligned cell-type pair: the targets, the `SplitData` / `PairData` containers, and the alignment
of parsed files by gene id (never by row order).

Tensor contracts (N genes of a split, M = 5 marks, T bins):

- ``x_a``, ``x_b``: (N, M, T) float32 raw counts, marks in `MARKS` order;
- ``expr_a``, ``expr_b``: (N,) float32 raw expression;
- ``diff`` = log2(expr_b + 1) - log2(expr_a + 1), ``aux_reg_*`` = log2(expr_* + 1): (N,) float32;
- ``aux_cls_*``: (N,) int64, 1 if expr > the median of the cell's whole expression file, else 0;
- ``similar``: (N,) float32, the siamese S = 1.0 if |diff| >= `SIMILARITY_THRESHOLD` else 0.0.

`make_targets` is the one place targets are computed. `_expression_of` and `_pair_rows` align one
split's parsed files (`deepdiff.data.parse`) with the expression files and across the two cells;
`check_trainable` refuses a pair whose splits cannot be scored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from deepdiff.data.parse import SPLITS, _ExprFile, _fail, _show_id, _SplitFile, pair_files

SIMILARITY_THRESHOLD = 2.0


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

    def fingerprint(self) -> str:
        """sha256 (hex) of what a model trains on: each split's gene ids, counts of A and B and expression of
        A and B, and the medians (the classification targets' thresholds), cells in their order (a swapped
        pair differs). Files that differ only in form (a header line, CRLF, row order of the expression
        file) give the same fingerprint; a run folder records it (`deepdiff.rundir`) to refuse a resume on
        other data. About a second per GB of counts."""
        digest = hashlib.sha256(json.dumps([self.median_a, self.median_b]).encode())
        for name in SPLITS:
            split = self.split(name).to("cpu")
            digest.update(json.dumps([name, split.gene_ids], ensure_ascii=False).encode())
            for field in ("x_a", "x_b", "expr_a", "expr_b"):
                tensor = getattr(split, field).contiguous()
                digest.update(f"{field}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(tensor.numpy())
        return digest.hexdigest()



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



def _expression_of(split: _SplitFile, expr: _ExprFile) -> np.ndarray:
    """(N,) float64 expression of the split's genes, looked up by gene id in the cell's expression file."""
    pos = pd.Index(expr.gene_ids).get_indexer(split.gene_ids)
    if (pos < 0).any():
        i = int(np.argmax(pos < 0))
        _fail(split.raw.path, f"gene {_show_id(split.gene_ids[i])} is not in {expr.raw.path}; expected every gene of the "
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
            _fail(lonely.raw.path, f"gene {_show_id(lonely.gene_ids[i])} is not in {other.raw.path} (unpaired='error'); "
                  "expected both cells to list the same genes in each split", line=lonely.line_of_gene(i))
        count = int((~in_b).sum() + only_b.sum())
        note = f"{a.raw.path} / {b.raw.path}: {count} genes only in one cell (e.g. {_show_id(lonely.gene_ids[i])}), dropped"
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

