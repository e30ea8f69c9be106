"""The `deepdiff` command line: a thin layer over the library.

    deepdiff synth OUT_DIR [--genes N] [--seed S]       write a synthetic pair (realistic or --signal easy)
    deepdiff prepare --data DIR --pair A B              validate a pair and cache it (Arrow IPC)
    deepdiff train --data DIR --pair A B --variant V    train one model; last stdout line is the result
    deepdiff describe --variant V [--aux MODE]          module tree and exact trainable parameter count
    deepdiff baselines --data DIR --pair A B            the paper's baselines and the best simple model; a result line each
    deepdiff evaluate --checkpoint FILE --data DIR --pair A B [--out DIR]
                                                        a saved model's PCCs; with --out its attention arrays (.npz)
    deepdiff build-pair MANIFEST --out DIR              a pair from bigWig/BAM tracks, an annotation and expression
                                                        tables (docs/own-data.md)

Every error prints one line `error: ...` on stderr, without a traceback, and exits with:
0 success; 2 bad input (flags, config or data files, paths that cannot be read or written, a disk
full, a model too large for memory; nothing already written is changed); 3 the run diverged (NaN
training loss or non-finite predictions); 130 interrupted (Ctrl-C; --resume continues a train --out).

Each subcommand is one function in `SUBCOMMANDS` that adds its parser and sets its ``handler``; the
config flags of train and describe are generated from the config dataclasses (`deepdiff.flags`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepdiff.cli_common import Subparsers, add_data_args, choose_threads, load_checked_pair, thread_count
from deepdiff.cli_results import add_baselines, add_evaluate
from deepdiff.command import OneLineParser, run_command, say, shell_command
from deepdiff.config import (
    AUX_FIELDS,
    SIAMESE_FIELDS,
    ModelConfig,
    TrainConfig,
    applicable_fields,
    configs_from_flat,
    flat_config,
    load_config,
)
from deepdiff.errors import EXIT_NAN, ConfigError, check_output_dir
from deepdiff.flags import add_config_flags, flag, given
from deepdiff.threads import CpuSample, apply, decide_again, wait_policy_env
from deepdiff.tracks import command as tracks_command

PROG = "deepdiff"  # the console script (pyproject.toml): what printed command lines start with
LARGE_COUNT = 1e6  # raw counts above this are a likelier cause of divergence than the learning rate
# The parts of a model some variants lack, and the config fields only those parts read.
OPTIONAL_PARTS = (("auxiliary task", AUX_FIELDS), ("contrastive loss", SIAMESE_FIELDS))

def _note_unused_flags(args: argparse.Namespace, variant: str, *configs: type) -> None:
    """One note for config flags given that `variant` does not read (e.g. --margin for a non-siamese variant)."""
    used = set(applicable_fields(variant))
    unused = [name for name in given(args, *configs) if name not in used]
    if unused:
        lacks = [part for part, fields in OPTIONAL_PARTS if set(fields) & set(unused)]
        say(f"note: {', '.join(map(flag, unused))} ignored: variant {variant} has no {' and no '.join(lacks)}")


# ---------------------------------------------------------------------------------------------------
# deepdiff synth


def add_synth(sub: Subparsers) -> None:
    p = sub.add_parser("synth", help="write a synthetic cell-type pair with a planted signal")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--genes", type=int, default=2000, help="genes in the HM files (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cells", nargs=2, default=("Cell1", "Cell2"), metavar=("CELL_A", "CELL_B"),
                   help="file prefixes of the two cells (default Cell1 Cell2)")
    p.add_argument("--signal", choices=("realistic", "easy"), default="realistic",
                   help="realistic: calibrated on the real E123-E003 sample (default); easy: the strong planted signal")
    p.add_argument("--split-fractions", nargs=2, type=float, metavar=("TRAIN", "VALID"),
                   help="shares of the genes in train and valid, test gets the rest (default 0.54 0.13)")
    p.add_argument("--imitates", metavar="LABEL", help="recorded in OUT_DIR/synthetic.json, e.g. the real pair it stands in for")
    p.set_defaults(handler=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from deepdiff.data import check_cell_name, pair_files
    from deepdiff.synthetic import MIN_SYNTH_GENES, SYNTHETIC_RECORD, add_synthetic_pair, check_synthetic_genes

    check_synthetic_genes(args.genes, "--genes", MIN_SYNTH_GENES)
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: expected an integer >= 0")
    for name in args.cells:
        check_cell_name(name, "--cells")
    if args.split_fractions and not all(math.isfinite(f) for f in args.split_fractions):
        raise ConfigError(f"--split-fractions {' '.join(map(str, args.split_fractions))}: expected two finite "
                          "shares of the genes, e.g. 0.54 0.13")
    out = Path(args.out)
    check_output_dir(out, "synth OUT_DIR")
    targets = [*pair_files(out, *args.cells).values(), out / SYNTHETIC_RECORD]
    existing = [path for path in targets if path.exists() or path.is_symlink()]
    if existing:
        raise ConfigError(f"{existing[0]}: already exists; expected a new OUT_DIR (synth never overwrites a pair)")
    options = {"split_fractions": tuple(args.split_fractions)} if args.split_fractions else {}
    try:
        written = add_synthetic_pair(out, genes=args.genes, seed=args.seed, cell_a=args.cells[0], cell_b=args.cells[1],
                                     signal=args.signal, imitates=args.imitates, **options)
    except ValueError as err:
        raise ConfigError(f"synth: {err}") from None
    say(f"wrote {len(written)} files to {out}")
    print(out.resolve())
    return 0


# ---------------------------------------------------------------------------------------------------
# deepdiff prepare


def add_prepare(sub: Subparsers) -> None:
    p = sub.add_parser("prepare", help="validate a pair and cache it (Arrow IPC)")
    add_data_args(p, required=True)
    p.set_defaults(handler=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    pair = load_checked_pair(args, args.data, *args.pair)
    for name in ("train", "valid", "test"):
        split = pair.split(name)
        print(f"{name}: {len(split)} genes, x {tuple(split.x_a.shape)}")
    print(f"medians of expression: {pair.cell_a}={pair.median_a:g} {pair.cell_b}={pair.median_b:g}")
    return 0


# ---------------------------------------------------------------------------------------------------
# deepdiff train


def add_train(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train one model and print its PCC")
    add_data_args(p, required=False)
    p.add_argument("--config", metavar="FILE", help="a config file (e.g. OUT/config.yaml); flags override it")
    add_config_flags(p, ModelConfig, TrainConfig, no_default=("variant",))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--out", metavar="DIR", help="write config.yaml, metrics.csv, last.pt, best.pt, result.json here")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.set_defaults(handler=cmd_train)


def resolve_train_config(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """Defaults < --config file < explicit flags; returns the configs and the data section."""
    model_cfg, train_cfg, data = load_config(args.config) if args.config else (ModelConfig(), TrainConfig(), {})
    if not args.config and args.variant is None:
        raise ConfigError("train: --variant is required (or a --config file that names one)")
    values = flat_config(model_cfg, train_cfg) | given(args, ModelConfig, TrainConfig)
    model_cfg, train_cfg = configs_from_flat(values, source="command line")
    if args.data:
        data = {"dir": args.data}
    if args.pair:
        data = {**data, "cell_a": args.pair[0], "cell_b": args.pair[1]}
    missing = [k for k in ("dir", "cell_a", "cell_b") if not data.get(k)]
    if missing:
        raise ConfigError("train: --data DIR and --pair CELL_A CELL_B are required (or a --config file with a data section)")
    for key in ("dir", "cell_a", "cell_b"):
        if not isinstance(data[key], str):
            raise ConfigError(f"{args.config} section data: field {key}: expected text, got {data[key]!r}")
    if data.get("synthetic") is not None and not isinstance(data["synthetic"], dict):
        raise ConfigError(f"{args.config} section data: field synthetic: expected a mapping of generator options, "
                          f"got {data['synthetic']!r}")
    return model_cfg, train_cfg, data


def _ensure_data(data: dict[str, Any], config: str | None) -> None:
    """A config exported from a synthetic study regenerates its pair when the folder is gone (or empty)."""
    if not data.get("synthetic"):
        return
    from deepdiff.data import pair_files
    from deepdiff.synthetic import ensure_synthetic_pair

    folder = Path(data["dir"])
    files = pair_files(folder, data["cell_a"], data["cell_b"]).values()
    if folder.is_dir() and any(folder.iterdir()) and not all(f.is_file() for f in files):
        raise ConfigError(f"{folder}: holds other files but not the synthetic pair {data['cell_a']}/{data['cell_b']} "
                          f"of {config}; expected the pair or a missing or empty folder (never regenerated over files)")
    try:
        written = ensure_synthetic_pair(folder, cell_a=data["cell_a"], cell_b=data["cell_b"], **data["synthetic"])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{config} section data: field synthetic: {err}") from None
    if written:
        say(f"regenerated the synthetic pair in {folder}")


def _divergence_hint(pair, train_cfg: TrainConfig) -> str:
    """What most likely made a run diverge: non-finite inputs, huge raw counts, or the learning rate."""
    import torch

    from deepdiff.data import SPLITS

    for name in SPLITS:
        split = pair.split(name)
        if not (bool(torch.isfinite(split.x_a).all()) and bool(torch.isfinite(split.x_b).all())):
            return f"the input counts of split {name} are not all finite: the data, not --lr, caused it"
    largest = max(float(getattr(pair.split(name), x).max()) for name in SPLITS for x in ("x_a", "x_b"))
    if train_cfg.input_transform == "raw" and largest > LARGE_COUNT:
        return f"the largest input count is {largest:.3g}: try --input-transform log1p"
    return f"try a lower --lr (now {train_cfg.lr:g}) or --input-transform log1p"


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepdiff.device import autocast_dtype, dtype_name, pick_device, precision_label
    from deepdiff.results import EpochStatus, diverged
    from deepdiff.rundir import DeferredInterrupt, RunFolder
    from deepdiff.train import LAST_CHECKPOINT, fit

    if args.resume and not args.out:
        raise ConfigError("train: --resume needs --out DIR (the run to continue)")
    model_cfg, train_cfg, data = resolve_train_config(args)
    _note_unused_flags(args, model_cfg.variant, ModelConfig, TrainConfig)
    device = pick_device(args.device)
    dtype = autocast_dtype(device, train_cfg.precision)
    # The threads are this command's to set (`choose_threads`), not part of what a checkpoint trains: fit() and the
    # checkpoints see the default, so a --resume may use other --threads (config.yaml keeps the user's).
    trained_cfg = dataclasses.replace(train_cfg, threads=TrainConfig().threads)
    # Everything that can refuse the run is checked before anything in --out is written.
    run = RunFolder.open(args.out, model_cfg, trained_cfg, resume=args.resume) if args.out else None
    if run is not None and run.resume_from is not None:
        before, now = run.trained_in, dtype_name(dtype)
        if before is not None and before != now:
            say(f"note: {run.resume_from} trained in {before}; it goes on in {now} (precision {train_cfg.precision} on "
                f"{device}); pass --precision {before} to keep {before}")
    elif args.resume:
        say(f"note: {run.path} holds no {LAST_CHECKPOINT} to resume; starting a new run there")
    _ensure_data(data, args.config)
    pair = load_checked_pair(args, data["dir"], data["cell_a"], data["cell_b"], n_bins=model_cfg.n_bins)
    if run is not None:
        # What the run folder records of the data: the resume of this run must train on the same.
        trained_on = {**data, "dir": str(Path(data["dir"]).resolve()), "fingerprint": pair.fingerprint()}
        note = run.check_data(trained_on)
        if note:
            say(f"note: {note}")
        run.start(model_cfg, train_cfg, trained_on)
        if run.resume_from is not None:
            say(f"resuming {run.path} after epoch {run.done}")
    threads = choose_threads(args, train_cfg.threads)
    say(f"training {model_cfg.variant} on {pair.cell_a} -> {pair.cell_b} ({len(pair.train)} train genes) on {device}"
        f"{f' with {thread_count(threads.threads)}' if device.type == 'cpu' else ''}, {precision_label(dtype)}")

    bar = tqdm(total=None, unit="batch", file=sys.stderr, dynamic_ncols=True, disable=None, leave=False)
    epochs_label = f"/{train_cfg.epochs}"
    result = None
    with DeferredInterrupt() as interrupt:

        def on_batch(done: int, total: int) -> None:
            interrupt.check()
            if bar.total != total:
                bar.reset(total=total)
            bar.update(1)

        for result in fit(model_cfg, trained_cfg, pair, device=device, checkpoint_dir=run.path if run else None,
                          resume_from=run.resume_from if run else None, on_batch=on_batch):
            bar.set_description(f"epoch {result.epoch + 1}{epochs_label}")
            tqdm.write(
                f"epoch {result.epoch}{epochs_label} loss={result.train_loss:.4f} valid_pcc={result.valid_pcc:.4f} "
                f"test_pcc={result.test_pcc:.4f} ({result.seconds:.1f}s)", file=sys.stderr,
            )
            if run is not None:
                run.record(result)
            if not train_cfg.threads and device.type == "cpu":  # automatic: chosen again from the epoch's CPU use
                again = decide_again(threads, os.environ)
                if again.threads != threads.threads:
                    apply(again)
                    tqdm.write(f"note: {thread_count(again.threads)} from epoch {result.epoch + 1}: other processes kept "
                               f"{again.busy_elsewhere:.1f} of {again.usable} usable CPUs busy in epoch {result.epoch}", file=sys.stderr)
                threads = again
            interrupt.check()
    bar.close()
    summary = {
        "variant": model_cfg.variant, "pair": f"{pair.cell_a}-{pair.cell_b}", "best_epoch": result.best_epoch,
        "valid_pcc": result.best_valid_pcc, "test_pcc": result.best_test_pcc, "test_mse": result.best_test_mse,
        "status": result.status,
    }
    if run is not None:
        run.finish(summary, model_cfg, train_cfg)
    ended_without_result = diverged(result.status)
    if ended_without_result:
        what = ("the training loss became NaN" if result.status is EpochStatus.NAN
                else "the model's valid/test predictions are not finite")
        say(f"error: {what} at epoch {result.epoch}; {_divergence_hint(pair, train_cfg)}")
    print("result " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return EXIT_NAN if ended_without_result else 0


# ---------------------------------------------------------------------------------------------------
# deepdiff describe


def add_describe(sub: Subparsers) -> None:
    p = sub.add_parser("describe", help="print a variant's module tree and trainable parameter count")
    add_config_flags(p, ModelConfig, required=("variant",))
    p.set_defaults(handler=cmd_describe)


def cmd_describe(args: argparse.Namespace) -> int:
    from deepdiff.model import DeepDiff, count_parameters

    _note_unused_flags(args, args.variant, ModelConfig)
    cfg, _ = configs_from_flat(given(args, ModelConfig), source="command line")
    model = DeepDiff.from_config(cfg)
    print(model)
    for group in ("level1", "level2", "heads"):
        for key, module in getattr(model, group).items():
            print(f"  {group}.{key}: {count_parameters(module):,}")
    print(f"trainable parameters: {count_parameters(model)}")
    return 0


# Each adds one subcommand's parser to `deepdiff`'s subparsers and sets its ``handler`` (a function of the
# parsed args returning the exit status): a new subcommand is one more entry here.
SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_synth, add_prepare, add_train, add_describe, add_baselines, add_evaluate, tracks_command.add_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for add_parser in SUBCOMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "torch" not in sys.modules:  # libgomp reads its wait policy once, when torch loads it (deepdiff.threads)
        os.environ.update(wait_policy_env(os.environ))
    started = CpuSample.now()  # the CPUs' use by other processes is measured from here to the threads' choice
    args = build_parser().parse_args(argv)
    args.started = started
    resumable = getattr(args, "resume", None) is not None and getattr(args, "out", None)  # a run --resume continues
    # The same command with --resume, quoted for the shell: a path with a space runs as printed.
    again = shell_command(PROG, *argv, *(() if getattr(args, "resume", False) else ("--resume",)))
    return run_command(
        lambda: args.handler(args),
        interrupted="interrupted; everything written so far is kept" + (f"; continue with: {again}" if resumable else ""),
        memory_hint="the model or a batch is too large for this machine: lower --level1-hidden, --level2-hidden or --batch-size",
    )


if __name__ == "__main__":
    sys.exit(main())
