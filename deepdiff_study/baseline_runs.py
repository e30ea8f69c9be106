"""Every baseline of `deepdiff.baselines` fitted once per pair of a study, on the driver, each logged as an
MLflow run of the study's experiment (tag ``kind=baseline``, tag ``baseline`` = its name in
`deepdiff.baselines.ALL_BASELINES`).

- The paper's three (linear, svr, svr2; `study_baselines`) before the trials start: seconds per pair.
  Params input_transform (the grid's published one, as the deep models' first trial), C and region_C
  (svr2's first-layer C per region), train_genes, seed (of the CV folds and the SVR subsample).
- The simple models (ridge, rbf_svr, gboost) and the best simple model (best_simple; `study_simple_models`)
  after the trials have ended (an interrupted study fits them when it is resumed to its end), so they never
  delay a trial: a few CPU seconds per pair of the quick start, about 6-7 CPU minutes per pair of the
  paper's size (10,000 training genes; one thread). Params model, input_transform and features (the
  choice made on the valid genes), the chosen hyperparameters under their own names (alpha; C, gamma_scale;
  learning_rate, max_leaf_nodes, max_iter), candidates (how many settings were tried), train_genes, seed;
  a simple model's every candidate with its valid PCC as the artifact ``candidates.csv``. The best_simple
  run is the pair's simple-model run with the best valid PCC (the first in `SIMPLE_MODELS` order on a tie,
  as `deepdiff.baselines.best_of`), copied: its params plus ``model``, its scores, ``seconds`` of all three.

Every baseline run has the metrics best_valid_pcc and best_test_pcc (`records.SCORE_METRICS`), the names
of "the model's score" on every kind of run of the study (grid cells, trials, replicates), so MLflow's
runs table sorts them together; valid_mse, test_mse and seconds. (Baseline runs of older studies named
their PCCs valid_pcc / test_pcc; the report still reads those, nothing writes them.) Resume-safe: a
(pair, baseline) already recorded as FINISHED is never refitted, and a best_simple run is derived from
recorded runs without refitting.

Imports MLflow and deepdiff.baselines (scikit-learn, torch); never Ray.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Mapping

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from deepdiff.baselines import (
    BEST_SIMPLE,
    PAPER_BASELINES,
    SIMPLE_MODELS,
    BaselineResult,
    SimpleResult,
    candidate_count,
    run_baseline,
    run_simple_model,
)
from deepdiff.data import PairData
from deepdiff_study.grid import Pair, load_grid
from deepdiff_study.records import Kind, RunStatus, Tag, artifact_location, ensure_experiment, study_runs

CANDIDATES_ARTIFACT = "candidates.csv"  # a simple-model run's every candidate: transform, features, params, valid PCC
SIMPLE_THREADS = 1  # threads of the simple models' native pools on the driver (see deepdiff.baselines.simple)


def pair_tags(pair: Pair) -> dict[str, str]:
    tags = {Tag.PAIR: str(pair.number), Tag.PAIR_NAME: pair.name, Tag.EPIGENOME_A: pair.epigenome_a,
            Tag.EPIGENOME_B: pair.epigenome_b}
    if pair.imitates:
        tags[Tag.IMITATES] = pair.imitates
    return tags


def finished_baselines(client: MlflowClient, experiment_id: str) -> dict[tuple[int, str], Any]:
    """(pair number, baseline name) -> its finished run (the newest, should there be more)."""
    found: dict[tuple[int, str], Any] = {}
    for run in study_runs(client, experiment_id, Kind.BASELINE):  # newest first
        tags = run.data.tags
        if run.info.status == RunStatus.FINISHED and Tag.PAIR in tags and Tag.BASELINE in tags:
            found.setdefault((int(tags[Tag.PAIR]), tags[Tag.BASELINE]), run)
    return found


def recorded_baselines(client: MlflowClient, experiment_id: str) -> set[tuple[int, str]]:
    """(pair number, baseline name) of every finished baseline run in the experiment."""
    return set(finished_baselines(client, experiment_id))


def _scores(result: BaselineResult | SimpleResult) -> dict[str, float]:
    """A baseline's metrics: its PCCs under the score names every kind of run shares, its MSEs, seconds."""
    return {"best_valid_pcc": float(result.valid_pcc), "best_test_pcc": float(result.test_pcc),
            **{k: float(getattr(result, k)) for k in ("valid_mse", "test_mse", "seconds")}}


def _create(client: MlflowClient, experiment_id: str, pair: Pair, name: str, params: dict[str, str],
            metrics: dict[str, float]) -> str:
    """A finished baseline run of `pair` named `name` with these params and metrics; returns its run id."""
    tags = {Tag.KIND: str(Kind.BASELINE), Tag.BASELINE: name, **pair_tags(pair)}
    run_id = client.create_run(experiment_id, tags=tags, run_name=f"p{pair.number}-baseline-{name}").info.run_id
    client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()], synchronous=True)
    return run_id


def log_result(client: MlflowClient, experiment_id: str, pair: Pair, result: BaselineResult, *, seed: int = 0) -> str:
    """One baseline run for a paper baseline's `result`; returns its run id."""
    params = {"input_transform": result.input_transform, "C": "none" if result.c is None else f"{result.c:g}",
              "train_genes": str(result.train_genes), "seed": str(seed)}
    if result.region_c:
        params["region_C"] = ",".join(f"{c:g}" for c in result.region_c)
    run_id = _create(client, experiment_id, pair, result.baseline, params, _scores(result))
    client.set_terminated(run_id, RunStatus.FINISHED)
    return run_id


def simple_params(result: SimpleResult, seed: int) -> dict[str, str]:
    """A simple model's choice as MLflow params (see the module docstring)."""
    return {"model": result.model, "input_transform": result.input_transform, "features": result.features,
            **{name: f"{value:g}" for name, value in result.params}, "candidates": str(len(result.candidates)),
            "train_genes": str(result.train_genes), "seed": str(seed)}


def candidates_csv(result: SimpleResult) -> str:
    """Every candidate of a simple model as CSV: model, input_transform, features, params, valid_pcc, valid_mse."""
    lines = ["model,input_transform,features,params,valid_pcc,valid_mse"]
    lines += [f"{c.model},{c.input_transform},{c.features},{' '.join(f'{k}={v:g}' for k, v in c.params)},"
              f"{c.valid_pcc:.6g},{c.valid_mse:.6g}" for c in result.candidates]
    return "\n".join(lines) + "\n"


def log_simple_result(client: MlflowClient, experiment_id: str, pair: Pair, result: SimpleResult, *,
                      seed: int = 0) -> str:
    """One baseline run for a simple model's `result` (with its candidates as an artifact); returns its run id."""
    run_id = _create(client, experiment_id, pair, result.model, simple_params(result, seed), _scores(result))
    client.log_text(run_id, candidates_csv(result), CANDIDATES_ARTIFACT)
    client.set_terminated(run_id, RunStatus.FINISHED)
    return run_id


def best_simple_run(runs: Mapping[str, Any]) -> Any | None:
    """The simple-model run with the best valid PCC among `runs` (model name -> run): the first in
    `SIMPLE_MODELS` order on a tie, a NaN never; None unless every simple model has a run."""
    if any(model not in runs for model in SIMPLE_MODELS):
        return None
    best, best_pcc = None, -math.inf
    for model in SIMPLE_MODELS:
        pcc = runs[model].data.metrics.get("best_valid_pcc", math.nan)
        if best is None or (math.isfinite(pcc) and pcc > best_pcc):
            best, best_pcc = runs[model], pcc if math.isfinite(pcc) else best_pcc
    return best


def log_best_simple(client: MlflowClient, experiment_id: str, pair: Pair, runs: Mapping[str, Any]) -> str | None:
    """The pair's best_simple run, copied from its best simple-model run (`best_simple_run`), with
    ``seconds`` summed over every simple model; None (nothing logged) until all of them are recorded."""
    best = best_simple_run(runs)
    if best is None:
        return None
    metrics = {k: v for k, v in best.data.metrics.items() if k != "seconds"}
    metrics["seconds"] = float(sum(runs[m].data.metrics.get("seconds", 0.0) for m in SIMPLE_MODELS))
    run_id = _create(client, experiment_id, pair, BEST_SIMPLE, dict(best.data.params), metrics)
    client.set_tag(run_id, Tag.BEST_RUN_ID, best.info.run_id)
    client.set_terminated(run_id, RunStatus.FINISHED)
    return run_id


def log_baselines(
    client: MlflowClient, experiment_id: str, pairs: list[Pair], data: Mapping[int, PairData], *,
    input_transform: str, seed: int = 0, fit: Callable[..., BaselineResult] = run_baseline,
    echo: Callable[[str], Any] = print,
) -> list[tuple[int, str]]:
    """Fit and log the paper's baselines of every pair not yet recorded; returns the (pair, baseline) fitted now.

    `fit` is `deepdiff.baselines.run_baseline` (a parameter for tests of the skip logic only)."""
    done = recorded_baselines(client, experiment_id)
    fitted = []
    for pair in sorted(pairs, key=lambda p: p.number):
        for name in PAPER_BASELINES:
            if (pair.number, name) in done:
                continue
            result = fit(name, data[pair.number], input_transform=input_transform, seed=seed)
            log_result(client, experiment_id, pair, result, seed=seed)
            fitted.append((pair.number, name))
            echo(f"baseline {name:<6} pair {pair.number} {pair.name}: test PCC {result.test_pcc:.4f} "
                 f"({result.seconds:.1f} s)")
    return fitted


def log_simple_models(
    client: MlflowClient, experiment_id: str, pairs: list[Pair], data: Callable[[int], PairData], *,
    seed: int = 0, fit: Callable[..., SimpleResult] = run_simple_model, echo: Callable[[str], Any] = print,
    progress: Callable[[int], Any] | None = None,
) -> list[tuple[int, str]]:
    """Fit and log every simple model of every pair not yet recorded, then each pair's best_simple run;
    returns the (pair, baseline) logged now. `data(number)` gives a pair's data (called only for a pair
    with a model to fit); `progress(n)`, if given, is called once per candidate scored (a progress bar).

    `fit` is `deepdiff.baselines.run_simple_model` (a parameter for tests of the skip logic only)."""
    logged = []
    for pair in sorted(pairs, key=lambda p: p.number):
        runs = {name: run for (number, name), run in finished_baselines(client, experiment_id).items()
                if number == pair.number}
        todo = [model for model in SIMPLE_MODELS if model not in runs]
        pair_data = data(pair.number) if todo else None
        for model in todo:
            result = fit(model, pair_data, seed=seed, threads=SIMPLE_THREADS,
                         progress=None if progress is None else lambda candidate: progress(1))
            log_simple_result(client, experiment_id, pair, result, seed=seed)
            logged.append((pair.number, model))
            choice = " ".join(f"{k}={v:g}" for k, v in result.params)
            echo(f"baseline {model:<7} pair {pair.number} {pair.name}: valid PCC {result.valid_pcc:.4f}, test PCC "
                 f"{result.test_pcc:.4f} ({result.input_transform} {result.features} {choice}; {result.seconds:.1f} s)")
        if BEST_SIMPLE not in runs:
            runs = {name: run for (number, name), run in finished_baselines(client, experiment_id).items()
                    if number == pair.number}
            if log_best_simple(client, experiment_id, pair, runs) is not None:
                logged.append((pair.number, BEST_SIMPLE))
    return logged


def study_baselines(tracking_uri: str, experiment: str, pairs: list[Pair], data: dict[int, PairData], *,
                    grid_file: str, seed: int = 0) -> None:
    """What `deepdiff_study.study.run` calls once the pairs' data is loaded: the paper's baselines of every
    pair not yet recorded, with the grid's published input_transform. A failure prints one warning line and
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


def study_simple_models(tracking_uri: str, experiment: str, pairs: list[Pair], data: Callable[[int], PairData], *,
                        seed: int = 0) -> None:
    """What `deepdiff_study.study.run` calls once every trial has ended: the simple models and the best simple
    model of every pair not yet recorded, with a progress bar over their candidates. A failure, or Ctrl-C,
    prints one line and the study goes on to its report (which shows what is recorded); the rest is fitted
    when the study is resumed."""
    from tqdm import tqdm

    try:
        client = MlflowClient(tracking_uri)
        exp_id = ensure_experiment(client, experiment, artifact_location(tracking_uri))
        done = recorded_baselines(client, exp_id)
        models = [m for p in pairs for m in SIMPLE_MODELS if (p.number, m) not in done]
        if not models and all((p.number, BEST_SIMPLE) in done for p in pairs):
            return
        print(f"\nsimple models ({', '.join(SIMPLE_MODELS)}; each chooses its transform, features and hyperparameters "
              f"on the valid genes): {len(models)} fit(s) on the driver", flush=True)
        with tqdm(total=candidate_count(models) if models else 0, unit="candidate", file=sys.stderr,
                  dynamic_ncols=True, disable=None, leave=False) as bar:
            log_simple_models(client, exp_id, pairs, data, seed=seed, progress=bar.update, echo=tqdm.write)
    except KeyboardInterrupt:
        print("warning: simple models interrupted; the report shows those recorded, --resume fits the rest", flush=True)
    except Exception as err:  # noqa: BLE001 - the baselines are an addition to the study, never its failure
        print(f"warning: simple models not recorded ({type(err).__name__}: {err}); the study goes on", flush=True)

