"""A gene annotation -> one TSS per gene: `read_annotation` (GTF or GFF3 from GENCODE / Ensembl, gzipped
or not, or a BED6 of TSSs).

The rule (`TSS_RULE`), stated once and recorded in every build:

- **GTF / GFF3**: of a gene's transcripts, the one tagged ``Ensembl_canonical`` (GENCODE >= 38, Ensembl >=
  104) where the gene has one; else the gene's most 5' transcript start (the smallest start on ``+``, the
  largest end on ``-``). A GTF without ``transcript`` lines (UCSC-style, exons only) uses its exons, whose
  5'-most start is the same thing; a gene with no transcript at all uses its own 5' end.
- **BED6** (``chrom start end name score strand``, 0-based half-open): each row is a TSS, at ``start`` on
  ``+`` and at ``end - 1`` on ``-``; the name is the gene id; several rows of one gene: the most 5'.
- **Genes**: protein-coding (``gene_type`` in GENCODE, ``gene_biotype`` in Ensembl GTF, ``biotype`` on
  Ensembl GFF3 gene lines) unless ``all`` genes are asked for (a BED has no biotype: all its genes).
- **Ids** (`gene_key`, also applied to expression tables): the version suffix is removed
  (``ENSG00000141510.17`` -> ``ENSG00000141510``); GENCODE's ``_PAR_Y`` copies of the X/Y
  pseudoautosomal genes are dropped (their id is the chrX gene's); an id that is seen again on another
  chromosome keeps its first; an id with ``_``, ``,`` or a space cannot stand in the DeepDiffChrome row
  ``ENSGID_SYMBOL_BIN`` and is dropped. Every drop is counted in `Annotation.counts`.

Positions are 0-based: ``Genes.tss`` is the base where transcription starts. Every problem in the file is
a one-line `DataError` naming the file (and line).
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator
from urllib.parse import unquote

import numpy as np

from deepdiff.errors import DataError, path_problem

GENE_FILTERS = ("protein_coding", "all")
TSS_RULE = ("GTF/GFF3: the transcript tagged Ensembl_canonical where the gene has one, else the gene's most 5' "
            "transcript start (smallest start on +, largest end on -); BED6: each row a TSS (start on +, end - 1 "
            "on -), the most 5' row of a gene")
CANONICAL_TAG = "Ensembl_canonical"
BIOTYPE_KEYS = ("gene_type", "gene_biotype", "biotype")  # GENCODE, Ensembl GTF, Ensembl GFF3
NAME_KEYS = ("gene_name", "Name")
PROTEIN_CODING = "protein_coding"
_SKIP_GFF3_TYPES = frozenset({"exon", "CDS", "five_prime_UTR", "three_prime_UTR", "UTR", "start_codon",
                              "stop_codon", "Selenocysteine", "stop_codon_redefined_as_selenocysteine"})
_GTF_ATTRIBUTE = re.compile(r'\s*([^\s";]+)\s+"?([^";]*)"?\s*;?')
_VERSION = re.compile(r"\.[0-9]+(?=(_PAR_Y)?$)")
_BAD_ID = re.compile(r"[_,\s]")
_SYMBOL_BAD = re.compile(r'[,\s"]')


@dataclass(frozen=True)
class Genes:
    """N genes, one TSS each; arrays in the annotation's order."""

    ids: np.ndarray  # (N,) str: gene id without version suffix
    symbols: np.ndarray  # (N,) str: gene name (the id where the annotation has none); no comma or space
    chroms: np.ndarray  # (N,) str: chromosome as the annotation names it
    tss: np.ndarray  # (N,) int64: 0-based position of the TSS base
    minus: np.ndarray  # (N,) bool: on the minus strand

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> "Genes":
        """Rows `index` (positions or a boolean mask), in that order."""
        return Genes(*(getattr(self, name)[index] for name in ("ids", "symbols", "chroms", "tss", "minus")))


@dataclass(frozen=True)
class Annotation:
    path: Path  # the file read
    format: str  # gtf, gff3 or bed
    genes: Genes  # the genes kept, one TSS each
    counts: dict[str, int] = field(default_factory=dict)  # genes read and dropped, by reason
    examples: dict[str, str] = field(default_factory=dict)  # one dropped id per reason


def gene_key(raw_id: str) -> str | None:
    """A gene id without its version suffix; None for a GENCODE ``_PAR_Y`` copy (see the module docstring)."""
    if raw_id.endswith("_PAR_Y"):
        return None
    return _VERSION.sub("", raw_id, count=1)


def read_annotation(path: str | Path, genes: str = "protein_coding") -> Annotation:
    """The genes of `path` with one TSS each, by `TSS_RULE`; `genes`: one of `GENE_FILTERS`.

    The format is the file's: ``.bed`` (optionally ``.gz``) is BED6; GFF3 is recognised by its
    ``##gff-version 3`` line or a ``.gff3`` / ``.gff`` name; anything else is read as GTF.
    A `DataError` naming the file if it cannot be read or yields no gene.
    """
    if genes not in GENE_FILTERS:
        raise ValueError(f"genes={genes!r}: expected one of {', '.join(GENE_FILTERS)}")
    path = Path(path)
    problem = path_problem(path, "annotation file")
    if problem is not None:
        raise DataError(f"{path}: {problem}; expected a gene annotation (GTF, GFF3 or BED6 of TSSs)")
    fmt = _format_of(path)
    reader = {"gtf": _read_gtf, "gff3": _read_gff3, "bed": _read_bed}[fmt]
    try:
        records = reader(path)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read as {'gzipped ' if _gzipped(path) else ''}text "
                        f"({type(err).__name__}: {err}); expected a gene annotation ({fmt.upper()})") from None
    return _finish(path, fmt, records, genes)


# ---------------------------------------------------------------------------------------------------
# Reading lines


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: Path) -> IO[str]:
    """`path` as text lines, gunzipped when it starts with the gzip magic bytes (whatever its name)."""
    if _gzipped(path):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _format_of(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".bed"):
        return "bed"
    if name.endswith((".gff3", ".gff")):
        return "gff3"
    with open_text(path) as fh:
        try:
            first = fh.readline()
        except (OSError, EOFError, zlib.error, UnicodeDecodeError):
            return "gtf"  # reported by the reader with its line
    return "gff3" if first.startswith("##gff-version 3") else "gtf"


def _rows(path: Path, n_fields: int, what: str,
          skip: Callable[[str], bool] | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of the data lines; comments, track lines and the lines `skip`
    says are not needed (a test on the raw line, cheaper than splitting it) are passed over."""
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith(("#", "track", "browser")) or (skip is not None and skip(line)) or not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < n_fields:
                raise DataError(f"{path} line {number}: expected {n_fields} tab-separated fields ({what}), "
                                f"found {len(fields)}")
            yield number, fields


def _position(path: Path, number: int, text: str, name: str, least: int = 1) -> int:
    """A coordinate: GTF/GFF3 count from 1, BED from 0 (`least`)."""
    try:
        value = int(text)
    except ValueError:
        raise DataError(f"{path} line {number} field {name}: expected a whole number, got {text[:40]!r}") from None
    if value < least:
        raise DataError(f"{path} line {number} field {name}: expected a position >= {least}, got {value}")
    return value


def _strand(path: Path, number: int, text: str) -> bool:
    if text not in ("+", "-"):
        raise DataError(f"{path} line {number} field strand: expected + or -, got {text[:10]!r}")
    return text == "-"


# ---------------------------------------------------------------------------------------------------
# One record per transcript (or gene without transcripts): (gene id, symbol, biotype, chrom, tss, minus,
# canonical, line). The formats differ only in how they name these.

_Record = tuple[str, str, "str | None", str, int, bool, bool, int]


def _gtf_attributes(text: str) -> tuple[dict[str, str], list[str]]:
    attrs: dict[str, str] = {}
    tags: list[str] = []
    for key, value in _GTF_ATTRIBUTE.findall(text):
        if key == "tag":
            tags.append(value)
        else:
            attrs.setdefault(key, value)
    return attrs, tags


def _first(attrs: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((attrs[k] for k in keys if k in attrs), None)


def _read_gtf(path: Path) -> list[_Record]:
    transcripts: list[_Record] = []
    exons: list[_Record] = []
    gene_lines: dict[str, _Record] = {}

    def skip(line: str) -> bool:  # exons (most lines) matter only in a GTF without transcript lines
        return bool(transcripts) and "\texon\t" in line

    for number, f in _rows(path, 9, "a GTF line", skip):
        feature = f[2]
        if feature not in ("transcript", "gene") and (feature != "exon" or transcripts):
            continue
        attrs, tags = _gtf_attributes(f[8])
        gene_id = attrs.get("gene_id")
        if gene_id is None:
            raise DataError(f"{path} line {number} field attributes: expected a gene_id attribute in a {feature} line")
        start, end = _position(path, number, f[3], "start"), _position(path, number, f[4], "end")
        minus = _strand(path, number, f[6])
        record = (gene_id, _first(attrs, NAME_KEYS) or "", _first(attrs, BIOTYPE_KEYS), f[0],
                  end - 1 if minus else start - 1, minus, CANONICAL_TAG in tags, number)
        if feature == "gene":
            gene_lines.setdefault(gene_id, record[:6] + (False, number))
        else:
            (transcripts if feature == "transcript" else exons).append(record)
    records = transcripts or exons
    have = {r[0] for r in records}
    records += [r for gid, r in gene_lines.items() if gid not in have]
    return records


def _gff3_attributes(text: str) -> dict[str, str]:
    attrs = {}
    for part in text.strip().strip(";").split(";"):
        key, _, value = part.strip().partition("=")
        attrs[key] = unquote(value) if "%" in value else value
    return attrs


def _read_gff3(path: Path) -> list[_Record]:
    gene_rows: dict[str, tuple] = {}  # ID -> (gene id, symbol, biotype, chrom, tss, minus, line)
    children: list[tuple] = []  # (parent ID, chrom, tss, minus, canonical, line)
    for number, f in _rows(path, 9, "a GFF3 line"):
        if f[2] in _SKIP_GFF3_TYPES:
            continue
        attrs = _gff3_attributes(f[8])
        start, end = _position(path, number, f[3], "start"), _position(path, number, f[4], "end")
        minus = _strand(path, number, f[6]) if f[6] in ("+", "-") or "Parent" in attrs else False
        tss = end - 1 if minus else start - 1
        if "Parent" not in attrs:
            if "ID" in attrs and f[6] in ("+", "-"):
                gene_id = attrs.get("gene_id") or attrs["ID"].removeprefix("gene:")
                gene_rows[attrs["ID"]] = (gene_id, _first(attrs, NAME_KEYS) or "", _first(attrs, BIOTYPE_KEYS),
                                          f[0], tss, minus, number)
            continue
        canonical = CANONICAL_TAG in attrs.get("tag", "").split(",")
        for parent in attrs["Parent"].split(","):
            children.append((parent, f[0], tss, minus, canonical, number))
    records: list[_Record] = []
    have = set()
    for parent, chrom, tss, minus, canonical, number in children:
        gene = gene_rows.get(parent)
        if gene is not None:
            records.append((gene[0], gene[1], gene[2], chrom, tss, minus, canonical, number))
            have.add(parent)
    records += [(g[0], g[1], g[2], g[3], g[4], g[5], False, g[6]) for key, g in gene_rows.items() if key not in have]
    return records


def _read_bed(path: Path) -> list[_Record]:
    records = []
    for number, f in _rows(path, 6, "BED6: chrom, start, end, name, score, strand"):
        start, end = _position(path, number, f[1], "start", 0), _position(path, number, f[2], "end", 0)
        if end <= start:
            raise DataError(f"{path} line {number} field end: expected end > start, got {start} {end}")
        minus = _strand(path, number, f[5])
        records.append((f[3], "", None, f[0], end - 1 if minus else start, minus, False, number))
    return records


# ---------------------------------------------------------------------------------------------------
# The rule: one TSS per gene


def _finish(path: Path, fmt: str, records: list[_Record], genes: str) -> Annotation:
    """Apply the gene filter and the TSS rule to the records; count what is dropped, by reason."""
    if not records:
        what = {"gtf": "no transcript, exon or gene line with a gene_id", "gff3": "no gene with an ID",
                "bed": "no BED6 row"}[fmt]
        raise DataError(f"{path}: {what}; expected a gene annotation ({fmt.upper()}) with genes in it")
    check_biotype = genes == PROTEIN_CODING and fmt != "bed"
    if check_biotype and all(r[2] is None for r in records):
        raise DataError(f"{path}: no gene has a biotype ({', '.join(BIOTYPE_KEYS)}), so none is known to be "
                        "protein-coding; expected a GENCODE/Ensembl annotation, or ask for all genes (--all-genes)")
    dropped: dict[str, dict[str, None]] = {}  # reason -> gene ids (ordered set)
    chosen: dict[str, list] = {}  # gene key -> [symbol, chrom, tss, minus, canonical]
    for gene_id, symbol, biotype, chrom, tss, minus, canonical, _ in records:
        key = gene_key(gene_id)
        reason = ("par_y" if key is None else "bad_id" if _BAD_ID.search(key)
                  else "not_protein_coding" if check_biotype and biotype != PROTEIN_CODING else None)
        if reason is not None:
            dropped.setdefault(reason, {})[gene_id if key is None else key] = None
            continue
        have = chosen.get(key)
        if have is None:
            chosen[key] = [symbol, chrom, tss, minus, canonical]
        elif have[1] != chrom or have[3] != minus:
            dropped.setdefault("records_elsewhere", {})[key] = None  # the gene keeps its first chromosome
        elif (canonical, tss if minus else -tss) > (have[4], have[2] if minus else -have[2]):
            have[2], have[4] = tss, canonical  # canonical first; then the most 5' start
    counts = {"records": len(records), **{reason: len(ids) for reason, ids in dropped.items()}}
    examples = {reason: next(iter(ids)) for reason, ids in dropped.items()}
    if not chosen:
        raise DataError(f"{path}: none of its {len(records)} {'rows' if fmt == 'bed' else 'records'} gives a usable "
                        f"gene ({_dropped_text(counts, examples)}); expected "
                        + ("protein-coding genes (or ask for all genes: --all-genes)" if check_biotype
                           else "gene ids without '_', ',' or spaces"))
    keys, values = list(chosen), list(chosen.values())
    result = Genes(
        ids=np.array(keys, dtype=object),
        symbols=np.array([_SYMBOL_BAD.sub("-", v[0]) or k for k, v in zip(keys, values)], dtype=object),
        chroms=np.array([v[1] for v in values], dtype=object),
        tss=np.array([v[2] for v in values], dtype=np.int64),
        minus=np.array([v[3] for v in values], dtype=bool),
    )
    counts["genes"] = len(result)
    return Annotation(path, fmt, result, counts, examples)


def _dropped_text(counts: dict[str, int], examples: dict[str, str]) -> str:
    parts = [f"{counts[k]} {k.replace('_', ' ')} (e.g. {examples[k]})" for k in examples if counts.get(k)]
    return ", ".join(parts) or "nothing kept"
