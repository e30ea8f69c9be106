"""Metrics reported for differential expression: Pearson correlation (PCC) and MSE."""

from __future__ import annotations

import math

import torch


def pcc(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Pearson correlation of two (N,) tensors, computed in float64.

    A constant prediction (or target) has no defined correlation; it is reported as 0.0, "no linear
    relation", so that model selection and schedulers always compare numbers.
    """
    p = prediction.detach().double().flatten()
    t = target.detach().double().flatten()
    p = p - p.mean()
    t = t - t.mean()
    denom = math.sqrt(float((p * p).sum()) * float((t * t).sum()))
    if denom == 0.0 or not math.isfinite(denom):
        return 0.0
    return float((p * t).sum()) / denom


def mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error of two (N,) tensors, in float64."""
    diff = prediction.detach().double().flatten() - target.detach().double().flatten()
    return float((diff * diff).mean())
