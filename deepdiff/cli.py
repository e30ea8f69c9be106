"""The `deepdiff` command line: a thin layer over the library.

    deepdiff synth OUT_DIR [--genes N] [--seed S]       write a synthetic pair (realistic or --signal easy)
    deepdiff prepare --data DIR --pair A B              validate a pair and cache it (Arrow IPC)
    deepdiff train --data DIR --pair A B --variant V    train one model; last stdout line is the result
    deepdiff describe --variant V [--aux MODE]          module tree and exact trainable parameter count
    deepdiff baselines --data DIR --pair A B            linear regression, one- and two-layer SVR; a result line each
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

from deepdiff.command import OneLineParser, run_command, say, shell_command
from deepdiff.config import (
    AUX_FIELDS,
    INPUT_TRANSFORMS,
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
from deepdiff.threads import CpuSample, ThreadChoice, apply, decide, decide_again, wait_policy_env
from deepdiff.tracks import command as tracks_command

PROG = "deepdiff"  # the console script (pyproject.toml): what printed command lines start with
ATTENTION_FILE = "attention.npz"  # what `deepdiff evaluate --out` writes (with attention.json)
LARGE_COUNT = 1e6  # raw counts above this are a likelier cause of divergence than the learning rate
# The parts of a model some variants lack, and the config fields only those parts read.
OPTIONAL_PARTS = (("auxiliary task", AUX_FIELDS), ("contrastive loss", SIAMESE_FIELDS))

Subparsers = Any  # what `ArgumentParser.add_subparsers` returns (argparse's private _SubParsersAction)


def _add_data_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--data", metavar="DIR", required=required, help="folder with CELL.{train,valid,test,expr}.csv")
    p.add_argument("--pair", nargs=2, metavar=("CELL_A", "CELL_B"), required=required,
                   help="the two cell types (file prefixes, e.g. Cell1 Cell2 or E123 E003); diff = B - A")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache of validated pairs (default $XDG_CACHE_HOME/deepdiff-tune or ~/.cache/deepdiff-tune)")
    p.add_argument("--no-cache", action="store_true", help="always re-read the CSV files")
    p.add_argument("--strict-genes", action="store_true",
                   help="refuse genes present in one cell but not the other (default: report and drop them)")


def _load(args: argparse.Namespace, data_dir: str, cell_a: str, cell_b: str, *, n_bins: int | None = None):
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


def _threads(args: argparse.Namespace, requested: int) -> ThreadChoice:
    """Set torch's threads (`deepdiff.threads`): `requested`, or automatic (0), measuring the other processes'
    use of the CPUs since the command started (`args.started`); notes a choice of fewer than usable."""
    choice = decide(requested, os.environ, getattr(args, "started", None))
    apply(choice)
    if choice.note():
        say(f"note: {choice.note()}")
    return choice


def _count(threads: int) -> str:
    return f"{threads} thread{'s' * (threads > 1)}"


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
    _add_data_args(p, required=True)
    p.set_defaults(handler=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    pair = _load(args, args.data, *args.pair)
    for name in ("train", "valid", "test"):
        split = pair.split(name)
        print(f"{name}: {len(split)} genes, x {tuple(split.x_a.shape)}")
    print(f"medians of expression: {pair.cell_a}={pair.median_a:g} {pair.cell_b}={pair.median_b:g}")
    return 0


# ---------------------------------------------------------------------------------------------------
# deepdiff train


def add_train(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train one model and print its PCC")
    _add_data_args(p, required=False)
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
    # The threads are this command's to set (`_threads`), not part of what a checkpoint trains: fit() and the
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
    pair = _load(args, data["dir"], data["cell_a"], data["cell_b"], n_bins=model_cfg.n_bins)
    if run is not None:
        # What the run folder records of the data: the resume of this run must train on the same.
        trained_on = {**data, "dir": str(Path(data["dir"]).resolve()), "fingerprint": pair.fingerprint()}
        note = run.check_data(trained_on)
        if note:
            say(f"note: {note}")
        run.start(model_cfg, train_cfg, trained_on)
        if run.resume_from is not None:
            say(f"resuming {run.path} after epoch {run.done}")
    threads = _threads(args, train_cfg.threads)
    say(f"training {model_cfg.variant} on {pair.cell_a} -> {pair.cell_b} ({len(pair.train)} train genes) on {device}"
        f"{f' with {_count(threads.threads)}' if device.type == 'cpu' else ''}, {precision_label(dtype)}")

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
                    tqdm.write(f"note: {_count(again.threads)} from epoch {result.epoch + 1}: other processes kept "
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


# ---------------------------------------------------------------------------------------------------
# deepdiff baselines


def add_baselines(sub: Subparsers) -> None:
    p = sub.add_parser("baselines", help="fit the paper's baselines (linear regression, one- and two-layer SVR)")
    _add_data_args(p, required=True)
    p.add_argument("--baselines", metavar="NAMES",
                   help="comma-separated subset, e.g. linear,svr2 (default all: linear, svr, svr2)")
    p.add_argument("--input-transform", choices=INPUT_TRANSFORMS, default="raw",
                   help="applied to the counts as for the deep models (default raw)")
    p.add_argument("--seed", type=int, default=0, help="cross-validation folds and SVR subsample")
    p.add_argument("--max-train-genes", type=int, default=2000,
                   help="the SVRs fit on a random subset of at most this many training genes (default 2000)")
    p.add_argument("--jobs", type=int, default=1, help="processes for cross-validation (default 1)")
    p.set_defaults(handler=cmd_baselines)


def cmd_baselines(args: argparse.Namespace) -> int:
    from deepdiff.baselines import BASELINE_NAMES, run_baseline

    given_names = ",".join(BASELINE_NAMES) if args.baselines is None else args.baselines
    names = [name.strip() for name in given_names.split(",") if name.strip()]
    if not names or any(name not in BASELINE_NAMES for name in names):
        raise ConfigError(f"--baselines {args.baselines!r}: expected a comma-separated subset of {','.join(BASELINE_NAMES)}")
    if not 0 <= args.seed < 2**32:  # scikit-learn's folds and numpy's legacy seeding
        raise ConfigError(f"--seed {args.seed}: expected an integer in [0, 2**32)")
    if args.jobs == 0:
        raise ConfigError("--jobs 0: expected a number of processes >= 1 (or -1 for every core)")
    pair = _load(args, args.data, *args.pair)
    for name in names:
        say(f"fitting {name} on {pair.cell_a} -> {pair.cell_b} ({len(pair.train)} train genes)")
        result = run_baseline(name, pair, input_transform=args.input_transform, seed=args.seed,
                              max_train_genes=args.max_train_genes, n_jobs=args.jobs)
        print(result.line(), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# deepdiff evaluate


def add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="score a saved model (best.pt / last.pt) on a pair; --out writes its attention")
    p.add_argument("--checkpoint", metavar="FILE", required=True,
                   help="a checkpoint written by deepdiff train --out (best.pt, last.pt) or a study's model/best.pt")
    _add_data_args(p, required=True)
    p.add_argument("--split", choices=("train", "valid", "test"), default="test",
                   help="the genes whose attention --out writes (default test)")
    p.add_argument("--out", metavar="DIR", help=f"write {ATTENTION_FILE} (attention, predictions, targets) and "
                   f"{Path(ATTENTION_FILE).stem}.json (what each array is) here")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=TrainConfig.__dataclass_fields__["threads"].metadata["help"] + " (default 0)")
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepdiff.attention import attention_maps, save_npz
    from deepdiff.data import MARKS
    from deepdiff.device import pick_device
    from deepdiff.errors import DataError
    from deepdiff.train import check_shapes, evaluate, load_checkpoint, load_model, prepare_split

    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads}: expected an integer >= 0 (0 = automatic)")
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else None
    if out is not None:  # refused before anything is read or written
        check_output_dir(out, "--out")
        if (out / ATTENTION_FILE).exists():
            raise ConfigError(f"--out {out}: already holds {ATTENTION_FILE}; choose another --out (never overwritten)")
    device = pick_device(args.device)
    try:
        model, model_cfg, train_cfg = load_model(checkpoint, device)
    except ConfigError as err:
        raise ConfigError(f"--checkpoint {err}") from None
    epoch = load_checkpoint(checkpoint)["epoch"]
    try:
        pair = _load(args, args.data, *args.pair, n_bins=model_cfg.n_bins)
    except DataError as err:
        if "bins" not in str(err):
            raise
        raise DataError(f"{err} (the model in --checkpoint {checkpoint} reads {model_cfg.n_bins} bins per gene)") from None
    try:
        check_shapes(model_cfg, pair)
    except ConfigError as err:
        raise ConfigError(f"--checkpoint {checkpoint}: {err}") from None
    _threads(args, args.threads)
    say(f"evaluating {model_cfg.variant} (epoch {epoch} of {checkpoint}) on {pair.cell_a} -> {pair.cell_b} on {device}")
    scores: dict[str, float] = {}
    for name in ("valid", "test"):
        split = prepare_split(pair.split(name), train_cfg.input_transform, device)
        scores[f"{name}_pcc"], scores[f"{name}_mse"] = evaluate(model, split, train_cfg.eval_batch_size)
    summary = {"variant": model_cfg.variant, "pair": f"{pair.cell_a}-{pair.cell_b}", "epoch": epoch, **scores}
    if out is not None:
        maps = attention_maps(model, pair.split(args.split), train_cfg.input_transform, marks=MARKS,
                              batch_size=train_cfg.eval_batch_size, device=device)
        out.mkdir(parents=True, exist_ok=True)
        npz, about = save_npz(maps, out / ATTENTION_FILE, about={
            "checkpoint": str(checkpoint.resolve()), "data": str(Path(args.data).resolve()), "cell_a": pair.cell_a,
            "cell_b": pair.cell_b, "split": args.split, "genes": len(maps.gene_ids), "epoch": epoch,
            "input_transform": train_cfg.input_transform, "model_config": dataclasses.asdict(model_cfg), **scores,
        })
        say(f"wrote {npz} and {about}")
    # PCC and MSE to 6 decimals (deepdiff train prints 4): enough to compare with a study's record.
    print("result " + " ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
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
