"""deepdiff_study.calibrate without Ray: packing, epochs per trial under ASHA, the study's gene count,
the estimate's arithmetic. The calibration itself runs on a local multi-node cluster in
tests/test_cluster_local.py."""

import io
import re

import pytest

from ray_session import write_tiny_grid
from deepdiff.synthetic import write_synthetic_pair
from deepdiff_study import calibrate
from deepdiff_study.grid import load_grid
from deepdiff_study.plan import plan_grid_cells
from deepdiff_study.schema import RunSizes


def test_trials_at_once_is_bounded_by_gpus_and_cpus_per_node():
    g5 = {"CPU": 48.0, "GPU": 4.0}
    head = {"memory": 1.0}  # cluster.yaml's head: no CPU for trials
    assert calibrate.trials_at_once([head, g5, g5], cpus=1, gpus=0.25) == [0, 16, 16]
    assert calibrate.trials_at_once([g5], cpus=4, gpus=0.25) == [12]  # CPUs bind first
    assert calibrate.trials_at_once([{"CPU": 2.0}], cpus=1, gpus=0) == [2]
    assert calibrate.trials_at_once([{"CPU": 2.0, "GPU": 1.0}], cpus=0.25, gpus=0.3) == [3]


def test_epochs_per_trial_with_ideal_asha():
    most, pruned = calibrate.epochs_per_trial(RunSizes(samples=20, max_epochs=90, grace_period=10, reduction_factor=3.0))  # rungs 10, 30; 90
    assert most == 90 and pruned == pytest.approx(10 + 20 / 3 + 60 / 9)
    assert calibrate.epochs_per_trial(RunSizes(samples=4, max_epochs=5, grace_period=5, reduction_factor=2.0)) == (5.0, 5.0)  # no rung: no pruning


def test_study_genes_from_the_training_file(tmp_path):
    grid = load_grid(write_tiny_grid(tmp_path))
    plans = plan_grid_cells(grid, grid.grid_cells("1", "raw_d", None, None), RunSizes(samples=1, max_epochs=1, grace_period=1, reduction_factor=2.0))
    assert calibrate.study_genes(None, plans, 321) == 321
    write_synthetic_pair(tmp_path / "data", genes=200, seed=0, cell_a="E123", cell_b="E003")
    assert calibrate.study_genes(str(tmp_path / "data"), plans, 321) == pytest.approx(200, rel=0.05)


def test_the_estimate_is_the_measured_epoch_time_scaled(tmp_path):
    grid = load_grid(write_tiny_grid(tmp_path))
    settings = RunSizes(samples=4, max_epochs=8, grace_period=2, reduction_factor=2.0)
    plans = plan_grid_cells(grid, grid.grid_cells("1,2", "raw_d,aux", "regression", None), settings)
    measured = {"raw_d": calibrate.Measurement("raw_d", 1.5, 1000, "cuda", ("0",)),
                "aux": calibrate.Measurement("aux", 3.0, 1000, "cuda", ("1",))}
    out = io.StringIO()
    calibrate.print_estimate(plans, settings, measured, genes=4000, nodes=[{"CPU": 8.0, "GPU": 1.0}] * 2,
                             cpus=1, gpus=0.25, stream=out)
    text = out.getvalue()
    most, pruned = calibrate.epochs_per_trial(settings)  # 8 and 2 + 2/2 + 4/4 = 4
    # per variant: 2 grid cells x 4 trials x epochs x s/epoch x (4000/1000 genes) x 0.25 GPU
    hours = {v: 2 * 4 * 4 * m.seconds_per_epoch * 0.25 / 3600 for v, m in measured.items()}
    assert re.search(rf"raw_d\s+cuda \(0\)\s+6\s+2\s+{hours['raw_d'] * most:.4g}\s+{hours['raw_d'] * pruned:.4g}", text), text
    total = sum(hours.values())
    assert f"estimate: {total * pruned:.4g} GPU-hours" in text and f"at most {total * most:.4g} GPU-hours" in text
    assert "8 trial(s) at once (4, 4 per node)" in text
    assert f"about {total * pruned / 0.25 / 8:.3g} h" in text
