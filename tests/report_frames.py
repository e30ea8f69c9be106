"""Hand-made `deepdiff_study.report.load.Study`s for the report's unit tests (no MLflow): rows shaped as
`load_study` reads them."""

from __future__ import annotations

import math

import pandas as pd

from deepdiff_study.grid import Param
from deepdiff_study.report.load import (
    BASELINE_COLUMNS,
    PAIR_COLUMNS,
    REPLICATE_COLUMNS,
    TRIAL_COLUMNS,
    Study,
)
from deepdiff_study.report.names import pair_label

SPACE = (Param("lr", "log_uniform", low=1e-4, high=1e-1), Param("dropout", "uniform", low=0.0, high=0.5),
         Param("batch_size", "choice", values=(16, 32)))


def cell(pair, variant, mode=None, margin=None, valid=math.nan, test=math.nan, **extra):
    """A grid cell's row (its best trial's valid / test PCC)."""
    key = "-".join([f"p{pair}", variant, *([mode] if mode else []), *([f"m{margin:g}"] if margin else [])])
    row = {"grid_cell": key, "variant": variant, "pair": pair, "pair_name": f"E{pair}A-E{pair}B",
           "epigenome_a": f"E{pair}A", "epigenome_b": f"E{pair}B", "aux_mode": mode, "margin": margin,
           "best_valid_pcc": valid, "best_test_pcc": test, "run_id": f"best-{key}", "imitates": None,
           "cell_type_a": None, "cell_type_b": None, "model": None, "model_missing": None, "search_space": SPACE,
           "search_space_problem": None, "data": None, "cell_run_id": f"cell-{key}"}
    return row | extra


def study(cells, baselines=(), trials=(), replicates=(), experiment="e") -> Study:
    cells = pd.DataFrame(list(cells))
    pairs = cells[PAIR_COLUMNS[:-1]].drop_duplicates("pair").sort_values("pair")
    pairs = pairs.assign(label=[pair_label(p.pair_name, p.imitates, p.cell_type_a, p.cell_type_b)
                                for p in pairs.itertuples()]).reset_index(drop=True)
    baselines = pd.DataFrame([{c: b.get(c) for c in BASELINE_COLUMNS} for b in baselines], columns=BASELINE_COLUMNS)
    return Study("sqlite:///nowhere.db", experiment, "0", cells, pd.DataFrame(list(trials), columns=TRIAL_COLUMNS),
                 baselines, pairs, [], pd.DataFrame(list(replicates), columns=REPLICATE_COLUMNS))


def baseline(pair, name, test_pcc, valid_pcc=0.1, **extra):
    """A baseline run's row; a simple model's choice as `extra` (model, input_transform, features, choice)."""
    return {"pair": pair, "pair_name": f"E{pair}A-E{pair}B", "baseline": name, "test_pcc": test_pcc,
            "valid_pcc": valid_pcc, "input_transform": "raw"} | extra


def trial(grid_cell, run_id, status="completed", valid=0.5, test=0.4, seconds=10.0, start=0, warm="", **params):
    """A trial run's row: `start` orders a grid cell's trials (the run's start time), `warm` its warm_start_from."""
    return {"grid_cell": grid_cell, "run_id": run_id, "status": status, "best_valid_pcc": valid, "best_test_pcc": test,
            "seconds": seconds, "params": {k: str(v) for k, v in params.items()}, "start_time": start,
            "warm_start_from": warm}


def replicate(grid_cell, seed, pcc, of, status="completed"):
    return {"grid_cell": grid_cell, "seed": seed, "status": status, "replicate_of": of, "best_valid_pcc": pcc,
            "best_test_pcc": pcc, "run_id": f"rep-{grid_cell}-{seed}"}
