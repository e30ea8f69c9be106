"""The Ray Tune trainable: a plain function around `deepdiff.train.fit`.

``train_trial(config, pairs=..., ended=...)``: `config` is one trial's flat config (see the codec in
`deepdiff_study.records`); `pairs` maps pair number -> an object-store reference to that pair's
`PairData` (bound once with `tune.with_parameters`, so tensors travel through the object store, never
by re-reading files on a worker); `ended`: trials a restarted study already recorded as ended
(`deepdiff_study.resume.hand_back`). Each epoch's `EpochResult` is reported; the checkpoint directory
(``last.pt`` + ``best.pt``) goes with it at the epochs where the trial may end: its last, and the
epochs at which its grid cell's ASHA may stop it (`records.checkpoint_epochs_of`), so an ended trial's
checkpoint always holds its best model; in between, at most every `CHECKPOINT_SECONDS`. (Tune keeps
one checkpoint per trial and takes a whole-experiment snapshot after each, which on a cluster means
an upload to the bucket: a checkpoint every epoch of 64 trials at once would keep the driver busy
with nothing else.) A trial started again from a Tune checkpoint (``--resume``, or a retry after a
crash with ``--max-failures``) continues exactly where the checkpoint left off; epochs after it are
trained again, to the same results (the checkpoint holds every random state).

A NaN training loss is reported (status "nan") and ends the trial normally: re-running it from its
checkpoint would diverge again, so it is not a crash to retry; the tracker records it as failed. A
checkpoint that cannot be written (the study's storage or the worker's disk full, read-only, over
quota: `deepdiff_study.storage.storage_fault`, or any error copying it to the storage) raises
`deepdiff_study.faults.StorageFault`: the storage failed, not the trial, and the driver stops the
study so that ``--resume`` runs the trial again. Any other exception propagates: Tune records the
trial as errored (and retries it if asked to).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from deepdiff import cpu_kernel, threads
from deepdiff.data import PairData
from deepdiff.device import autocast_dtype, dtype_name, pick_device
from deepdiff.errors import os_error_message
from deepdiff.results import EpochResult
from deepdiff.train import fit
from deepdiff_study.faults import StorageFault
from deepdiff_study.records import Tag, checkpoint_epochs_of, decode_trial_config, pair_of
from deepdiff_study.resume import hand_back
from deepdiff_study.storage import storage_fault

CHECKPOINT_SECONDS = 300.0  # between a trial's checkpoints where it cannot end (the work a crash may cost)

# Pairs already fetched by this worker process (actors are reused between trials): pair -> (ref, data).
_FETCHED: dict[int, tuple[str, PairData]] = {}


def train_trial(config: dict[str, Any], pairs: dict[int, ray.ObjectRef], ended: dict[str, dict] | None = None) -> None:
    """One trial of the study; see the module docstring."""
    quiet_interrupts_in_callbacks()
    recorded = (ended or {}).get(tune.get_context().get_trial_id())
    if recorded is not None:
        hand_back(recorded, tune.report)
        return
    try:
        _train(config, pairs)
    except OSError as err:
        if not storage_fault(err):
            raise
        raise StorageFault(f"on its worker: {_one_line(os_error_message(err))}") from None


def _train(config: dict[str, Any], pairs: dict[int, ray.ObjectRef]) -> None:
    model_cfg, train_cfg = decode_trial_config(config)
    torch.set_num_threads(trial_threads(ray.get_runtime_context().get_assigned_resources()))
    device = pick_device()
    dtype = dtype_name(autocast_dtype(device, train_cfg.precision))  # recorded by the tracker (tag compute_dtype)
    data = _pair(pair_of(config), pairs).to(device)
    workdir = Path(tempfile.mkdtemp(prefix="deepdiff-trial-"))
    try:
        resume_from = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(workdir))
            resume_from = workdir
        stops, saved = checkpoint_epochs_of(config), time.monotonic()
        for result in fit(model_cfg, train_cfg, data, device=device, checkpoint_dir=workdir, resume_from=resume_from):
            metrics = {**result.metrics(), "status": str(result.status), Tag.COMPUTE_DTYPE: dtype}
            if checkpoint_due(result, stops, time.monotonic() - saved):
                report_with_checkpoint(metrics, workdir)
                saved = time.monotonic()
            else:
                tune.report(metrics)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        del data
        if RELEASE_MEMORY:
            release_memory()


def report_with_checkpoint(metrics: dict[str, Any], workdir: Path) -> None:
    """`tune.report` with the checkpoint folder, which Tune copies to the study's storage there and then:
    any error of that copy is the storage failing (`StorageFault`)."""
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(workdir)))
    except OSError as err:
        raise StorageFault(f"copying it to the study's storage: {_one_line(os_error_message(err))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def quiet_interrupts_in_callbacks() -> None:
    """Stop a clean stop from printing a stack trace (in the driver and in trial workers; idempotent).

    Ctrl-C or SIGTERM (the driver), or Tune ending a worker, raises KeyboardInterrupt or SystemExit
    wherever Python happens to be. Inside a weakref or finalizer callback Python cannot raise it, so it
    prints "Exception ignored in ..." with a traceback (Ray forwards a worker's to the driver's console)
    and carries on: an alarming stack for an interruption that is handled anyway. Those two are dropped
    there; every other unraisable exception still goes to the default hook.
    """
    if getattr(sys.unraisablehook, "_deepdiff_quiet", False):
        return
    default = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, SystemExit)):
            default(unraisable)

    hook._deepdiff_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def checkpoint_due(result: EpochResult, stops: frozenset[int], seconds_since_last: float) -> bool:
    """Report this epoch with its checkpoint: the trial may end here (its last epoch, or an ASHA stop
    epoch), or the last checkpoint is `CHECKPOINT_SECONDS` old."""
    return result.status.final or result.epoch in stops or seconds_since_last >= CHECKPOINT_SECONDS


def trial_threads(assigned: dict[str, float]) -> int:
    """torch threads for a trial: `deepdiff.threads`' automatic choice among the CPUs Ray assigned to it,
    as `deepdiff train` makes it: one per assigned CPU that other processes (another job on a shared node)
    leave free, measured over a quarter of a second, at least one. Its OpenMP threads wait passively
    (`WORKER_ENV`)."""
    return threads.decide(0, {}, usable=max(1, int(assigned.get("CPU", 1)))).threads


def release_memory() -> None:
    """Give the memory of a finished trial back to the system.

    Ray reuses a worker process for trial after trial. Each trial allocates and frees models, optimizer
    states and batches of other sizes; glibc keeps the freed pages in its arenas, so a reused worker's
    resident memory grew with every trial (0.5 GB to 6 GB over a 60-trial study). Collecting cycles,
    dropping the Level I kernel's pooled buffers and trimming the heap returns them
    (benchmarks/bench_tune.py measures it).
    """
    global _FROZEN
    gc.collect()
    if not _FROZEN:
        # What survives the first trial (Ray, Tune, torch, MLflow: ~0.5 million objects) lives as long as
        # the worker: frozen, later collections walk only the objects a trial made (0.2 s -> ms a trial).
        gc.freeze()
        _FROZEN = True
    cpu_kernel.release_workspace()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _glibc()
RELEASE_MEMORY = True  # benchmarks/bench_tune.py turns it off to measure the difference
_FROZEN = False  # gc.freeze() done in this worker
# Set in every trial worker (tuner.start_ray's runtime_env). Tune runs each trial in a new thread, and
# glibc gives new threads new malloc arenas (up to 8 per core), each keeping the fragments of the trials
# that used it: a reused worker grew by ~3 MB a trial even with the release above. Two arenas keep it flat.
# OMP_WAIT_POLICY=PASSIVE (`deepdiff.threads.WAIT_POLICY`, read by libgomp when torch loads it): OpenMP
# threads that spin waiting took the CPU time of the working ones on a busy node (x2-3 slower).
WORKER_ENV = {"MALLOC_ARENA_MAX": "2", **threads.WAIT_POLICY}


def _pair(number: int, pairs: dict[int, ray.ObjectRef]) -> PairData:
    ref = pairs[number]
    cached = _FETCHED.get(number)
    if cached is None or cached[0] != ref.hex():
        _FETCHED.clear()  # keep one pair per worker: trials of a grid cell tend to follow each other
        _FETCHED[number] = (ref.hex(), ray.get(ref))
    return _FETCHED[number][1]


def bind(train_fn, pairs: dict[int, ray.ObjectRef], *, cpus: float, gpus: float, ended: dict[str, dict] | None = None):
    """`train_fn` (normally `train_trial`) with the pairs' references bound (put in the object store
    once, however many trials run), the trials that ended before a restart, and its resources."""
    return tune.with_resources(tune.with_parameters(train_fn, pairs=pairs, ended=ended or {}), {"cpu": cpus, "gpu": gpus})
