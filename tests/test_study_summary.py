"""deepdiff_study.summary: the closing lines' commands run as printed, whatever the paths and names hold."""

import dataclasses
import shlex

import pytest
from mlflow.tracking import MlflowClient

from ray_session import write_tiny_grid
from deepdiff_study import summary
from deepdiff_study.grid import load_grid
from deepdiff_study.spec import StudyManifest, StudySpec

HOSTILE = "a study $(touch pwned) 'x'; ls"  # a space, a command substitution, quotes, a separator


@pytest.fixture
def finished(tmp_path):
    """A study's manifest and its MLflow store, both in a folder whose name needs quoting."""
    folder = tmp_path / HOSTILE
    folder.mkdir()
    grid = load_grid(write_tiny_grid(folder))
    spec = StudySpec(grid=grid.source, experiment=HOSTILE).resolved(grid)
    cells = [dataclasses.replace(c, pair=c.pair.synthetic()) for c in grid.grid_cells(spec.pairs, spec.variants,
                                                                                      spec.aux, spec.margins)]
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    MlflowClient(uri).create_experiment(HOSTILE)
    return StudyManifest.of(spec, cells, mlflow_uri=uri), folder


def commands(out: str) -> dict[str, list[str]]:
    """The commands of the closing lines, as a POSIX shell would split them."""
    found = {}
    for line in out.splitlines():
        if line.startswith("Look at it:    mlflow"):
            found["ui"] = shlex.split(line.removeprefix("Look at it:").split("   then open")[0])
        elif line.startswith("Export:"):
            found["export"] = shlex.split(line.removeprefix("Export:"))
        elif line.startswith("warning: the study report was not written"):
            found["report"] = shlex.split(line.split("; try ", 1)[1])
    return found


@pytest.mark.slow
def test_every_printed_command_parses_back_to_its_argv(finished, capsys, tmp_path):
    """The closing lines printed `mlflow ui ...`, the export and the report commands with unquoted paths
    and names: with a space or shell syntax in them they did not run as printed."""
    manifest, folder = finished
    exp_dir = folder / "tune results"
    summary.closing_summary(HOSTILE, manifest, exp_dir, 1.0)
    found = commands(capsys.readouterr().out)
    assert found["ui"] == ["mlflow", "ui", "--backend-store-uri", manifest.mlflow_uri]
    assert found["export"] == ["python", "tune/export_best.py", "--experiment", HOSTILE, "--out", "best_configs",
                               "--mlflow-uri", manifest.mlflow_uri]
    # the study has no grid-cell runs, so its report fails: the line says how to write it again
    assert found["report"] == ["python", "ablations/report.py", "--experiment", HOSTILE, "--out",
                               str(exp_dir / "report"), "--mlflow-uri", manifest.mlflow_uri]
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))
