"""`deepdiff build-pair`: the command line of `deepdiff.tracks.build.build_pair`.

    deepdiff build-pair MANIFEST --out DIR [rules]
    deepdiff build-pair --annotation GTF --cell NAME EXPRESSION K4ME1 K4ME3 K9ME3 K27ME3 K36ME3 \\
                        --cell NAME EXPRESSION ... --out DIR [rules]

`add_parser` adds the subcommand to the ``deepdiff`` parser (whose subparsers are `OneLineParser`s) with
``handler=cmd_build_pair``. Flags override the manifest's options; every error is one line (the caller's
`deepdiff.command.run_command` prints it).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from deepdiff.command import say
from deepdiff.errors import ConfigError
from deepdiff.tracks.signal import BAM_POSITIONS, BIGWIG_STATS

# BuildOptions field -> the flag that sets it (named in errors).
OPTION_FLAGS = {
    "genes": "--all-genes", "bigwig_stat": "--bigwig-stat", "bam_position": "--bam-position",
    "fragment_length": "--fragment-length", "min_mapq": "--min-mapq", "keep_duplicates": "--keep-duplicates",
    "seed": "--seed", "split_fractions": "--split-fractions", "test_chroms": "--test-chroms",
    "valid_chroms": "--valid-chroms",
}
MARK_METAVARS = ("K4ME1", "K4ME3", "K9ME3", "K27ME3", "K36ME3")  # the five tracks of --cell, in MARKS order


def add_parser(subparsers: Any) -> None:
    """Add ``build-pair`` to `subparsers` (an ``add_subparsers`` action made with parser_class=OneLineParser)."""
    p = subparsers.add_parser(
        "build-pair", help="build a pair from bigWig/BAM tracks, a gene annotation and expression tables",
        description="Build a cell-type pair in the DeepDiffChrome layout (CELL.{train,valid,test,expr}.csv) from "
                    "each cell's five histone-mark tracks (bigWig or indexed BAM) and expression table, and one gene "
                    "annotation (GTF/GFF3 or BED6 of TSSs). See docs/own-data.md.")
    p.add_argument("manifest", nargs="?", metavar="MANIFEST", help="YAML manifest naming the files (docs/own-data.md)")
    p.add_argument("--annotation", metavar="FILE", help="without a manifest: the gene annotation")
    p.add_argument("--cell", nargs=7, action="append", metavar=("NAME", "EXPRESSION", *MARK_METAVARS),
                   help="without a manifest, twice (cell A, then B): name, expression table, the five tracks "
                        "H3K4me1 H3K4me3 H3K9me3 H3K27me3 H3K36me3")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the pair's files and its build record")
    p.add_argument("--expression-column", metavar="NAME",
                   help="value column of both expression tables (default: TPM for RSEM, the counts for featureCounts, "
                        "the second of a two-column table)")
    rules = p.add_argument_group("rules (override the manifest's options)")
    rules.add_argument("--all-genes", action="store_const", const="all", dest="genes",
                       help="every gene of the annotation (default: protein-coding only)")
    rules.add_argument("--bigwig-stat", choices=BIGWIG_STATS,
                       help="bigWig value per bin: sum over its bases (default) or mean over its bases with data")
    rules.add_argument("--bam-position", choices=BAM_POSITIONS,
                       help="where a BAM read counts: its 5' end (default) or its fragment's centre")
    rules.add_argument("--fragment-length", type=int, metavar="BP",
                       help="single-end reads with --bam-position centre: 5' end + BP/2 (default 200)")
    rules.add_argument("--min-mapq", type=int, metavar="Q", help="BAM reads below this MAPQ are skipped (default 10)")
    rules.add_argument("--keep-duplicates", action="store_const", const=True,
                       help="count BAM reads flagged as duplicates (default: skipped)")
    rules.add_argument("--seed", type=int, help="seed of the random split (default 0)")
    rules.add_argument("--split-fractions", nargs=2, type=float, metavar=("TRAIN", "VALID"),
                       help="shares of train and valid, test the rest (default the paper's 10000/2360/6100 of 18460)")
    rules.add_argument("--test-chroms", metavar="CHR,...", help="held-out chromosomes: their genes are the test split")
    rules.add_argument("--valid-chroms", metavar="CHR,...", help="with --test-chroms: chromosomes of the valid split")
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes binning the tracks (default: the CPUs, at most 8)")
    p.set_defaults(handler=cmd_build_pair)


def cmd_build_pair(args: argparse.Namespace) -> int:
    from deepdiff.data import MARKS
    from deepdiff.tracks.build import build_pair, default_jobs, summary_lines
    from deepdiff.tracks.manifest import parse_options, read_manifest, spec_from_cells

    if args.manifest is not None and (args.cell or args.annotation):
        raise ConfigError("build-pair: give a MANIFEST or --annotation with two --cell, not both")
    if args.manifest is not None:
        spec = read_manifest(args.manifest, MARKS)
        if args.expression_column is not None:
            cells = tuple(dataclasses.replace(c, expression_column=args.expression_column) for c in spec.cells)
            spec = dataclasses.replace(spec, cells=cells)
    elif args.annotation is None or not args.cell:
        raise ConfigError("build-pair: expected a MANIFEST, or --annotation FILE and --cell NAME EXPRESSION "
                          f"{' '.join(MARK_METAVARS)} twice")
    else:
        spec = spec_from_cells(args.annotation, args.cell, MARKS, args.expression_column)
    given = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    spec = dataclasses.replace(spec, options=parse_options(given, spec.options, lambda name: OPTION_FLAGS[name]))
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected a number of worker processes >= 1")
    result = build_pair(spec, args.out, jobs=args.jobs or default_jobs(), progress=say)
    if result.rebuilt:
        for note in result.notes:
            say(f"note: {note}")
    for line in summary_lines(result):
        say(line)
    a, b = (cell.name for cell in spec.cells)
    out = Path(args.out)
    print(f"pair {a}-{b} {'built' if result.rebuilt else 'up to date'} in {out} (record {result.record.name}); "
          f"train it: deepdiff train --data {out} --pair {a} {b} --variant raw")
    return 0
