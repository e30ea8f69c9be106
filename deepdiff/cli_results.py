"""The `deepdiff` subcommands that score: `baselines` (the paper's and the strongest simple models) and
`evaluate` (a saved model's PCCs and, with --out, its attention arrays). Each is an ``add_*`` function
that `deepdiff.cli.SUBCOMMANDS` lists; scikit-learn and the model load only when one runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from deepdiff.cli_common import Subparsers, add_data_args, choose_threads, load_checked_pair, thread_count
from deepdiff.command import say
from deepdiff.config import INPUT_TRANSFORMS, TrainConfig
from deepdiff.errors import ConfigError, check_output_dir

ATTENTION_FILE = "attention.npz"  # what `deepdiff evaluate --out` writes (with attention.json)
# ---------------------------------------------------------------------------------------------------
# deepdiff baselines


def _baseline_groups() -> dict[str, tuple[str, ...]]:
    """Names --baselines accepts for several baselines at once (`deepdiff.baselines` names the rest)."""
    from deepdiff.baselines import ALL_BASELINES, BEST_SIMPLE, PAPER_BASELINES, SIMPLE_MODELS

    return {"all": ALL_BASELINES, "paper": PAPER_BASELINES, "simple": (*SIMPLE_MODELS, BEST_SIMPLE)}


def add_baselines(sub: Subparsers) -> None:
    p = sub.add_parser("baselines", help="fit the paper's baselines (linear regression, one- and two-layer SVR) and "
                                         "the strongest simple models (ridge, RBF SVR, gradient boosting)")
    add_data_args(p, required=True)
    p.add_argument("--baselines", metavar="NAMES", default="all",
                   help="comma-separated: linear, svr, svr2 (the paper's), ridge, rbf_svr, gboost (simple models "
                        "choosing transform, features and hyperparameters on the valid genes), best_simple (the one "
                        "of those with the best valid PCC); or paper, simple, all (default all)")
    p.add_argument("--input-transform", choices=INPUT_TRANSFORMS, default="raw",
                   help="the paper's baselines: applied to the counts as for the deep models (default raw); the "
                        "simple models choose their own")
    p.add_argument("--seed", type=int, default=0, help="cross-validation folds, SVR subsample, boosting")
    p.add_argument("--max-train-genes", type=int, default=2000,
                   help="the SVRs fit on a random subset of at most this many training genes (default 2000)")
    p.add_argument("--jobs", type=int, default=1, help="the paper's baselines: processes for cross-validation (default 1)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="the simple models: threads of scikit-learn's native pools, chosen as train's --threads "
                        "(default 0: one per usable CPU that other processes leave free)")
    p.set_defaults(handler=cmd_baselines)


def baseline_names(given: str) -> list[str]:
    """The baselines --baselines names, in `deepdiff.baselines.ALL_BASELINES` order; a `ConfigError` otherwise."""
    from deepdiff.baselines import ALL_BASELINES

    groups = _baseline_groups()
    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names or any(name not in ALL_BASELINES and name not in groups for name in names):
        raise ConfigError(f"--baselines {given!r}: expected a comma-separated subset of {','.join(ALL_BASELINES)} "
                          f"(or {', '.join(groups)})")
    chosen = {member for name in names for member in groups.get(name, (name,))}
    return [name for name in ALL_BASELINES if name in chosen]


def cmd_baselines(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepdiff.baselines import (
        BEST_SIMPLE, PAPER_BASELINES, SIMPLE_MODELS, best_of, candidate_count, run_baseline, run_simple_model,
    )

    names = baseline_names(args.baselines)
    if not 0 <= args.seed < 2**32:  # scikit-learn's folds and numpy's legacy seeding
        raise ConfigError(f"--seed {args.seed}: expected an integer in [0, 2**32)")
    if args.jobs == 0:
        raise ConfigError("--jobs 0: expected a number of processes >= 1 (or -1 for every core)")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads}: expected an integer >= 0 (0 = automatic)")
    pair = load_checked_pair(args, args.data, *args.pair)
    for name in [n for n in names if n in PAPER_BASELINES]:
        say(f"fitting {name} on {pair.cell_a} -> {pair.cell_b} ({len(pair.train)} train genes)")
        result = run_baseline(name, pair, input_transform=args.input_transform, seed=args.seed,
                              max_train_genes=args.max_train_genes, n_jobs=args.jobs)
        print(result.line(), flush=True)
    # best_simple is the best of every simple model: each is fitted once, whichever lines are asked for
    models = list(SIMPLE_MODELS) if BEST_SIMPLE in names else [n for n in names if n in SIMPLE_MODELS]
    if not models:
        return 0
    threads = choose_threads(args, args.threads).threads  # libgomp waits passively (`main`): no spinning at barriers
    say(f"fitting {', '.join(models)} on {pair.cell_a} -> {pair.cell_b} with {thread_count(threads)}: "
        f"{candidate_count(models)} candidates (transform x features x hyperparameters), each fitted on the train "
        "genes and scored on the valid genes")
    results = []
    with tqdm(total=candidate_count(models), unit="candidate", file=sys.stderr, dynamic_ncols=True, disable=None,
              leave=False) as bar:
        for model in models:
            results.append(run_simple_model(model, pair, seed=args.seed, max_train_genes=args.max_train_genes,
                                            threads=threads, progress=lambda candidate: bar.update()))
            if model in names:
                tqdm.write(results[-1].line(), file=sys.stdout)
                sys.stdout.flush()
    if BEST_SIMPLE in names:
        print(best_of(results).line(BEST_SIMPLE), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# deepdiff evaluate


def add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser("evaluate", help="score a saved model (best.pt / last.pt) on a pair; --out writes its attention")
    p.add_argument("--checkpoint", metavar="FILE", required=True,
                   help="a checkpoint written by deepdiff train --out (best.pt, last.pt) or a study's model/best.pt")
    add_data_args(p, required=True)
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
        pair = load_checked_pair(args, args.data, *args.pair, n_bins=model_cfg.n_bins)
    except DataError as err:
        if "bins" not in str(err):
            raise
        raise DataError(f"{err} (the model in --checkpoint {checkpoint} reads {model_cfg.n_bins} bins per gene)") from None
    try:
        check_shapes(model_cfg, pair)
    except ConfigError as err:
        raise ConfigError(f"--checkpoint {checkpoint}: {err}") from None
    choose_threads(args, args.threads)
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
