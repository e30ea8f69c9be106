"""Building a pair from tracks (`deepdiff build-pair`): genes per second from bigWig and from BAM input.

    python benchmarks/bench_tracks.py [--genes 2000] [--bam-genes 500] [--reads-per-kb 10] [--jobs 1 2]
                                      [--gtf-genes 60000] [--keep DIR]

Writes the planted example of `deepdiff.tracks.example` at the human genome's gene density (one gene per
160 kb: 19,000 protein-coding genes on 3.1 Gb), 10 tracks (2 cells x 5 marks) per input format:
- bigWig: a value every 50 bp over whole chromosomes (as dense as a fold-enrichment track);
- BAM: `--reads-per-kb` 36-bp reads per kb, drawn along the signal (10/kb ~ 30 M reads on a human genome).
Then times `deepdiff.tracks.build.build_pair` into a fresh folder (checksums, annotation, expression,
binning, writing: a first build) with each `--jobs`, and a second build of the same inputs (nothing to
do). Genes/s counts the pair's genes (each read from all 10 tracks); "19,000 genes" extrapolates linearly.
Also times `read_annotation` on a GENCODE-size GTF (`--gtf-genes` genes, 4 transcripts and 20 exons each,
gzipped). Prints the CPU count and the load average: on a shared machine, compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# deepdiff's modules are imported inside the functions: the build's worker processes (spawned) import
# this script again, and deepdiff.data would bring torch into every one of them.

WHOLE_GENOME_GENES = 19_000
BASES_PER_GENE = 160_000  # 3.1 Gb / ~19,000 protein-coding genes
CHROM_SIZE = 40_000_000


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def example(folder: Path, genes: int, fmt: str, reads_per_kb: float) -> Path:
    from deepdiff.tracks.example import write_example

    manifest = folder / "pair.yaml"
    if manifest.is_file():
        return manifest
    chroms = max(1, round(genes * BASES_PER_GENE / CHROM_SIZE))
    seconds, manifest = timed(lambda: write_example(folder, genes=genes, chroms=chroms, chrom_size=CHROM_SIZE,
                                                    track_format=fmt, reads_per_kb=reads_per_kb))
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f"wrote the {fmt} example: {genes} genes on {chroms} x {CHROM_SIZE / 1e6:.0f} Mb, {size:.0f} MB, in {seconds:.0f} s")
    return manifest


def bench_format(work: Path, fmt: str, genes: int, jobs: list[int], reads_per_kb: float) -> dict[int, float]:
    from deepdiff.data import MARKS
    from deepdiff.tracks.build import build_pair
    from deepdiff.tracks.manifest import read_manifest

    manifest = example(work / fmt, genes, fmt, reads_per_kb)
    spec = read_manifest(manifest, MARKS)
    rates = {}
    for n in jobs:
        out = work / f"{fmt}-out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        seconds, result = timed(lambda: build_pair(spec, out, jobs=n))
        kept = result.summary["genes"]["kept"]
        rates[n] = kept / seconds
        again, _ = timed(lambda: build_pair(spec, out, jobs=n))
        print(f"  {fmt:6s} jobs={n}: {kept} genes in {seconds:6.1f} s = {rates[n]:6.1f} genes/s -> "
              f"{WHOLE_GENOME_GENES:,} genes in {WHOLE_GENOME_GENES / rates[n] / 60:4.1f} min; "
              f"second build (nothing to do) {again:.2f} s")
    if len(jobs) > 1:
        print(f"  {fmt:6s} jobs={jobs[-1]} / jobs={jobs[0]}: x{rates[jobs[-1]] / rates[jobs[0]]:.2f}")
    return rates


def gencode_size_gtf(path: Path, genes: int) -> None:
    """`genes` genes of 4 transcripts with 5 exons each (~GENCODE's 62k genes, 250k transcripts, 1.6 M exons)."""
    with gzip.open(path, "wt", compresslevel=6) as fh:
        for g in range(genes):
            chrom, start = f"chr{1 + g % 22}", 10_000 + (g // 22) * 50_000
            kind = "protein_coding" if g % 3 == 0 else "lncRNA"
            gene = f'gene_id "ENSG{g:011d}.1"; gene_type "{kind}"; gene_name "G{g}"; level 2;'
            fh.write(f"{chrom}\tHAVANA\tgene\t{start}\t{start + 20_000}\t.\t+\t.\t{gene}\n")
            for t in range(4):
                tx = f'{gene} transcript_id "ENST{g:09d}{t}.1"; transcript_type "{kind}"; tag "basic";'
                tx += ' tag "Ensembl_canonical";' if t == 2 else ""
                fh.write(f"{chrom}\tHAVANA\ttranscript\t{start + 100 * t}\t{start + 20_000}\t.\t+\t.\t{tx}\n")
                for e in range(5):
                    fh.write(f"{chrom}\tHAVANA\texon\t{start + 100 * t + 3000 * e}\t{start + 100 * t + 3000 * e + 200}\t.\t+\t.\t"
                             f"{tx} exon_number {e + 1};\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=2000, help="genes of the bigWig example (default 2000)")
    parser.add_argument("--bam-genes", type=int, default=500, help="genes of the BAM example (default 500)")
    parser.add_argument("--reads-per-kb", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gtf-genes", type=int, default=60_000, help="genes of the GENCODE-size GTF (0: skip)")
    parser.add_argument("--keep", metavar="DIR", help="write (or reuse) the examples here instead of a temp folder")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-tracks-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    try:
        if args.gtf_genes:
            from deepdiff.tracks.annotation import read_annotation

            gtf = work / "gencode-size.gtf.gz"
            if not gtf.is_file():
                gencode_size_gtf(gtf, args.gtf_genes)
            seconds, ann = timed(lambda: read_annotation(gtf))
            print(f"annotation: {args.gtf_genes:,} genes ({gtf.stat().st_size / 2**20:.0f} MB gzipped) read in "
                  f"{seconds:.1f} s, {len(ann.genes):,} protein-coding kept")
        rates = {}
        if args.genes:
            rates["bigwig"] = bench_format(work, "bigwig", args.genes, args.jobs, args.reads_per_kb)
        if args.bam_genes:
            rates["bam"] = bench_format(work, "bam", args.bam_genes, args.jobs, args.reads_per_kb)
        if len(rates) == 2:
            for n in args.jobs:
                print(f"bigWig / BAM genes/s at jobs={n}: x{rates['bigwig'][n] / rates['bam'][n]:.1f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
