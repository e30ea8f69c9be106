"""Histone-mark counts of a pair -> the baselines' feature matrices (numpy, float64).

Tensor contract: x_a, x_b (N, M, T) counts of cell A and cell B (M marks, T bins of `BIN_BP` bp, the TSS
at bin T // 2, as in `deepdiff.data`) -> features (N, 3 M K), column order (cell group, mark, k) with the
groups A, B and A - B, and K values per mark that depend on the feature form:

- ``"bins"``: the mean of each run of `pool` consecutive bins (K = ceil(T / pool); 20 at the defaults),
  the paper's per-bin features (`pooled_bins`, `bin_features`);
- ``"regions"``: the sum of each mark's counts over a few regions around the TSS (K = len(regions);
  `REGIONS_KB` by default: upstream [-10, -2) kb, promoter [-2, +2) kb, downstream [+2, +10) kb).

The simple models' input transform (`simple_features`: "raw" or "log1p") is applied to these per-mark
values after pooling or summing (log1p of a region's total count, not a total of per-bin logs), so A - B
is a log ratio under "log1p". The paper's baselines instead transform each bin first, exactly as the deep
models do (`deepdiff.train.prepare_split`), then pool (`deepdiff.baselines.paper`).
"""

from __future__ import annotations

import numpy as np
import torch

from deepdiff.config import INPUT_TRANSFORMS
from deepdiff.errors import ConfigError

BIN_BP = 100  # width of one bin in base pairs (DeepDiffChrome: 200 bins = 10 kb either side of the TSS)
REGIONS_KB = ((-10.0, -2.0), (-2.0, 2.0), (2.0, 10.0))  # (start, end) kb from the TSS, end excluded
FEATURE_FORMS = ("bins", "regions")  # the simple models' feature forms, in the order they are tried

_TRANSFORMS = {"raw": lambda v: v, "log1p": np.log1p}  # input_transform -> function on aggregated counts
assert tuple(_TRANSFORMS) == INPUT_TRANSFORMS


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def pooled_bins(x: torch.Tensor | np.ndarray, pool: int) -> np.ndarray:
    """(N, M, T) -> (N, M, ceil(T / pool)) float64: the mean of each run of `pool` bins (the last run may
    be shorter)."""
    values = _numpy(x)
    starts = np.arange(0, values.shape[2], pool)
    widths = np.diff(np.append(starts, values.shape[2]))
    return np.add.reduceat(values, starts, axis=2) / widths


def bin_features(x_a: torch.Tensor, x_b: torch.Tensor, pool: int) -> np.ndarray:
    """(N, 3, M, P) pooled bins of A, B and A - B (P = ceil(T / pool)); inputs already transformed."""
    a, b = pooled_bins(x_a, pool), pooled_bins(x_b, pool)
    return np.stack([a, b, a - b], axis=1)


def region_slices(n_bins: int, regions_kb: tuple[tuple[float, float], ...] = REGIONS_KB) -> tuple[slice, ...]:
    """The bins of each (start, end) kb region around the TSS bin T // 2, end excluded.

    Bin i covers [(i - T // 2) * BIN_BP, (i - T // 2 + 1) * BIN_BP) bp. Raises `ConfigError` for an empty
    list, an edge that is not a whole bin, an empty region or one reaching outside the T bins.
    """
    if not regions_kb:
        raise ConfigError("regions: expected at least one (start, end) kb region around the TSS")
    centre, per_kb = n_bins // 2, 1000 / BIN_BP
    reach = f"{-centre / per_kb:g}..{(n_bins - centre) / per_kb:+g} kb"
    slices = []
    for region in regions_kb:
        if len(region) != 2:
            raise ConfigError(f"regions: {region!r} is not a (start, end) pair in kb")
        edges = [float(edge) * per_kb for edge in region]
        if any(abs(edge - round(edge)) > 1e-9 for edge in edges):
            raise ConfigError(f"regions: ({region[0]:g}, {region[1]:g}) kb: expected edges on whole {BIN_BP} bp bins")
        start, stop = (centre + round(edge) for edge in edges)
        if not 0 <= start < stop <= n_bins:
            raise ConfigError(f"regions: ({region[0]:g}, {region[1]:g}) kb: expected start < end within the "
                              f"{n_bins} bins ({reach})")
        slices.append(slice(start, stop))
    return tuple(slices)


def region_sums(x: torch.Tensor | np.ndarray, slices: tuple[slice, ...]) -> np.ndarray:
    """(N, M, T) -> (N, M, len(slices)) float64: each mark's total count over each region."""
    values = _numpy(x)
    return np.stack([values[:, :, s].sum(axis=2) for s in slices], axis=2)


def simple_features(
    x_a: torch.Tensor | np.ndarray, x_b: torch.Tensor | np.ndarray, form: str, transform: str, *,
    pool: int = 10, regions_kb: tuple[tuple[float, float], ...] = REGIONS_KB,
) -> np.ndarray:
    """(N, M, T) raw counts of A and B -> (N, 3 M K) features of `form` (see the module docstring): the
    transform of each cell's pooled bins or region sums, then A, B and A - B side by side."""
    if form not in FEATURE_FORMS:
        raise ConfigError(f"feature form {form!r}: expected one of {', '.join(FEATURE_FORMS)}")
    if transform not in _TRANSFORMS:
        raise ConfigError(f"input_transform {transform!r}: expected one of {', '.join(INPUT_TRANSFORMS)}")
    slices = region_slices(x_a.shape[2], regions_kb) if form == "regions" else ()

    def aggregate(x: torch.Tensor | np.ndarray) -> np.ndarray:
        return pooled_bins(x, pool) if form == "bins" else region_sums(x, slices)

    a, b = (_TRANSFORMS[transform](aggregate(x)) for x in (x_a, x_b))
    return np.stack([a, b, a - b], axis=1).reshape(a.shape[0], -1)
