"""What a pair is built from: `BuildSpec` (two cells' files, the annotation, the rules), read from a YAML
manifest (`read_manifest`) or given as flags (`spec_from_cells`); `parse_options` checks the rules.

A manifest (paths relative to its folder; cell A first: the model predicts log2(B+1) - log2(A+1)):

    annotation: gencode.v44.basic.annotation.gtf.gz   # GTF/GFF3 (gzipped or not) or a BED6 of TSSs
    cells:
      CTRL:
        expression: rna/ctrl.genes.results             # or {file: rna/ctrl.tsv, column: TPM}
        marks: {H3K4me1: chip/ctrl.H3K4me1.bigWig, H3K4me3: chip/ctrl.H3K4me3.bam, H3K9me3: ...,
                H3K27me3: ..., H3K36me3: ...}
      KO: ...
    options: {genes: protein_coding, bigwig_stat: sum, seed: 0, test_chroms: [chr8, chr9]}   # optional

Every problem is a one-line `ConfigError` naming the manifest and the field (or the flag).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from deepdiff.errors import ConfigError, path_problem
from deepdiff.tracks.annotation import GENE_FILTERS
from deepdiff.tracks.signal import BAM_POSITIONS, BIGWIG_STATS, MAX_FRAGMENT
from deepdiff.tracks.splits import PAPER_FRACTIONS

MANIFEST_KEYS = ("annotation", "cells", "options")
CELL_KEYS = ("expression", "marks")


@dataclass(frozen=True)
class CellSources:
    name: str  # the cell type: the prefix of its files (NAME.train.csv ...)
    marks: tuple[tuple[str, Path], ...]  # (mark, track file) in the order of deepdiff.data.MARKS
    expression: Path  # expression table
    expression_column: str | None  # its value column; None: the table format's default


@dataclass(frozen=True)
class BuildOptions:
    genes: str = "protein_coding"  # protein_coding or all (GENE_FILTERS)
    bigwig_stat: str = "sum"  # bigWig signal per bin: sum over its bases or mean over its covered bases
    bam_position: str = "five_prime"  # a BAM read counts at its 5' end or at its fragment's centre
    fragment_length: int = 200  # single-end reads with bam_position centre: 5' end + half of it
    min_mapq: int = 10  # BAM reads below this mapping quality are not counted
    keep_duplicates: bool = False  # count BAM reads flagged as duplicates too
    seed: int = 0  # the split's random draw
    split_fractions: tuple[float, float] = PAPER_FRACTIONS  # shares of train and valid (test: the rest)
    test_chroms: tuple[str, ...] = ()  # held-out chromosomes: the test split (else a random split)
    valid_chroms: tuple[str, ...] = ()  # with test_chroms: the valid split (else drawn from the rest)


@dataclass(frozen=True)
class BuildSpec:
    source: str  # the manifest file, or "the command line"
    annotation: Path  # gene annotation of the pair
    cells: tuple[CellSources, CellSources]  # cell A, cell B (diff = B - A)
    options: BuildOptions  # the rules


def _choice(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return value
    return check


def _whole(low: int, high: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value
    return check


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _fractions(value: Any) -> Any:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok or min(value) <= 0 or sum(value) >= 1:
        raise ValueError("two shares TRAIN VALID, each > 0, together < 1 (test gets the rest)")
    return (float(value[0]), float(value[1]))


def _chroms(value: Any) -> Any:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, int)) and str(v).strip() for v in items):
        raise ValueError("chromosome names, e.g. [chr8, chr9] or chr8,chr9")
    return tuple(str(v).strip() for v in items)


# Option -> its check (returns the value to store, or raises ValueError saying what is expected).
OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "genes": _choice(GENE_FILTERS),
    "bigwig_stat": _choice(BIGWIG_STATS),
    "bam_position": _choice(BAM_POSITIONS),
    "fragment_length": _whole(1, MAX_FRAGMENT),
    "min_mapq": _whole(0, 255),
    "keep_duplicates": _flag,
    "seed": _whole(0, 2**32 - 1),
    "split_fractions": _fractions,
    "test_chroms": _chroms,
    "valid_chroms": _chroms,
}


def parse_options(values: dict[str, Any], base: BuildOptions, where: Callable[[str], str]) -> BuildOptions:
    """`base` with `values` checked and applied; `where(option)` names it in an error (field or flag)."""
    checked = {}
    for name, value in values.items():
        if name not in OPTION_CHECKS:
            raise ConfigError(f"{where(name)}: unknown option; expected any of {', '.join(OPTION_CHECKS)}")
        try:
            checked[name] = OPTION_CHECKS[name](value)
        except ValueError as err:
            raise ConfigError(f"{where(name)}: expected {err}, got {value!r}") from None
    return dataclasses.replace(base, **checked)


def read_manifest(path: str | Path, marks: tuple[str, ...]) -> BuildSpec:
    """The manifest at `path` (module docstring); `marks` are the five marks every cell must name."""
    path = Path(path)
    problem = path_problem(path, "manifest file")
    if problem is not None:
        raise ConfigError(f"{path}: {problem}; expected a build-pair manifest (YAML)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or type(err).__name__})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err}); expected a build-pair manifest (YAML)") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(MANIFEST_KEYS)}")
    unknown = sorted(set(map(str, doc)) - set(MANIFEST_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(MANIFEST_KEYS)}")
    base = path.parent
    annotation = _path(doc.get("annotation"), base, f"{path} field annotation", "the gene annotation file")
    cells = doc.get("cells")
    if not isinstance(cells, dict) or len(cells) != 2:
        got = f"{len(cells)} cells" if isinstance(cells, dict) else repr(cells)
        raise ConfigError(f"{path} field cells: expected two cell types (cell A first), got {got}")
    sources = tuple(_cell(str(name), body, base, f"{path} field cells.{name}", marks) for name, body in cells.items())
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path} field options: expected a mapping option: value, got {options!r}")
    opts = parse_options(options, BuildOptions(), lambda name: f"{path} field options.{name}")
    return BuildSpec(str(path), annotation, sources, opts)


def spec_from_cells(annotation: str, cells: list[list[str]], marks: tuple[str, ...], column: str | None) -> BuildSpec:
    """The spec of ``--annotation FILE --cell NAME EXPRESSION TRACK x5`` (twice), marks in `marks` order."""
    if len(cells) != 2:
        raise ConfigError(f"--cell: given {len(cells)} time(s); expected it twice (cell A, then cell B)")
    sources = tuple(
        CellSources(name, tuple((mark, Path(track)) for mark, track in zip(marks, tracks)), Path(expression), column)
        for name, expression, *tracks in cells
    )
    _check_names(sources, "--cell")
    return BuildSpec("the command line", Path(annotation), sources, BuildOptions())


def _cell(name: str, body: Any, base: Path, where: str, marks: tuple[str, ...]) -> CellSources:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(CELL_KEYS)}")
    unknown = sorted(set(map(str, body)) - set(CELL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(CELL_KEYS)}")
    expression = body.get("expression")
    column = None
    if isinstance(expression, dict):
        extra = sorted(set(map(str, expression)) - {"file", "column"})
        if extra:
            raise ConfigError(f"{where}.expression: unknown key {extra[0]!r}; expected file and column")
        column = expression.get("column")
        if column is not None and not isinstance(column, str):
            raise ConfigError(f"{where}.expression.column: expected a column name, got {column!r}")
        expression = expression.get("file")
    table = _path(expression, base, f"{where}.expression", "the expression table (or {file: ..., column: ...})")
    given = body.get("marks")
    if not isinstance(given, dict):
        raise ConfigError(f"{where}.marks: expected a mapping mark: track file for {', '.join(marks)}, got {given!r}")
    unknown = [str(m) for m in given if m not in marks]
    if unknown:
        raise ConfigError(f"{where}.marks: unknown mark {unknown[0]!r}; expected {', '.join(marks)}")
    missing = [m for m in marks if m not in given]
    if missing:
        raise ConfigError(f"{where}.marks: missing {', '.join(missing)}; expected a track (bigWig or BAM) for "
                          f"each of {', '.join(marks)}")
    tracks = tuple((m, _path(given[m], base, f"{where}.marks.{m}", "a bigWig or BAM file")) for m in marks)
    cell = CellSources(name, tracks, table, column)
    _check_names((cell,), where.rsplit(".", 1)[0])
    return cell


def _path(value: Any, base: Path, where: str, what: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected {what} (a path), got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_names(cells: tuple[CellSources, ...], where: str) -> None:
    from deepdiff.data import check_cell_name  # the one rule for cell names (they name the files)

    for cell in cells:
        check_cell_name(cell.name, where)
    if len(cells) == 2 and cells[0].name == cells[1].name:
        raise ConfigError(f"{where}: both cells are named {cells[0].name!r}; expected two different cell types")
