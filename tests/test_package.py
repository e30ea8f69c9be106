"""Packaging guards: `import deepdiff` is ours, and script folders shadow no dependency."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import deepdiff

ROOT = Path(__file__).resolve().parents[1]


def test_import_deepdiff_is_this_project_not_pypis_deepdiff():
    assert deepdiff.DISTRIBUTION == "deepdiff-tune"
    assert Path(deepdiff.__file__).resolve().parent == ROOT / "deepdiff"
    dist = importlib.metadata.distribution("deepdiff-tune")
    assert any(ep.name == "deepdiff" and ep.value == "deepdiff.cli:main" for ep in dist.entry_points)
    assert not hasattr(deepdiff, "DeepDiff")  # the object-diff library's main class


def test_console_script_runs():
    out = subprocess.run(["deepdiff", "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in out and "synth" in out and "describe" in out


def test_no_script_module_shadows_a_dependency_or_the_standard_library():
    # `python tune/run_ablation.py` puts tune/ first on sys.path; a tune/ray.py would hide Ray.
    taken = set(sys.stdlib_module_names) | {
        "ray", "optuna", "mlflow", "torch", "numpy", "pandas", "pyarrow", "yaml", "tqdm", "sklearn",
        "deepdiff", "pytest", "search", "matplotlib", "scipy",
    }
    for folder in ("tune", "ablations", "benchmarks"):
        for path in (ROOT / folder).glob("*.py"):
            assert path.stem not in taken, f"{path} shadows the module {path.stem!r}"
