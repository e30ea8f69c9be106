"""The Ray-free trainer: every variant trains, determinism, resume, NaN handling, model selection,
and the planted synthetic signal is learned (and not learned from shuffled labels)."""

import dataclasses
import math

import pytest
import torch

from deepdiff.config import ModelConfig, TrainConfig
from deepdiff.metrics import pcc
from deepdiff.results import METRIC_NAMES, EpochStatus, diverged
from deepdiff.train import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    fit,
    load_model,
    predict,
    prepare_split,
)
from deepdiff.variants import VARIANTS

TINY = dict(level1_hidden=8, level2_hidden=4)


def _fields(result):
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_on_the_real_sample(sample_pair, variant):
    aux_mode = "classification" if variant in ("aux", "raw_aux_siamese") else "regression"
    results = list(fit(ModelConfig(variant=variant, aux_mode=aux_mode), TrainConfig(epochs=1, batch_size=20), sample_pair, device="cpu"))
    (result,) = results
    assert result.status == EpochStatus.COMPLETED and result.epoch == 1
    assert math.isfinite(result.train_loss) and -1 <= result.valid_pcc <= 1 and result.test_mse > 0
    assert (result.train_aux_loss > 0) == VARIANTS[variant].aux
    assert (result.train_siamese_loss > 0) == VARIANTS[variant].siamese


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_two_epochs_on_synthetic_data(small_synthetic_pair, variant):
    results = list(fit(ModelConfig(variant=variant, **TINY), TrainConfig(epochs=2, batch_size=16), small_synthetic_pair, device="cpu"))
    assert [r.epoch for r in results] == [1, 2]
    assert results[-1].status == EpochStatus.COMPLETED


@pytest.mark.slow
def test_a_fixed_seed_gives_the_same_run_on_cpu(small_synthetic_pair):
    cfg = ModelConfig(variant="aux_siamese", **TINY), TrainConfig(epochs=2, batch_size=16, seed=7)
    first = [_fields(r) for r in fit(*cfg, small_synthetic_pair, device="cpu")]
    second = [_fields(r) for r in fit(*cfg, small_synthetic_pair, device="cpu")]
    assert first == second
    other = [_fields(r) for r in fit(cfg[0], dataclasses.replace(cfg[1], seed=8), small_synthetic_pair, device="cpu")]
    assert other != first


@pytest.mark.slow
def test_resume_mid_run_reaches_the_same_result(small_synthetic_pair, tmp_path):
    model_cfg, train_cfg = ModelConfig(variant="raw_aux_siamese", dropout=0.5, **TINY), TrainConfig(epochs=3, batch_size=16, seed=3)
    straight = [_fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path / "a")]
    interrupted = fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path / "b")
    first = _fields(next(interrupted))
    interrupted.close()  # the process "dies" after epoch 1
    resumed = [_fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu",
                                        checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b")]
    assert [first] + resumed == straight
    assert (tmp_path / "b" / LAST_CHECKPOINT).is_file() and (tmp_path / "b" / BEST_CHECKPOINT).is_file()


def test_resume_refuses_a_changed_config(small_synthetic_pair, tmp_path):
    from deepdiff.errors import ConfigError

    model_cfg, train_cfg = ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=1, batch_size=16)
    list(fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path))
    with pytest.raises(ConfigError, match="field lr is 0.0001 in the checkpoint but 0.01 now"):
        list(fit(model_cfg, dataclasses.replace(train_cfg, lr=0.01, epochs=2), small_synthetic_pair, device="cpu", resume_from=tmp_path))


def test_nan_loss_ends_the_run_with_a_status_not_a_crash(small_synthetic_pair):
    train = small_synthetic_pair.train
    poisoned = dataclasses.replace(train, x_a=train.x_a.clone().index_fill_(0, torch.tensor([0]), float("inf")))
    pair = dataclasses.replace(small_synthetic_pair, train=poisoned)
    results = list(fit(ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=5, batch_size=16), pair, device="cpu"))
    assert len(results) == 1 and results[0].status == EpochStatus.NAN
    assert math.isnan(results[0].train_loss)


def test_best_epoch_is_chosen_by_valid_pcc_and_reports_that_epochs_test_pcc(small_synthetic_pair, tmp_path):
    results = list(fit(ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=4, batch_size=16, lr=3e-3),
                       small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path))
    best = max(results, key=lambda r: r.valid_pcc)
    last = results[-1]
    assert (last.best_epoch, last.best_valid_pcc, last.best_test_pcc) == (best.epoch, best.valid_pcc, best.test_pcc)
    model, model_cfg, train_cfg = load_model(tmp_path / BEST_CHECKPOINT)
    valid = prepare_split(small_synthetic_pair.valid, train_cfg.input_transform, torch.device("cpu"))
    assert pcc(predict(model, valid, 64), valid.targets["diff"]) == pytest.approx(best.valid_pcc, abs=1e-6)


def test_patience_stops_early(small_synthetic_pair):
    results = list(fit(ModelConfig(variant="raw_d", dropout=0.0, **TINY), TrainConfig(epochs=30, batch_size=16, lr=1e-12, patience=1),
                       small_synthetic_pair, device="cpu"))
    # parameters cannot move at this lr, so valid PCC never improves after epoch 1
    assert results[-1].status == EpochStatus.EARLY_STOPPED and len(results) == 2


def _misaligned(split, seed):
    """Cell B's genes matched to the wrong genes of A (an alignment by row order gone wrong)."""
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return dataclasses.replace(split, x_b=split.x_b[perm])


@pytest.mark.slow
def test_raw_d_learns_the_planted_synthetic_signal_and_not_from_misaligned_genes(synthetic_pair):
    model_cfg, train_cfg = ModelConfig(variant="raw_d", dropout=0.1), TrainConfig(epochs=3, batch_size=32, lr=2e-3)
    learned = list(fit(model_cfg, train_cfg, synthetic_pair, device="cpu"))[-1]
    assert learned.best_test_pcc > 0.5, learned
    # Shuffled labels are no control for PCC: it is scale-free, so even a near-constant model's small
    # input-driven variation correlates with the truth. Misaligned genes remove the information itself.
    broken = dataclasses.replace(synthetic_pair, **{name: _misaligned(synthetic_pair.split(name), i)
                                                    for i, name in enumerate(("train", "valid", "test"))})
    control = list(fit(model_cfg, train_cfg, broken, device="cpu"))[-1]
    assert abs(control.best_test_pcc) < 0.25, control


def test_epoch_metrics_carry_their_own_names(small_synthetic_pair):
    """Loss parts land in the fields named after them: total = diff + aux_weight*aux + gamma*siamese."""
    model_cfg = ModelConfig(variant="raw_aux_siamese", **TINY)
    train_cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, aux_weight=0.5, gamma=3.0)
    (result,) = list(fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu"))
    assert tuple(result.metrics()) == METRIC_NAMES and "status" not in METRIC_NAMES
    assert result.train_aux_loss > 0 and result.train_siamese_loss > 0
    combined = result.train_diff_loss + 0.5 * result.train_aux_loss + 3.0 * result.train_siamese_loss
    assert result.train_loss == pytest.approx(combined, rel=1e-5)
    assert isinstance(result.status, EpochStatus) and str(result.status) == "completed"


def test_model_shape_must_match_the_data(small_synthetic_pair):
    from deepdiff.errors import ConfigError

    with pytest.raises(ConfigError, match="field n_bins: the model expects 100 but the data of Cell1-Cell2 has 200"):
        next(fit(ModelConfig(variant="raw_d", n_bins=100, **TINY), TrainConfig(epochs=1), small_synthetic_pair, device="cpu"))


def test_non_finite_predictions_end_the_run_as_diverged(small_synthetic_pair, tmp_path):
    # The training loss stays finite; the valid split's inputs are not, so its predictions are NaN.
    valid = small_synthetic_pair.valid
    poisoned = dataclasses.replace(valid, x_b=valid.x_b.clone().index_fill_(0, torch.tensor([0]), float("nan")))
    pair = dataclasses.replace(small_synthetic_pair, valid=poisoned)
    results = list(fit(ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=5, batch_size=16), pair, device="cpu",
                       checkpoint_dir=tmp_path))
    assert [r.status for r in results] == [EpochStatus.DIVERGED] and results[0].status.final
    assert diverged(EpochStatus("diverged")) and diverged("nan") and not diverged(EpochStatus.COMPLETED)
    assert math.isfinite(results[0].train_loss) and math.isnan(results[0].valid_pcc)
    assert (results[0].best_epoch, results[0].best_valid_pcc) == (0, -math.inf)  # nothing to report
    assert not (tmp_path / LAST_CHECKPOINT).exists() and not (tmp_path / BEST_CHECKPOINT).exists()


def test_a_split_without_a_pcc_is_refused_before_training(small_synthetic_pair):
    from deepdiff.errors import DataError

    pair = dataclasses.replace(small_synthetic_pair, valid=small_synthetic_pair.valid.subset([0]))
    with pytest.raises(DataError, match="^pair Cell1-Cell2: split valid has 1 gene"):
        next(fit(ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=1), pair, device="cpu"))


def test_cuda_graphs_are_refused_without_cuda(small_synthetic_pair, tmp_path):
    """The graphed steps need a CUDA device (benchmarks/gpu_check.py part 3 runs them on one); asked on a
    CPU, the run stops before anything is built or written, with one line."""
    from deepdiff.errors import ConfigError

    runs = fit(ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=1, batch_size=16), small_synthetic_pair,
               device="cpu", checkpoint_dir=tmp_path / "run", cuda_graphs=True)
    with pytest.raises(ConfigError, match="^cuda_graphs: CUDA graphs need a CUDA device, this run trains on cpu$"):
        next(runs)
    assert not (tmp_path / "run").exists()


def test_a_resume_keeps_this_devices_optimizer_flags(small_synthetic_pair, tmp_path):
    """A checkpoint of a run whose Adam was capturable (CUDA graphs on a GPU) resumes on a CPU, where a
    capturable Adam refuses to step: the flags of how Adam runs are the resuming process's own, and the
    resumed run is the uninterrupted one."""
    from deepdiff.train import OPTIMIZER_RUNTIME

    model_cfg, train_cfg = ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=2, batch_size=16, seed=4)
    straight = [_fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu")]
    first = fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path)
    epoch1 = _fields(next(first))
    first.close()
    last = tmp_path / LAST_CHECKPOINT
    state = torch.load(last, weights_only=True)
    assert set(OPTIMIZER_RUNTIME) <= set(state["optimizer"]["param_groups"][0])
    for group in state["optimizer"]["param_groups"]:
        group.update(capturable=True, fused=False)  # what a graphed run on a GPU (or another torch) saved
    torch.save(state, last)
    resumed = [_fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", resume_from=last)]
    assert [epoch1] + resumed == straight
