"""A small genome with a planted signal, written in the field's formats, to try and test `build-pair`:
`write_example` (or ``python -m deepdiff.tracks.example OUT``) writes a GENCODE-style GTF, two cells'
five histone-mark tracks (bigWig or indexed BAM) and expression tables (cell A as RSEM ``genes.results``,
cell B as a two-column TSV), and the manifest naming them.

The genome: `chroms` chromosomes ``chr1`` .. of `chrom_size` bases, genes placed at random on both
strands (the first and last 2.5 kb from their chromosome's ends, so windows run off them), each with
one to three transcripts (half the genes tag one Ensembl_canonical, and then it is not the most 5'), ids
with version suffixes, ~10 % of genes lncRNA. The signal sits at the TSS the build's rule picks. The signal (as `deepdiff.synthetic`'s "easy" one): each gene has an activity ``a_A ~
N(0, 1)`` and ``a_B = a_A + N(0, 1)``; per 50-bp step, a background plus, around each TSS, the profile
of `deepdiff.synthetic.tss_profiles` in the direction of transcription, scaled by ``exp(+-0.8 a)``
(H3K4me3, H3K36me3 up; H3K9me3, H3K27me3 down; H3K4me1 flat); expression ``2 ** (4 + 2.5 a + N(0, 0.5))``
rounded. BAM reads (36 bp, MAPQ 30, either strand) are drawn in proportion to that signal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

from deepdiff.data import MARKS
from deepdiff.synthetic import tss_profiles
from deepdiff.tracks.signal import library

STEP = 50  # bases per value of the bigWig tracks (and per read-density cell of the BAMs)
_SIGN = {"H3K4me1": 0.0, "H3K4me3": 1.0, "H3K9me3": -1.0, "H3K27me3": -1.0, "H3K36me3": 1.0}
_PEAK = {"H3K4me1": 2.0, "H3K4me3": 8.0, "H3K9me3": 1.5, "H3K27me3": 3.0, "H3K36me3": 3.0}


def write_example(out: str | Path, *, genes: int = 300, chroms: int = 3, chrom_size: int = 2_000_000, seed: int = 0,
                  track_format: str = "bigwig", cells: tuple[str, str] = ("CTRL", "KO"),
                  reads_per_kb: float = 10.0) -> Path:
    """Write the example into `out` (module docstring); returns the manifest's path. `track_format`:
    ``bigwig`` or ``bam``; `reads_per_kb`: mean BAM reads per kb of genome and mark."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {f"chr{i + 1}": chrom_size for i in range(chroms)}
    layout = _place_genes(rng, genes, sizes)
    _write_gtf(out / "genes.gtf", rng, layout)
    activity = rng.normal(size=genes)
    activities = {cells[0]: activity, cells[1]: activity + rng.normal(size=genes)}
    manifest = {"annotation": "genes.gtf", "cells": {}}
    for c, (cell, a) in enumerate(activities.items()):
        expression = np.round(2 ** (4 + 2.5 * a + rng.normal(0, 0.5, genes)))
        table = out / (f"{cell}.genes.results" if c == 0 else f"{cell}.expression.tsv")
        _write_expression(table, layout["ids"], expression, rsem=c == 0)
        marks = {}
        for m, mark in enumerate(MARKS):
            signal = _signal(rng, layout, sizes, a, mark, m)
            suffix = ".bw" if track_format == "bigwig" else ".bam"
            path = out / f"{cell}.{mark}{suffix}"
            if track_format == "bigwig":
                _write_bigwig(path, sizes, signal)
            else:
                _write_bam(path, rng, sizes, signal, reads_per_kb)
            marks[mark] = path.name
        manifest["cells"][cell] = {"expression": table.name, "marks": marks}
    path = out / "pair.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def _place_genes(rng: np.random.Generator, genes: int, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    names = list(sizes)
    chrom = np.sort(rng.integers(0, len(names), genes))
    tss = np.empty(genes, dtype=np.int64)
    for k, name in enumerate(names):
        rows = np.flatnonzero(chrom == k)
        tss[rows] = np.sort(rng.integers(30_000, sizes[name] - 30_000, len(rows)))
    minus = rng.random(genes) < 0.5
    for k, name in enumerate(names):
        rows = np.flatnonzero(chrom == k)
        if len(rows) > 1:  # windows that run off the chromosome's start (a + gene) and end (a - gene)
            tss[rows[0]], minus[rows[0]] = 2_500, False
            tss[rows[-1]], minus[rows[-1]] = sizes[name] - 2_500, True
    return {"ids": np.array([f"ENSG{g + 1:011d}.{1 + g % 4}" for g in range(genes)]),
            "chrom": np.array([names[k] for k in chrom]), "tss": tss, "minus": minus,
            "coding": rng.random(genes) >= 0.1}


def _write_gtf(path: Path, rng: np.random.Generator, layout: dict[str, np.ndarray]) -> None:
    """Transcripts placed so that the TSS rule picks ``layout["tss"]``: a tagged gene's canonical
    transcript starts there and its others further 5'; an untagged gene's others start further 3'."""
    lines = ["##description: deepdiff.tracks.example", "##format: gtf"]
    for g, gene_id in enumerate(layout["ids"]):
        chrom, tss, minus = layout["chrom"][g], int(layout["tss"][g]), bool(layout["minus"][g])
        kind = "protein_coding" if layout["coding"][g] else "lncRNA"
        common = f'gene_id "{gene_id}"; gene_type "{kind}"; gene_name "GENE{g + 1}";'
        tagged = g % 2 == 0
        n_tx = 1 + g % 3
        offsets = [0] + (rng.integers(200, 900, n_tx - 1) * (-1 if tagged else 1)).tolist()  # + is 3'
        strand = "-" if minus else "+"
        spans = []
        for off in offsets:
            start_5p = tss - off if minus else tss + off  # 0-based first base of the transcript
            spans.append((start_5p - 2_999, start_5p) if minus else (start_5p, start_5p + 2_999))
        lines.append(f"{chrom}\tEX\tgene\t{min(s[0] for s in spans) + 1}\t{max(s[1] for s in spans) + 1}\t.\t"
                     f"{strand}\t.\t{common}")
        for t, (lo, hi) in enumerate(spans):
            tags = ' tag "basic";' + (' tag "Ensembl_canonical";' if tagged and t == 0 else "")
            tx = f'{common} transcript_id "ENST{g + 1:09d}{t}.1";{tags}'
            lines.append(f"{chrom}\tEX\ttranscript\t{lo + 1}\t{hi + 1}\t.\t{strand}\t.\t{tx}")
            lines.append(f"{chrom}\tEX\texon\t{lo + 1}\t{lo + 500}\t.\t{strand}\t.\t{tx} exon_number 1;")
    path.write_text("\n".join(lines) + "\n")


def _write_expression(path: Path, ids: np.ndarray, values: np.ndarray, *, rsem: bool) -> None:
    if rsem:
        head = "gene_id\ttranscript_id(s)\tlength\teffective_length\texpected_count\tTPM\tFPKM"
        rows = [f"{g}\tENST{i}\t3000\t2800\t{v * 3:g}\t{v:g}\t{v * 0.8:g}" for i, (g, v) in enumerate(zip(ids, values))]
    else:
        head = "gene\tTPM"
        rows = [f"{g}\t{v:g}" for g, v in zip(ids, values)]
    path.write_text("\n".join([head, *rows]) + "\n")


def _signal(rng: np.random.Generator, layout: dict[str, np.ndarray], sizes: dict[str, int], activity: np.ndarray,
            mark: str, m: int) -> dict[str, np.ndarray]:
    """{chrom: (size / STEP,) float64} signal per STEP bases."""
    profile = tss_profiles(200)[m]  # 200 bins of 100 bp upstream -> downstream
    per_step = np.repeat(profile, 100 // STEP)  # 400 steps of STEP bp
    tracks = {}
    for chrom, size in sizes.items():
        values = rng.uniform(0.2, 0.6) * rng.gamma(2.0, 0.5, size // STEP)
        for g in np.flatnonzero(layout["chrom"] == chrom):
            scale = _PEAK[mark] * np.exp(0.8 * _SIGN[mark] * activity[g])
            shape = per_step[::-1] if layout["minus"][g] else per_step
            start = (int(layout["tss"][g]) + (1 if layout["minus"][g] else 0) - 10_000) // STEP
            lo, hi = max(start, 0), min(start + len(shape), len(values))
            values[lo:hi] += scale * shape[lo - start : hi - start]
        tracks[chrom] = values
    return tracks


def _write_bigwig(path: Path, sizes: dict[str, int], signal: dict[str, np.ndarray]) -> None:
    pyBigWig = library("pyBigWig")
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()), maxZooms=0)
    for chrom, values in signal.items():
        bw.addEntries(chrom, 0, values=values.astype(np.float64), span=STEP, step=STEP)
    bw.close()


def _write_bam(path: Path, rng: np.random.Generator, sizes: dict[str, int], signal: dict[str, np.ndarray],
               reads_per_kb: float) -> None:
    """Reads drawn in proportion to the signal, written as SAM text and sorted + indexed by pysam."""
    pysam = library("pysam")
    sam = path.with_suffix(".sam")
    with open(sam, "w") as fh:
        fh.write("@HD\tVN:1.6\tSO:unsorted\n")
        fh.writelines(f"@SQ\tSN:{chrom}\tLN:{size}\n" for chrom, size in sizes.items())
        for chrom, values in signal.items():
            n = rng.poisson(reads_per_kb * sizes[chrom] / 1000)
            cell = rng.choice(len(values), size=n, p=values / values.sum())
            pos = np.minimum(cell * STEP + rng.integers(0, STEP, n), sizes[chrom] - 36)
            flags = np.where(rng.random(n) < 0.5, 16, 0)
            fh.writelines(f"r{chrom}_{i}\t{f}\t{chrom}\t{p + 1}\t30\t36M\t*\t0\t0\t*\t*\n"
                          for i, (f, p) in enumerate(zip(flags.tolist(), pos.tolist())))
    pysam.sort("-o", str(path), str(sam))
    pysam.index(str(path))
    sam.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdiff.tracks.example", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", metavar="OUT_DIR")
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--format", choices=("bigwig", "bam"), default="bigwig")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_example(args.out, genes=args.genes, track_format=args.format, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
