"""Mixed precision: the grouped Level I recurrence (the GPU's) under autocast, the trainer's precision
option, its config and checkpoint handling. No GPU here: CPU autocast (bfloat16, float16) stands in
for CUDA's, through the same code; the GPU's speed is left for a GPU to measure.

Tolerances were measured on this project's CPU (AMD EPYC, torch 2.13.0+cpu) at the published sizes
(raw_d: 5 channels, hidden 32, 200 bins, 8 genes): Level I outputs under bfloat16 at most 4.2e-4 from
float32 (embeddings up to 0.2, attention 1.2e-6), every gradient at most 6.4e-3 of its largest entry;
float16 (3 more mantissa bits) 4.7e-5 and 5.2e-4. The asserted bounds are those x ~3-5.
"""

import dataclasses
import math
import re

import pytest
import torch

import deepdiff.model
from deepdiff import grouped_lstm
from deepdiff.cli import build_parser, resolve_train_config
from deepdiff.config import PRECISIONS, ModelConfig, TrainConfig, configs_from_flat, load_config, save_config
from deepdiff.device import autocast_dtype, needs_loss_scaling
from deepdiff.errors import ConfigError
from deepdiff.grouped_lstm import grouped_level1, stack_lstm_weights
from deepdiff.model import DeepDiff
from deepdiff.train import COMPUTE_DTYPE, GRAD_SCALER, LAST_CHECKPOINT, fit, load_model

TINY = dict(level1_hidden=8, level2_hidden=4)
CPU = torch.device("cpu")
# (outputs: absolute, gradients: relative to the gradient's largest entry), see the module docstring.
TOLERANCE = {torch.bfloat16: (2e-3, 2e-2), torch.float16: (2e-4, 2.5e-3)}


def _counts(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(shape, generator=gen) * 4, generator=gen)


def _level1_outputs_and_grads(encoder, x, dtype):
    """Grouped Level I's (m, alpha) under CPU autocast to `dtype` (None: none), and the gradients of a
    fixed random weighted sum of both with respect to x and every parameter of `encoder`."""
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        m, alpha = grouped_level1(x, stack_lstm_weights(encoder.lstms), encoder.context)
    gen = torch.Generator().manual_seed(2)
    loss = (m * torch.randn(m.shape, generator=gen)).sum() + (alpha * torch.randn(alpha.shape, generator=gen)).sum()
    return (m, alpha), torch.autograd.grad(loss, [x, *encoder.parameters()])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_grouped_level1_under_autocast_stays_close_to_float32(dtype):
    torch.manual_seed(0)
    encoder = DeepDiff.from_config(ModelConfig(variant="raw_d")).level1["diff"]  # published sizes
    x = _counts((8, 5, 200), 1)
    ref_out, ref_grads = _level1_outputs_and_grads(encoder, x, None)
    kept = []  # the dtypes of what the recurrence keeps: states, and what the backward reads
    recurrence = grouped_lstm._recurrence

    def spy(seq, w, keep, low=None):
        z, saved = recurrence(seq, w, keep, low)
        kept.append((low, [t.dtype for t in (z, *saved)]))
        return z, saved

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grouped_lstm, "_recurrence", spy)
        out, grads = _level1_outputs_and_grads(encoder, x, dtype)
    assert kept == [(dtype, [torch.float32] * 4)]
    out_tol, grad_tol = TOLERANCE[dtype]
    for a, b in zip(out, ref_out, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=out_tol, rtol=0)
    assert (out[0] - ref_out[0]).abs().max() > 0  # the products did run in low precision
    names = ["x", *(name for name, _ in encoder.named_parameters())]
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        assert a.dtype == torch.float32, name
        assert (a - b).abs().max() <= grad_tol * b.abs().max(), f"gradient of {name}"


def test_the_grouped_time_loops_read_nothing_back_to_the_host(monkeypatch):
    """No .item(), bool(tensor), float(tensor) ... in forward or backward under autocast: on a GPU each
    would be a sync, and a data-dependent branch would break CUDA-graph capture. (A CPU can only catch
    the Python-level reads; CUDA's own would need torch.cuda.set_sync_debug_mode on a GPU.)"""
    encoder = DeepDiff.from_config(ModelConfig(variant="raw_d", **TINY, n_bins=12)).level1["diff"]
    x = _counts((3, 5, 12), 1)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a tensor was read back to the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for dtype in (None, torch.bfloat16):
        _level1_outputs_and_grads(encoder, x, dtype)
    with pytest.raises(AssertionError, match="read back"):  # the guard itself works
        bool(x.sum() > 0)


def _grouped_precisions(monkeypatch) -> list[tuple[bool, torch.dtype | None]]:
    """Force Level I onto the grouped torch path (as a GPU runs it) and record, per recurrence, whether
    it kept buffers for a backward (training) and the dtype of its products."""
    seen = []
    recurrence = grouped_lstm._recurrence

    def spy(seq, w, keep, low=None):
        seen.append((keep, low))
        return recurrence(seq, w, keep, low)

    monkeypatch.setattr(deepdiff.model, "level1_impl", lambda device, batch: "grouped")
    monkeypatch.setattr(grouped_lstm, "_recurrence", spy)
    return seen


def _fit(pair, precision, **train):
    model_cfg = ModelConfig(variant="raw_d", **TINY)
    train_cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=5, precision=precision, **train)
    return list(fit(model_cfg, train_cfg, pair, device="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("precision, dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_mixed_precision_training_keeps_the_valid_pcc(small_synthetic_pair, monkeypatch, precision, dtype):
    """fit() in low precision on CPU through the grouped path learns the planted signal as float32 does,
    trains in `dtype` and evaluates in float32. Measured (this seed, 4 epochs), last / best valid PCC:
    float32 0.9475 / 0.9607, bfloat16 0.9475 / 0.9606, float16 0.9454 / 0.9544 (float16's first epoch
    lags, 0.81 against 0.96: 3 of its 5 steps overflow at the initial loss scale and are skipped)."""
    seen = _grouped_precisions(monkeypatch)
    reference = _fit(small_synthetic_pair, "float32")
    assert set(seen) == {(True, None), (False, None)}
    seen.clear()
    mixed = _fit(small_synthetic_pair, precision)
    assert set(seen) == {(True, dtype), (False, None)}  # training steps in dtype, evaluation float32
    assert [r.status for r in mixed] == [r.status for r in reference]
    assert all(math.isfinite(r.train_loss) for r in mixed) and mixed[-1].best_valid_pcc > 0.9
    assert mixed[-1].valid_pcc == pytest.approx(reference[-1].valid_pcc, abs=0.01)
    assert mixed[-1].best_valid_pcc == pytest.approx(reference[-1].best_valid_pcc, abs=0.02)
    assert [r.valid_pcc for r in mixed] != [r.valid_pcc for r in reference]  # not float32 under another name


@pytest.mark.slow
def test_float16_scales_the_loss_and_resumes_with_its_scale(small_synthetic_pair, monkeypatch, tmp_path):
    """float16 trains with a GradScaler: its first steps overflow at the initial scale 2**16 and are
    skipped, the scale falls; last.pt keeps the scale, so a resumed run is the uninterrupted one."""
    _grouped_precisions(monkeypatch)
    model_cfg = ModelConfig(variant="raw_d", **TINY)
    train_cfg = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=3, precision="float16")
    fields = lambda r: {k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"}  # noqa: E731
    straight = [fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path / "a")]
    scale = torch.load(tmp_path / "a" / LAST_CHECKPOINT, weights_only=True)[GRAD_SCALER]["scale"]
    assert 0 < scale < 2.0**16
    interrupted = fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path / "b")
    first = fields(next(interrupted))
    interrupted.close()
    resumed = [fields(r) for r in fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu",
                                       checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b")]
    assert [first] + resumed == straight
    assert torch.load(tmp_path / "b" / LAST_CHECKPOINT, weights_only=True)[GRAD_SCALER]["scale"] == scale


@pytest.mark.parametrize("bad", ["fp16", "half", "bf16", "", None, 16])
def test_a_bad_precision_is_one_clear_config_error(bad):
    message = f"field precision: expected one of auto, float32, bfloat16, float16, got {bad!r}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        TrainConfig(precision=bad)
    with pytest.raises(ConfigError, match="^config: field precision: expected one of auto, float32"):
        configs_from_flat({"precision": bad})


def test_a_bad_precision_in_a_file_or_flag_names_where(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  variant: raw_d\ntrain:\n  precision: half\n")
    with pytest.raises(ConfigError, match=f"^{path}: field precision: expected one of auto, float32, bfloat16, float16, got 'half'$"):
        load_config(path)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", "--variant", "raw_d", "--precision", "half"])
    assert exit_.value.code == 2
    assert "argument --precision: invalid choice: 'half'" in capsys.readouterr().err


def test_the_precision_flag_reaches_the_train_config():
    base = ["train", "--variant", "raw_d", "--data", "d", "--pair", "A", "B"]
    assert resolve_train_config(build_parser().parse_args(base))[1].precision == "auto"
    for precision in PRECISIONS:
        model_cfg, train_cfg, _ = resolve_train_config(build_parser().parse_args(base + ["--precision", precision]))
        assert train_cfg.precision == precision and not hasattr(model_cfg, "precision")  # a training option


def test_auto_is_float32_on_cpu_and_mixed_on_cuda(monkeypatch):
    assert TrainConfig().precision == "auto"
    assert autocast_dtype(CPU) is None and autocast_dtype(CPU, "auto") is None
    assert autocast_dtype(CPU, "float32") is None
    assert autocast_dtype(CPU, "bfloat16") is torch.bfloat16 and autocast_dtype(CPU, "float16") is torch.float16
    cuda = torch.device("cuda")
    for capability, expected in (((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16), ((7, 5), torch.float16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert autocast_dtype(cuda) is expected, capability
        assert autocast_dtype(cuda, "float32") is None
    assert needs_loss_scaling(torch.float16) and not needs_loss_scaling(torch.bfloat16) and not needs_loss_scaling(None)
    with pytest.raises(ConfigError, match="field precision: expected one of"):
        autocast_dtype(CPU, "fp8")


@pytest.mark.slow
def test_configs_and_checkpoints_from_before_the_precision_field_still_load(small_synthetic_pair, tmp_path):
    """A config file or checkpoint without `precision` means the default ("auto", float32 on a CPU, as
    they were trained); resuming one works, also in another precision, and the checkpoints written from
    then on record the dtype their steps computed in."""
    old_config = tmp_path / "old.yaml"
    save_config(old_config, ModelConfig(variant="raw_d"), TrainConfig())
    old_config.write_text("\n".join(line for line in old_config.read_text().splitlines() if "precision" not in line))
    assert load_config(old_config)[1].precision == "auto"

    model_cfg, train_cfg = ModelConfig(variant="raw_d", **TINY), TrainConfig(epochs=1, batch_size=16)
    list(fit(model_cfg, train_cfg, small_synthetic_pair, device="cpu", checkpoint_dir=tmp_path / "run"))
    last = tmp_path / "run" / LAST_CHECKPOINT
    state = torch.load(last, weights_only=True)
    del state["train_config"]["precision"], state[GRAD_SCALER], state[COMPUTE_DTYPE]
    torch.save(state, last)
    assert load_model(last)[2].precision == "auto"
    longer = dataclasses.replace(train_cfg, epochs=2)
    (result,) = fit(model_cfg, longer, small_synthetic_pair, device="cpu", resume_from=last)
    assert result.epoch == 2 and math.isfinite(result.valid_pcc)
    list(fit(model_cfg, dataclasses.replace(longer, precision="bfloat16"), small_synthetic_pair, device="cpu",
             checkpoint_dir=tmp_path / "run", resume_from=last))
    assert torch.load(last, weights_only=True)[COMPUTE_DTYPE] == "bfloat16"


@pytest.mark.slow
def test_a_resume_that_changes_the_compute_dtype_says_so(small_synthetic_dir, tmp_path, capsys):
    """precision=auto resumed on another kind of device, or another --precision, changes what the steps
    compute in: allowed (a float16 GPU's run may go on on a CPU), and said, with the flag that keeps the
    old dtype. last.pt and best.pt record the dtype."""
    from deepdiff.cli import main

    out = tmp_path / "run"
    base = ["train", "--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2", "--variant", "raw_d",
            "--level1-hidden", "4", "--level2-hidden", "3", "--batch-size", "32", "--no-cache", "--out", str(out)]
    assert main([*base, "--epochs", "1", "--precision", "bfloat16"]) == 0
    assert torch.load(out / LAST_CHECKPOINT, weights_only=True)[COMPUTE_DTYPE] == "bfloat16"
    assert torch.load(out / "best.pt", weights_only=True)[COMPUTE_DTYPE] == "bfloat16"
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--resume"]) == 0  # auto: float32 on this CPU
    err = capsys.readouterr().err
    assert (f"note: {out / LAST_CHECKPOINT} trained in bfloat16; it goes on in float32 (precision auto on cpu); "
            "pass --precision bfloat16 to keep bfloat16") in err
    assert torch.load(out / LAST_CHECKPOINT, weights_only=True)[COMPUTE_DTYPE] == "float32"
    assert main([*base, "--epochs", "3", "--resume", "--precision", "float32"]) == 0
    assert "trained in" not in capsys.readouterr().err  # the same dtype: nothing to say


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_lstms_run_on_any_cpu(dtype):
    """The model's nn.LSTMs (Level II, per-channel Level I) under CPU autocast: oneDNN has them in
    bfloat16 / float16 only on CPUs with the instructions (`onednn_lstm_computes` asks once); elsewhere
    the trainer's autocast turns oneDNN off for the forward, and PyTorch's own LSTM runs them. The probe
    answers for the model's own LSTMs: with oneDNN forced on, their forward fails exactly when it says no."""
    from deepdiff.device import autocast, onednn_lstm_computes

    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", **TINY, n_bins=12)).set_level1_impl("per_channel")
    x = _counts((3, 5, 12), 1)
    with autocast(CPU, dtype):
        out = model(x, x)
    out.prediction.float().sum().backward()
    assert out.prediction.isfinite().all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    with torch.autocast("cpu", dtype=dtype):  # oneDNN as torch leaves it (on)
        try:
            model(x, x)
            ran = True
        except RuntimeError as err:
            assert "primitive descriptor" in str(err)
            ran = False
    assert ran == onednn_lstm_computes(dtype)


@pytest.mark.parametrize("has_lstm", [True, False])
def test_autocast_turns_onednn_off_only_where_its_lstm_is_missing(monkeypatch, has_lstm):
    import deepdiff.device as device

    monkeypatch.setattr(device, "onednn_lstm_computes", lambda dtype: has_lstm)
    before = torch.backends.mkldnn.enabled
    with device.autocast(CPU, torch.bfloat16):
        assert torch.backends.mkldnn.enabled == (before and has_lstm)
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_cache_enabled()
    assert torch.backends.mkldnn.enabled == before
    with device.autocast(CPU, torch.bfloat16, cache=False):  # a forward captured in a CUDA graph
        assert not torch.is_autocast_cache_enabled()
    with device.autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.enabled == before
