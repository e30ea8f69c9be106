"""Attention maps of a trained DeepDiff model: what `deepdiff evaluate --out` writes and what the study
report draws. Torch and numpy only (no Ray, no MLflow).

A forward pass (`deepdiff.model.DeepDiffOutput`) carries, per **Level I path**, the bin attention alpha
(N genes, K channels, T bins; a softmax over the T bins of each channel) and, per **Level II path**, the
mark attention beta (N, K'; a softmax over the K' channel embeddings it reads). Paths:

- ``diff``: f1^d / f2^d over the variant's channel groups (channels ``GROUP:MARK``, e.g. ``A-B:H3K4me3``);
  Level II ``diff`` of the raw_aux variants reads f1^d's channels, then f1^A's and f1^B's (named
  ``f1^A:MARK``, ``f1^B:MARK``);
- ``A``, ``B``: the cell-specific encoders of the aux variants (channels ``A:MARK``, ``B:MARK``).

Bins: DeepDiffChrome's T = 200 bins of `BIN_BP` = 100 bp span -10 kb .. +10 kb around the TSS, bin 1
first; `bin_centers_kb` gives each bin's centre in kb from the TSS.

`attention_maps(model, split, input_transform)` runs the model (eval mode, no dropout) on a split's genes
with the run's input transform and returns `AttentionMaps`; `save_npz` writes them to an ``.npz`` plus a
JSON file saying what each array is (`ARRAY_DOC`). Everything in the .npz is a plain numpy array
(strings as fixed-width unicode), so ``np.load(path)`` reads it without pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepdiff.data import MARKS, SplitData
from deepdiff.files import write_atomic
from deepdiff.model import DeepDiff
from deepdiff.train import prepare_split

BIN_BP = 100  # bp per bin in DeepDiffChrome's files (200 bins: -10 kb .. +10 kb around the TSS)
PATHS = ("diff", "A", "B")

# What each array of the .npz holds ({path} is one of PATHS present in the model).
ARRAY_DOC = {
    "gene_ids": "(N,) gene id of each row, in the split's order",
    "target": "(N,) true differential expression log2(expr_B + 1) - log2(expr_A + 1)",
    "prediction": "(N,) the model's predicted differential expression (eval mode)",
    "marks": "(M,) histone marks, in the order of the input channels",
    "bin_centers_kb": "(T,) centre of each bin in kb from the TSS (100 bp bins, -10..+10 kb)",
    "bin_attention_{path}": "(N, K, T) bin attention alpha of Level I path {path}: per gene and channel, "
                            "a softmax over the T bins (sums to 1 over bins)",
    "bin_channels_{path}": "(K,) channel names of bin_attention_{path}'s K axis (GROUP:MARK)",
    "mark_attention_{path}": "(N, K') mark attention beta of Level II path {path}: per gene, a softmax over "
                             "the K' channel embeddings it reads (sums to 1)",
    "mark_channels_{path}": "(K',) channel names of mark_attention_{path}'s K' axis",
}


def bin_centers_kb(n_bins: int) -> np.ndarray:
    """(T,) the centre of each bin in kb from the TSS: bins of `BIN_BP` bp, T/2 on each side."""
    return (np.arange(n_bins) - n_bins / 2 + 0.5) * BIN_BP / 1000.0


def mark_channel_names(model: DeepDiff, marks: tuple[str, ...]) -> dict[str, list[str]]:
    """Channel labels per Level II path, in the order of its mark attention's K' axis."""
    level1 = model.channel_names(marks)
    names: dict[str, list[str]] = {}
    if model.spec.level1_inputs:
        own = [f"f1^{cell}:{mark}" for cell in ("A", "B") for mark in marks] if model.spec.cell_encoders else []
        names["diff"] = level1["diff"] + own
    if model.spec.cell_encoders:
        names["A"], names["B"] = level1["A"], level1["B"]
    return names


@dataclass(frozen=True)
class AttentionMaps:
    """Attention of one model over N genes; see the module docstring for the paths and axes."""

    gene_ids: tuple[str, ...]
    target: np.ndarray  # (N,)
    prediction: np.ndarray  # (N,)
    marks: tuple[str, ...]  # (M,)
    bin_attention: dict[str, np.ndarray]  # Level I path -> (N, K, T)
    bin_channels: dict[str, list[str]]  # Level I path -> (K,)
    mark_attention: dict[str, np.ndarray]  # Level II path -> (N, K')
    mark_channels: dict[str, list[str]]  # Level II path -> (K',)

    @property
    def n_bins(self) -> int:
        return next(iter(self.bin_attention.values())).shape[-1]

    def select(self, index: Any) -> "AttentionMaps":
        """The maps of genes `index` (integer positions), in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self, gene_ids=tuple(self.gene_ids[i] for i in idx), target=self.target[idx], prediction=self.prediction[idx],
            bin_attention={k: v[idx] for k, v in self.bin_attention.items()},
            mark_attention={k: v[idx] for k, v in self.mark_attention.items()},
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array under its .npz name (`ARRAY_DOC`)."""
        out = {
            "gene_ids": np.array(self.gene_ids, dtype=str), "target": self.target, "prediction": self.prediction,
            "marks": np.array(self.marks, dtype=str), "bin_centers_kb": bin_centers_kb(self.n_bins),
        }
        for path, alpha in self.bin_attention.items():
            out[f"bin_attention_{path}"] = alpha
            out[f"bin_channels_{path}"] = np.array(self.bin_channels[path], dtype=str)
        for path, beta in self.mark_attention.items():
            out[f"mark_attention_{path}"] = beta
            out[f"mark_channels_{path}"] = np.array(self.mark_channels[path], dtype=str)
        return out


@torch.no_grad()
def attention_maps(
    model: DeepDiff, split: SplitData, input_transform: str, *, marks: tuple[str, ...] = MARKS,
    batch_size: int = 256, device: torch.device | str | None = None,
) -> AttentionMaps:
    """Run `model` (eval mode) on every gene of `split` with the run's `input_transform`; see `AttentionMaps`.
    The split goes to `device` once (None: where the model's parameters are; a model on a GPU with
    `device` "cpu" is a ValueError, not torch's device-mismatch error from inside the forward); every
    array comes back to the host."""
    here = next(model.parameters()).device
    device = here if device is None else torch.device(device)
    if device.type != here.type or (device.index is not None and device != here):
        raise ValueError(f"attention_maps: the model is on {here} but device {device} was asked for")
    prepared = prepare_split(split, input_transform, device)
    was_training = model.training
    model.eval()
    preds, alphas, betas = [], {}, {}
    for i in range(0, len(prepared), batch_size):
        out = model(prepared.x_a[i : i + batch_size], prepared.x_b[i : i + batch_size])
        preds.append(out.prediction.cpu())
        for path, alpha in out.bin_attention.items():
            alphas.setdefault(path, []).append(alpha.cpu())
        for path, beta in out.mark_attention.items():
            betas.setdefault(path, []).append(beta.cpu())
    model.train(was_training)
    order = lambda d: {p: torch.cat(d[p]).double().numpy() for p in PATHS if p in d}  # noqa: E731
    return AttentionMaps(
        gene_ids=tuple(split.gene_ids), target=prepared.targets["diff"].double().cpu().numpy(),
        prediction=torch.cat(preds).double().numpy(), marks=tuple(marks),
        bin_attention=order(alphas), bin_channels=model.channel_names(tuple(marks)),
        mark_attention=order(betas), mark_channels=mark_channel_names(model, tuple(marks)),
    )


def save_npz(maps: AttentionMaps, npz_path: str | Path, *, about: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``npz_path`` and beside it ``<stem>.json``: `about` (what was evaluated) and, per array, its
    shape and what it holds. Each is written whole (`write_atomic`: never half a file)."""
    npz_path = Path(npz_path)
    arrays = maps.arrays()
    json_path = npz_path.with_suffix(".json")
    doc = dict(about)
    doc["arrays"] = {name: {"shape": list(a.shape), "dtype": str(a.dtype), "what": _doc_of(name)} for name, a in arrays.items()}
    write_atomic(npz_path, lambda fh: np.savez_compressed(fh, **arrays))
    write_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    return npz_path, json_path


def _doc_of(name: str) -> str:
    if name in ARRAY_DOC:
        return ARRAY_DOC[name]
    stem, _, path = name.rpartition("_")
    return ARRAY_DOC[f"{stem}_{{path}}"].format(path=path)
