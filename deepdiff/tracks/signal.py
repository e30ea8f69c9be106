"""One track (a bigWig or an indexed BAM) -> its signal in T bins around each gene's TSS: `bin_track`.

Windows (`BinRules`): T = ``n_bins`` bins of ``bin_size`` bases, half upstream and half downstream of the
TSS, strand-aware: bin 1 is always the upstream end. On ``+`` the window is ``[tss - T*size/2, tss +
T*size/2)`` and bin T/2 + 1 starts at the TSS; on ``-`` it is mirrored, ``[tss + 1 - T*size/2, tss + 1 +
T*size/2)`` read right to left, so bin T/2 + 1 again starts at the TSS base. Bases beyond a chromosome
end hold no signal (0); the build counts the bins that reach there.

- **bigWig**: ``sum`` (default) adds the signal of the bin's bases (a base without data adds 0);
  ``mean`` is the mean over the bin's bases that have data (0 where none has). Values must be >= 0
  (a log-ratio track is refused). Read with pyBigWig (``values``, exact per-base data, never the zoom
  levels).
- **BAM** (with pysam, through its index): reads are counted in the bin that holds their position:
  ``five_prime`` (default) the read's 5' end (its start on ``+``, its last aligned base on ``-``), every
  read counted; ``centre`` the fragment's centre: for a proper pair the leftmost mate's start + TLEN / 2,
  counted once per pair (fragments over `MAX_FRAGMENT` bases are skipped), for single-end reads the 5'
  end moved ``fragment_length / 2`` downstream. Skipped: unmapped, secondary, supplementary and QC-failed
  reads, reads with MAPQ < ``min_mapq``, and reads the aligner flagged as duplicates unless
  ``keep_duplicates``.

pyBigWig and pysam are imported when a track is first opened; missing, they are a one-line `ConfigError`
naming the extra that installs them. A file that is empty, not of its format, truncated, or a BAM without
index is a one-line `DataError` naming it. This module imports nothing heavy (it runs in worker processes).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal as signals
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from deepdiff.errors import ConfigError, DataError

EXTRA = "deepdiff-tune[tracks]"
TRACK_FORMATS = {".bw": "bigwig", ".bigwig": "bigwig", ".bam": "bam"}  # file name ending -> format
BIGWIG_STATS = ("sum", "mean")
BAM_POSITIONS = ("five_prime", "centre")
MAX_FRAGMENT = 2000  # bases: longer paired fragments are not counted (centre), and the fetch margin
MAX_REGION = 1_000_000  # bases read from a track at once (overlapping windows are read together)
# The format's signature, checked before the library opens the file, so a wrong file is one clean line.
_MAGIC = {"bigwig": b"\x26\xfc\x8f\x88", "bam": b"\x1f\x8b"}
_SKIP_FLAGS = 0x4 | 0x100 | 0x200 | 0x800  # unmapped, secondary, QC fail, supplementary
_DUPLICATE = 0x400


@dataclass(frozen=True)
class BinRules:
    n_bins: int  # bins per gene (T)
    bin_size: int  # bases per bin
    bigwig_stat: str  # one of BIGWIG_STATS
    bam_position: str  # one of BAM_POSITIONS
    fragment_length: int  # single-end reads, bam_position centre: the 5' end moves half of it downstream
    min_mapq: int  # BAM reads with a lower mapping quality are not counted
    keep_duplicates: bool  # count reads flagged as duplicates (0x400) too

    @property
    def window(self) -> int:
        return self.n_bins * self.bin_size


def track_format(path: str | Path) -> str:
    """``bigwig`` or ``bam`` from the file's name (`TRACK_FORMATS`); a `DataError` for any other name."""
    name = Path(path).name.lower()
    for ending, fmt in TRACK_FORMATS.items():
        if name.endswith(ending):
            return fmt
    raise DataError(f"{path}: not a track by its name; expected a bigWig ({', '.join(e for e, f in TRACK_FORMATS.items() if f == 'bigwig')}) "
                    "or an indexed BAM (.bam)")


def library(name: str) -> Any:
    """pyBigWig or pysam, imported on first use; a one-line `ConfigError` naming the extra if missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"reading bigWig/BAM tracks needs {name}, which is not installed; "
                          f"install the extra: pip install '{EXTRA}'") from None


def chrom_sizes(path: str | Path) -> dict[str, int]:
    """{chromosome: size} of a track, after checking that it opens (and, a BAM, has an index and reads)."""
    path = Path(path)
    with _open(path, track_format(path)) as track:
        return track.chroms


def bin_track(path: str | Path, chrom: str, size: int, tss: np.ndarray, minus: np.ndarray, rules: BinRules) -> np.ndarray:
    """(N, n_bins) float32 signal of the N genes with TSSs `tss` (0-based) and strands `minus` on the
    track's chromosome `chrom` (of `size` bases), bin 1 upstream (module docstring)."""
    path = Path(path)
    half = rules.window // 2
    starts = np.where(minus, tss + 1 - half, tss - half).astype(np.int64)
    out = np.zeros((len(tss), rules.n_bins), dtype=np.float32)
    if len(tss) == 0:
        return out
    with _open(path, track_format(path)) as track:
        for lo, hi, members in _regions(starts, rules.window, size):
            values = track.per_base(chrom, lo, hi, rules)
            for i in members:
                out[i] = _bins(values, lo, int(starts[i]), size, rules, track.STAT or rules.bigwig_stat)
    out[minus] = out[minus, ::-1]
    return out


def worker_init() -> None:
    """Worker processes leave Ctrl-C to the parent, which stops handing out work and waits for them."""
    signals.signal(signals.SIGINT, signals.SIG_IGN)


def _regions(starts: np.ndarray, window: int, size: int) -> list[tuple[int, int, list[int]]]:
    """Windows grouped into regions read at once: (lo, hi, window indices), clipped to the chromosome;
    overlapping windows share a region of at most MAX_REGION bases."""
    regions: list[list] = []  # [lo, hi, members]
    for i in np.argsort(starts, kind="stable").tolist():
        lo, hi = max(int(starts[i]), 0), min(int(starts[i]) + window, size)
        if hi <= lo:
            lo = hi = min(max(lo, 0), size)  # wholly off the chromosome: nothing to read
        if regions and lo < regions[-1][1] and hi - regions[-1][0] <= MAX_REGION:
            regions[-1][1] = max(regions[-1][1], hi)
            regions[-1][2].append(i)
        else:
            regions.append([lo, hi, [i]])
    return [(lo, hi, members) for lo, hi, members in regions]


def _bins(values: np.ndarray, lo: int, start: int, size: int, rules: BinRules, stat: str) -> np.ndarray:
    """One window's bins (genomic order) from its region's per-base `values` (NaN = no data)."""
    a, b = max(start, 0), min(start + rules.window, size)
    if a == start and b == start + rules.window:  # inside the chromosome (nearly always): a view
        window = values[a - lo : b - lo]
    else:
        window = np.full(rules.window, np.nan)
        if b > a:
            window[a - start : b - start] = values[a - lo : b - lo]
    per_bin = window.reshape(rules.n_bins, rules.bin_size)
    covered = ~np.isnan(per_bin)
    total = np.where(covered, per_bin, 0.0).sum(axis=1)
    if stat == "sum":
        return total
    count = covered.sum(axis=1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


# ---------------------------------------------------------------------------------------------------
# The two formats: open + check, chromosome sizes, per-base signal of a region


def _check_signature(path: Path, fmt: str) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); expected a {fmt} file") from None
    if not head:
        raise DataError(f"{path}: file is empty; expected a {'bigWig' if fmt == 'bigwig' else 'BAM'} file")
    if not head.startswith(_MAGIC[fmt]):
        raise DataError(f"{path}: not a {'bigWig' if fmt == 'bigwig' else 'BAM'} file (its first bytes are not the "
                        "format's signature); expected the file its name says")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a library call that prints to it from C."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open(path: Path, fmt: str) -> "_BigWig | _Bam":
    _check_signature(path, fmt)
    return (_BigWig if fmt == "bigwig" else _Bam)(path)


class _BigWig:
    STAT = None  # bins by the rules' bigwig_stat

    def __init__(self, path: Path) -> None:
        pyBigWig = library("pyBigWig")
        self.path = path
        try:
            with _quiet_stderr():  # libBigWig prints its own lines before raising; ours says it in one
                self.bw = pyBigWig.open(str(path))
        except RuntimeError:
            raise DataError(f"{path}: cannot be opened as a bigWig (corrupt or truncated); expected a "
                            "bigWig file") from None
        if not self.bw.isBigWig():
            self.bw.close()
            raise DataError(f"{path}: is a bigBed, not a bigWig; expected a signal track (bigWig)")
        self.chroms = dict(self.bw.chroms())
        if not self.chroms or self.bw.header().get("nBasesCovered", 0) == 0:
            self.bw.close()
            raise DataError(f"{path}: holds no data; expected a bigWig with signal")

    def __enter__(self) -> "_BigWig":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bw.close()

    def per_base(self, chrom: str, lo: int, hi: int, rules: BinRules) -> np.ndarray:
        if hi <= lo:
            return np.empty(0)
        try:
            values = np.asarray(self.bw.values(chrom, lo, hi, numpy=True), dtype=np.float64)
        except RuntimeError as err:
            raise DataError(f"{self.path}: cannot read {chrom}:{lo + 1}-{hi} ({err}); expected an intact bigWig "
                            "(a truncated or corrupt file?)") from None
        negative = values < 0
        if negative.any():
            at = int(np.argmax(negative))
            raise DataError(f"{self.path}: signal {values[at]:g} at {chrom}:{lo + at + 1}; expected values >= 0 "
                            "(read counts, fold enrichment, -log10 p), not a log ratio")
        return values


class _Bam:
    STAT = "sum"  # reads are counted

    def __init__(self, path: Path) -> None:
        pysam = library("pysam")
        self.path = path
        previous = pysam.set_verbosity(0)  # htslib's own lines (a missing index) would precede ours
        try:
            self.bam = pysam.AlignmentFile(str(path), "rb")
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: cannot be opened as a BAM ({str(err).splitlines()[0] if str(err) else 'corrupt'}); "
                            "expected a coordinate-sorted, indexed BAM") from None
        finally:
            pysam.set_verbosity(previous)
        if not self.bam.has_index():
            self.bam.close()
            raise DataError(f"{path}: has no index; expected {path.name}.bai (or .csi) beside it: samtools index {path}")
        self.chroms = dict(zip(self.bam.references, self.bam.lengths))
        if not self.chroms:
            self.bam.close()
            raise DataError(f"{path}: its header names no chromosome (@SQ); expected an aligned, indexed BAM")
        if self.bam.mapped == 0:
            self.bam.close()
            raise DataError(f"{path}: holds no mapped read (by its index); expected aligned reads")

    def __enter__(self) -> "_Bam":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bam.close()

    def per_base(self, chrom: str, lo: int, hi: int, rules: BinRules) -> np.ndarray:
        """Reads per base of [lo, hi) by their position (5' end or fragment centre); no NaN."""
        if hi <= lo:
            return np.empty(0)
        margin = MAX_FRAGMENT if rules.bam_position == "centre" else 0
        try:
            positions = self._positions(chrom, max(lo - margin, 0), hi + margin, rules)
        except (OSError, ValueError) as err:
            raise DataError(f"{self.path}: cannot read {chrom}:{lo + 1}-{hi} ({err}); expected an intact BAM with "
                            "a current index (a truncated file, or an index older than the BAM?)") from None
        positions = np.asarray(positions, dtype=np.int64) - lo
        positions = positions[(positions >= 0) & (positions < hi - lo)]
        return np.bincount(positions, minlength=hi - lo).astype(np.float64)

    def _positions(self, chrom: str, lo: int, hi: int, rules: BinRules) -> list[int]:
        skip = _SKIP_FLAGS | (0 if rules.keep_duplicates else _DUPLICATE)
        min_mapq, shift = rules.min_mapq, rules.fragment_length // 2
        positions: list[int] = []
        add = positions.append
        if rules.bam_position == "five_prime":
            for read in self.bam.fetch(chrom, lo, hi):
                flag = read.flag
                if not flag & skip and read.mapping_quality >= min_mapq:
                    add(read.reference_end - 1 if flag & 0x10 else read.reference_start)
            return positions
        for read in self.bam.fetch(chrom, lo, hi):
            flag = read.flag
            if flag & skip or read.mapping_quality < min_mapq:
                continue
            if flag & 0x1:  # paired: the leftmost mate of a proper pair stands for the fragment
                tlen = read.template_length
                if flag & 0x2 and 0 < tlen <= MAX_FRAGMENT:
                    add(read.reference_start + tlen // 2)
            else:
                add(read.reference_end - 1 - shift if flag & 0x10 else read.reference_start + shift)
        return positions
