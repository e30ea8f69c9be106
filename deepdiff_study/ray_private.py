"""Every use of a Ray or Optuna internal, in one marked block.

Nothing else in deepdiff_study reaches behind a public API. Each entry here has a test in
tests/test_ray_private.py that fails loudly when the installed version changes it, and pyproject.toml
bounds ray and optuna to the minor versions those tests ran against (ray 2.60, optuna 5.0).
"""

from __future__ import annotations

import os
from typing import Any

# ---- BEGIN private Ray/Optuna uses ---------------------------------------------------------------------

# Environment switches read by Ray Tune at start-up (not documented as a stable API).
TUNE_ENV = {
    # Tune's legacy output engine honours verbose=0 (silent); the study prints its own progress lines.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's default loggers write TensorBoard files; the study adds the JSON/CSV loggers it needs.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
TUNE_ENV_DEFAULTS = {
    # Read by the trial workers: how long a reused worker waits for the last trial's thread to end (up
    # to one epoch after ASHA stopped it, plus its clean-up). Past Tune's default of 2 s the next trial
    # is marked ERROR before it starts and no callback hears of it: it vanished from the study.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "1800",
}
# The switches above that the trial workers read: handed to every worker of a cluster (runtime_env).
WORKER_ENV = ("TUNE_FUNCTION_THREAD_TIMEOUT_S",)

# Loggers of Tune's internal modules, quieted: Tuner.restore warns about trials that had not reported
# yet (ERROR and above only), and a failing trial's traceback is in its error.txt and in MLflow.
TUNE_INTERNAL_LOGGERS = {
    "ray.tune.analysis.experiment_analysis": "ERROR",
    "ray.tune.execution.tune_controller": "CRITICAL",
    # A new local cluster turns token authentication on (Ray's default) and warns that it did, at every
    # start. Setting RAY_AUTH_MODE=token after `import ray` does not silence it (Ray's C++ config is read
    # at import), so the one warning is quieted here; Ray's default itself is kept.
    "ray._private.authentication.authentication_token_setup": "ERROR",
}


def asha_rungs(asha: Any) -> list[dict[str, float]]:
    """The values an `AsyncHyperBandScheduler` recorded per rung (lowest milestone first), for inspection.

    ASHA keeps them in its first bracket's ``_rungs``: a list of (milestone, {trial_id: value}), highest
    milestone first.
    """
    return [dict(recorded) for _, recorded in reversed(asha._brackets[0]._rungs)]


def asha_milestones(asha: Any) -> list[float]:
    """The epochs at which an `AsyncHyperBandScheduler` compares trials (lowest first), for inspection."""
    return [milestone for milestone, _ in reversed(asha._brackets[0]._rungs)]


def trial_folder(trial: Any) -> tuple[Any, str] | None:
    """(pyarrow filesystem, path) of a Tune trial's folder in the study's storage (local or a URI).

    A Tune trial's ``storage`` is its `StorageContext`: the storage filesystem and the trial's path on it.
    None for an object without one.
    """
    storage = getattr(trial, "storage", None)
    if storage is None:
        return None
    return storage.storage_filesystem, storage.trial_fs_path


def read_trial_file(trial: Any, name: str) -> str | None:
    """The text of file `name` in a trial's folder in the study's storage (local or a URI), None if absent."""
    import pyarrow.fs

    folder = trial_folder(trial)
    if folder is None:
        return None
    fs, path = folder[0], f"{folder[1]}/{name}"
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return fh.read().decode(errors="replace")


def optuna_study(search: Any) -> Any:
    """The `optuna.Study` behind an `OptunaSearch` (``_ot_study``), for inspection."""
    return search._ot_study

# ---- END private Ray/Optuna uses -----------------------------------------------------------------------


def apply_tune_env() -> None:
    """Set the environment switches above (before Ray Tune starts; a local Ray's workers inherit them)."""
    os.environ.update(TUNE_ENV)
    for key, value in TUNE_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def worker_env() -> dict[str, str]:
    """The switches the trial workers read, as set here: for ``ray.init(runtime_env={"env_vars": ...})``."""
    return {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
