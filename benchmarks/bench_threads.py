"""`deepdiff train`'s threads under a fixed background load: each policy's epoch time, idle and loaded.

    python benchmarks/bench_threads.py [--burners N] [--repeats 3] [--epochs 1] [--variant raw]

Trains `--variant` for `--epochs` on the real sample (Cell1 Cell2) in a new `deepdiff` process per run,
with each threads policy in turn (interleaved, `--repeats` rounds), first with nothing of ours running
("idle": whatever else the machine runs still runs, see the load average printed), then while `--burners`
processes (default: one per usable CPU) burn CPU in a loop started by this script:

- old default: a thread per usable CPU, libgomp's default wait (spin 300,000 times, what deepdiff did
  before `deepdiff.threads`): ``--threads N`` with ``GOMP_SPINCOUNT=300000``;
- one thread: ``--threads 1``;
- passive: a thread per usable CPU, threads that sleep at once (``--threads N``, the default wait policy);
- fewer: the automatic count (usable CPUs less those others keep busy), spinning wait (``GOMP_SPINCOUNT=300000``);
- chosen: the default now, no flag: the automatic count and the passive wait.

Figures: the epoch's seconds that `deepdiff train` prints (imports and data loading left out, the data
served from a cache filled first), the run's CPU seconds, and the threads it trained with. Prints
medians, each policy's time as a multiple of one thread's in the same condition and of the old
default's idle time; asserts nothing. Timing on a shared machine is noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepdiff.threads import usable_cpus  # noqa: E402  (imports no torch)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "deepdiffchrome-sample"
SPIN = {"GOMP_SPINCOUNT": "300000"}  # libgomp's default spin count: the wait deepdiff had before
# policy -> (extra flags, extra environment); "N" stands for the usable CPUs
POLICIES = {
    "old default": (["--threads", "N"], SPIN),
    "one thread": (["--threads", "1"], {}),
    "passive": (["--threads", "N"], {}),
    "fewer": ([], SPIN),
    "chosen": ([], {}),
}
EPOCH = re.compile(r"^epoch \d+/\d+ .*\(([0-9.]+)s\)$", re.M)
THREADS = re.compile(r" with (\d+) threads?, ")


def run(args: argparse.Namespace, cache: Path, policy: str, usable: int) -> dict:
    """One `deepdiff train` run with `policy`: epoch seconds (mean over epochs), CPU seconds, threads."""
    flags, extra = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(extra, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "deepdiff.cli", "train", "--data", args.data, "--pair", *args.pair,
               "--variant", args.variant, "--epochs", str(args.epochs), "--cache-dir", str(cache),
               *[str(usable) if flag == "N" else flag for flag in flags]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{policy}: deepdiff train exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    epochs = [float(s) for s in EPOCH.findall(done.stderr)]
    return {"seconds": statistics.mean(epochs), "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "threads": int(THREADS.search(done.stderr).group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--pair", nargs=2, default=("Cell1", "Cell2"))
    parser.add_argument("--variant", default="raw")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burners", type=int, help="CPU-burning processes of the loaded condition (default: usable CPUs)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma list of " + ", ".join(POLICIES))
    parser.add_argument("--conditions", default="idle,loaded", help="comma list of idle, loaded")
    args = parser.parse_args()
    usable, limit = usable_cpus(os.environ)
    burners = args.burners or usable
    policies, conditions = args.policies.split(","), args.conditions.split(",")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    import torch

    print(f"commit {commit}; {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, {usable} usable "
          f"({limit}); torch {torch.__version__}; {args.variant}, {args.epochs} epoch(s) of {args.pair[0]}-{args.pair[1]}, "
          f"{args.repeats} runs per policy and condition; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        cache = Path(tmp)
        subprocess.run([sys.executable, "-m", "deepdiff.cli", "prepare", "--data", args.data, "--pair", *args.pair,
                        "--cache-dir", str(cache)], env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        for condition in conditions:
            procs = []
            if condition == "loaded":
                procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
                time.sleep(2.0)
            try:
                loads = [os.getloadavg()[0]]
                for repeat in range(args.repeats):
                    for policy in policies:
                        result = run(args, cache, policy, usable)
                        results.setdefault((condition, policy), []).append(result)
                        print(f"{condition:6} {policy:11} run {repeat + 1}: {result['seconds']:6.1f} s, "
                              f"{result['cpu']:6.1f} CPU s, {result['threads']} threads", flush=True)
                    loads.append(os.getloadavg()[0])
            finally:
                for proc in procs:
                    proc.kill()
                    proc.wait()
            print(f"{condition}: load average (1 min) {min(loads):.2f}-{max(loads):.2f} during the runs"
                  + (f" with {burners} burners" if procs else ""), flush=True)
    one = {c: statistics.median(r["seconds"] for r in results[c, "one thread"]) for c in conditions} \
        if "one thread" in policies else {}
    old_idle = statistics.median(r["seconds"] for r in results["idle", "old default"]) \
        if "old default" in policies and "idle" in conditions else None
    print("\n| condition | policy | threads | seconds per epoch (median) | x one thread | x old default idle | CPU s per run |")
    print("|---|---|---|---:|---:|---:|---:|")
    for condition in conditions:
        for policy in policies:
            runs = results[condition, policy]
            seconds = statistics.median(r["seconds"] for r in runs)
            used = sorted({r["threads"] for r in runs})
            print(f"| {condition} | {policy} | {'/'.join(map(str, used))} | {seconds:.1f} "
                  f"({min(r['seconds'] for r in runs):.1f}-{max(r['seconds'] for r in runs):.1f}) | "
                  f"{f'x{seconds / one[condition]:.2f}' if one else '-'} | "
                  f"{f'x{seconds / old_idle:.2f}' if old_idle else '-'} | {statistics.median(r['cpu'] for r in runs):.1f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
