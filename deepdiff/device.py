"""The one place a device is chosen (CUDA when present, CPU otherwise), and the one place the precision a
training step computes in on that device is decided."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from deepdiff.config import PRECISIONS
from deepdiff.errors import ConfigError

_LOW_PRECISION = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs that compute bfloat16 natively


def pick_device(requested: str | None = "auto") -> torch.device:
    """`auto` (default) -> cuda if available else cpu; `cpu`/`cuda`/`cuda:N` as asked."""
    requested = requested or "auto"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested}: no CUDA device is available here; use --device cpu or auto")
    try:
        return torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"--device {requested!r}: expected one of auto, cpu, cuda, cuda:N") from None


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype autocast gives a training step's matrix products on `device`; None: plain float32.

    `precision` is `TrainConfig.precision`. "auto" is mixed precision on CUDA, where it is what makes
    the step's products cheap: bfloat16 on GPUs that compute it natively (float32's range, so no loss
    scaling), float16 on older ones (with loss scaling: `needs_loss_scaling`). On a CPU "auto" is
    float32: there Level I, nearly all of a step, is the compiled float32 kernel, and low precision
    would only round the rest. An explicit "bfloat16" or "float16" is used as asked on any device (tests
    and benchmarks measure low precision on a CPU). Evaluation always runs in float32 (`deepdiff.train`).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"field precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return _LOW_PRECISION[precision]
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= BF16_MIN_CAPABILITY else torch.float16


def needs_loss_scaling(dtype: torch.dtype | None) -> bool:
    """float16 (5 exponent bits) underflows small gradients to zero unless the loss is scaled up first
    (`torch.amp.GradScaler`); bfloat16 has float32's exponent range and needs no scaling."""
    return dtype == torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    """What `autocast_dtype` chose, as the `precision` value that forces it: "float32", "bfloat16", "float16"
    (what checkpoints and a study's trial runs record as the dtype training steps computed in)."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def precision_label(dtype: torch.dtype | None) -> str:
    """What `autocast_dtype` chose, for a log line: "float32", "bfloat16 mixed precision", ..."""
    return "float32" if dtype is None else f"{dtype_name(dtype)} mixed precision"


@functools.cache
def onednn_lstm_computes(dtype: torch.dtype) -> bool:
    """Whether this CPU's oneDNN can run an `nn.LSTM` under autocast to `dtype` (asked once per dtype, by
    running a tiny one forward and backward). Its bfloat16 and float16 LSTMs need CPU instructions that
    many CPUs lack (this project's AMD EPYC, AVX2 without AVX-512: "could not create a primitive
    descriptor for the LSTM forward propagation primitive")."""
    if not torch.backends.mkldnn.is_available():
        return False
    lstm = torch.nn.LSTM(2, 2, batch_first=True)
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = True
    try:
        with torch.enable_grad(), torch.autocast("cpu", dtype=dtype):
            lstm(torch.ones(1, 2, 2))[0].float().sum().backward()
        return True
    except RuntimeError:
        return False
    finally:
        torch.backends.mkldnn.enabled = mkldnn


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None, *, cache: bool = True) -> Iterator[None]:
    """The context a training step's forward runs in: torch.autocast to `dtype` (nothing if None).

    On a CPU whose oneDNN has no LSTM in `dtype` (`onednn_lstm_computes`) it also turns oneDNN off for
    the forward: PyTorch's own CPU LSTM then runs Level II (and per-channel Level I), its matrix products
    still in `dtype` under autocast, its outputs float32. (Measured on the AMD EPYC, `raw` at batch 64,
    grouped Level I, 1 thread: a bfloat16 step 3.4-3.5x the float32 step's CPU time whether oneDNN is off
    for the whole forward, only around Level II's LSTM, or that LSTM runs in float32: low precision is
    emulated there, and Level I's products dominate.) CPU low precision is for tests and measurements;
    "auto" is float32 on a CPU. `cache=False`: autocast keeps no casted weights across calls, as a
    forward captured in a CUDA graph needs.
    """
    if dtype is None:
        yield
        return
    mkldnn = torch.backends.mkldnn.enabled
    if device.type == "cpu" and not onednn_lstm_computes(dtype):
        torch.backends.mkldnn.enabled = False
    try:
        with torch.autocast(device.type, dtype=dtype, cache_enabled=cache):
            yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn


def autocast_dtype_in_effect(device_type: str) -> torch.dtype | None:
    """The dtype autocast is casting matrix products to on `device_type` right now; None when it is off.
    (How code under the trainer's autocast, `deepdiff.grouped_lstm`, learns the step's precision.)"""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
