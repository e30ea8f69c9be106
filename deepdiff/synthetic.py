"""A synthetic cell-type pair written in DeepDiffChrome's on-disk format (see `deepdiff.data`).

Two generative models (`signal`); all draws come from one ``numpy`` generator seeded by `seed`.

**"realistic" (the default)** imitates the real sample pair (DeepDiffChrome's ``Cell1`` = E123 K562,
``Cell2`` = E003 H1; 600 genes), so that baselines and models score on it about as on real data.
Cell A of a synthetic pair follows E123's statistics and cell B E003's. Per gene g:

- a mark-driving activity ``u_A ~ N(0, 1)``, ``u_B`` correlated with it (`ACTIVITY_CORR`); a depth
  factor shared by all marks and both cells (`DEPTH_SD`); own per-mark deviations, correlated between
  the cells (`MARK_NOISE_CORR`);
- counts per mark and bin ~ gamma-Poisson (shape `MarkModel.dispersion`) with rate
  ``level * (1 + excess * bump(t))``: ``level`` log-normal across genes and rising with activity,
  ``bump`` a Gaussian around the TSS bin T/2, ``excess`` a switch ``peak * sigmoid(beta (u - midpoint))``
  (H3K4me3: sharp promoter peak of active genes; H3K4me1: broad, weaker), a fixed dip for H3K36me3
  (depleted at the TSS), a few broad Polycomb domains of H3K27me3 in cell B (H1's bivalent genes);
- expression score ``z = 0.9 u + 0.44 eta`` (``eta`` mark-invisible, correlated between the cells,
  `EXPR_NOISE_CORR`), mapped monotonically onto the real cell's quantiles of log2(expr + 1)
  (`CellModel.log2_expr_quantiles`), so cell-specific expression is driven by the marks plus noise.

Every constant is a summary statistic measured on the real sample or was tuned by hand until the
statistics below matched (no gene's data is stored). Measured on the real sample (600 genes, both cells)
vs a default synthetic pair of the same size (``genes=600, split_fractions=(1/3, 1/3), seed=0``):

    per bin, cell A | B     mean                  share of zeros      99th percentile   TSS / flank
    H3K4me1   real/synth   2.97/2.77 | 2.30/2.13   .33/.28 | .33/.30   24/19 | 15/13     1.5/1.6 | 1.9/1.8
    H3K4me3                3.64/3.22 | 7.19/7.21   .43/.36 | .42/.36   51/44 | 143/127   9.0/14  | 18/47
    H3K9me3                1.44/1.40 | 1.53/1.58   .34/.35 | .35/.35    7/7  | 10/9      1.1/1.1 | 1.1/1.1
    H3K27me3               1.09/1.16 | 3.55/4.33   .45/.44 | .32/.30    6/7  | 65/66     1.1/1.2 | 2.2/3.6
    H3K36me3               1.68/1.71 | 2.17/2.21   .41/.37 | .32/.27   12/11 | 17/13     0.6/0.7 | 0.5/0.7

- correlation of the marks' log1p gene totals, cell A (K4me1-K4me3, K4me3-K36me3, K4me3-K27me3):
  real .83 .86 -.09, synthetic .66 .70 .33; between the cells, per mark: real .53-.78, synthetic .51-.77;
- diff = log2(e_B + 1) - log2(e_A + 1): mean 0.87 / 0.83, sd 3.70 / 3.36, 5th-95th percentile
  -3.3..8.9 / -3.6..7.8, share with |diff| >= 2: 0.36 / 0.40; log2 expression A vs B correlates .75 / .80;
- baselines (`deepdiff.baselines`, 200 train genes, valid/test PCC): linear raw .56/.57 vs .52/.51,
  log1p .66/.68 vs .68/.63; svr raw .54/.57 vs .52/.44, log1p .61/.65 vs .63/.56; svr2 raw .56/.58 vs
  .47/.45. With 200 train and 1,000 test genes, seeds 0-3, linear and svr (raw and log1p) land within
  0.1 of the real sample's mean valid/test PCC, svr2 within 0.12 (seed 3: 0.18 below); the per-mark
  mean, share of zeros and 99th percentile within a factor 0.76-1.33 of the real ones.
- known gaps: marks correlate less with each other than on the real sample, and H3K4me3's gene-level
  spread is narrower (log-sd .6-.8 against 1.05-1.19); cell B's H3K27me3 domains are unrelated to H3K4me1
  (on H1 they go together, bivalent promoters).

**"easy"**, the original planted signal (a linear fit reaches ~0.94 PCC): latent activity
``a_A ~ N(0, 1)``, ``a_B = a_A + N(0, 1)``; counts ~ Poisson(background 0.3-1 + a Gaussian TSS bump of
~20 bins, H3K36me3 also over a ramp into the gene body) whose activating marks H3K4me3 and H3K36me3
scale with ``exp(+0.8 a)``, repressive H3K27me3 and H3K9me3 with ``exp(-0.8 a)``, H3K4me1 unrelated;
expression = round(2 ** (4 + 2.5 a + N(0, 0.5))), so diff ~ 2.5 (a_B - a_A).

With either, a model that reads the marks of both cells aligned by gene id can predict diff; one fed
misaligned genes or shuffled labels cannot. Genes are split ~54/13/33 % into train/valid/test (the
paper's 10000/2360/6100) unless `split_fractions` says otherwise; each expression file also lists ~10 %
extra genes absent from the histone-mark files, like the real data. With `shuffle_b`, cell B lists its
genes in another order (whole T-row blocks) and its expression file in another order, so alignment by
gene id is exercised. Cells are named ``Cell1``/``Cell2`` unless given; ``synthetic.json`` beside the
files records the arguments, the real pair the constants were calibrated on, and `imitates`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from deepdiff.data import MARKS, N_BINS, SPLITS, pair_files
from deepdiff.errors import ConfigError
from deepdiff.files import staging_folder

SPLIT_FRACTIONS = (0.54, 0.13)  # train, valid; test gets the rest
EXTRA_EXPR_FRACTION = 0.10  # genes in the expression files but in no histone-mark file
SIGNALS = ("realistic", "easy")  # generative models; the first is the default
MIN_SYNTH_GENES = 12  # the smallest synthetic pair whose every split has 2 genes (a PCC)
MAX_SYNTH_GENES = 100_000  # more than any genome has; 200 bins each: ~20 GB of CSV per cell
CALIBRATED_ON = "E123-E003"  # the real pair whose summary statistics the "realistic" constants imitate

# ---- "easy": the original planted signal
MARK_EFFECT = 0.8  # log-rate change of activating (+) / repressive (-) marks per unit of activity
_SIGN = {"H3K4me1": 0.0, "H3K4me3": 1.0, "H3K9me3": -1.0, "H3K27me3": -1.0, "H3K36me3": 1.0}
_PEAK = {"H3K4me1": 1.5, "H3K4me3": 6.0, "H3K9me3": 2.0, "H3K27me3": 3.0, "H3K36me3": 3.0}


# ---- "realistic": constants tuned so that the synthetic pair's summary statistics match those measured
# on the real sample pair (see the module docstring); no gene's data is stored here.
@dataclass(frozen=True)
class MarkModel:
    """How one mark's counts are drawn in one cell type (rates per 100-bp bin)."""

    background: float  # mean count per bin away from the TSS, for a gene of median depth and activity
    gene_sd: float  # log-sd across genes of the background, own to this mark (beyond the shared depth)
    beta_level: float  # log-change of the background per unit of the gene's activity in this cell
    peak: float  # largest TSS excess at the centre bin, in units of the background; < 0: a fixed dip
    peak_sd: float  # sd across genes of the TSS excess's logit, own to this mark
    beta_peak: float  # steepness of the TSS excess's switch with activity: excess = peak * sigmoid(...)
    midpoint: float  # activity at which the excess is half its largest value
    width: float  # sd of the Gaussian TSS bump, in bins
    dispersion: float  # gamma-Poisson shape per bin (var = mu + mu^2 / dispersion); smaller = heavier tail
    domain_share: float = 0.0  # share of genes with a broad domain of this mark (e.g. Polycomb targets)
    domain_gain: float = 1.0  # their TSS excess is multiplied by this


@dataclass(frozen=True)
class CellModel:
    """One synthetic cell type: its marks and the map from activity to log2 expression."""

    marks: dict  # mark name -> MarkModel, for every mark of MARKS
    log2_expr_quantiles: tuple[float, ...]  # log2(expr + 1) at probabilities 0, 0.05, ..., 1 (21 values)


DEPTH_SD = 0.42  # log-sd of a gene's depth factor, shared by all marks and both cells (mappability, GC)
MARK_NOISE_CORR = 0.45  # correlation between the cells of a gene's own per-mark deviations
ACTIVITY_CORR = 0.8  # correlation of a gene's mark-driving activity between the two cell types
EXPR_FROM_ACTIVITY = 0.9  # weight of activity in the expression score (the rest is mark-invisible noise)
EXPR_NOISE_CORR = 0.95  # correlation of that noise between the two cell types (gene-level, e.g. mRNA decay)

REALISTIC = (
    CellModel(  # cell A imitates E123 (K562)
        marks={
            "H3K4me1": MarkModel(background=1.8, gene_sd=0.5, beta_level=0.5, peak=1.2, peak_sd=0.5,
                                 beta_peak=1.0, midpoint=0.0, width=14.0, dispersion=2.0),
            "H3K4me3": MarkModel(background=1.1, gene_sd=0.25, beta_level=0.0, peak=32.0, peak_sd=0.6,
                                 beta_peak=2.0, midpoint=-0.3, width=7.0, dispersion=2.0),
            "H3K9me3": MarkModel(background=1.2, gene_sd=0.3, beta_level=0.1, peak=0.2, peak_sd=0.5,
                                 beta_peak=0.0, midpoint=0.0, width=20.0, dispersion=4.0),
            "H3K27me3": MarkModel(background=0.9, gene_sd=0.4, beta_level=-0.15, peak=0.3, peak_sd=0.5,
                                  beta_peak=0.0, midpoint=0.0, width=15.0, dispersion=3.0),
            "H3K36me3": MarkModel(background=1.3, gene_sd=0.45, beta_level=0.6, peak=-0.45, peak_sd=0.0,
                                  beta_peak=0.0, midpoint=0.0, width=5.0, dispersion=3.0),
        },
        log2_expr_quantiles=(0.0, 0.0, 0.0, 1.0, 2.3, 3.9, 5.6, 7.7, 9.3, 10.4, 11.5, 12.0, 12.3, 12.8, 13.4, 13.7,
                             14.1, 14.7, 15.0, 15.8, 17.7),
    ),
    CellModel(  # cell B imitates E003 (H1)
        marks={
            "H3K4me1": MarkModel(background=1.5, gene_sd=0.4, beta_level=0.35, peak=1.6, peak_sd=0.5,
                                 beta_peak=1.0, midpoint=0.0, width=14.0, dispersion=2.5),
            "H3K4me3": MarkModel(background=1.0, gene_sd=0.25, beta_level=0.0, peak=110.0, peak_sd=0.7,
                                 beta_peak=2.0, midpoint=-0.3, width=7.0, dispersion=2.0),
            "H3K9me3": MarkModel(background=1.3, gene_sd=0.45, beta_level=0.0, peak=0.2, peak_sd=0.5,
                                 beta_peak=0.0, midpoint=0.0, width=20.0, dispersion=3.5),
            "H3K27me3": MarkModel(background=1.5, gene_sd=0.6, beta_level=0.0, peak=0.8, peak_sd=0.5,
                                  beta_peak=0.0, midpoint=0.0, width=30.0, dispersion=2.0, domain_share=0.065, domain_gain=120.0),
            "H3K36me3": MarkModel(background=1.8, gene_sd=0.45, beta_level=0.3, peak=-0.45, peak_sd=0.0,
                                  beta_peak=0.0, midpoint=0.0, width=6.0, dispersion=3.0),
        },
        log2_expr_quantiles=(0.0, 0.0, 1.0, 3.6, 5.6, 7.5, 9.1, 10.2, 10.9, 11.3, 11.7, 12.0, 12.4, 12.8, 13.2, 13.5,
                             13.9, 14.2, 14.6, 15.5, 18.6),
    ),
)


def write_synthetic_pair(
    out_dir: str | Path,
    *,
    genes: int = 2000,
    seed: int = 0,
    cell_a: str = "Cell1",
    cell_b: str = "Cell2",
    n_bins: int = N_BINS,
    shuffle_b: bool = True,
    signal: str = SIGNALS[0],
    split_fractions: tuple[float, float] = SPLIT_FRACTIONS,
    imitates: str | None = None,
) -> dict[str, Path]:
    """Write ``{cell_a,cell_b}.{train,valid,test,expr}.csv`` into `out_dir`; return them by ``"CELL.KIND"``.

    `genes` (>= 3) genes with histone marks, `n_bins` (>= 8) bins each. A row id is
    ``ENSGS{seed:02d}{index:07d}_SYN{index}_{bin}``; the gene id (as in the expression files) is
    ``ENSGS{seed:02d}{index:07d}``. `signal` picks the generative model ("realistic", the default, or
    "easy"; see the module docstring). `split_fractions` are the train and valid shares of the genes
    (test gets the rest; (1/3, 1/3) for equal splits). `imitates` is a free label (e.g. a real pair
    "E123-E003" that a study stands this synthetic pair in for) recorded, with every other argument,
    in ``out_dir/synthetic.json``; it changes no data. The bytes written depend only on the arguments.
    Read them back with ``deepdiff.data.load_pair(out_dir, cell_a, cell_b, n_bins=n_bins)``.
    """
    if genes < len(SPLITS):
        raise ValueError(f"genes={genes}: expected at least {len(SPLITS)} (one per split)")
    if n_bins < 8:
        raise ValueError(f"n_bins={n_bins}: expected at least 8")
    if cell_a == cell_b:
        raise ValueError(f"cell_a and cell_b are both {cell_a!r}; expected two names")
    if signal not in SIGNALS:
        raise ValueError(f"signal={signal!r}: expected one of {', '.join(SIGNALS)}")
    if len(split_fractions) != 2 or min(split_fractions) <= 0 or sum(split_fractions) >= 1:
        raise ValueError(f"split_fractions={split_fractions}: expected two positive train/valid shares summing below 1")
    rng = np.random.default_rng(seed)
    n_extra = max(1, round(EXTRA_EXPR_FRACTION * genes))
    ids = np.array([f"ENSGS{seed:02d}{i:07d}" for i in range(genes + n_extra)], dtype=object)
    names = np.array([f"{gene}_SYN{i}" for i, gene in enumerate(ids[:genes])], dtype=object)
    generate = _easy_cells if signal == "easy" else _realistic_cells
    cells = generate(rng, genes, n_extra, n_bins)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for cell, (counts, expression), shuffle in ((cell_a, cells[0], False), (cell_b, cells[1], shuffle_b)):
        for name, rows in zip(SPLITS, _split_rows(genes, split_fractions)):
            order = rng.permutation(rows) if shuffle else rows
            path = out_dir / f"{cell}.{name}.csv"
            _write_split(path, names[order], counts[order])
            written[f"{cell}.{name}"] = path
        order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
        path = out_dir / f"{cell}.expr.csv"
        _write_table(path, {"id": pa.array(ids[order].tolist()), "expr": pa.array(expression[order].astype(np.int64))})
        written[f"{cell}.expr"] = path
    record = {"generator": "deepdiff.synthetic", "signal": signal, "genes": genes, "seed": seed, "cell_a": cell_a,
              "cell_b": cell_b, "n_bins": n_bins, "shuffle_b": shuffle_b, "split_fractions": list(split_fractions),
              "imitates": imitates, "calibrated_on": CALIBRATED_ON if signal == "realistic" else None}
    (out_dir / SYNTHETIC_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return written


SYNTHETIC_RECORD = "synthetic.json"  # beside the eight files: the arguments that wrote them


def _easy_cells(rng: np.random.Generator, genes: int, n_extra: int, n_bins: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(counts (genes, M, T) int64, expression (genes + n_extra,) float64)] of cells A and B, "easy" model."""
    activity_a = rng.normal(0.0, 1.0, genes + n_extra)
    activity_b = activity_a + rng.normal(0.0, 1.0, genes + n_extra)
    cells = []
    for activity in (activity_a, activity_b):
        counts = _mark_counts(rng, activity[:genes], n_bins)
        expression = np.round(2.0 ** (4.0 + 2.5 * activity + rng.normal(0.0, 0.5, activity.shape)))
        cells.append((counts, expression))
    return cells


def _realistic_cells(rng: np.random.Generator, genes: int, n_extra: int, n_bins: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(counts (genes, M, T) int64, expression (genes + n_extra,) float64)] of cells A and B, "realistic" model."""
    n = genes + n_extra
    activity_a = rng.normal(0.0, 1.0, n)
    activity_b = ACTIVITY_CORR * activity_a + np.sqrt(1 - ACTIVITY_CORR**2) * rng.normal(0.0, 1.0, n)
    noise_a = rng.normal(0.0, 1.0, n)
    noise_b = EXPR_NOISE_CORR * noise_a + np.sqrt(1 - EXPR_NOISE_CORR**2) * rng.normal(0.0, 1.0, n)
    depth = DEPTH_SD * rng.normal(0.0, 1.0, (genes, 1))
    own_a = rng.normal(0.0, 1.0, (2, genes, len(MARKS)))  # per-mark deviations of level and TSS excess
    own_b = MARK_NOISE_CORR * own_a + np.sqrt(1 - MARK_NOISE_CORR**2) * rng.normal(0.0, 1.0, own_a.shape)
    cells = []
    for model, activity, noise, own in zip(REALISTIC, (activity_a, activity_b), (noise_a, noise_b), (own_a, own_b)):
        counts = _realistic_counts(rng, model, activity[:genes], depth, own, n_bins)
        score = EXPR_FROM_ACTIVITY * activity + np.sqrt(1 - EXPR_FROM_ACTIVITY**2) * noise
        cells.append((counts, _expression_from_score(score, model.log2_expr_quantiles)))
    return cells


def _expression_from_score(score: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Raw expression (rounded) whose log2(e + 1) has the given quantiles, monotone in the N(0, 1) `score`."""
    probs = np.linspace(0.0, 1.0, len(quantiles))
    log2_expr = np.interp(_normal_cdf(score), probs, quantiles)
    return np.round(2.0**log2_expr - 1.0)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def _realistic_counts(rng: np.random.Generator, model: CellModel, activity: np.ndarray, depth: np.ndarray,
                      own: np.ndarray, n_bins: int) -> np.ndarray:
    """(N, M, T) int64 gamma-Poisson counts of N genes of one cell; `depth` (N, 1) is shared by the cells,
    `own` (2, N, M) are the genes' N(0, 1) deviations of each mark's level and TSS excess in this cell."""
    t = np.arange(n_bins)
    centre = n_bins // 2
    scale = n_bins / N_BINS  # widths are in bins of the 200-bin layout
    counts = np.empty((len(activity), len(MARKS), n_bins), dtype=np.int64)
    u = activity[:, None]
    for j, mark in enumerate(MARKS):
        m = model.marks[mark]
        level = m.background * np.exp(depth + m.gene_sd * own[0, :, j : j + 1] + m.beta_level * u)
        bump = np.exp(-0.5 * ((t - centre) / (m.width * scale)) ** 2)[None, :]
        if m.peak >= 0:
            logit = m.beta_peak * (u - m.midpoint) + m.peak_sd * own[1, :, j : j + 1]
            excess = m.peak / (1.0 + np.exp(-logit))
            if m.domain_share > 0:
                excess = excess * np.where(rng.random((len(u), 1)) < m.domain_share, m.domain_gain, 1.0)
        else:
            excess = np.full((len(u), 1), m.peak)
        rate = level * (1.0 + excess * bump)
        counts[:, j] = rng.poisson(rng.gamma(m.dispersion, rate / m.dispersion))
    return counts


def check_synthetic_genes(genes: int, flag: str, least: int = MIN_SYNTH_GENES) -> None:
    """A synthetic pair's gene count: at least `least` (two genes in every split), at most MAX_SYNTH_GENES;
    a `ConfigError` naming `flag` otherwise."""
    if not least <= genes <= MAX_SYNTH_GENES:
        raise ConfigError(f"{flag} {genes}: expected {least} to {MAX_SYNTH_GENES} genes"
                          + (" (two genes in every split)" if genes < least else ""))


def add_synthetic_pair(out_dir: str | Path, *, cell_a: str, cell_b: str, **options: Any) -> dict[str, Path]:
    """Write a synthetic pair and its ``synthetic.json`` into the folder `out_dir` (created if missing),
    all or nothing; return the files written, by ``"CELL.KIND"``.

    `options` are `write_synthetic_pair`'s. The files are written into a staging folder inside `out_dir`
    and then renamed into it, so a failure (a full disk) leaves `out_dir` as it was, or no `out_dir` if
    this call created it, and the same call can run again. Files of the same names are replaced: the
    caller decides whether any may be there. An `OSError` names `out_dir`.
    """
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with staging_folder(out, ".synth-") as tmp:
            written = write_synthetic_pair(tmp, cell_a=cell_a, cell_b=cell_b, **options)
            for path in [*written.values(), tmp / SYNTHETIC_RECORD]:
                os.replace(path, out / path.name)
    except OSError as err:  # pyarrow's writer names no file and wraps the errno's text
        raise OSError(err.errno, os.strerror(err.errno) if err.errno else str(err), str(out)) from None
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    return {key: out / path.name for key, path in written.items()}


def ensure_synthetic_pair(out_dir: str | Path, *, cell_a: str, cell_b: str, **options: Any) -> bool:
    """Write the synthetic pair into `out_dir` unless all eight files are already there.

    `options` are `write_synthetic_pair`'s (genes, seed, ...). The pair is written to a staging folder
    beside `out_dir` and renamed into place, so a killed writer never leaves a half-written pair behind.
    Returns True if it wrote the pair.
    """
    out = Path(out_dir)
    if all(f.is_file() for f in pair_files(out, cell_a, cell_b).values()):
        return False
    with staging_folder(out.parent, ".tmp-") as tmp:
        write_synthetic_pair(tmp, cell_a=cell_a, cell_b=cell_b, **options)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return True


def _split_rows(genes: int, fractions: tuple[float, float] = SPLIT_FRACTIONS) -> list[np.ndarray]:
    """Gene indices of train, valid, test: consecutive ranges (`fractions` of train and valid, test the
    rest; ~54/13/33 % by default), at least one gene each."""
    n_train = min(max(1, round(fractions[0] * genes)), genes - 2)
    n_valid = min(max(1, round(fractions[1] * genes)), genes - n_train - 1)
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
