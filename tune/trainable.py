"""The Ray Tune trainable: a plain function around `deepdiff.train.fit`.

``train_cell(config, pairs=...)``: `config` is one trial's flat config (ModelConfig + TrainConfig fields
plus ``cell`` and ``pair``); `pairs` maps pair number -> an object-store reference to that pair's
`PairData` (bound once with `tune.with_parameters`, so tensors travel through the object store, never by
re-reading files on a worker). Each epoch's `EpochResult` is reported with its checkpoint directory
(``last.pt`` + ``best.pt``); a trial started again from a Tune checkpoint (``--resume``, or a retry after
a crash with ``--max-failures``) continues exactly where the checkpoint left off.

A NaN training loss is reported (``status="nan"``) and ends the trial normally: re-running it from its
checkpoint would diverge again, so it is not a crash to retry; the tracker records it as failed. Any
other exception propagates: Tune records the trial as errored (and retries it if asked to).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from deepdiff.config import configs_from_flat
from deepdiff.data import PairData
from deepdiff.device import pick_device
from deepdiff.train import STATUS_NAN, fit

from study import META_KEYS

# Pairs already fetched by this worker process (actors are reused between trials): pair -> (ref, data).
_FETCHED: dict[int, tuple[str, PairData]] = {}


class TrialFailedBefore(RuntimeError):
    """A resumed trial that had already failed before the driver was killed."""


def train_cell(config: dict[str, Any], pairs: dict[int, ray.ObjectRef], ended: dict[str, dict] | None = None) -> None:
    """One trial. `ended`: trials that ended before a restart (tracking.ended_trials); see `_hand_back`."""
    recorded = (ended or {}).get(tune.get_context().get_trial_id())
    if recorded is not None:
        _hand_back(recorded)
        return
    model_cfg, train_cfg = configs_from_flat({k: v for k, v in config.items() if k not in META_KEYS}, source="trial config")
    device = pick_device()
    data = _pair(config["pair"], pairs).to(device)
    workdir = Path(tempfile.mkdtemp(prefix="deepdiff-trial-"))
    try:
        resume_from = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            checkpoint.to_directory(str(workdir))
            resume_from = workdir
        for result in fit(model_cfg, train_cfg, data, device=device, checkpoint_dir=workdir, resume_from=resume_from):
            tune.report({**result.metrics(), "status": result.status}, checkpoint=tune.Checkpoint.from_directory(str(workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _hand_back(recorded: dict[str, Any]) -> None:
    """Return what a trial had already produced before the driver was killed, without training.

    Tune saves its state every few seconds, MLflow gets every epoch and every ending at once: a
    trial that ended in the last seconds before a SIGKILL comes back from Tune as unfinished. Running
    it again from its older checkpoint could end differently (ASHA's rungs are rebuilt, not the same),
    so the recorded ending is handed back: the last result for completed, pruned and diverged trials,
    the same failure for trials that raised.
    """
    if recorded["status"] == "failed" and recorded["last"].get("status") != STATUS_NAN:
        raise TrialFailedBefore(f"failed before the restart: {recorded['reason']}")
    tune.report(recorded["last"])


def _pair(number: int, pairs: dict[int, ray.ObjectRef]) -> PairData:
    ref = pairs[number]
    cached = _FETCHED.get(number)
    if cached is None or cached[0] != ref.hex():
        _FETCHED.clear()  # keep one pair per worker: trials of a cell tend to follow each other
        _FETCHED[number] = (ref.hex(), ray.get(ref))
    return _FETCHED[number][1]


def bind(train_fn, pairs: dict[int, ray.ObjectRef], *, cpus: float, gpus: float, ended: dict[str, dict] | None = None):
    """`train_fn` (normally `train_cell`) with the pairs' references bound (put in the object store
    once, however many trials run), the trials that ended before a restart, and its resources."""
    return tune.with_resources(tune.with_parameters(train_fn, pairs=pairs, ended=ended or {}), {"cpu": cpus, "gpu": gpus})
