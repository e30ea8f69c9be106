"""Packaging guards: `import deepdiff` is ours, the study is an installed package (also from a built
wheel, with the grid file inside), console scripts exist, and script folders shadow no dependency."""

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("script, entry, flag", [
    ("deepdiff-ablation", "deepdiff_study.driver:main", "--pairs"),
    ("deepdiff-export", "deepdiff_study.export:main", "--experiment"),
    ("deepdiff-report", "deepdiff_study.report:main", "--experiment"),
])
@pytest.mark.slow
def test_study_console_scripts(script, entry, flag, tmp_path):
    dist = importlib.metadata.distribution("deepdiff-tune")
    assert any(ep.name == script and ep.value == entry for ep in dist.entry_points)
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert flag in out


@pytest.mark.slow
def test_a_built_wheel_holds_the_study_package_and_the_grid_file(tmp_path):
    """Build the wheel, install it into a bare folder and import the study from there (no repo on the path)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("deepdiff_tune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "deepdiff_study/ablations/paper.yaml" in names and "deepdiff_study/records.py" in names
    assert "deepdiff/lstm_kernel.c" in names  # compiled at first use by deepdiff.cpu_kernel
    assert "deepdiff/data/load.py" in names  # subpackages are listed in pyproject.toml one by one
    assert "deepdiff/tracks/build.py" in names  # deepdiff build-pair (the tracks subpackage is listed in pyproject)
    assert "deepdiff_study/report/templates/index.html.j2" in names  # the report page's template
    assert not any(n.startswith(("tune/", "ablations/", "tests/")) for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import deepdiff_study.grid as g, deepdiff_study.driver; "
            "assert str(g.PAPER_GRID).startswith(%r), g.PAPER_GRID; "
            "import deepdiff.cpu_kernel as k; assert k.SOURCE.is_file() and str(k.SOURCE).startswith(%r); "
            "import deepdiff_study.report.page as p; t = p.environment().get_template(p.TEMPLATE); "
            "assert t.filename.startswith(%r), t.filename; "
            "print(len(g.load_grid().grid_cells()))" % (str(target), str(target), str(target)))
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "230", proc.stderr


def test_no_script_module_shadows_a_dependency_or_the_standard_library():
    # `python tune/run_ablation.py` puts tune/ first on sys.path; a tune/ray.py would hide Ray.
    taken = set(sys.stdlib_module_names) | {
        "ray", "optuna", "mlflow", "torch", "numpy", "pandas", "pyarrow", "yaml", "tqdm", "sklearn",
        "deepdiff", "pytest", "search", "matplotlib", "scipy",
    }
    for folder in ("tune", "ablations", "benchmarks"):
        for path in (ROOT / folder).glob("*.py"):
            assert path.stem not in taken, f"{path} shadows the module {path.stem!r}"
