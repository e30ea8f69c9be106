"""Tune overhead and worker memory over a long study, measured on the real study path (driver, searcher,
scheduler, tracker, trainable), twice in one command: with the trainable's memory release (the
default) and without it (the baseline).

    python benchmarks/bench_tune.py [--trials 200] [--genes 100] [--max-epochs 2] [--no-baseline]

For every trial the trainable's own process logs its wall time, its resident memory after the trial
and its peak. Printed per run:
- worker memory: resident MB of each reused worker at its 20th and last trial (flat = within 10%),
  and the peak per trial;
- Tune overhead: the span from the first trial's start to the last trial's end, against the trials'
  own wall times inside the trainable / concurrent slots (CPUs / CPUs per trial), and the whole
  `driver.run` wall (which also holds Ray's start, the data, the baselines, the report and the
  closing table).
Then, for the default run, the ideal of the issue's definition: every trial of the study trained
again by bare `deepdiff.train.fit` (same config and seed, as many epochs as it ran in the study, no
checkpoints, no Tune), in a pool of as many processes as the study had slots with the same torch
threads; ideal = the sum of those fit times / slots, against the study's trial span and its wall.
Prints tables; asserts nothing. Say what else ran on the machine when you quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

GRID = """
pairs: {1: [E123, E003]}
variants: [raw_d, raw_c, raw, aux, raw_aux, aux_siamese, raw_aux_siamese]
aux_modes: [regression]
margins: [2]
published: {lr: 1.0e-3, batch_size: 32, dropout: 0.1, level1_hidden: 8, level2_hidden: 4, input_transform: log1p, aux_weight: 1.0, gamma: 4.0}
search_space:
  lr:              {kind: log_uniform, low: 1.0e-4, high: 1.0e-2}
  batch_size:      {kind: choice, values: [16, 32, 64]}
  dropout:         {kind: uniform, low: 0.0, high: 0.5}
  level1_hidden:   {kind: choice, values: [4, 8, 16]}
  level2_hidden:   {kind: choice, values: [4, 8]}
  input_transform: {kind: choice, values: [raw, log1p]}
  aux_weight:      {kind: log_uniform, low: 0.1, high: 10.0, applies_to: aux}
  gamma:           {kind: log_uniform, low: 0.5, high: 16.0, applies_to: siamese}
presets:
  bench: {pairs: "1", margins: [2], samples: 1, max_epochs: 2, grace_period: 1, reduction_factor: 2, synthetic_genes: 100}
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_train_fn(release: bool, log_path: str):
    """The study's trainable, with the memory release on or off, logging each trial's numbers."""

    def train_fn(config, pairs, ended=None):
        import resource

        from deepdiff_study import trainable

        trainable.RELEASE_MEMORY = release
        started = time.time()
        try:  # Tune ends a trial it stops (ASHA, max_t) by raising SystemExit in its last report
            trainable.train_trial(config, pairs, ended)
        finally:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"pid": os.getpid(), "start": started, "end": time.time(), "rss_mb": rss_mb(),
                                     "peak_mb": peak, "threads": __import__("torch").get_num_threads()}) + "\n")

    return train_fn


def run_study(release: bool, args, folder: Path) -> dict:
    import ray

    from deepdiff_study import driver

    log = folder / f"trials-{'release' if release else 'baseline'}.jsonl"
    grid = folder / "grid.yaml"
    grid.write_text(GRID)
    samples = max(1, args.trials // 7)
    flags = ["--grid", str(grid), "--preset", "bench", "--samples", str(samples), "--max-epochs", str(args.max_epochs),
             "--synthetic-genes", str(args.genes), "--storage", str(folder / "results"),
             "--mlflow-uri", f"sqlite:///{folder / 'mlruns.db'}", "--experiment", f"bench-{'release' if release else 'baseline'}"]
    parsed = driver.build_parser().parse_args(flags)
    started = time.monotonic()
    if args.verbose:
        driver.run(parsed, train_fn=make_train_fn(release, str(log)))
    else:
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                driver.run(parsed, train_fn=make_train_fn(release, str(log)))
            finally:
                sys.stdout = stdout
    wall = time.monotonic() - started
    slots = ray.cluster_resources().get("CPU", 1) / parsed.cpus_per_trial
    ray.shutdown()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return {"rows": rows, "wall": wall, "slots": slots}


def summarise(name: str, run: dict) -> None:
    rows = run["rows"]
    by_pid = trials_by_worker(rows)
    busy = sum(r["end"] - r["start"] for r in rows)
    span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    ideal = busy / run["slots"]
    print(f"\n{name}: {len(rows)} trials, {len(by_pid)} worker processes, {run['slots']:g} slots; "
          f"torch threads per trial {sorted({r['threads'] for r in rows})}")
    print(f"  Tune overhead: trial span {span:.1f} s vs ideal {ideal:.1f} s = x{span / ideal:.2f} "
          f"(driver.run wall {run['wall']:.1f} s, incl. Ray start and data)")
    print(f"  peak memory per trial: median {statistics.median(r['peak_mb'] for r in rows):.0f} MB, "
          f"max {max(r['peak_mb'] for r in rows):.0f} MB")
    for pid, trials in by_pid.items():
        if len(trials) < 25:
            print(f"  worker {pid}: {len(trials)} trials (too few to compare trial 20 with the last)")
            continue
        at20, last = trials[19]["rss_mb"], trials[-1]["rss_mb"]
        print(f"  worker {pid}: resident {trials[0]['rss_mb']:.0f} MB after trial 1, {at20:.0f} MB after trial 20, "
              f"{last:.0f} MB after trial {len(trials)}: x{last / at20:.2f} from trial 20 on")


def trials_by_worker(rows: list[dict]) -> dict[int, list[dict]]:
    """The trial rows of each worker process, in the order it ran them."""
    by_pid: dict[int, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["start"]):
        by_pid.setdefault(r["pid"], []).append(r)
    return by_pid


def packing_and_gaps(rows: list[dict], slots: float) -> str:
    """Where the slot-time outside the trainable went: workers starting their first trial after the
    first one did and ending their last before the last one did (the packing of whole trials on the
    slots, which only more trials amortise), and the gaps between a worker's trials (Tune ending one
    and starting the next), each per slot."""
    by_pid = trials_by_worker(rows)
    first, last = min(r["start"] for r in rows), max(r["end"] for r in rows)
    head = sum(t[0]["start"] - first for t in by_pid.values()) / slots
    tail = sum(last - t[-1]["end"] for t in by_pid.values()) / slots
    gaps = [b["start"] - a["end"] for t in by_pid.values() for a, b in zip(t, t[1:])]
    return (f"{head:.1f} s before a worker's first trial, {tail:.1f} s after its last (packing), "
            f"{sum(gaps) / slots:.1f} s between trials ({len(gaps)} gaps, median {statistics.median(gaps):.2f} s)"
            if gaps else f"{head:.1f} s head, {tail:.1f} s tail")


def _bare_fit(job: dict) -> float:
    """Seconds of one bare `fit` of a trial (in a pool process; the pair is loaded once per process)."""
    import torch

    from deepdiff.data import load_pair
    from deepdiff.train import fit
    from deepdiff_study.records import decode_params

    torch.set_num_threads(job["threads"])
    key = (job["dir"], job["cell_a"], job["cell_b"])
    if _PAIRS.get("key") != key:
        _PAIRS.update(key=key, data=load_pair(*key))
    model_cfg, train_cfg = decode_params(job["params"])
    train_cfg = type(train_cfg)(**{**train_cfg.__dict__, "epochs": job["epochs"]})
    started = time.perf_counter()
    for _ in fit(model_cfg, train_cfg, _PAIRS["data"], device="cpu"):
        pass
    return time.perf_counter() - started


_PAIRS: dict = {}


def bare_ideal(folder: Path, experiment: str, slots: float, threads: int) -> tuple[int, float]:
    """(trials, ideal seconds): every trial run of the study trained by bare `fit`, `slots` at a time."""
    import concurrent.futures as futures
    import multiprocessing

    from mlflow.tracking import MlflowClient

    from deepdiff_study.records import Kind, Tag, experiment_id, study_runs

    client = MlflowClient(f"sqlite:///{folder / 'mlruns.db'}")
    exp = experiment_id(client, experiment)
    data = {r.data.tags[Tag.GRID_CELL]: json.loads(r.data.tags[Tag.DATA]) for r in study_runs(client, exp, Kind.GRID_CELL)}
    jobs = []
    for run in study_runs(client, exp, Kind.TRIAL):
        if "epoch" not in run.data.metrics:
            continue  # failed before its first epoch: nothing to train again
        section = data[run.data.tags[Tag.GRID_CELL]]
        jobs.append({"params": run.data.params, "epochs": int(run.data.metrics["epoch"]), "threads": threads,
                     "dir": section["dir"], "cell_a": section["cell_a"], "cell_b": section["cell_b"]})
    with futures.ProcessPoolExecutor(max_workers=int(slots), mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds = list(pool.map(_bare_fit, jobs))
    return len(jobs), sum(seconds) / slots


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200, help="trials per study (spread over the 7 variants)")
    p.add_argument("--genes", type=int, default=100, help="genes of the synthetic pair")
    p.add_argument("--max-epochs", type=int, default=2)
    p.add_argument("--verbose", action="store_true", help="show the studies' own progress lines")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the run without the memory release (for the overhead at longer trials only)")
    args = p.parse_args()
    import torch

    from deepdiff_study.driver import usable_cpus

    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}; {usable_cpus()} CPUs usable; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        runs = {}
        for release in (True,) if args.no_baseline else (False, True):
            folder = Path(tmp) / ("release" if release else "baseline")
            folder.mkdir()
            runs[release] = run_study(release, args, folder)
        if not args.no_baseline:
            summarise("baseline (no memory release)", runs[False])
        summarise("release (the default)", runs[True])
        rows = runs[True]["rows"]
        span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
        slots = runs[True]["slots"]
        n, ideal = bare_ideal(Path(tmp) / "release", "bench-release", slots, 1)
        inside = sum(r["end"] - r["start"] for r in rows) / slots
        print(f"\nbare fit of the release run's {n} trials, {slots:g} at a time, 1 torch thread each: "
              f"ideal {ideal:.1f} s; the study's trial span {span:.1f} s = x{span / ideal:.2f} the ideal, "
              f"its driver.run wall {runs[True]['wall']:.1f} s = x{runs[True]['wall'] / ideal:.2f}")
        print(f"  of the span: {inside:.1f} s inside the trainable (x{inside / ideal:.2f} the bare fits: checkpoints, "
              f"reports, each worker's first-trial imports, and Ray's and the driver's share of the CPUs), "
              f"{span - inside:.1f} s outside: {packing_and_gaps(rows, slots)}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
