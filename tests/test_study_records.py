"""deepdiff_study.records and export: the results layer reads MLflow without Ray, Optuna or torch, and
the trial-config codec round-trips every config field with its type."""

import subprocess
import sys

import pytest

from deepdiff.config import AUX_FIELDS, SIAMESE_FIELDS, ModelConfig, TrainConfig, flat_config
from deepdiff_study.records import (
    META_KEYS,
    MLFLOW_RUN_STATUS,
    TrialStatus,
    compute_dtype_tag,
    decode_params,
    decode_trial_config,
    encode_params,
)

BLOCK = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocked())
"""


@pytest.mark.parametrize("module", ["deepdiff_study.records", "deepdiff_study.export", "deepdiff_study.grid",
                                    "deepdiff_study.plan"])
@pytest.mark.slow
def test_results_layer_imports_without_ray_optuna_or_torch(module):
    code = BLOCK + f"import {module}\nassert not any(m.split('.')[0] in ('ray', 'optuna', 'torch') for m in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_block_really_blocks():
    """Control for the test above: the trainer needs torch, so with torch blocked it cannot import."""
    proc = subprocess.run([sys.executable, "-c", BLOCK + "import deepdiff.train"], capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked in this test" in proc.stderr


def test_export_cli_help_needs_no_ray(tmp_path):
    proc = subprocess.run([sys.executable, "-c", BLOCK + "from deepdiff_study.export import main; main(['--help'])"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--experiment" in proc.stdout, proc.stderr


@pytest.mark.parametrize("variant", ["raw_d", "aux", "aux_siamese", "raw_aux_siamese"])
def test_params_are_the_applicable_fields_and_decode_to_the_same_configs(variant):
    model_cfg = ModelConfig(variant=variant, aux_mode="classification", level1_hidden=8, dropout=0.25)
    train_cfg = TrainConfig(lr=3e-4, batch_size=20, margin=0.5, gamma=2.0, aux_weight=0.3, input_transform="log1p", seed=7)
    config = {**flat_config(model_cfg, train_cfg), **dict(zip(META_KEYS, ("p1-x", 1)))}
    params = encode_params(config)
    assert all(isinstance(v, str) for v in params.values())
    assert (set(AUX_FIELDS) <= set(params)) == (variant != "raw_d")
    assert (set(SIAMESE_FIELDS) <= set(params)) == variant.endswith("siamese")
    model_back, train_back = decode_params(params)
    assert decode_trial_config(config) == (model_cfg, train_cfg)
    for name, value in params.items():  # every logged field comes back with its type and value
        back = getattr(model_back, name, None) if hasattr(model_back, name) else getattr(train_back, name)
        original = getattr(model_cfg, name, None) if hasattr(model_cfg, name) else getattr(train_cfg, name)
        assert back == original and type(back) is type(original), name


def test_a_pruned_trial_is_not_shown_as_a_crash():
    assert MLFLOW_RUN_STATUS[TrialStatus.PRUNED] == "FINISHED"
    assert MLFLOW_RUN_STATUS[TrialStatus.FAILED] == "FAILED"
    assert set(MLFLOW_RUN_STATUS) == {s for s in TrialStatus if s.ended}


def test_the_compute_dtype_tag_keeps_what_each_stretch_of_epochs_computed_in():
    assert compute_dtype_tag(None, "float32", 1) == "float32"
    assert compute_dtype_tag("float32", "float32", 5) == "float32"  # nothing new: the same tag
    moved = compute_dtype_tag("float16", "bfloat16", 13)  # resumed on a newer GPU under precision=auto
    assert moved == "float16, then bfloat16 from epoch 13"
    assert compute_dtype_tag(moved, "bfloat16", 14) == moved
    assert compute_dtype_tag(moved, "float32", 20) == "float16, then bfloat16 from epoch 13, then float32 from epoch 20"


def test_the_status_names_are_mlflow_s_own():
    from mlflow.entities import RunStatus as MlflowRunStatus

    from deepdiff_study.records import RunStatus

    known = {MlflowRunStatus.to_string(s) for s in MlflowRunStatus.all_status()}
    assert {s.value for s in RunStatus} <= known
    assert all(MlflowRunStatus.from_string(s) == getattr(MlflowRunStatus, s.name) for s in RunStatus)


def test_grid_cell_tags_name_the_cell_types_where_known_and_the_search_space_as_json(tmp_path):
    import json

    from ray_session import write_tiny_grid
    from deepdiff_study.grid import load_grid
    from deepdiff_study.records import Tag, encode_search_space, grid_cell_tags

    grid = load_grid(write_tiny_grid(tmp_path))
    cell = grid.grid_cells("1", "aux", "regression", None)[0]
    assert Tag.CELL_TYPE_A not in grid_cell_tags(cell)
    tags = grid_cell_tags(cell, ("K562", None))
    assert (tags[Tag.CELL_TYPE_A], Tag.CELL_TYPE_B in tags, tags[Tag.GRID_CELL]) == ("K562", False, "p1-aux-regression")
    text = encode_search_space(grid.space_for(cell))
    assert text == json.dumps(json.loads(text), sort_keys=True)
    assert json.loads(text) == [
        {"name": "lr", "kind": "log_uniform", "low": 1e-4, "high": 3e-2},
        {"name": "batch_size", "kind": "choice", "values": [16, 32]},
        {"name": "dropout", "kind": "uniform", "low": 0.0, "high": 0.5},
        {"name": "level1_hidden", "kind": "choice", "values": [4]},
        {"name": "level2_hidden", "kind": "choice", "values": [4]},
        {"name": "input_transform", "kind": "choice", "values": ["raw", "log1p"]},
        {"name": "aux_weight", "kind": "log_uniform", "low": 0.1, "high": 10.0},
    ]


def test_a_best_trial_row_is_the_export_summary_s_columns_and_its_data():
    from deepdiff_study.export import SUMMARY_COLUMNS
    from deepdiff_study.records import BestTrial

    trial = BestTrial("p1-raw_d", "raw_d", 1, "E1-E2", "E1", "E2", None, None, 0.5, 0.4, 3, 4, "completed", 2, "t1",
                      "r1", {"dir": "/d"}, run=object())
    assert list(trial.row()) == [c for c in SUMMARY_COLUMNS if c != "config"][:15] + ["run_id", "data"]
    assert trial == BestTrial(*[getattr(trial, k) for k in trial.row()], run=None)  # the run is not compared
