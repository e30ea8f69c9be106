"""deepdiff_study.spec: a StudySpec from values (every bad one a one-line error naming its flag), the preset
under what is set, and the manifest written, read back, and read as the driver wrote it before StudySpec."""

import dataclasses
import json

import pytest

from ray_session import TINY_GRID, write_tiny_grid
from deepdiff.errors import ConfigError
from deepdiff_study import resume
from deepdiff_study.grid import load_grid
from deepdiff_study.schema import RunSizes
from deepdiff_study.spec import StudyManifest, StudySpec

CANNOT = "the study cannot be resumed (restore the file, or start the study again under another --experiment)"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return load_grid(write_tiny_grid(tmp_path_factory.mktemp("grid")))


def test_a_spec_of_nothing_is_the_quick_start():
    spec = StudySpec()
    assert (spec.preset_name, spec.experiment, spec.storage, spec.seed, spec.cpus_per_trial, spec.max_failures) == (
        "quick", "deepdiff-ablation", "tune_results", 0, 1.0, 1)
    assert spec.sizes == RunSizes() and spec.saved_settings_set() == []


def test_the_preset_fills_what_the_spec_leaves_unset(grid):
    quick = StudySpec().resolved(grid)
    assert (quick.preset, quick.pairs, quick.margins) == ("quick", "1", [1])
    assert quick.sizes == RunSizes(samples=2, max_epochs=2, grace_period=1, reduction_factor=2, synthetic_genes=100)
    # pairs given: the paper preset; a size given wins over it, the others are the preset's
    paper = StudySpec(pairs="2", sizes={"samples": 5, "reduction_factor": 3.5}).resolved(grid)
    assert (paper.preset, paper.pairs, paper.margins) == ("paper", "2", [1, 2])
    assert paper.sizes == RunSizes(samples=5, max_epochs=2, grace_period=1, reduction_factor=3.5, synthetic_genes=100)
    named = StudySpec(preset="paper", margins="2").resolved(grid)
    assert (named.preset, named.pairs, named.margins) == ("paper", "all", "2")


def test_a_size_neither_set_nor_in_the_preset_names_the_flag_and_the_preset(tmp_path):
    text = TINY_GRID.replace('quick: {pairs: "1", margins: [1], samples: 2, ', 'quick: {pairs: "1", margins: [1], ')
    assert text != TINY_GRID
    grid = load_grid(write_tiny_grid(tmp_path, text))
    with pytest.raises(ConfigError) as err:
        StudySpec().resolved(grid)
    assert str(err.value) == "--samples None: expected a whole number >= 1 (set it or add it to preset quick)"
    assert StudySpec(sizes={"samples": 3}).resolved(grid).sizes.samples == 3
    with pytest.raises(ConfigError, match=r"^--preset 'huge': not in .*tiny.yaml; expected one of quick, paper$"):
        StudySpec(preset="huge").resolved(grid)


@pytest.mark.parametrize("values, message", [
    ({"sizes": {"samples": 0}}, "--samples 0: expected a whole number >= 1 (set it or add it to preset quick)"),
    ({"pairs": "1", "sizes": {"max_epochs": True}}, "--max-epochs True: expected a whole number >= 1 (set it or add it to preset paper)"),
    ({"preset": "big", "sizes": {"grace_period": -2}}, "--grace-period -2: expected a whole number >= 1 (set it or add it to preset big)"),
    ({"sizes": {"reduction_factor": 1.0}}, "--reduction-factor: expected a finite number > 1, got 1.0"),
    ({"sizes": {"reduction_factor": float("nan")}}, "--reduction-factor: expected a finite number > 1, got nan"),
    ({"sizes": {"synthetic_genes": 10}}, "--synthetic-genes 10: expected 20 to 100000 genes (two genes in every split)"),
    ({"sizes": {"synthetic_genes": 100001}}, "--synthetic-genes 100001: expected 20 to 100000 genes"),
    ({"sizes": {"synthetic_genes": 0}}, "--synthetic-genes 0: expected a whole number >= 1 (set it or add it to preset quick)"),
    ({"seed": -1}, "--seed -1: expected an integer in [0, 2**32)"),
    ({"seed": 2**32}, "--seed 4294967296: expected an integer in [0, 2**32)"),
    ({"experiment": "a/b"}, "--experiment 'a/b': expected a study name that is also a folder name (no '/', not empty, "
                            "'.' or '..', no surrounding spaces), e.g. deepdiff-ablation-2"),
    ({"experiment": " x"}, "--experiment ' x': expected a study name that is also a folder name (no '/', not empty, "
                           "'.' or '..', no surrounding spaces), e.g. deepdiff-ablation-2"),
    ({"storage": "  "}, "--storage '  ': expected a folder or a URI such as s3://bucket/prefix"),
    ({"address": "host"}, "--address 'host': expected auto, HOST:PORT or ray://HOST:PORT of a Ray cluster's head"),
    ({"address": "ray://h:99999"}, "--address 'ray://h:99999': expected auto, HOST:PORT or ray://HOST:PORT of a Ray cluster's head"),
    ({"cpus_per_trial": 0.0}, "--cpus-per-trial: expected a finite number > 0, got 0.0"),
    ({"gpus_per_trial": -0.5}, "--gpus-per-trial: expected a finite number >= 0, got -0.5"),
    ({"gpus_per_trial": 2.5}, "--gpus-per-trial 2.5: expected a fraction of one GPU or a whole number of GPUs"),
    ({"max_failures": -1}, "--max-failures: expected a whole number >= 0"),
    ({"wait_timeout": 0.0}, "--wait-timeout: expected a finite number of seconds > 0, got 0.0"),
    ({"precision": "fp8"}, "--precision 'fp8': expected one of auto, float32, bfloat16, float16"),
    ({"pairs": True}, "--pairs True: expected all or a comma-separated list"),
    ({"speed": 3}, "StudySpec: unknown field 'speed'; expected grid, preset, pairs, variants, aux, margins, data, sizes, "
                   "seed, warm_starts, storage, experiment, mlflow_uri, address, cpus_per_trial, gpus_per_trial, max_failures, "
                   "wait_timeout, precision"),
    ({"warm_starts": "yes"}, "--warm-starts 'yes': expected true or false"),
])
def test_every_bad_value_is_one_line_naming_its_flag(values, message):
    with pytest.raises(ConfigError) as err:
        StudySpec(**values)
    assert str(err.value) == message


@pytest.mark.parametrize("values", [{"address": "auto"}, {"address": "ray://10.0.0.1:10001"}, {"gpus_per_trial": 0.25},
                                    {"gpus_per_trial": 2.0}, {"storage": "s3://b/p"}, {"seed": 2**32 - 1},
                                    {"sizes": {"synthetic_genes": 20}}, {"margins": [0.5, 1]}])
def test_good_values_pass(values):
    StudySpec(**values)


def test_the_settings_a_resume_ignores_are_the_study_s_own():
    spec = StudySpec(pairs="1", sizes={"samples": 9}, seed=0, cpus_per_trial=2, address="auto", precision="float32")
    assert spec.saved_settings_set() == ["--pairs", "--samples", "--precision"]  # seed 0 is the default: not set


def test_the_manifest_round_trip_and_back_to_a_spec(tmp_path, grid):
    spec = StudySpec(grid=grid.source, variants="raw_d,aux", aux="regression", seed=7, precision="float32").resolved(grid)
    cells = grid.grid_cells(spec.pairs, spec.variants, spec.aux, spec.margins)
    cells = [dataclasses.replace(c, pair=c.pair.synthetic()) for c in cells]
    manifest = StudyManifest.of(spec, cells, mlflow_uri="sqlite:///m.db")
    path = tmp_path / "s" / resume.MANIFEST
    resume.write_manifest(path, manifest)
    assert json.loads(path.read_text()) == {
        "experiment": "deepdiff-ablation", "mlflow_uri": "sqlite:///m.db", "grid": grid.source, "seed": 7, "data": None,
        "cells": ["p1-raw_d", "p1-aux-regression"], "pairs": [[1, "syn1A", "syn1B", "E123-E003"]],
        "sizes": {"preset": "quick", "samples": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2.0,
                  "synthetic_genes": 100}, "warm_starts": False}
    assert [p.name for p in path.parent.iterdir()] == [resume.MANIFEST]  # no temporary file left
    back = resume.read_manifest(path)
    assert back == manifest
    here = StudySpec(storage=str(tmp_path), address="auto", cpus_per_trial=2.0, max_failures=3, wait_timeout=60,
                     sizes={"samples": 50})
    saved = back.spec(here)
    assert (saved.grid, saved.preset, saved.sizes, saved.seed, saved.data, saved.mlflow_uri) == (
        grid.source, "quick", spec.sizes, 7, None, "sqlite:///m.db")
    assert (saved.storage, saved.address, saved.cpus_per_trial, saved.max_failures, saved.wait_timeout) == (
        str(tmp_path), "auto", 2.0, 3, 60.0)


# Written by the driver before StudySpec (commit c201ec6): json.dumps(manifest, indent=2, sort_keys=True).
BEFORE_STUDYSPEC = """{
  "cells": [
    "p1-raw_d",
    "p1-aux_siamese-regression-m1"
  ],
  "data": "/data/remc",
  "experiment": "old-study",
  "grid": "/repo/ablations/paper.yaml",
  "mlflow_uri": "sqlite:////work/mlruns.db",
  "pairs": [
    [
      1,
      "E123",
      "E003",
      null
    ]
  ],
  "seed": 3,
  "sizes": {
    "grace_period": 10,
    "max_epochs": 90,
    "preset": "paper",
    "reduction_factor": 3,
    "samples": 20,
    "synthetic_genes": 18460
  }
}"""


def test_a_manifest_written_before_studyspec_resumes(tmp_path):
    path = tmp_path / resume.MANIFEST
    path.write_text(BEFORE_STUDYSPEC)
    manifest = resume.read_manifest(path)
    assert manifest.cells == ["p1-raw_d", "p1-aux_siamese-regression-m1"] and manifest.pairs == [(1, "E123", "E003", None)]
    spec = manifest.spec(StudySpec(experiment="old-study", storage=str(tmp_path)))
    assert (spec.grid, spec.preset, spec.seed, spec.data, spec.mlflow_uri, spec.experiment) == (
        "/repo/ablations/paper.yaml", "paper", 3, "/data/remc", "sqlite:////work/mlruns.db", "old-study")
    assert spec.sizes == RunSizes(samples=20, max_epochs=90, grace_period=10, reduction_factor=3.0, synthetic_genes=18460)


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.pop("grid"), "field grid is missing; expected the grid file's path"),
    (lambda m: m.update(seed=-1), "field seed: expected an integer in [0, 2**32), got -1"),
    (lambda m: m.update(data=""), "field data: expected the data folder or null (synthetic pairs), got ''"),
    (lambda m: m.update(cells=[]), "field cells: expected a list of grid cell names, got []"),
    (lambda m: m.update(pairs=[[1, "a", "b"]]), "field pairs: expected a list of [number, epigenome A, epigenome B, "
                                               "imitates], got [[1, 'a', 'b']]"),
    (lambda m: m["sizes"].pop("samples"), "field sizes.samples: expected an integer >= 1, got None"),
    (lambda m: m["sizes"].update(max_epochs=1.5), "field sizes.max_epochs: expected an integer >= 1, got 1.5"),
    (lambda m: m["sizes"].update(reduction_factor=True), "field sizes.reduction_factor: expected a number > 1, got True"),
    (lambda m: m.update(sizes=[]), "field sizes: expected the run sizes, got []"),
    (lambda m: m.clear(), "field experiment is missing; expected a study name"),
])
def test_a_damaged_manifest_is_one_line_naming_the_field(tmp_path, damage, message):
    manifest = json.loads(BEFORE_STUDYSPEC)
    damage(manifest)
    path = tmp_path / resume.MANIFEST
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError) as err:
        resume.read_manifest(path)
    assert str(err.value) == f"{path}: {message}; {CANNOT}"


def test_a_manifest_that_is_not_an_object_or_not_json(tmp_path):
    path = tmp_path / resume.MANIFEST
    path.write_text("[]")
    with pytest.raises(ConfigError) as err:
        resume.read_manifest(path)
    assert str(err.value) == f"{path}: expected a JSON object (a study manifest); {CANNOT}"
    path.write_text("{")
    with pytest.raises(ConfigError, match=r"unreadable study manifest \(JSONDecodeError\)"):
        resume.read_manifest(path)


def test_the_package_exports_the_spec_and_run():
    import deepdiff_study
    from deepdiff_study import study

    assert deepdiff_study.StudySpec is StudySpec and deepdiff_study.RunSizes is RunSizes
    assert deepdiff_study.run is study.run and deepdiff_study.dry_run is study.dry_run
    with pytest.raises(AttributeError):
        deepdiff_study.nothing_here  # noqa: B018
