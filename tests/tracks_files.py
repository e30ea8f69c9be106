"""Tiny files of the field's formats for the `deepdiff.tracks` tests, written with pyBigWig and pysam."""

from __future__ import annotations

import gzip
from pathlib import Path

PAIRED = 0x1 | 0x2  # paired, proper pair


def write_bigwig(path: Path, sizes: dict[str, int], intervals: list[tuple[str, int, int, float]]) -> Path:
    """A bigWig with `intervals` (chrom, start, end, value), 0-based half-open, sorted as given."""
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()), maxZooms=0)
    for chrom in sizes:
        mine = sorted((s, e, v) for c, s, e, v in intervals if c == chrom)
        if mine:
            bw.addEntries([chrom] * len(mine), [s for s, _, _ in mine], ends=[e for _, e, _ in mine],
                          values=[float(v) for _, _, v in mine])
    bw.close()
    return path


def write_bam(path: Path, sizes: dict[str, int], reads: list[dict], *, index: bool = True) -> Path:
    """A coordinate-sorted BAM (indexed unless `index` is False); each read a dict with chrom, start
    (0-based), and optionally flag, mapq, length (aligned bases), tlen."""
    import pysam

    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": n} for c, n in sizes.items()]}
    names = list(sizes)
    ordered = sorted(reads, key=lambda r: (names.index(r["chrom"]), r["start"]))
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, r in enumerate(ordered):
            read = pysam.AlignedSegment(out.header)
            read.query_name = r.get("name", f"read{i}")
            read.reference_id = names.index(r["chrom"])
            read.reference_start = r["start"]
            read.cigarstring = f"{r.get('length', 36)}M"
            read.query_sequence = "A" * r.get("length", 36)
            read.flag = r.get("flag", 0)
            read.mapping_quality = r.get("mapq", 30)
            read.template_length = r.get("tlen", 0)
            if read.flag & 0x1:
                read.next_reference_id = read.reference_id
                read.next_reference_start = r.get("mate_start", r["start"])
            out.write(read)
    if index:
        pysam.index(str(path))
    return path


def gtf_line(chrom: str, feature: str, start: int, end: int, strand: str, attrs: str) -> str:
    """One GTF line (1-based inclusive coordinates)."""
    return f"{chrom}\ttest\t{feature}\t{start}\t{end}\t.\t{strand}\t.\t{attrs}"


def write_text(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def gene_attrs(gene_id: str, *, kind: str = "protein_coding", name: str | None = None, tx: str | None = None,
               canonical: bool = False) -> str:
    attrs = f'gene_id "{gene_id}"; gene_type "{kind}"; gene_name "{name or gene_id.split(".")[0][-4:]}";'
    if tx is not None:
        attrs += f' transcript_id "{tx}"; tag "basic";' + (' tag "Ensembl_canonical";' if canonical else "")
    return attrs


def expression_tsv(path: Path, values: dict[str, float], header: str = "gene_id\tTPM") -> Path:
    return write_text(path, [header, *(f"{g}\t{v:g}" for g, v in values.items())])
