"""Shared by the study tests: one local Ray per pytest session, tiny grids, paths of the entry scripts.

The study code is the installed package `deepdiff_study`: nothing here edits sys.path, and Ray workers
get no PYTHONPATH. Test modules that hand Ray a trial function of their own register themselves with
`by_value` so that workers receive the function's code instead of importing the test module.
Import the fixture into a test module with ``from ray_session import ray_session  # noqa: F401``; Ray
starts once per session however many modules use it (and is shut down at the end of the session).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TUNE_DIR = REPO_ROOT / "tune"  # the entry scripts the README names

# Small enough to train a trial in a second or two on one CPU.
TINY_GRID = """
pairs:
  1: [E123, E003]
  2: [E116, E003]
variants: [raw_d, raw_c, raw, aux, raw_aux, aux_siamese, raw_aux_siamese]
aux_modes: [regression, classification]
margins: [1, 2]
published: {lr: 1.0e-3, batch_size: 32, dropout: 0.1, level1_hidden: 4, level2_hidden: 4, input_transform: raw, aux_weight: 1.0, gamma: 4.0}
search_space:
  lr:              {kind: log_uniform, low: 1.0e-4, high: 3.0e-2}
  batch_size:      {kind: choice, values: [16, 32]}
  dropout:         {kind: uniform, low: 0.0, high: 0.5}
  level1_hidden:   {kind: choice, values: [4]}
  level2_hidden:   {kind: choice, values: [4]}
  input_transform: {kind: choice, values: [raw, log1p]}
  aux_weight:      {kind: log_uniform, low: 0.1, high: 10.0, applies_to: aux}
  gamma:           {kind: log_uniform, low: 0.5, high: 16.0, applies_to: siamese}
presets:
  quick: {pairs: "1", margins: [1], samples: 2, max_epochs: 2, grace_period: 1, reduction_factor: 2, synthetic_genes: 100}
  paper: {pairs: all, margins: [1, 2], samples: 2, max_epochs: 2, grace_period: 1, reduction_factor: 2, synthetic_genes: 100}
"""


def write_tiny_grid(folder: Path, text: str = TINY_GRID) -> Path:
    path = Path(folder) / "tiny.yaml"
    path.write_text(text)
    return path


def read_until(proc, ended: int, log: list[str], seconds: float = 240) -> int:
    """Read the driver's output until `ended` trials have ended (or it exits / time runs out)."""
    seen, deadline = 0, time.monotonic() + seconds
    for line in proc.stdout:
        log.append(line)
        seen += "trials ended" in line and not line.lstrip().startswith("...")
        if seen >= ended or time.monotonic() > deadline:
            break
    return seen


def kill_after_trials(command: list[str], ended: int, experiment: str, **popen) -> list[str]:
    """Start a study driver, SIGKILL it once `ended` trials have ended (and before the study finished);
    returns what it printed."""
    import signal
    import subprocess

    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    log: list[str] = []
    seen = read_until(driver, ended, log)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert seen >= ended, "".join(log)
    assert not any(line.startswith(f"study {experiment!r}") for line in log), "the study finished before the kill"
    return log


def by_value(module_name: str) -> None:
    """Ship the functions of a test module to Ray workers by value (workers do not import tests/)."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module_name])


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs, started once for the whole pytest session."""
    import ray

    if not ray.is_initialized():
        from deepdiff_study.driver import quiet_logs

        quiet_logs()  # as the driver does before it starts Ray
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
            logging_config=ray.LoggingConfig(log_level="WARNING"),
        )
    yield ray
    # Ray is shut down by its own atexit hook at the end of the session (other modules may still use it).
