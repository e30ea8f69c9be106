"""What a study will cost, measured on the cluster before it runs (``--dry-run --address ...``).

1. **Packing**: how many trials run at once: on every alive node, as many as both its GPUs (per
   ``--gpus-per-trial``) and its CPUs (per ``--cpus-per-trial``) allow, summed over the nodes.
2. **Calibration**: one Ray task per variant of the selected grid, all at once (so trials share GPUs as
   they will in the study), each with a trial's resources: it trains the variant's published setting
   for `CALIBRATION_EPOCHS` epochs on a synthetic pair on the device a trial would get
   (`deepdiff.device.pick_device`) and returns the seconds of its epochs after the first (warm-up).
   The pair has the study's gene count, capped at `CALIBRATION_GENES_MAX`; an epoch's time is taken as
   proportional to the genes (batches are index slices: constant cost per gene), so a capped
   measurement is scaled up by study genes / calibration genes.
3. **Estimate**: trial-epochs per grid cell: at most samples x max_epochs (no trial stopped early), and
   the share ASHA's successive halving would keep if it pruned ideally (each rung keeps
   1/reduction_factor); times the variant's epoch seconds, times the trial's GPUs (GPU-hours) or, on a
   cluster without GPUs, its CPUs (CPU-hours); wall time = trial time / trials at once.

The published setting is the first trial of every grid cell; other trials' batch sizes and hidden
sizes differ, so the estimate is of the right order, not exact.

Each calibration task runs in a placement group of its own (one trial's resources), so the wait for
room is seen and bounded: while no group became ready and no task ended, `deepdiff_study.faults.Waiting`
says what it waits for and gives up after ``--wait-timeout`` (a running cluster with no free CPUs
used to keep a dry run waiting until it was killed).
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from deepdiff_study.plan import GridCellPlan
from deepdiff_study.schema import RunSizes

CALIBRATION_EPOCHS = 3  # the first one warms up (allocations, kernels); the rest are timed
CALIBRATION_GENES_MAX = 2000  # genes of the calibration pair at most (train/valid/test split as the paper's)
TRAIN_FRACTION = 0.54  # of a pair's genes in its training split (deepdiff.synthetic.SPLIT_FRACTIONS)


@dataclass(frozen=True)
class Measurement:
    variant: str
    seconds_per_epoch: float  # on `genes` genes
    genes: int
    device: str  # what pick_device chose in the task
    gpu_ids: tuple[str, ...]  # the GPUs Ray assigned the task (as a trial's)


def trials_at_once(nodes: list[dict[str, float]], *, cpus: float, gpus: float) -> list[int]:
    """Trials that fit at once on each node (its resources: ``{"CPU": n, "GPU": m}``)."""
    fits = []
    for resources in nodes:
        by_cpu = math.floor(resources.get("CPU", 0) / cpus + 1e-9)
        by_gpu = math.floor(resources.get("GPU", 0) / gpus + 1e-9) if gpus > 0 else by_cpu
        fits.append(min(by_cpu, by_gpu))
    return fits


def epochs_per_trial(sizes: RunSizes) -> tuple[float, float]:
    """(most, with ideal ASHA pruning) epochs of one trial: rung r is reached by 1/reduction_factor**r."""
    bounds = [*sizes.rungs(), sizes.max_epochs]
    expected, previous = 0.0, 0.0
    for r, bound in enumerate(bounds):
        expected += (bound - previous) / sizes.reduction_factor ** r
        previous = bound
    return float(sizes.max_epochs), expected


def study_genes(data_dir: str | None, plans: list[GridCellPlan], synthetic_genes: int) -> int:
    """A pair's genes (all splits), the largest of the selected pairs: from the training files when
    real (rows / bins, over the training fraction), else the synthetic size."""
    if data_dir is None:
        return synthetic_genes
    from deepdiff.data import N_BINS

    most = 0
    for pair in {p.cell.pair for p in plans}:
        with open(Path(data_dir) / f"{pair.epigenome_a}.train.csv", "rb") as fh:
            rows = sum(1 for _ in fh)
        most = max(most, round(rows / N_BINS / TRAIN_FRACTION))
    return most


def _measure(config: dict, data) -> tuple[float, str, tuple[str, ...]]:
    """In a Ray task: seconds per epoch after the first, the device and the GPU ids, of `config` on `data`."""
    import ray

    from deepdiff.device import pick_device
    from deepdiff.train import fit
    from deepdiff_study.records import decode_trial_config

    model_cfg, train_cfg = decode_trial_config(config)
    device = pick_device()
    marks = [time.perf_counter()]
    for _ in fit(model_cfg, train_cfg, data.to(device), device=device):
        marks.append(time.perf_counter())
    laps = [b - a for a, b in zip(marks[1:], marks[2:])]
    return statistics.mean(laps), str(device), tuple(str(g) for g in ray.get_gpu_ids())


def calibrate(plans: list[GridCellPlan], genes: int, *, cpus: float, gpus: float, waiting, seed: int = 0) -> dict[str, Measurement]:
    """One measurement per variant of `plans`, run as Ray tasks with a trial's resources, all at once;
    `waiting`: a `deepdiff_study.faults.Waiting` that bounds the wait for room (raises past it)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from deepdiff.data import load_pair
    from deepdiff.synthetic import write_synthetic_pair

    with tempfile.TemporaryDirectory(prefix="deepdiff-calibrate-") as folder:
        write_synthetic_pair(folder, genes=genes, seed=seed)
        pair = ray.put(load_pair(folder, "Cell1", "Cell2"))
    first = {}
    for plan in plans:  # one grid cell per variant: its published setting, run for a few epochs
        first.setdefault(plan.cell.variant, {**plan.fixed, **plan.published, "epochs": CALIBRATION_EPOCHS})
    groups = {variant: placement_group([waiting.request.bundle()]) for variant in first}
    try:
        refs = {variant: ray.remote(_measure).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(groups[variant])).remote(config, pair)
            for variant, config in first.items()}
        results = _wait_all(refs, groups, waiting)
    finally:
        for group in groups.values():
            remove_placement_group(group)
    return {variant: Measurement(variant, seconds, genes, device, gpu_ids) for variant, (seconds, device, gpu_ids) in results.items()}


def _wait_all(refs: dict, groups: dict, waiting) -> dict:
    """The tasks' results, each group removed as its task ends (room for the next); `waiting` ticks
    while nothing happens (no group placed, no task ended) and raises past its bound."""
    import ray
    from ray.util.placement_group import remove_placement_group

    events = {groups[v].ready(): ("placed", v) for v in refs} | {ref: ("ended", v) for v, ref in refs.items()}
    results = {}
    waiting.reset()
    while any(kind == "ended" for kind, _ in events.values()):
        done, _ = ray.wait(list(events), num_returns=1, timeout=1.0)
        if not done:
            waiting.tick()
            continue
        waiting.reset()
        kind, variant = events.pop(done[0])
        if kind == "ended":
            results[variant] = ray.get(done[0])
            remove_placement_group(groups[variant])
    return results


def print_estimate(plans: list[GridCellPlan], sizes: RunSizes, measured: dict[str, Measurement], *,
                   genes: int, nodes: list[dict[str, float]], cpus: float, gpus: float, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    fits = trials_at_once(nodes, cpus=cpus, gpus=gpus)
    at_once = sum(fits)
    most, pruned = epochs_per_trial(sizes)
    unit, per_trial = ("GPU", gpus) if gpus > 0 else ("CPU", cpus)
    print(f"\ncluster now: {len(nodes)} node(s); {cpus:g} CPU + {gpus:g} GPU per trial -> "
          f"{at_once} trial(s) at once ({', '.join(map(str, fits)) or 'none'} per node)", file=stream)
    print(f"calibration: {CALIBRATION_EPOCHS} epochs of each variant's published setting on a synthetic pair of "
          f"{next(iter(measured.values())).genes} genes, as Ray tasks with a trial's resources; "
          f"scaled to {genes} genes per pair (epoch time proportional to genes)", file=stream)
    print(f"{'variant':<16} {'device (Ray GPU ids)':<22} {'s/epoch':>8} {'grid cells':>10} {f'{unit}-h (most)':>13} "
          f"{f'{unit}-h (ASHA)':>13}", file=stream)
    total_most = total_pruned = 0.0
    for variant, m in measured.items():
        cells = sum(1 for p in plans if p.cell.variant == variant)
        seconds = m.seconds_per_epoch * genes / m.genes
        hours_most = cells * sizes.samples * most * seconds * per_trial / 3600
        hours_pruned = cells * sizes.samples * pruned * seconds * per_trial / 3600
        total_most += hours_most
        total_pruned += hours_pruned
        device = f"{m.device} ({','.join(m.gpu_ids) or '-'})"
        print(f"{variant:<16} {device:<22} {seconds:>8.4g} {cells:>10} {hours_most:>13.4g} {hours_pruned:>13.4g}", file=stream)
    print(f"\nestimate: {total_pruned:.4g} {unit}-hours with ASHA pruning as planned ({pruned:.3g} of {most:g} epochs "
          f"per trial on average), at most {total_most:.4g} {unit}-hours (no trial stopped early)", file=stream)
    if at_once:
        wall = lambda hours: hours / per_trial / at_once  # noqa: E731 - trial-hours spread over the trials at once
        print(f"wall time with {at_once} trials at once: about {wall(total_pruned):.3g} h (at most {wall(total_most):.3g} h); "
              "more nodes shorten it, not the bill", file=stream)
    else:
        print("no node can run a trial now: the autoscaler starts nodes when the study asks for them", file=stream)
