"""The paper's three baselines (`deepdiff.baselines`: linear, svr, svr2) fitted once per pair of a study,
on the driver, each logged as an MLflow run of the study's experiment (tag ``kind=baseline``).

A baseline run carries the pair's tags (pair, pair_name, epigenome_a, epigenome_b, imitates on a synthetic
pair) and ``baseline``; params input_transform (the grid's published one, as the deep models' first
trial), C and region_C (svr2's first-layer C per region), train_genes, seed (of the CV folds and the SVR
subsample); metrics valid_pcc, valid_mse,
test_pcc, test_mse, seconds. Resume-safe: a (pair, baseline) already recorded as FINISHED is not refitted.

Imports MLflow and deepdiff.baselines (scikit-learn, torch); never Ray.
"""

from __future__ import annotations

from typing import Any, Callable

from mlflow.tracking import MlflowClient

from deepdiff.baselines import BASELINE_NAMES, BaselineResult, run_baseline
from deepdiff.data import PairData
from deepdiff_study.grid import Pair
from deepdiff_study.grid import load_grid
from deepdiff_study.records import Kind, RunStatus, Tag, artifact_location, ensure_experiment, study_runs


def pair_tags(pair: Pair) -> dict[str, str]:
    tags = {Tag.PAIR: str(pair.number), Tag.PAIR_NAME: pair.name, Tag.EPIGENOME_A: pair.epigenome_a,
            Tag.EPIGENOME_B: pair.epigenome_b}
    if pair.imitates:
        tags[Tag.IMITATES] = pair.imitates
    return tags


def recorded_baselines(client: MlflowClient, experiment_id: str) -> set[tuple[int, str]]:
    """(pair number, baseline name) of every finished baseline run in the experiment."""
    return {
        (int(run.data.tags[Tag.PAIR]), run.data.tags[Tag.BASELINE])
        for run in study_runs(client, experiment_id, Kind.BASELINE)
        if run.info.status == RunStatus.FINISHED and Tag.PAIR in run.data.tags and Tag.BASELINE in run.data.tags
    }


def log_result(client: MlflowClient, experiment_id: str, pair: Pair, result: BaselineResult, *, seed: int = 0) -> str:
    """One baseline run for `result`; returns its run id."""
    tags = {Tag.KIND: str(Kind.BASELINE), Tag.BASELINE: result.baseline, **pair_tags(pair)}
    run = client.create_run(experiment_id, tags=tags, run_name=f"p{pair.number}-baseline-{result.baseline}")
    run_id = run.info.run_id
    params = {"input_transform": result.input_transform, "C": "none" if result.c is None else f"{result.c:g}",
              "train_genes": str(result.train_genes), "seed": str(seed)}
    if result.region_c:
        params["region_C"] = ",".join(f"{c:g}" for c in result.region_c)
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for key in ("valid_pcc", "valid_mse", "test_pcc", "test_mse", "seconds"):
        client.log_metric(run_id, key, float(getattr(result, key)))
    client.set_terminated(run_id, RunStatus.FINISHED)
    return run_id


def log_baselines(
    client: MlflowClient, experiment_id: str, pairs: list[Pair], data: dict[int, PairData], *,
    input_transform: str, seed: int = 0, fit: Callable[..., BaselineResult] = run_baseline,
    echo: Callable[[str], Any] = print,
) -> list[tuple[int, str]]:
    """Fit and log every (pair, baseline) not yet recorded; returns the (pair, baseline) fitted now.

    `fit` is `deepdiff.baselines.run_baseline` (a parameter for tests of the skip logic only)."""
    done = recorded_baselines(client, experiment_id)
    fitted = []
    for pair in sorted(pairs, key=lambda p: p.number):
        for name in BASELINE_NAMES:
            if (pair.number, name) in done:
                continue
            result = fit(name, data[pair.number], input_transform=input_transform, seed=seed)
            log_result(client, experiment_id, pair, result, seed=seed)
            fitted.append((pair.number, name))
            echo(f"baseline {name:<6} pair {pair.number} {pair.name}: test PCC {result.test_pcc:.4f} "
                 f"({result.seconds:.1f} s)")
    return fitted


def study_baselines(tracking_uri: str, experiment: str, pairs: list[Pair], data: dict[int, PairData], *,
                    grid_file: str, seed: int = 0) -> None:
    """What `deepdiff_study.driver.run` calls once the pairs' data is loaded: the baselines of every pair
    not yet recorded, with the grid's published input_transform. A failure prints one warning line and
    the study goes on (the deep models do not need the baselines)."""
    try:
        transform = load_grid(grid_file).published.get("input_transform", "raw")
        client = MlflowClient(tracking_uri)
        exp_id = ensure_experiment(client, experiment, artifact_location(tracking_uri))
        fitted = log_baselines(client, exp_id, pairs, data, input_transform=transform, seed=seed)
        if not fitted:
            print("baselines: already recorded for every pair (resume)", flush=True)
    except Exception as err:  # noqa: BLE001 - the baselines are an addition to the study, never its failure
        print(f"warning: baselines not recorded ({type(err).__name__}: {err}); the study goes on", flush=True)
