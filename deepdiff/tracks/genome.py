"""The chromosomes of a pair's files made to agree: `reconcile` matches each track's chromosome names to
the annotation's and checks that all tracks come from one assembly. No file is read here: it is given
each track's chromosome sizes (`deepdiff.tracks.signal.chrom_sizes`).

- **Names**: a chromosome of the annotation is found in a track under the same name, else under the name
  with ``chr`` added or removed (``chrM`` and ``MT`` are one chromosome). A match made that way is said in
  a note; two candidates (a track with both ``Chr1`` and ``chr1`` for ``1``) and a track that matches no
  chromosome of the annotation at all are `DataError`s naming the file.
- **Assembly**: a chromosome's size must be the same in every track that has it (hg19's chr1 is
  249,250,621 bp, hg38's 248,956,422); a difference is a `DataError` naming both files. The annotation
  has no sizes: a TSS beyond the end of its chromosome is the build's check of it.
- **Missing**: a chromosome of the annotation that some track lacks (a female sample's bigWig without
  chrY, an unplaced scaffold) is listed, with the first file lacking it; its genes are dropped by the build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepdiff.errors import DataError

# Sizes of chr1 that name an assembly, for the message when two files disagree.
CHR1_ASSEMBLIES = {249_250_621: "hg19/GRCh37", 248_956_422: "hg38/GRCh38", 195_471_971: "mm10/GRCm38",
                   195_154_279: "mm39/GRCm39"}


def chrom_key(name: str) -> str:
    """A chromosome's name without ``chr`` (any case), chrM/M as MT: equal keys are one chromosome."""
    core = name[3:] if name[:3].lower() == "chr" and len(name) > 3 else name
    return "MT" if core in ("M", "m", "MT") else core


@dataclass(frozen=True)
class Genome:
    sizes: dict[str, int]  # annotation chromosome -> its size in the tracks (all agree)
    names: dict[Path, dict[str, str]]  # track -> {annotation chromosome: the track's name for it}
    missing: dict[str, Path]  # annotation chromosome -> the first track that lacks it
    notes: tuple[str, ...]  # names matched by adding or removing "chr", said once


def match_names(chroms: list[str], file_chroms: dict[str, int], path: Path) -> dict[str, str]:
    """{annotation chromosome: the name `path` uses for it} for those of `chroms` that `path` has."""
    by_key: dict[str, list[str]] = {}
    for name in file_chroms:
        by_key.setdefault(chrom_key(name), []).append(name)
    found = {}
    for chrom in chroms:
        if chrom in file_chroms:
            found[chrom] = chrom
            continue
        candidates = by_key.get(chrom_key(chrom), [])
        if len(candidates) > 1:
            raise DataError(f"{path}: chromosome {chrom} of the annotation could be {' or '.join(candidates)} here; "
                            "expected one chromosome per name (rename the chromosomes of this file or the annotation)")
        if candidates:
            found[chrom] = candidates[0]
    if not found:
        raise DataError(f"{path}: none of its chromosomes ({_some(list(file_chroms))}) is one of the annotation's "
                        f"({_some(chroms)}), even with 'chr' added or removed; expected files of the same genome")
    return found


def reconcile(chroms: list[str], tracks: dict[Path, dict[str, int]]) -> Genome:
    """Match every track's chromosomes to the annotation's `chroms` and check their sizes (module docstring)."""
    names = {path: match_names(chroms, sizes, path) for path, sizes in tracks.items()}
    agreed: dict[str, tuple[int, Path]] = {}
    missing: dict[str, Path] = {}
    renamed: list[tuple[Path, str, str]] = []
    for path, found in names.items():
        for chrom in chroms:
            if chrom not in found:
                missing.setdefault(chrom, path)
                continue
            size = tracks[path][found[chrom]]
            if found[chrom] != chrom:
                renamed.append((path, chrom, found[chrom]))
            first = agreed.setdefault(chrom, (size, path))
            if first[0] != size:
                raise DataError(f"{path}: chromosome {found[chrom]} is {size:,} bp, but {first[0]:,} bp in {first[1]}"
                                f"{_assembly_hint(chrom, first[0], size)}; expected all files from one genome assembly")
    notes = []
    if renamed:
        files = sorted({str(path) for path, _, _ in renamed})
        path, chrom, theirs = renamed[0]
        notes.append(f"chromosome names matched by adding or removing 'chr' in {len(files)} file(s) "
                     f"(e.g. the annotation's {chrom} is {theirs} in {path})")
    sizes = {chrom: agreed[chrom][0] for chrom in chroms if chrom in agreed and chrom not in missing}
    return Genome(sizes, names, missing, tuple(notes))


def _assembly_hint(chrom: str, one: int, other: int) -> str:
    if chrom_key(chrom) != "1" or one not in CHR1_ASSEMBLIES or other not in CHR1_ASSEMBLIES:
        return ""
    return f" ({CHR1_ASSEMBLIES[other]} vs {CHR1_ASSEMBLIES[one]})"


def _some(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
