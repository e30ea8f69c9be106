"""Shared fixtures: the real sample pair (never copied into the repo) and synthetic pairs.

`missing`: a test that cannot run here for want of something the machine lacks (the real data beside
the repository, a C compiler) is skipped on a developer's machine but FAILS under ``CI=true``
(`.ci/run` sets it), where those things are part of the contract.
"""

import os
from pathlib import Path

import pytest

from deepdiff.data import load_pair
from deepdiff.synthetic import write_synthetic_pair

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE_DIR = SHARED_DATA / "deepdiffchrome-sample"


def missing(what: str) -> None:
    """Skip the test for want of `what`, or fail it under CI=true (where nothing may be missing)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: required here, not skipped)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        missing(f"real sample data not found at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_pair(sample_dir):
    """DeepDiffChrome's sample: Cell1 = E123 (K562), Cell2 = E003 (H1); 200 genes per split."""
    return load_pair(sample_dir, "Cell1", "Cell2")


@pytest.fixture(scope="session")
def small_synthetic_dir(tmp_path_factory) -> Path:
    """~120 synthetic genes with the strong planted signal: for fast training tests."""
    out = tmp_path_factory.mktemp("small_synthetic")
    write_synthetic_pair(out, genes=120, seed=1, signal="easy")
    return out


@pytest.fixture(scope="session")
def small_synthetic_pair(small_synthetic_dir):
    return load_pair(small_synthetic_dir, "Cell1", "Cell2")


@pytest.fixture(scope="session")
def synthetic_pair(tmp_path_factory):
    """2000 genes with the strong planted signal (`deepdiff synth --genes 2000 --seed 0 --signal easy`)."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic_pair(out, genes=2000, seed=0, signal="easy")
    return load_pair(out, "Cell1", "Cell2")


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on a loaded 2-core machine two threads were seen 20-90x slower
    than one (an in-process `deepdiff evaluate` of a tiny model: 65 s instead of 0.7 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
