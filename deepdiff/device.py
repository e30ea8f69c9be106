"""The one place a device is chosen: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

from deepdiff.errors import ConfigError


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
