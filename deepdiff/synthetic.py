"""A planted-signal cell-type pair written in DeepDiffChrome's on-disk format (see `deepdiff.data`).

Generative model, per gene g (all draws from one ``numpy`` generator seeded by `seed`):

- latent activity ``a_A ~ N(0, 1)`` in cell A and ``a_B = a_A + delta``, ``delta ~ N(0, 1)``;
- counts ~ Poisson(background + bump): background rate 0.3-1 per mark and bin everywhere; around the
  TSS (centre bin, a Gaussian bump of ~20 bins) the activating marks H3K4me3 and H3K36me3 (the latter
  also over a ramp into the gene body downstream) scale with ``exp(+0.8 a)``, the repressive H3K27me3
  and H3K9me3 with ``exp(-0.8 a)``; H3K4me1 is a weak bump unrelated to ``a``;
- expression = round(2 ** (4 + 2.5 a + N(0, 0.5))), so diff = log2(e_B + 1) - log2(e_A + 1) ~ 2.5 delta.

A model that reads the marks of both cells aligned by gene id can predict diff; one fed misaligned genes
or shuffled labels cannot. Genes are split ~54/13/33 % into train/valid/test (the paper's
10000/2360/6100); each expression file also lists ~10 % extra genes absent from the histone-mark files,
like the real data. With `shuffle_b`, cell B lists its genes in another order (whole T-row blocks) and
its expression file in another order, so alignment by gene id is exercised.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from deepdiff.data import MARKS, N_BINS, SPLITS, pair_files

SPLIT_FRACTIONS = (0.54, 0.13)  # train, valid; test gets the rest
EXTRA_EXPR_FRACTION = 0.10  # genes in the expression files but in no histone-mark file
MARK_EFFECT = 0.8  # log-rate change of activating (+) / repressive (-) marks per unit of activity
_SIGN = {"H3K4me1": 0.0, "H3K4me3": 1.0, "H3K9me3": -1.0, "H3K27me3": -1.0, "H3K36me3": 1.0}
_PEAK = {"H3K4me1": 1.5, "H3K4me3": 6.0, "H3K9me3": 2.0, "H3K27me3": 3.0, "H3K36me3": 3.0}


def write_synthetic_pair(
    out_dir: str | Path,
    *,
    genes: int = 2000,
    seed: int = 0,
    cell_a: str = "Cell1",
    cell_b: str = "Cell2",
    n_bins: int = N_BINS,
    shuffle_b: bool = True,
) -> dict[str, Path]:
    """Write ``{cell_a,cell_b}.{train,valid,test,expr}.csv`` into `out_dir`; return them by ``"CELL.KIND"``.

    `genes` (>= 3) genes with histone marks, `n_bins` (>= 8) bins each. A row id is
    ``ENSGS{seed:02d}{index:07d}_SYN{index}_{bin}``; the gene id (as in the expression files) is
    ``ENSGS{seed:02d}{index:07d}``. The bytes written depend only on the arguments. Read them back with
    ``deepdiff.data.load_pair(out_dir, cell_a, cell_b, n_bins=n_bins)``.
    """
    if genes < len(SPLITS):
        raise ValueError(f"genes={genes}: expected at least {len(SPLITS)} (one per split)")
    if n_bins < 8:
        raise ValueError(f"n_bins={n_bins}: expected at least 8")
    if cell_a == cell_b:
        raise ValueError(f"cell_a and cell_b are both {cell_a!r}; expected two names")
    rng = np.random.default_rng(seed)
    n_extra = max(1, round(EXTRA_EXPR_FRACTION * genes))
    ids = np.array([f"ENSGS{seed:02d}{i:07d}" for i in range(genes + n_extra)], dtype=object)
    names = np.array([f"{gene}_SYN{i}" for i, gene in enumerate(ids[:genes])], dtype=object)
    activity_a = rng.normal(0.0, 1.0, genes + n_extra)
    activity_b = activity_a + rng.normal(0.0, 1.0, genes + n_extra)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for cell, activity, shuffle in ((cell_a, activity_a, False), (cell_b, activity_b, shuffle_b)):
        counts = _mark_counts(rng, activity[:genes], n_bins)
        expression = np.round(2.0 ** (4.0 + 2.5 * activity + rng.normal(0.0, 0.5, activity.shape)))
        for name, rows in zip(SPLITS, _split_rows(genes)):
            order = rng.permutation(rows) if shuffle else rows
            path = out_dir / f"{cell}.{name}.csv"
            _write_split(path, names[order], counts[order])
            written[f"{cell}.{name}"] = path
        order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
        path = out_dir / f"{cell}.expr.csv"
        _write_table(path, {"id": pa.array(ids[order].tolist()), "expr": pa.array(expression[order].astype(np.int64))})
        written[f"{cell}.expr"] = path
    return written


def ensure_synthetic_pair(out_dir: str | Path, *, cell_a: str, cell_b: str, **options: Any) -> bool:
    """Write the synthetic pair into `out_dir` unless all eight files are already there.

    `options` are `write_synthetic_pair`'s (genes, seed, ...). The pair is written to a temporary folder
    beside `out_dir` and renamed into place, so a killed writer never leaves a half-written pair behind.
    Returns True if it wrote the pair.
    """
    out = Path(out_dir)
    if all(f.is_file() for f in pair_files(out, cell_a, cell_b).values()):
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        write_synthetic_pair(tmp, cell_a=cell_a, cell_b=cell_b, **options)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _split_rows(genes: int) -> list[np.ndarray]:
    """Gene indices of train, valid, test: consecutive ranges, ~54/13/33 %, at least one gene each."""
    n_train = min(max(1, round(SPLIT_FRACTIONS[0] * genes)), genes - 2)
    n_valid = min(max(1, round(SPLIT_FRACTIONS[1] * genes)), genes - n_train - 1)
    bounds = np.cumsum([0, n_train, n_valid, genes - n_train - n_valid])
    return [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def tss_profiles(n_bins: int) -> np.ndarray:
    """(M, T) float64 bump shapes of the five marks: Gaussian around the centre bin (sd = T/20),
    H3K36me3 plus a ramp over the downstream half (gene body); peaks are 1."""
    t = np.arange(n_bins)
    centre = n_bins // 2
    bump = np.exp(-0.5 * ((t - centre) / (n_bins / 20)) ** 2)
    body = np.clip((t - centre) / (n_bins / 4), 0.0, 1.0) * (t >= centre)
    profiles = np.tile(bump, (len(MARKS), 1))
    profiles[MARKS.index("H3K36me3")] = np.maximum(0.5 * bump, body)
    return profiles


def _mark_counts(rng: np.random.Generator, activity: np.ndarray, n_bins: int) -> np.ndarray:
    """(N, M, T) int64 Poisson counts of N genes with latent `activity` (N,)."""
    background = rng.uniform(0.3, 1.0, (1, len(MARKS), 1))
    peak = np.array([_PEAK[m] for m in MARKS])[None, :, None]
    sign = np.array([_SIGN[m] for m in MARKS])[None, :, None]
    rate = background + peak * tss_profiles(n_bins)[None] * np.exp(MARK_EFFECT * sign * activity[:, None, None])
    return rng.poisson(rate)


def _write_split(path: Path, gene_names: np.ndarray, counts: np.ndarray) -> None:
    """One ``CELL.SPLIT.csv``: a row ``GENE_BIN,<5 counts>`` per bin, T consecutive rows per gene."""
    n, n_marks, n_bins = counts.shape
    genes = pa.array(gene_names.tolist(), pa.string()).take(pa.array(np.repeat(np.arange(n), n_bins)))
    bins = pc.cast(pa.array(np.tile(np.arange(1, n_bins + 1), n)), pa.string())
    columns = {"id": pc.binary_join_element_wise(genes, bins, "_")}
    flat = counts.transpose(0, 2, 1).reshape(n * n_bins, n_marks)
    columns.update({mark: pa.array(flat[:, j]) for j, mark in enumerate(MARKS)})
    _write_table(path, columns)


def _write_table(path: Path, columns: dict[str, pa.Array]) -> None:
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(pa.table(columns), path, write_options=options)
