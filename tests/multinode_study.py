"""A tiny study on a local multi-node Ray cluster, run as its own process by tests/test_cluster_local.py
(never inside pytest's process, whose session-wide local Ray it would collide with).

    python tests/multinode_study.py WORKDIR [study flags...]

Starts `ray.cluster_utils.Cluster`: a head with no CPU (as cluster.yaml's head) and two worker nodes
declaring 2 CPUs and 1 GPU each (GPUs Ray believes in; torch here has no CUDA). Writes a pair in the
paper's file format to WORKDIR/data, runs the driver's `run(...)` against the cluster with
``--address`` and that ``--data``, and prints one JSON object on the last line of stdout: the exit
code, the worker nodes' ids and, per trial, what the trial saw (node, GPU ids, CUDA_VISIBLE_DEVICES, the
device `deepdiff.device.pick_device` chose, its time window from start to last report, the files of the data or the cache it
opened). After loading, the driver's data folder and Parquet cache are renamed away, so a trial that
read files instead of the object store would fail or be caught by the audit hook.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

PAD_S = 2.0  # each trial idles this long first, so trials overlap and the packing limit is reached


def main(workdir: Path, study_flags: list[str]) -> dict:
    from deepdiff.synthetic import write_synthetic_pair
    from deepdiff_study import driver
    from deepdiff_study import pairs as pair_files

    data_dir, storage = workdir / "data", workdir / "results"
    write_synthetic_pair(data_dir, genes=100, seed=3, cell_a="E123", cell_b="E003")
    watched = [str(data_dir), str(storage / "cache")]
    records = workdir / "trials.jsonl"

    load_sources = pair_files.load_sources

    def load_then_hide(sources, *, cache_dir):
        """The driver's loading step, then its files taken away: trials must not need them."""
        loaded = load_sources(sources, cache_dir=cache_dir)
        for path in watched:
            os.rename(path, path + ".moved")
        return loaded

    pair_files.load_sources = load_then_hide

    def recording_train(config, pairs, ended=None):
        """The study's trainable, recording where it ran and what it saw."""
        import deepdiff_study
        import torch
        from ray import tune

        from deepdiff.device import pick_device
        from deepdiff_study.trainable import train_trial

        def log(record):
            with open(records, "a") as fh:
                fh.write(json.dumps({"trial_id": tune.get_context().get_trial_id(), **record}) + "\n")

        if not hasattr(sys, "_study_opened"):  # once per worker process (actors are reused)
            sys._study_opened = []
            prefixes = tuple(watched)
            sys.addaudithook(lambda event, args: sys._study_opened.append(os.fsdecode(args[0]))
                             if event == "open" and isinstance(args[0], (str, bytes, os.PathLike))
                             and os.fsdecode(args[0]).startswith(prefixes) else None)
            # Tune stops a trial at its last report (ASHA's max_t or a prune) and never returns to
            # the function: the time of each report is logged as it happens, the last one ends the trial.
            report = tune.report
            def timed_report(*a, **k):
                log({"report": time.time(), "opened": list(sys._study_opened)})
                return report(*a, **k)
            tune.report = timed_report
        log({
            "start": time.time(), "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_available": torch.cuda.is_available(), "device": str(pick_device()),
            "deepdiff_study": deepdiff_study.__file__,
        })
        time.sleep(PAD_S)
        train_trial(config, pairs, ended)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        # The cost estimate first (--dry-run with --address: a calibration as Ray tasks on the cluster).
        dry_run = driver.main([*study_flags, "--dry-run", "--address", cluster.address, "--data", str(data_dir)])
        print(f"dry run exit {dry_run}", flush=True)
        args = driver.build_parser().parse_args([
            *study_flags, "--address", cluster.address, "--data", str(data_dir), "--storage", str(storage),
            "--mlflow-uri", f"sqlite:///{workdir / 'mlruns.db'}",
        ])
        code = driver.run(args, train_fn=recording_train)
        return {"exit": code, "worker_nodes": [w.node_id for w in workers], "trials": trial_records(records)}
    finally:
        ray.shutdown()
        cluster.shutdown()


def trial_records(path: Path) -> list[dict]:
    """One record per trial: what it saw at its start, ``end`` = its last report, every file opened."""
    trials: dict[str, dict] = {}
    for line in (path.read_text().splitlines() if path.is_file() else []):
        entry = json.loads(line)
        trial = trials.setdefault(entry["trial_id"], {"opened": []})
        if "report" in entry:
            trial["end"] = max(trial.get("end", 0.0), entry.pop("report"))
            trial["opened"] = entry.pop("opened")
        trial.update(entry)
    return list(trials.values())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    result = main(Path(sys.argv[1]).resolve(), sys.argv[2:])
    print(json.dumps(result))
