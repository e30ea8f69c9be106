"""deepdiff_study: the DeepDiff paper's ablation study on Ray Tune + Optuna, recorded in MLflow.

The study layer of the distribution ``deepdiff-tune`` (installed with the ``tune`` extra), above the
`deepdiff` library, in layers that each import only the ones below them:

- `grid`        ablations/paper.yaml -> `GridCell`s and search spaces            (yaml, deepdiff.config)
- `records`     MLflow names, kinds of run, statuses, the trial-config codec, readers (MLflow only)
- `store`       the MLflow store checked before a study, store failures recognised (MLflow only)
- `plan`        run settings and one plan per grid cell                          (grid, records)
- `pairs`       the selected pairs' data: real files or synthetic               (deepdiff.data)
- `export`      best config per grid cell out of MLflow -> files                 (records)
- `report`      Table 3, figures, axes, importance, cost, index.html out of MLflow (records; optuna at call time)
- `baseline_runs` linear / svr / svr2 per pair as kind=baseline runs            (records, deepdiff.baselines)
- `storage`     --storage: a local folder or a URI every node reaches (s3://...) (pyarrow)
- `ray_private` every Ray/Optuna internal used, in one marked block
- `resume`      the resume story, told in its docstring, and its mechanics       (records; Ray at call time)
- `searcher`    per-grid-cell Optuna behind one Tune Searcher                    (Ray, Optuna, plan)
- `scheduler`   per-grid-cell ASHA behind one Tune scheduler                     (Ray, resume)
- `trainable`   the Ray trainable around deepdiff.train.fit                      (Ray, torch, resume)
- `tracker`     the MLflow writer (a Tune callback, on the driver)               (Ray, records, resume)
- `progress`    the progress lines (a Tune callback)                             (Ray, records)
- `calibrate`   --dry-run --address: trials at once, measured GPU-/CPU-hours     (Ray at call time, plan)
- `driver`      flags -> study -> Tuner -> closing table (`tune/run_ablation.py`) (everything above)
- `replicates`  report --seeds K: each grid cell's best config retrained over K seeds (Ray, tracker; driver at call time)
"""
