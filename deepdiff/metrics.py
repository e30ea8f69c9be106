"""Metrics reported for differential expression: Pearson correlation (PCC) and MSE."""

from __future__ import annotations

import math

import torch


def pcc(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Pearson correlation of two (N,) tensors, computed in float64.

    NaN where it is undefined, for the caller to decide (the trainer ends the run as diverged): fewer
    than 2 values, a non-finite value in either input, or a constant target. A constant finite
    prediction against a varying target is reported as 0.0, "no linear relation": a model collapsed to
    a constant is a real (bad) result that model selection and schedulers compare with others.
    """
    p = prediction.detach().double().flatten()
    t = target.detach().double().flatten()
    if p.numel() < 2 or not bool(torch.isfinite(p).all()) or not bool(torch.isfinite(t).all()):
        return math.nan
    p = p - p.mean()
    t = t - t.mean()
    pp, tt = float((p * p).sum()), float((t * t).sum())
    if tt == 0.0 or not math.isfinite(pp * tt):
        return math.nan
    if pp == 0.0:
        return 0.0
    return float((p * t).sum()) / math.sqrt(pp * tt)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error of two (N,) tensors, in float64."""
    diff = prediction.detach().double().flatten() - target.detach().double().flatten()
    return float((diff * diff).mean())
