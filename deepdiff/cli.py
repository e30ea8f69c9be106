"""The `deepdiff` command line: a thin layer over the library.

    deepdiff synth OUT_DIR [--genes N] [--seed S]       write a synthetic pair (realistic or --signal easy)
    deepdiff prepare --data DIR --pair A B              validate a pair and cache it (Arrow IPC)
    deepdiff train --data DIR --pair A B --variant V    train one model; last stdout line is the result
    deepdiff describe --variant V [--aux MODE]          module tree and exact trainable parameter count
    deepdiff baselines --data DIR --pair A B            linear regression, one- and two-layer SVR; a result line each
    deepdiff evaluate --checkpoint FILE --data DIR --pair A B [--out DIR]
                                                        a saved model's PCCs; with --out its attention arrays (.npz)
    deepdiff build-pair MANIFEST --out DIR              a pair from bigWig/BAM tracks, an annotation, expression tables

Every error prints one line `error: ...` on stderr, without a traceback, and exits with:
0 success; 2 bad input (flags, config or data files, paths that cannot be read or written, a disk
full, a model too large for memory; nothing already written is changed); 3 the run diverged (NaN
training loss or non-finite predictions); 130 interrupted (Ctrl-C; --resume continues a train --out).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from deepdiff.config import (
    AUX_MODES,
    CONTRASTIVE_FORMS,
    INPUT_TRANSFORMS,
    PRECISIONS,
    ModelConfig,
    TrainConfig,
    applicable_fields,
    configs_from_flat,
    flat_config,
    load_config,
    save_config,
    write_atomic,
)
from deepdiff.command import OneLineParser, run_command, say
from deepdiff.errors import EXIT_NAN, ConfigError, check_output_dir
from deepdiff.variants import VARIANTS, get_variant
ATTENTION_FILE = "attention.npz"  # what `deepdiff evaluate --out` writes (with attention.json)
MIN_SYNTH_GENES = 12  # the smallest synthetic pair whose every split has 2 genes (a PCC)
MAX_SYNTH_GENES = 100_000  # more than any genome has; 200 bins each: ~20 GB of CSV per cell
_CELL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
LARGE_COUNT = 1e6  # raw counts above this are a likelier cause of divergence than the learning rate

# `deepdiff train` flags that override config fields: flag dest -> config field.
TRAIN_OVERRIDES = {
    "variant": "variant",
    "aux": "aux_mode",
    "level1_hidden": "level1_hidden",
    "level2_hidden": "level2_hidden",
    "dropout": "dropout",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "input_transform": "input_transform",
    "aux_weight": "aux_weight",
    "gamma": "gamma",
    "margin": "margin",
    "contrastive_form": "contrastive_form",
    "patience": "patience",
    "precision": "precision",
}


def default_cache_dir() -> Path:
    """Where validated pairs are cached: $XDG_CACHE_HOME/deepdiff-tune or ~/.cache/deepdiff-tune."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepdiff-tune"


def _add_data_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--data", metavar="DIR", required=required, help="folder with CELL.{train,valid,test,expr}.csv")
    p.add_argument("--pair", nargs=2, metavar=("CELL_A", "CELL_B"), required=required,
                   help="the two cell types (file prefixes, e.g. Cell1 Cell2 or E123 E003); diff = B - A")
    p.add_argument("--cache-dir", metavar="DIR", help=f"cache of validated pairs (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="always re-read the CSV files")
    p.add_argument("--strict-genes", action="store_true",
                   help="refuse genes present in one cell but not the other (default: report and drop them)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="deepdiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

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

    p = sub.add_parser("prepare", help="validate a pair and cache it (Arrow IPC)")
    _add_data_args(p, required=True)

    p = sub.add_parser("train", help="train one model and print its PCC")
    _add_data_args(p, required=False)
    p.add_argument("--config", metavar="FILE", help="a config file (e.g. OUT/config.yaml); flags override it")
    p.add_argument("--variant", choices=tuple(VARIANTS))
    p.add_argument("--aux", choices=AUX_MODES, help="cell-specific auxiliary task (aux variants)")
    # Numbers stay text here: configs_from_flat reads them, as it reads config files and MLflow params.
    p.add_argument("--margin", metavar="M", help="contrastive margin m (siamese variants)")
    p.add_argument("--epochs", metavar="N")
    p.add_argument("--batch-size", metavar="N")
    p.add_argument("--lr", metavar="LR")
    p.add_argument("--dropout", metavar="P")
    p.add_argument("--seed", metavar="S")
    p.add_argument("--input-transform", choices=INPUT_TRANSFORMS)
    p.add_argument("--aux-weight", metavar="W")
    p.add_argument("--gamma", metavar="W", help="contrastive loss weight (siamese variants)")
    p.add_argument("--contrastive-form", choices=CONTRASTIVE_FORMS)
    p.add_argument("--level1-hidden", metavar="N")
    p.add_argument("--level2-hidden", metavar="N")
    p.add_argument("--patience", metavar="N", help="stop after N epochs without a better valid PCC (0 = never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="training steps: auto (default: mixed precision on CUDA, float32 on CPU), or as named")
    p.add_argument("--out", metavar="DIR", help="write config.yaml, metrics.csv, last.pt, best.pt, result.json here")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")

    p = sub.add_parser("describe", help="print a variant's module tree and trainable parameter count")
    p.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    p.add_argument("--aux", choices=AUX_MODES, help="auxiliary task of the aux variants (default regression)")
    p.add_argument("--level1-hidden", type=int, default=32)
    p.add_argument("--level2-hidden", type=int, default=16)

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

    p = sub.add_parser("evaluate", help="score a saved model (best.pt / last.pt) on a pair; --out writes its attention")
    p.add_argument("--checkpoint", metavar="FILE", required=True,
                   help="a checkpoint written by deepdiff train --out (best.pt, last.pt) or a study's model/best.pt")
    _add_data_args(p, required=True)
    p.add_argument("--split", choices=("train", "valid", "test"), default="test",
                   help="the genes whose attention --out writes (default test)")
    p.add_argument("--out", metavar="DIR", help=f"write {ATTENTION_FILE} (attention, predictions, targets) and "
                   f"{Path(ATTENTION_FILE).stem}.json (what each array is) here")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")

    from deepdiff.tracks.command import add_parser as add_build_pair

    add_build_pair(sub)
    return parser


def _load(args: argparse.Namespace, data_dir: str, cell_a: str, cell_b: str, *, n_bins: int | None = None):
    """The validated pair, refused if a split has no PCC (fewer than 2 genes, a constant target)."""
    from deepdiff.data import N_BINS, check_trainable, load_pair

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


def check_cell_name(name: str, flag: str) -> None:
    """A cell type names its files (``NAME.train.csv`` ...): a plain file-name prefix, never a path."""
    if not _CELL_NAME.fullmatch(name):
        raise ConfigError(f"{flag} {name!r}: expected a cell type name (letters, digits, '_', '-', '.'; "
                          "not starting with '.' or '-'), the prefix of its files CELL.train.csv ...")


def check_synthetic_genes(genes: int, flag: str, least: int = 12) -> None:
    """A synthetic pair's gene count: at least `least` (two genes in every split), at most MAX_SYNTH_GENES."""
    if not least <= genes <= MAX_SYNTH_GENES:
        raise ConfigError(f"{flag} {genes}: expected {least} to {MAX_SYNTH_GENES} genes"
                          + (" (two genes in every split)" if genes < least else ""))


def cmd_synth(args: argparse.Namespace) -> int:
    from deepdiff.data import pair_files
    from deepdiff.synthetic import SYNTHETIC_RECORD, write_synthetic_pair

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
    # Written into a folder of its own beside the files, then moved in: a failure (disk full) leaves
    # nothing half-written in OUT_DIR, so the same command can run again.
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    try:
        written = write_synthetic_pair(tmp, genes=args.genes, seed=args.seed, cell_a=args.cells[0],
                                       cell_b=args.cells[1], signal=args.signal, imitates=args.imitates, **options)
        for path in [*written.values(), tmp / SYNTHETIC_RECORD]:
            os.replace(path, out / path.name)
    except ValueError as err:
        raise ConfigError(f"synth: {err}") from None
    except OSError as err:  # pyarrow's writer names no file and wraps the errno's text
        raise OSError(err.errno, os.strerror(err.errno) if err.errno else str(err), str(out)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    say(f"wrote {len(written)} files to {out}")
    print(out.resolve())
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    pair = _load(args, args.data, *args.pair)
    for name in ("train", "valid", "test"):
        split = pair.split(name)
        print(f"{name}: {len(split)} genes, x {tuple(split.x_a.shape)}")
    print(f"medians of expression: {pair.cell_a}={pair.median_a:g} {pair.cell_b}={pair.median_b:g}")
    return 0


def resolve_train_config(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """Defaults < --config file < explicit flags; returns the configs and the data section."""
    model_cfg, train_cfg, data = load_config(args.config) if args.config else (ModelConfig(), TrainConfig(), {})
    if not args.config and args.variant is None:
        raise ConfigError("train: --variant is required (or a --config file that names one)")
    values = flat_config(model_cfg, train_cfg)
    values.update({field: getattr(args, dest) for dest, field in TRAIN_OVERRIDES.items() if getattr(args, dest) is not None})
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


def _note_inapplicable_flags(args: argparse.Namespace, variant: str) -> None:
    """One note for flags given that `variant` does not read (e.g. --margin for a non-siamese variant)."""
    used = set(applicable_fields(variant))
    ignored = [f"--{dest.replace('_', '-')}" for dest, field in TRAIN_OVERRIDES.items()
               if getattr(args, dest) is not None and field not in used]
    if ignored:
        spec = get_variant(variant)
        lacks = [part for part, has in (("auxiliary task", spec.aux), ("contrastive loss", spec.siamese)) if not has]
        say(f"note: {', '.join(ignored)} ignored: variant {variant} has no {' and no '.join(lacks)}")


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


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def _previous_rows(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        with path.open() as fh:
            return [row for row in csv.DictReader(fh) if int(row["epoch"]) <= up_to_epoch]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error):
        raise ConfigError(f"{path}: not a metrics file written by deepdiff train (expected an epoch column)") from None


class _DeferredInterrupt:
    """Ctrl-C while training stops at the next point where the run's files agree with each other.

    fit() writes last.pt, then this CLI writes the epoch's metrics.csv row: an interrupt between the two
    left a checkpoint one epoch ahead of metrics.csv, and a resume lost that epoch's row. The first
    Ctrl-C is noted and raised at the next batch (nothing of the epoch written yet) or after the
    epoch's files; a second one stops at once.
    """

    def __init__(self) -> None:
        self.pending = False

    def __enter__(self) -> "_DeferredInterrupt":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        say("\ninterrupt: stopping once this epoch's files agree (Ctrl-C again to stop at once)")

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt


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
    from deepdiff.train import COMPUTE_DTYPE, LAST_CHECKPOINT, check_resumable, fit, load_checkpoint

    if args.resume and not args.out:
        raise ConfigError("train: --resume needs --out DIR (the run to continue)")
    model_cfg, train_cfg, data = resolve_train_config(args)
    _note_inapplicable_flags(args, model_cfg.variant)
    device = pick_device(args.device)
    dtype = autocast_dtype(device, train_cfg.precision)
    out = Path(args.out) if args.out else None
    resume_from, rows, done = None, [], 0
    # Everything that can refuse the run is checked before anything in --out is written.
    if out is not None:
        check_output_dir(out, "--out")
        last = out / LAST_CHECKPOINT
        if last.exists() and not args.resume:
            raise ConfigError(f"{out}: already holds a run ({LAST_CHECKPOINT}); pass --resume to continue it or choose another --out")
        if args.resume and last.exists():
            state = load_checkpoint(last)
            check_resumable(last, state, model_cfg, train_cfg)
            done = state["epoch"]
            if done >= train_cfg.epochs:
                raise ConfigError(f"{out}: this run already finished {done} epochs; raise --epochs above {done} to train on")
            resume_from = last
            rows = _previous_rows(out / "metrics.csv", done)
            before, now = state.get(COMPUTE_DTYPE), dtype_name(dtype)
            if before is not None and before != now:
                say(f"note: {last} trained in {before}; it goes on in {now} (precision {train_cfg.precision} on "
                     f"{device}); pass --precision {before} to keep {before}")
        elif args.resume:
            say(f"note: {out} holds no {LAST_CHECKPOINT} to resume; starting a new run there")
    _ensure_data(data, args.config)
    pair = _load(args, data["dir"], data["cell_a"], data["cell_b"])
    data_section = {**data, "dir": str(Path(data["dir"]).resolve())}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_config(out / "config.yaml", model_cfg, train_cfg, data_section)
    if resume_from is not None:
        say(f"resuming {out} after epoch {done}")
    say(f"training {model_cfg.variant} on {pair.cell_a} -> {pair.cell_b} "
         f"({len(pair.train)} train genes) on {device}, {precision_label(dtype)}")

    bar = tqdm(total=None, unit="batch", file=sys.stderr, dynamic_ncols=True, disable=None, leave=False)
    epochs_label = f"/{train_cfg.epochs}"
    result = None
    with _DeferredInterrupt() as interrupt:

        def on_batch(done: int, total: int) -> None:
            interrupt.check()
            if bar.total != total:
                bar.reset(total=total)
            bar.update(1)

        for result in fit(model_cfg, train_cfg, pair, device=device, checkpoint_dir=out, resume_from=resume_from,
                          on_batch=on_batch):
            bar.set_description(f"epoch {result.epoch + 1}{epochs_label}")
            tqdm.write(
                f"epoch {result.epoch}{epochs_label} loss={result.train_loss:.4f} valid_pcc={result.valid_pcc:.4f} "
                f"test_pcc={result.test_pcc:.4f} ({result.seconds:.1f}s)", file=sys.stderr,
            )
            if out is not None:
                rows.append(result.metrics() | {"status": result.status})
                _write_metrics(out / "metrics.csv", rows)
            interrupt.check()
    bar.close()
    summary = {
        "variant": model_cfg.variant, "pair": f"{pair.cell_a}-{pair.cell_b}", "best_epoch": result.best_epoch,
        "valid_pcc": result.best_valid_pcc, "test_pcc": result.best_test_pcc, "test_mse": result.best_test_mse,
        "status": result.status,
    }
    if out is not None:
        write_atomic(out / "result.json", json.dumps(summary | {"config": dataclasses.asdict(model_cfg) | dataclasses.asdict(train_cfg)}, indent=2))
    ended_without_result = diverged(result.status)
    if ended_without_result:
        what = ("the training loss became NaN" if result.status is EpochStatus.NAN
                else "the model's valid/test predictions are not finite")
        say(f"error: {what} at epoch {result.epoch}; {_divergence_hint(pair, train_cfg)}")
    print("result " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return EXIT_NAN if ended_without_result else 0


def cmd_describe(args: argparse.Namespace) -> int:
    from deepdiff.model import DeepDiff, count_parameters

    if args.aux is not None and not get_variant(args.variant).aux:
        say(f"note: --aux ignored: variant {args.variant} has no auxiliary task")
    cfg = ModelConfig(variant=args.variant, aux_mode=args.aux or ModelConfig.aux_mode,
                      level1_hidden=args.level1_hidden, level2_hidden=args.level2_hidden)
    model = DeepDiff.from_config(cfg)
    print(model)
    for group in ("level1", "level2", "heads"):
        for key, module in getattr(model, group).items():
            print(f"  {group}.{key}: {count_parameters(module):,}")
    print(f"trainable parameters: {count_parameters(model)}")
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from deepdiff.baselines import BASELINE_NAMES, run_baseline

    given = ",".join(BASELINE_NAMES) if args.baselines is None else args.baselines
    names = [name.strip() for name in given.split(",") if name.strip()]
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deepdiff.attention import attention_maps, save_npz
    from deepdiff.data import MARKS
    from deepdiff.device import pick_device
    from deepdiff.errors import DataError
    from deepdiff.train import check_shapes, evaluate, load_checkpoint, load_model, prepare_split

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


COMMANDS = {"synth": cmd_synth, "prepare": cmd_prepare, "train": cmd_train, "describe": cmd_describe,
            "baselines": cmd_baselines, "evaluate": cmd_evaluate}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    resumable = args.command == "train" and args.out
    return run_command(
        lambda: (getattr(args, "handler", None) or COMMANDS[args.command])(args),
        interrupted="interrupted; everything written so far is kept" + (" (continue with --resume)" if resumable else ""),
        memory_hint="the model or a batch is too large for this machine: lower --level1-hidden, --level2-hidden or --batch-size",
    )


if __name__ == "__main__":
    sys.exit(main())
