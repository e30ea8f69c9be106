"""How long the MLflow tracker holds up Tune's driver loop per result: in-hook writes vs background writes.

    python benchmarks/bench_tracker.py [--samples 2] [--epochs 4] [--concurrent 8]

Feeds the paper's grid (ablations/paper.yaml: 230 grid cells x `--samples` = 460 trials by default)
through `deepdiff_study.tracker.MlflowTracker` exactly as Tune calls it on the driver: a session's first
step, then waves of `--concurrent` trials, each started, reporting `--epochs` epoch results (every
epoch metric) interleaved with the others, and ending; then the experiment's end. The trials are fake
(no Ray, no training), the store is a new SQLite file per mode in a temporary folder, the writes real.

Each hook call is timed as Tune would wait for it. Printed per mode (``sync``: writes in the hook, as
before; ``background``: `deepdiff_study.writer`): milliseconds blocked per result (mean, median, p99,
max), per trial start / end, the wait at the experiment's end (the backlog written before Tune returns),
and the whole run; then the ratio background/sync and a check that both stores hold the same records
(runs, metrics, tags: nothing lost). The models are not stored (the fake trials have no checkpoint: each
grid cell gets its model_missing tag), so an artifact upload's time is not in these figures. Timing on
a shared machine is noisy: compare the ratios of one run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fake_trials(samples: int):
    """(trial objects as the tracker reads them, grid-cell tags, planned trials per grid cell)."""
    from deepdiff_study.grid import load_grid
    from deepdiff_study.plan import plan_grid_cells
    from deepdiff_study.records import grid_cell_tags
    from deepdiff_study.schema import RunSizes

    grid = load_grid()
    cells = grid.grid_cells("all")
    plans = plan_grid_cells(grid, cells, RunSizes(samples=samples, max_epochs=4, grace_period=1, reduction_factor=2), seed=0)
    trials = [SimpleNamespace(trial_id=f"{i:05d}", config={**p.fixed, **p.published}, last_result=None, checkpoint=None,
                              status="PENDING", error_file=None, num_failures=0)
              for i, (p, _) in enumerate((p, s) for p in plans for s in range(samples))]
    tags = {c.key: grid_cell_tags(c, grid.cell_names(c.pair)) for c in cells}
    return trials, tags, {p.key: samples for p in plans}


def result(epoch: int, epochs: int, trial_number: int) -> dict:
    from deepdiff.results import METRIC_NAMES

    values = {name: 0.001 * (trial_number % 97) + 0.01 * epoch + i for i, name in enumerate(METRIC_NAMES)}
    return {**values, "epoch": epoch, "best_epoch": epoch, "status": "completed" if epoch == epochs else "running",
            "compute_dtype": "float32"}


def run(mode: str, folder: Path, samples: int, epochs: int, concurrent: int) -> dict:
    from deepdiff_study.tracker import MlflowTracker

    trials, tags, planned = fake_trials(samples)
    uri = f"sqlite:///{folder / f'{mode}.db'}"
    tracker = MlflowTracker(uri, "bench", tags, planned, background=(mode == "background"))
    waits: dict[str, list[float]] = {"session start": [], "result": [], "start": [], "end": [], "experiment end": []}

    def timed(kind: str, hook, *args) -> None:
        t0 = time.perf_counter()
        hook(*args)
        waits[kind].append(time.perf_counter() - t0)

    t_all = time.perf_counter()
    timed("session start", lambda: (tracker.setup(), tracker.on_step_begin(0, trials)))  # connect + reconcile
    for first in range(0, len(trials), concurrent):
        wave = trials[first:first + concurrent]
        for t in wave:
            t.status = "RUNNING"
            timed("start", tracker.on_trial_start, 0, trials, t)
        for epoch in range(1, epochs + 1):
            for t in wave:
                t.last_result = result(epoch, epochs, int(t.trial_id))
                timed("result", tracker.on_trial_result, 0, trials, t, t.last_result)
        for t in wave:
            t.status = "TERMINATED"
            timed("end", tracker.on_trial_complete, 0, trials, t)
    timed("experiment end", tracker.on_experiment_end, trials)
    return {"waits": waits, "total": time.perf_counter() - t_all, "uri": uri}


def contents(uri: str) -> tuple[int, int, int]:
    """(runs, metric values, tags) in the store: the same in both modes when nothing is lost."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id], max_results=5000)
    metrics = sum(len(client.get_metric_history(r.info.run_id, key)) for r in runs[:20] for key in r.data.metrics)
    return len(runs), metrics, sum(len(r.data.tags) for r in runs)


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(0.99 * len(s)))]
    return (f"mean {1e3 * statistics.mean(s):7.2f}  median {1e3 * statistics.median(s):7.2f}  "
            f"p99 {1e3 * p99:7.2f}  max {1e3 * s[-1]:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2, help="trials per grid cell (230 grid cells; default 2 = 460 trials)")
    parser.add_argument("--epochs", type=int, default=4, help="epoch results per trial (default 4)")
    parser.add_argument("--concurrent", type=int, default=8, help="trials running at once, results interleaved (default 8)")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp:
        for mode in ("sync", "background"):
            figures[mode] = run(mode, Path(tmp), args.samples, args.epochs, args.concurrent)
            w = figures[mode]["waits"]
            print(f"\n{mode}: {len(w['start'])} trials, {len(w['result'])} results, {figures[mode]['total']:.1f} s in all")
            for kind in ("result", "start", "end"):
                print(f"  ms blocked per {kind:<6} {ms(w[kind])}")
            print(f"  s blocked at the session's start (store created, reconcile): {w['session start'][0]:.2f}")
            print(f"  s blocked at the experiment's end (writes still queued): {w['experiment end'][0]:.2f}")
        same = contents(figures["sync"]["uri"]) == contents(figures["background"]["uri"])
        print(f"\nstores hold the same runs, metrics (first 20 runs) and tags: {same} "
              f"{contents(figures['background']['uri'])}")
    sync, back = (statistics.mean(figures[m]["waits"]["result"]) for m in ("sync", "background"))
    print(f"mean blocked per result: background/sync = {back / sync:.4f} ({1e3 * back:.3f} ms vs {1e3 * sync:.2f} ms); "
          f"whole run background/sync = {figures['background']['total'] / figures['sync']['total']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
