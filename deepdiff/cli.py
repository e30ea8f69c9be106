"""The `deepdiff` command line: a thin layer over the library.

    deepdiff synth OUT_DIR [--genes N] [--seed S]       write a synthetic pair (realistic or --signal easy)
    deepdiff prepare --data DIR --pair A B              validate a pair and cache it (Arrow IPC)
    deepdiff train --data DIR --pair A B --variant V    train one model; last stdout line is the result
    deepdiff describe --variant V [--aux MODE]          module tree and exact trainable parameter count
    deepdiff baselines --data DIR --pair A B            linear regression, one- and two-layer SVR; a result line each

User errors print one line `error: ...` on stderr and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from deepdiff.config import (
    AUX_MODES,
    CONTRASTIVE_FORMS,
    INPUT_TRANSFORMS,
    ModelConfig,
    TrainConfig,
    configs_from_flat,
    flat_config,
    load_config,
    save_config,
)
from deepdiff.errors import ConfigError, DeepDiffError
from deepdiff.variants import VARIANTS

EXIT_USAGE = 2  # bad input: files, flags, configs
EXIT_NAN = 3  # training diverged (NaN loss)

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
}


def default_cache_dir() -> Path:
    """Where validated pairs are cached: $XDG_CACHE_HOME/deepdiff-tune or ~/.cache/deepdiff-tune."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepdiff-tune"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_data_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--data", metavar="DIR", required=required, help="folder with CELL.{train,valid,test,expr}.csv")
    p.add_argument("--pair", nargs=2, metavar=("CELL_A", "CELL_B"), required=required,
                   help="the two cell types (file prefixes, e.g. Cell1 Cell2 or E123 E003); diff = B - A")
    p.add_argument("--cache-dir", metavar="DIR", help=f"cache of validated pairs (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="always re-read the CSV files")
    p.add_argument("--strict-genes", action="store_true",
                   help="refuse genes present in one cell but not the other (default: report and drop them)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    p.add_argument("--margin", type=float, help="contrastive margin m (siamese variants)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--dropout", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--input-transform", choices=INPUT_TRANSFORMS)
    p.add_argument("--aux-weight", type=float)
    p.add_argument("--gamma", type=float, help="contrastive loss weight (siamese variants)")
    p.add_argument("--contrastive-form", choices=CONTRASTIVE_FORMS)
    p.add_argument("--level1-hidden", type=int)
    p.add_argument("--level2-hidden", type=int)
    p.add_argument("--patience", type=int, help="stop after N epochs without a better valid PCC (0 = never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--out", metavar="DIR", help="write config.yaml, metrics.csv, last.pt, best.pt, result.json here")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")

    p = sub.add_parser("describe", help="print a variant's module tree and trainable parameter count")
    p.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    p.add_argument("--aux", choices=AUX_MODES, default="regression")
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
    return parser


def _load(args: argparse.Namespace, data_dir: str, cell_a: str, cell_b: str):
    from deepdiff.data import load_pair

    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    pair = load_pair(data_dir, cell_a, cell_b, cache_dir=cache,
                     unpaired="error" if args.strict_genes else "drop", progress=_say)
    for note in pair.notes:
        _say(f"note: {note}")
    return pair


def cmd_synth(args: argparse.Namespace) -> int:
    from deepdiff.synthetic import write_synthetic_pair

    if args.genes < 3:
        raise ConfigError(f"--genes {args.genes}: expected at least 3 (one gene per split)")
    options = {"split_fractions": tuple(args.split_fractions)} if args.split_fractions else {}
    try:
        paths = write_synthetic_pair(args.out, genes=args.genes, seed=args.seed, cell_a=args.cells[0],
                                     cell_b=args.cells[1], signal=args.signal, imitates=args.imitates, **options)
    except ValueError as err:
        raise ConfigError(f"synth: {err}") from None
    _say(f"wrote {len(paths)} files to {args.out}")
    print(Path(args.out).resolve())
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
    return model_cfg, train_cfg, data


def _ensure_data(data: dict[str, Any]) -> None:
    """A config exported from a synthetic study regenerates its pair when the folder is gone."""
    if data.get("synthetic"):
        from deepdiff.synthetic import ensure_synthetic_pair

        if ensure_synthetic_pair(data["dir"], cell_a=data["cell_a"], cell_b=data["cell_b"], **data["synthetic"]):
            _say(f"regenerated the synthetic pair in {data['dir']}")


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _previous_rows(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as fh:
        return [row for row in csv.DictReader(fh) if int(row["epoch"]) <= up_to_epoch]


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepdiff.device import pick_device
    from deepdiff.results import EpochStatus
    from deepdiff.train import LAST_CHECKPOINT, fit, load_checkpoint

    if args.resume and not args.out:
        raise ConfigError("train: --resume needs --out DIR (the run to continue)")
    model_cfg, train_cfg, data = resolve_train_config(args)
    device = pick_device(args.device)
    out = Path(args.out) if args.out else None
    resume_from, rows = None, []
    if out is not None:
        last = out / LAST_CHECKPOINT
        if last.exists() and not args.resume:
            raise ConfigError(f"{out}: already holds a run ({LAST_CHECKPOINT}); pass --resume to continue it or choose another --out")
        if args.resume and last.exists():
            resume_from = last
            done = load_checkpoint(last)["epoch"]
            rows = _previous_rows(out / "metrics.csv", done)
            _say(f"resuming {out} after epoch {done}")
        out.mkdir(parents=True, exist_ok=True)
    _ensure_data(data)
    pair = _load(args, data["dir"], data["cell_a"], data["cell_b"])
    data_section = {**data, "dir": str(Path(data["dir"]).resolve())}
    if out is not None:
        save_config(out / "config.yaml", model_cfg, train_cfg, data_section)
    _say(f"training {model_cfg.variant} on {pair.cell_a} -> {pair.cell_b} "
         f"({len(pair.train)} train genes) on {device}")

    bar = tqdm(total=None, unit="batch", file=sys.stderr, dynamic_ncols=True, disable=None, leave=False)
    epochs_label = f"/{train_cfg.epochs}"

    def on_batch(done: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(1)

    result = None
    for result in fit(model_cfg, train_cfg, pair, device=device, checkpoint_dir=out, resume_from=resume_from, on_batch=on_batch):
        bar.set_description(f"epoch {result.epoch + 1}{epochs_label}")
        tqdm.write(
            f"epoch {result.epoch}{epochs_label} loss={result.train_loss:.4f} valid_pcc={result.valid_pcc:.4f} "
            f"test_pcc={result.test_pcc:.4f} ({result.seconds:.1f}s)", file=sys.stderr,
        )
        if out is not None:
            rows.append(result.metrics() | {"status": result.status})
            _write_metrics(out / "metrics.csv", rows)
    bar.close()
    if result is None:
        raise ConfigError(f"{out}: this run already finished all {train_cfg.epochs} epochs; raise --epochs to train on")
    summary = {
        "variant": model_cfg.variant, "pair": f"{pair.cell_a}-{pair.cell_b}", "best_epoch": result.best_epoch,
        "valid_pcc": result.best_valid_pcc, "test_pcc": result.best_test_pcc, "test_mse": result.best_test_mse,
        "status": result.status,
    }
    if out is not None:
        (out / "result.json").write_text(json.dumps(summary | {"config": dataclasses.asdict(model_cfg) | dataclasses.asdict(train_cfg)}, indent=2))
    if result.status is EpochStatus.NAN:
        _say(f"error: the training loss became NaN at epoch {result.epoch}; try a lower --lr or --input-transform log1p")
    print("result " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return EXIT_NAN if result.status is EpochStatus.NAN else 0


def cmd_describe(args: argparse.Namespace) -> int:
    from deepdiff.model import DeepDiff, count_parameters

    cfg = ModelConfig(variant=args.variant, aux_mode=args.aux, level1_hidden=args.level1_hidden, level2_hidden=args.level2_hidden)
    model = DeepDiff.from_config(cfg)
    print(model)
    for group in ("level1", "level2", "heads"):
        for key, module in getattr(model, group).items():
            print(f"  {group}.{key}: {count_parameters(module):,}")
    print(f"trainable parameters: {count_parameters(model)}")
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from deepdiff.baselines import BASELINE_NAMES, run_baseline

    names = [name.strip() for name in (args.baselines or ",".join(BASELINE_NAMES)).split(",") if name.strip()]
    if not names or any(name not in BASELINE_NAMES for name in names):
        raise ConfigError(f"--baselines {args.baselines!r}: expected a comma-separated subset of {','.join(BASELINE_NAMES)}")
    pair = _load(args, args.data, *args.pair)
    for name in names:
        _say(f"fitting {name} on {pair.cell_a} -> {pair.cell_b} ({len(pair.train)} train genes)")
        result = run_baseline(name, pair, input_transform=args.input_transform, seed=args.seed,
                              max_train_genes=args.max_train_genes, n_jobs=args.jobs)
        print(result.line(), flush=True)
    return 0


COMMANDS = {"synth": cmd_synth, "prepare": cmd_prepare, "train": cmd_train, "describe": cmd_describe,
            "baselines": cmd_baselines}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DeepDiffError as err:
        _say(f"error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("interrupted; everything written so far is kept (resume with --resume)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
