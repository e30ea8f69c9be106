"""deepdiff_study: the DeepDiff paper's ablation study on Ray Tune + Optuna, recorded in MLflow.

The study layer of the distribution ``deepdiff-tune`` (installed with the ``tune`` extra), above the
`deepdiff` library. Its API is one description and one call:

    from deepdiff_study import StudySpec, run
    run(StudySpec(pairs="1,3", variants="raw,aux", data="data/"))   # returns the command's exit status

In layers that each import only the ones below them:

- `schema`      declared checks of the inputs, `RunSizes`, errors as one line    (pydantic)
- `untrusted`   names from MLflow checked before they become paths; Tune's saves checked to be yours only
- `grid`        ablations/paper.yaml -> `GridCell`s, search spaces, cell types  (yaml, schema, deepdiff.config)
- `store`       the MLflow store checked before a study, store failures recognised (MLflow only)
- `records`     MLflow names, kinds of run, statuses, the trial-config codec, readers (MLflow only)
- `spec`        `StudySpec` (what a study is) and its manifest                  (grid, schema, store)
- `plan`        one plan per grid cell                                           (grid, records, schema)
- `pairs`       the selected pairs' data: real files or synthetic               (deepdiff.data)
- `export`      best config per grid cell out of MLflow -> files                 (records)
- `report`      Table 3, figures, axes, importance, cost, index.html out of MLflow (records; optuna at call time)
- `baseline_runs` linear / svr / svr2 per pair as kind=baseline runs            (records, deepdiff.baselines)
- `storage`     --storage: a local folder or a URI every node reaches (s3://...) (pyarrow)
- `ray_private` every Ray/Optuna internal used, in one marked block
- `resume`      the resume story, told in its docstring, and its mechanics       (records, spec; Ray at call time)
- `searcher`    per-grid-cell Optuna behind one Tune Searcher                    (Ray, Optuna, plan)
- `scheduler`   per-grid-cell ASHA behind one Tune scheduler                     (Ray, resume)
- `trainable`   the Ray trainable around deepdiff.train.fit                      (Ray, torch, resume)
- `writer`      ordered background writes: one thread, a bounded queue, drained at exit
- `tracker`     the MLflow writer (a Tune callback, on the driver; writes via `writer`) (Ray, records, resume, writer)
- `progress`    the progress lines (a Tune callback)                             (Ray, records)
- `calibrate`   --dry-run --address: trials at once, measured GPU-/CPU-hours     (Ray at call time, plan)
- `tuner`       the Ray a study runs on and its one Tuner                        (Ray, searcher, scheduler)
- `summary`     the plan before a study, the closing summary after it            (records, export, report)
- `study`       `run(spec)`, `dry_run(spec)`: checks, data, baselines, Tuner     (everything above)
- `replicates`  --replicates K: a finished study's winners over K more seeds     (tuner, trainable, summary)
- `driver`      the command line: flags -> `StudySpec` -> study (`tune/run_ablation.py`, `deepdiff-ablation`)

`run` and `StudySpec` are imported on first use: importing a module of the package (e.g. `export`)
loads neither Ray nor MLflow.
"""

from typing import Any

__all__ = ["RunSizes", "StudySpec", "dry_run", "run"]
_EXPORTS = {"run": "study", "dry_run": "study", "StudySpec": "spec", "RunSizes": "schema"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"deepdiff_study.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deepdiff_study' has no attribute {name!r}")
