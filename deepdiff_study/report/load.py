"""Everything the report reads from a study's MLflow experiment, as plain DataFrames in one `Study`.

The only module of the report that talks to MLflow (besides logging the finished report as a run,
`deepdiff_study.report.write`): the grid-cell runs with their best trials (`records.best_trials`, read in
`_best_trial_rows` alone), the trial runs, the baseline runs, the replicate runs, and a grid cell's stored
model (`download_model`). A tag a study recorded before it existed (cell-type names, the search space) is
read as missing, never guessed.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deepdiff.errors import ConfigError
from deepdiff_study.records import (
    MODEL_ARTIFACT,
    Kind,
    Tag,
    best_trials,
    decode_search_space,
    experiment_id,
    open_store,
    study_runs,
)
from deepdiff_study.report.names import pair_label

TRIAL_COLUMNS = ["grid_cell", "run_id", "status", "best_valid_pcc", "best_test_pcc", "seconds", "params",
                 "start_time", "warm_start_from"]
BASELINE_COLUMNS = ["pair", "pair_name", "baseline", "imitates", "input_transform", "valid_pcc", "valid_mse",
                    "test_pcc", "test_mse", "seconds", "model", "features", "choice"]
# A baseline's valid / test PCC: the score every kind of run carries (records.SCORE_METRICS), else the names
# baseline runs had before it (a study recorded then).
BASELINE_SCORES = {"valid_pcc": ("best_valid_pcc", "valid_pcc"), "test_pcc": ("best_test_pcc", "test_pcc")}
# Params of a simple-model run that are not its hyperparameters (deepdiff_study.baseline_runs.simple_params).
# (and region_C: svr2's ten first-layer C, in MLflow).
CHOICE_EXCLUDES = frozenset({"model", "input_transform", "features", "candidates", "train_genes", "seed", "region_C"})
PAIR_COLUMNS = ["pair", "pair_name", "epigenome_a", "epigenome_b", "imitates", "cell_type_a", "cell_type_b", "label"]
REPLICATE_COLUMNS = ["grid_cell", "seed", "status", "replicate_of", "best_valid_pcc", "best_test_pcc", "run_id"]


@dataclass
class Study:
    """What the report reads from MLflow: one row per grid cell, per trial run, per baseline run, per pair,
    per replicate run (the columns are the module's *_COLUMNS; `cells` those of `_best_trial_rows`)."""

    tracking_uri: str  # where it was read from (named on the page)
    experiment: str  # the MLflow experiment's name
    experiment_id: str
    cells: pd.DataFrame  # per grid cell: its best trial, imitates, cell types, model, search_space (Params or None
    #                      and search_space_problem: why a recorded one is unreadable)
    trials: pd.DataFrame  # per trial run: TRIAL_COLUMNS (params: the run's params as a dict of strings)
    baselines: pd.DataFrame  # per (pair, baseline): BASELINE_COLUMNS, in deepdiff.baselines' order
    pairs: pd.DataFrame  # per pair: PAIR_COLUMNS (label: how the page names it)
    notes: list[str] = field(default_factory=list)  # sentences for the page's notes
    replicates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPLICATE_COLUMNS))


def load_study(tracking_uri: str, experiment: str) -> Study:
    """The study of `experiment` at `tracking_uri`; a one-line `ConfigError` when it has no grid cells."""
    client = open_store(tracking_uri)
    exp_id = experiment_id(client, experiment)
    cells = _cells(client, exp_id, tracking_uri, experiment)
    trials = pd.DataFrame([{
        "grid_cell": run.data.tags.get(Tag.GRID_CELL), "run_id": run.info.run_id,
        "status": run.data.tags.get(Tag.STATUS, ""),
        "best_valid_pcc": run.data.metrics.get("best_valid_pcc", math.nan),
        "best_test_pcc": run.data.metrics.get("best_test_pcc", math.nan),
        "seconds": float(sum(m.value for m in client.get_metric_history(run.info.run_id, "seconds"))),
        "params": dict(run.data.params), "start_time": run.info.start_time,
        "warm_start_from": run.data.tags.get(Tag.WARM_START_FROM, ""),
    } for run in study_runs(client, exp_id, Kind.TRIAL)], columns=TRIAL_COLUMNS)
    baselines = _baselines(client, exp_id)
    pairs = cells[PAIR_COLUMNS[:-1]].drop_duplicates("pair").sort_values("pair")
    pairs = pairs.assign(label=[pair_label(p.pair_name, p.imitates, p.cell_type_a, p.cell_type_b)
                                for p in pairs.itertuples()]).reset_index(drop=True)
    replicates = pd.DataFrame([{
        "grid_cell": run.data.tags.get(Tag.GRID_CELL), "seed": int(run.data.tags[Tag.SEED]),
        "status": run.data.tags.get(Tag.STATUS, "") if run.info.status == "FINISHED" else "failed",
        "replicate_of": run.data.tags.get(Tag.REPLICATE_OF),
        "best_valid_pcc": run.data.metrics.get("best_valid_pcc", math.nan),
        "best_test_pcc": run.data.metrics.get("best_test_pcc", math.nan), "run_id": run.info.run_id,
    } for run in study_runs(client, exp_id, Kind.REPLICATE) if Tag.SEED in run.data.tags], columns=REPLICATE_COLUMNS)
    notes = []
    if baselines.empty:
        notes.append("No baseline runs in the experiment (a study from before baselines were recorded): "
                     "Table 3 and the baseline columns are empty.")
    return Study(tracking_uri, experiment, exp_id, cells, trials, baselines, pairs, notes, replicates)


def _best_trial_rows(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """`records.best_trials` as plain dicts (the report's only use of it), without the run object."""
    return [trial.row() for trial in best_trials(tracking_uri, experiment)]


def _cells(client, exp_id: str, tracking_uri: str, experiment: str) -> pd.DataFrame:
    """One row per grid cell: its best trial's row plus what its grid-cell run's tags say."""
    rows = _best_trial_rows(tracking_uri, experiment)
    if not rows:
        raise ConfigError(f"--experiment {experiment!r}: no grid-cell runs in it at {tracking_uri}; nothing to report")
    parents = {r.data.tags[Tag.GRID_CELL]: r for r in study_runs(client, exp_id, Kind.GRID_CELL)}
    for row in rows:
        parent = parents[row["grid_cell"]]
        tags = parent.data.tags
        row["imitates"] = tags.get(Tag.IMITATES)
        row["cell_type_a"], row["cell_type_b"] = tags.get(Tag.CELL_TYPE_A), tags.get(Tag.CELL_TYPE_B)
        row["cell_run_id"] = parent.info.run_id
        row["model"], row["model_missing"] = tags.get(Tag.MODEL), tags.get(Tag.MODEL_MISSING)
        row["search_space"], row["search_space_problem"] = None, None
        if Tag.SEARCH_SPACE in tags:
            try:
                row["search_space"] = decode_search_space(
                    tags[Tag.SEARCH_SPACE], source=f"grid-cell run {parent.info.run_id} tag {Tag.SEARCH_SPACE}")
            except ConfigError as err:
                row["search_space_problem"] = str(err)
    return pd.DataFrame(rows)


def _metric(metrics: dict[str, float], names: tuple[str, ...]) -> float:
    return next((metrics[n] for n in names if n in metrics), math.nan)


def _baselines(client, exp_id: str) -> pd.DataFrame:
    """The finished baseline runs, one per (pair, baseline) (the latest should there be more), in the order
    of `deepdiff.baselines.ALL_BASELINES` (a baseline it does not name comes last). A simple model's
    ``model`` and ``features`` and every baseline's ``choice`` (its chosen hyperparameters, "alpha=100") from
    its params."""
    from deepdiff.baselines import ALL_BASELINES  # torch and scikit-learn: at call time, as everywhere here

    rows = []
    for run in study_runs(client, exp_id, Kind.BASELINE):  # newest first
        if run.info.status != "FINISHED":
            continue
        tags, m, params = run.data.tags, run.data.metrics, run.data.params
        choice = " ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in CHOICE_EXCLUDES and v != "none")
        rows.append({"pair": int(tags[Tag.PAIR]), "pair_name": tags.get(Tag.PAIR_NAME), "baseline": tags[Tag.BASELINE],
                     "imitates": tags.get(Tag.IMITATES), "input_transform": params.get("input_transform"),
                     **{k: _metric(m, names) for k, names in BASELINE_SCORES.items()},
                     **{k: m.get(k, math.nan) for k in ("valid_mse", "test_mse", "seconds")},
                     "model": params.get("model"), "features": params.get("features"), "choice": choice or None})
    frame = pd.DataFrame(rows, columns=BASELINE_COLUMNS).drop_duplicates(["pair", "baseline"], keep="first")
    order = {name: i for i, name in enumerate(ALL_BASELINES)}
    rank = frame["baseline"].map(lambda b: order.get(b, len(order)))
    return frame.assign(_rank=rank).sort_values(["_rank", "baseline", "pair"], kind="stable").drop(
        columns="_rank").reset_index(drop=True)


@contextlib.contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar on stderr for every download; not for one small file."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as switch

    before = os.environ.get(switch.name)
    os.environ[switch.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(switch.name, None)
        else:
            os.environ[switch.name] = before


def download_model(study: Study, cell_run_id: str, folder: str | Path) -> Path:
    """The grid-cell run's stored best model (`records.MODEL_ARTIFACT`) downloaded into `folder`."""
    with _no_progress_bar():
        return Path(open_store(study.tracking_uri).download_artifacts(cell_run_id, MODEL_ARTIFACT, str(folder)))
