"""What the `deepdiff` subcommands share: the data flags, loading a checked pair, choosing torch's threads.

`deepdiff.cli` (synth, prepare, train, describe) and `deepdiff.cli_results` (baselines, evaluate) both read
these; neither imports the other's subcommands.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from deepdiff.command import say
from deepdiff.errors import check_output_dir
from deepdiff.threads import ThreadChoice, apply, decide

Subparsers = Any  # what `ArgumentParser.add_subparsers` returns (argparse's private _SubParsersAction)


def add_data_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--data", metavar="DIR", required=required, help="folder with CELL.{train,valid,test,expr}.csv")
    p.add_argument("--pair", nargs=2, metavar=("CELL_A", "CELL_B"), required=required,
                   help="the two cell types (file prefixes, e.g. Cell1 Cell2 or E123 E003); diff = B - A")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache of validated pairs (default $XDG_CACHE_HOME/deepdiff-tune or ~/.cache/deepdiff-tune)")
    p.add_argument("--no-cache", action="store_true", help="always re-read the CSV files")
    p.add_argument("--strict-genes", action="store_true",
                   help="refuse genes present in one cell but not the other (default: report and drop them)")


def load_checked_pair(args: argparse.Namespace, data_dir: str, cell_a: str, cell_b: str, *, n_bins: int | None = None):
    """The validated pair, refused if a split has no PCC (fewer than 2 genes, a constant target)."""
    from deepdiff.data import N_BINS, check_cell_name, check_trainable, default_cache_dir, load_pair

    for name in (cell_a, cell_b):
        check_cell_name(name, "--pair")
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir is not None else default_cache_dir()
    if args.cache_dir is not None and not args.no_cache:
        # A cache that cannot be written is only a note (a shared read-only cache still serves); a
        # --cache-dir that can never be a folder is a mistake in the flag.
        check_output_dir(cache, "--cache-dir", writable=False)
    pair = load_pair(data_dir, cell_a, cell_b, cache_dir=cache, n_bins=n_bins or N_BINS,
                     unpaired="error" if args.strict_genes else "drop", progress=say)
    for note in pair.notes:
        say(f"note: {note}")
    check_trainable(pair, data_dir)
    return pair


def choose_threads(args: argparse.Namespace, requested: int) -> ThreadChoice:
    """Set torch's threads (`deepdiff.threads`): `requested`, or automatic (0), measuring the other processes'
    use of the CPUs since the command started (`args.started`); notes a choice of fewer than usable."""
    choice = decide(requested, os.environ, getattr(args, "started", None))
    apply(choice)
    if choice.note():
        say(f"note: {choice.note()}")
    return choice


def thread_count(threads: int) -> str:
    return f"{threads} thread{'s' * (threads > 1)}"
