"""Two cells' tracks, their expression tables and a gene annotation -> a pair in the DeepDiffChrome
layout (`deepdiff.data`): `build_pair`.

The steps, each a module of this package: one TSS per gene (`annotation`), the chromosomes of all
tracks matched to the annotation's and checked for one assembly (`genome`), the expression tables read
(`expression`); genes kept if their chromosome is in every track and both tables list them (the rest
dropped and counted); one split for both cells (`splits`); N_BINS bins of `BIN_SIZE` bases around each
TSS from every track (`signal`, in worker processes); then written:

- ``OUT/CELL.{train,valid,test}.csv``: ``ENSGID_SYMBOL_BIN`` and the five marks' values, 200 rows per
  gene, genes in genome order (annotation's chromosome order, then TSS) within a split;
- ``OUT/CELL.expr.csv``: ``ENSGID,value`` of the pair's genes (the value column of the table, as is);
- ``OUT/A-B.build-pair.json``: the record (`record`): sources with checksums, annotation, rules, split
  seed, outputs, and the summary (genes per split, drops by reason, bins off chromosome ends, share of
  zero bins per mark, expression range).

Every file is written whole or not at all (a temporary file, then a rename); before the first one, the
record is replaced by one that claims the files without checksums, and the full record is written last:
a build stopped halfway is rebuilt by the next run.
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from deepdiff.config import write_atomic
from deepdiff.data import MARKS, N_BINS, SPLITS
from deepdiff.errors import DataError, check_output_dir, path_problem
from deepdiff.tracks.annotation import TSS_RULE, Annotation, Genes, read_annotation
from deepdiff.tracks.expression import ExpressionTable, read_expression
from deepdiff.tracks.genome import Genome, reconcile
from deepdiff.tracks.manifest import BuildSpec
from deepdiff.tracks.record import (RECORD_FORMAT, build_key, check_owner, describe_file, file_entry, is_known,
                                    known_files, outputs_unchanged, read_record, record_path, write_record)
from deepdiff.tracks.signal import BinRules, bin_track, chrom_sizes, track_format, worker_init
from deepdiff.tracks.splits import MIN_PER_SPLIT, SPLIT_CODES, assign_splits

BIN_SIZE = 100  # bases per bin: 200 bins span -10 kb .. +10 kb around the TSS, as the paper's data
MAX_JOBS = 8  # default worker processes: the CPUs this process may use, at most this many

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    out: Path  # the folder holding the pair
    record: Path  # its build-pair.json
    rebuilt: bool  # False: the same inputs were built before and the files are unchanged
    summary: dict[str, Any]  # the record's summary
    notes: tuple[str, ...]  # what was dropped, renamed, chosen


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may use, at most `MAX_JOBS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_JOBS))


def output_names(cell_a: str, cell_b: str) -> list[str]:
    return [f"{cell}.{kind}.csv" for cell in (cell_a, cell_b) for kind in (*SPLITS, "expr")]


def bin_rules(spec: BuildSpec) -> BinRules:
    o = spec.options
    return BinRules(n_bins=N_BINS, bin_size=BIN_SIZE, bigwig_stat=o.bigwig_stat, bam_position=o.bam_position,
                    fragment_length=o.fragment_length, min_mapq=o.min_mapq, keep_duplicates=o.keep_duplicates)


def build_pair(spec: BuildSpec, out: str | Path, *, jobs: int = 1, progress: Progress | None = None) -> BuildResult:
    """Build the pair `spec` describes into `out` (module docstring); nothing is done when the record in
    `out` says the same inputs were built and the files it wrote are unchanged. `jobs`: worker processes
    binning the tracks (1: in this process). `progress` receives status lines."""
    say = progress or (lambda message: None)
    out = Path(out)
    check_output_dir(out, "--out")
    cell_a, cell_b = (cell.name for cell in spec.cells)
    record_file = record_path(out, cell_a, cell_b)
    previous = read_record(record_file)
    known = known_files(previous)
    roles = _source_roles(spec)
    columns = {cell.name: cell.expression_column for cell in spec.cells}
    rules_key = {**dataclasses.asdict(spec.options), "expression_columns": columns, "bins": [N_BINS, BIN_SIZE]}

    def key_of(sources: dict[str, dict[str, Any]]) -> str:
        return build_key([cell_a, cell_b], {role: entry["sha256"] for role, entry in sources.items()}, rules_key)

    def unchanged(sources: dict[str, dict[str, Any]]) -> BuildResult | None:
        """The previous build, if it was of these sources and its files are as it wrote them."""
        if previous is None or previous.get("key") != key_of(sources) or not outputs_unchanged(previous, out):
            return None
        say(f"{out}: pair {cell_a}-{cell_b} is up to date with its sources ({record_file.name}); nothing rebuilt")
        if previous.get("sources") != sources:  # touched, not changed: remember the new fingerprints
            write_record(record_file, {**previous, "sources": sources})
        return BuildResult(out, record_file, False, previous["summary"], tuple(previous.get("notes", ())))

    # Unchanged sources (by their stat fingerprints) are known without reading them: done at once.
    if previous is not None and all(is_known(path, known) for path in roles.values()):
        done = unchanged(_describe(roles, known))
        if done is not None:
            return done
    check_owner(out, output_names(cell_a, cell_b), f"{cell_a}-{cell_b}")
    # Everything that can refuse the inputs is checked before the long part (checksums, binning).
    annotation = read_annotation(spec.annotation, spec.options.genes)
    say(f"annotation {spec.annotation}: {len(annotation.genes):,} genes "
        f"({'protein-coding' if spec.options.genes == 'protein_coding' else 'all'}, {annotation.format})")
    tables = {cell.name: read_expression(cell.expression, cell.expression_column) for cell in spec.cells}
    for table in tables.values():
        say(f"expression {table.describe()}")
    tracks = {path: chrom_sizes(path) for path in dict.fromkeys(p for cell in spec.cells for _, p in cell.marks)}
    genome = reconcile(list(dict.fromkeys(annotation.genes.chroms.tolist())), tracks)
    genes, dropped, notes = _select_genes(annotation, genome, tables, spec)
    o = spec.options
    codes = assign_splits(genes.ids, genes.chroms, seed=o.seed, fractions=o.split_fractions,
                          test_chroms=o.test_chroms, valid_chroms=o.valid_chroms)
    sources = _describe(roles, known)
    done = unchanged(sources)  # sources touched but not changed
    if done is not None:
        return done
    rules = bin_rules(spec)
    x = _bin_all(spec, genes, genome, rules, jobs)
    # The files about to be replaced are claimed first: a build stopped halfway is rebuilt by the next run.
    out.mkdir(parents=True, exist_ok=True)
    write_record(record_file, {"format": RECORD_FORMAT, "key": None, "pair": {"cell_a": cell_a, "cell_b": cell_b},
                               "outputs": {name: {} for name in output_names(cell_a, cell_b)}})
    outputs = _write(out, spec, genes, codes, _genome_order(genes, list(genome.sizes)), x, tables)
    summary = _summary(spec, annotation, genes, codes, dropped, x, tables, _off_chromosome(genes, genome, rules))
    notes = [*genome.notes, *notes]
    record = {
        "format": RECORD_FORMAT, "key": key_of(sources), "built_by": "deepdiff build-pair",
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pair": {"cell_a": cell_a, "cell_b": cell_b}, "manifest": spec.source, "sources": sources,
        "annotation": {"file": str(spec.annotation), "format": annotation.format, "genes": o.genes, "tss_rule": TSS_RULE},
        "expression": {name: {"format": t.format, "column": t.column} for name, t in tables.items()},
        "rules": _rules_record(rules), "split": _split_record(spec),
        "outputs": outputs, "summary": summary, "notes": notes,
    }
    write_record(record_file, record)
    return BuildResult(out, record_file, True, summary, tuple(notes))


# ---------------------------------------------------------------------------------------------------
# Sources


def _source_roles(spec: BuildSpec) -> dict[str, Path]:
    """Every source file by its role (``annotation``, ``A/expression``, ``A/H3K4me1`` ...), each checked
    to be a readable file of a known kind before anything is read."""
    roles = {"annotation": spec.annotation}
    for cell in spec.cells:
        roles[f"{cell.name}/expression"] = cell.expression
        for mark, path in cell.marks:
            track_format(path)
            roles[f"{cell.name}/{mark}"] = path
    for role, path in roles.items():
        problem = path_problem(path, "file")
        if problem is not None:
            raise DataError(f"{path}: {problem}; expected the {role.replace('/', ' ')} file of {spec.source}")
    return roles


def _describe(roles: dict[str, Path], known: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each source's record entry (path, size, sha256, fingerprint; a track's format), hashing only the
    files that changed since the last build, with a progress bar over their bytes."""
    from tqdm import tqdm

    todo = {p.resolve() for p in roles.values() if not is_known(p, known)}
    total = sum(p.stat().st_size for p in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc="checksums", disable=None, leave=False) as bar:
        entries = {}
        for role, path in roles.items():
            entries[role] = describe_file(path, known, bar.update)
            if "/" in role and not role.endswith("/expression"):
                entries[role]["format"] = track_format(path)
    return entries


# ---------------------------------------------------------------------------------------------------
# Genes


def _select_genes(annotation: Annotation, genome: Genome, tables: dict[str, ExpressionTable],
                  spec: BuildSpec) -> tuple[Genes, dict[str, int], list[str]]:
    """The annotation's genes that every track and both tables have; drops counted by reason."""
    genes = annotation.genes
    dropped = {k: v for k, v in annotation.counts.items() if k not in ("records", "genes")}
    notes = [f"annotation: {count:,} {reason.replace('_', ' ')} dropped (e.g. {annotation.examples[reason]})"
             for reason, count in dropped.items()]
    on_missing = _member(genes.chroms, list(genome.missing))
    if on_missing.any():
        chroms = sorted(set(genes.chroms[on_missing]))
        dropped["chromosome_not_in_every_track"] = int(on_missing.sum())
        shown = ", ".join(f"{c} (not in {genome.missing[c]})" for c in chroms[:3])
        notes.append(f"{int(on_missing.sum()):,} genes on {len(chroms)} chromosome(s) some track lacks dropped: "
                     f"{shown}{' ...' if len(chroms) > 3 else ''}")
        genes = genes.subset(~on_missing)
    _check_tss_inside(genes, genome, annotation)
    for cell in spec.cells:
        table = tables[cell.name]
        known = _member(annotation.genes.ids, table.ids)
        if not known.any():
            raise DataError(f"{table.path}: none of its {len(table.ids):,} gene ids (e.g. {table.ids[0]}) is a gene of "
                            f"{annotation.path} (e.g. {annotation.genes.ids[0]}); expected the annotation's gene ids "
                            "(version suffixes are ignored)")
        listed = _member(genes.ids, table.ids)
        if not listed.all():
            reason = f"not_in_expression_{cell.name}"
            dropped[reason] = int((~listed).sum())
            notes.append(f"{dropped[reason]:,} genes not in {table.path} dropped (e.g. {genes.ids[~listed][0]})")
            genes = genes.subset(listed)
        if table.par_y:
            notes.append(f"{table.path}: {table.par_y} _PAR_Y rows ignored (the chrY copies of X genes)")
    if len(genes) < 3 * MIN_PER_SPLIT:
        lost = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items()) or "none dropped"
        raise DataError(f"{annotation.path}: only {len(genes)} gene(s) are in every track and both expression tables "
                        f"({lost}); expected at least {3 * MIN_PER_SPLIT} (two per split)")
    return genes, dropped, notes


def _member(values: np.ndarray, of: "np.ndarray | list") -> np.ndarray:
    """(N,) bool: which of the strings `values` are in `of` (a set lookup; np.isin sorts object arrays)."""
    wanted = set(of.tolist() if isinstance(of, np.ndarray) else of)
    return np.fromiter((v in wanted for v in values.tolist()), dtype=bool, count=len(values))


def _check_tss_inside(genes: Genes, genome: Genome, annotation: Annotation) -> None:
    """A TSS beyond its chromosome's end: the annotation is of another assembly than the tracks."""
    sizes = np.array([genome.sizes[c] for c in genes.chroms], dtype=np.int64)
    beyond = genes.tss >= sizes
    if beyond.any():
        i = int(np.argmax(beyond))
        chrom = genes.chroms[i]
        track = next(iter(genome.names))
        raise DataError(f"{annotation.path}: gene {genes.ids[i]} starts at {chrom}:{genes.tss[i] + 1:,}, beyond the end "
                        f"of {chrom} ({sizes[i]:,} bp in {track}); expected the annotation of the tracks' assembly")


def _genome_order(genes: Genes, chroms: list[str]) -> np.ndarray:
    rank = {c: i for i, c in enumerate(chroms)}
    return np.lexsort((genes.tss, np.array([rank[c] for c in genes.chroms])))


def _off_chromosome(genes: Genes, genome: Genome, rules: BinRules) -> dict[str, int]:
    """Bins (of one cell's mark) that reach beyond a chromosome end, and the genes that have such bins."""
    half = rules.window // 2
    starts = np.where(genes.minus, genes.tss + 1 - half, genes.tss - half)
    sizes = np.array([genome.sizes[c] for c in genes.chroms], dtype=np.int64)
    edges = starts[:, None] + np.arange(rules.n_bins + 1)[None, :] * rules.bin_size
    off = (edges[:, :-1] < 0) | (edges[:, 1:] > sizes[:, None])
    return {"genes": int(off.any(axis=1).sum()), "bins": int(off.sum())}


# ---------------------------------------------------------------------------------------------------
# Signal: one task per (cell, mark, chromosome), in worker processes when jobs > 1


@dataclass(frozen=True)
class _Task:
    cell: str
    mark: int  # index into MARKS
    rows: np.ndarray  # the genes' rows
    args: tuple  # bin_track's arguments


def _bin_all(spec: BuildSpec, genes: Genes, genome: Genome, rules: BinRules, jobs: int) -> dict[str, np.ndarray]:
    """{cell: (N, M, T) float32} for the genes, every track binned."""
    from tqdm import tqdm

    x = {cell.name: np.zeros((len(genes), len(MARKS), rules.n_bins), dtype=np.float32) for cell in spec.cells}
    tasks = []
    for cell in spec.cells:
        for m, (_, path) in enumerate(cell.marks):
            names = genome.names[path]
            for chrom in dict.fromkeys(genes.chroms.tolist()):
                rows = np.flatnonzero(genes.chroms == chrom)
                args = (path, names[chrom], genome.sizes[chrom], genes.tss[rows], genes.minus[rows], rules)
                tasks.append(_Task(cell.name, m, rows, args))
    tasks.sort(key=lambda t: -len(t.rows))  # the longest first: workers finish together
    total = len(genes) * len(MARKS) * len(spec.cells)
    with tqdm(total=total, unit="gene", desc="binning tracks", disable=None, leave=False) as bar:
        for task, values in _run(tasks, jobs):
            x[task.cell][task.rows, task.mark] = values
            bar.update(len(task.rows))
    return x


def _run(tasks: list[_Task], jobs: int) -> Iterator[tuple[_Task, np.ndarray]]:
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, bin_track(*task.args)
        return
    # spawn: workers start clean (no copy of this process's threads or locks) and import only signal.py
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init)
    try:
        futures = {pool.submit(bin_track, *task.args): task for task in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------
# Writing


def _write(out: Path, spec: BuildSpec, genes: Genes, codes: np.ndarray, order: np.ndarray,
           x: dict[str, np.ndarray], tables: dict[str, ExpressionTable]) -> dict[str, dict[str, Any]]:
    """The eight files of the pair, each whole or not at all; their record entries by file name."""
    written = {}
    for cell in spec.cells:
        for name in SPLITS:
            rows = order[codes[order] == SPLIT_CODES[name]]
            data = _split_csv(genes.ids[rows], genes.symbols[rows], x[cell.name][rows])
            written[f"{cell.name}.{name}.csv"] = data
        table = tables[cell.name]
        values = table.values[_positions(table.ids, genes.ids[order])]
        written[f"{cell.name}.expr.csv"] = _csv({"id": pa.array(genes.ids[order].tolist(), pa.string()),
                                                 "value": pa.array(values)})
    entries = {}
    for name, data in written.items():
        write_atomic(out / name, data)
        entries[name] = file_entry(out / name, data)
    return entries


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    index = {gene: i for i, gene in enumerate(ids.tolist())}
    return np.array([index[gene] for gene in wanted.tolist()], dtype=np.int64)


def _split_csv(ids: np.ndarray, symbols: np.ndarray, x: np.ndarray) -> bytes:
    """A ``CELL.SPLIT.csv``: ``ENSGID_SYMBOL_BIN`` and the M marks' values, T rows per gene."""
    n, n_marks, n_bins = x.shape
    stems = pa.array([f"{gene}_{symbol}_" for gene, symbol in zip(ids.tolist(), symbols.tolist())], pa.string())
    names = pc.binary_join_element_wise(stems.take(pa.array(np.repeat(np.arange(n), n_bins))),
                                        pc.cast(pa.array(np.tile(np.arange(1, n_bins + 1), n)), pa.string()), "")
    flat = x.transpose(0, 2, 1).reshape(n * n_bins, n_marks)
    return _csv({"id": names, **{mark: pa.array(flat[:, j]) for j, mark in enumerate(MARKS)}})


def _csv(columns: dict[str, pa.Array]) -> bytes:
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(pa.table(columns), sink, write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------------------------------------------
# Record parts


def _rules_record(rules: BinRules) -> dict[str, Any]:
    half = rules.window // 2
    return {
        "bins": rules.n_bins, "bin_size": rules.bin_size,
        "window": f"TSS - {half} .. TSS + {half} bases, bin 1 upstream on either strand; bases beyond a chromosome end are 0",
        "bigwig": f"{rules.bigwig_stat} of the per-base signal over each bin"
                  + (" (bases without data add 0)" if rules.bigwig_stat == "sum" else " (over the bases with data; 0 if none)"),
        "bam": {"position": rules.bam_position, "fragment_length": rules.fragment_length, "min_mapq": rules.min_mapq,
                "duplicates": "counted" if rules.keep_duplicates else "skipped (flag 0x400)",
                "skipped": "unmapped, secondary, supplementary, QC-failed reads"},
    }


def _split_record(spec: BuildSpec) -> dict[str, Any]:
    o = spec.options
    return {"mode": "held-out chromosomes" if o.test_chroms else "random", "seed": o.seed,
            "fractions": list(o.split_fractions), "test_chroms": list(o.test_chroms), "valid_chroms": list(o.valid_chroms)}


def _summary(spec: BuildSpec, annotation: Annotation, genes: Genes, codes: np.ndarray, dropped: dict[str, int],
             x: dict[str, np.ndarray], tables: dict[str, ExpressionTable], off: dict[str, int]) -> dict[str, Any]:
    counts = np.bincount(codes, minlength=len(SPLITS))
    expression = {}
    for cell in spec.cells:
        table = tables[cell.name]
        values = table.values[_positions(table.ids, genes.ids)]
        expression[cell.name] = {"min": float(values.min()), "median": float(np.median(values)),
                                 "max": float(values.max()), "zero_share": round(float((values == 0).mean()), 4)}
    return {
        "pair": f"{spec.cells[0].name}-{spec.cells[1].name}",
        "genes": {"annotation": len(annotation.genes), "kept": len(genes),
                  **{name: int(counts[SPLIT_CODES[name]]) for name in SPLITS}},
        "dropped": dropped,
        "off_chromosome": off,
        "zero_bin_share": {name: {mark: round(float((v[:, m] == 0).mean()), 4) for m, mark in enumerate(MARKS)}
                           for name, v in x.items()},
        "expression": expression,
    }


def summary_lines(result: BuildResult) -> list[str]:
    """The summary as short lines for a terminal."""
    s = result.summary
    g = s["genes"]
    lines = [f"genes: {g['kept']:,} of {g['annotation']:,} kept; train/valid/test {g['train']:,}/{g['valid']:,}/{g['test']:,}"]
    if s["dropped"]:
        lines.append("dropped: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in s["dropped"].items()))
    lines.append(f"bins beyond a chromosome end (0): {s['off_chromosome']['bins']:,} in {s['off_chromosome']['genes']:,} genes")
    for cell, shares in s["zero_bin_share"].items():
        lines.append(f"{cell} zero bins: " + ", ".join(f"{mark} {share:.0%}" for mark, share in shares.items()))
    for cell, e in s["expression"].items():
        lines.append(f"{cell} expression: min {e['min']:g}, median {e['median']:g}, max {e['max']:g}, "
                     f"{e['zero_share']:.0%} zero")
    return lines
