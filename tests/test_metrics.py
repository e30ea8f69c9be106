import math

import numpy as np
import pytest
import torch

from deepdiff.metrics import mse, pcc


def test_pcc_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100)
    b = a + 0.5 * b
    assert abs(pcc(torch.tensor(a, dtype=torch.float32), torch.tensor(b)) - np.corrcoef(a, b)[0, 1]) < 1e-6


def test_pcc_of_a_constant_prediction_is_zero():
    assert pcc(torch.zeros(10), torch.arange(10.0)) == 0.0


@pytest.mark.parametrize(
    "prediction, target",
    [
        (torch.tensor([1.0, float("nan"), 3.0]), torch.arange(3.0)),  # a diverged model
        (torch.tensor([1.0, float("inf"), 3.0]), torch.arange(3.0)),
        (torch.arange(3.0), torch.tensor([0.0, float("inf"), 1.0])),  # bad data
        (torch.tensor([1.0]), torch.tensor([2.0])),  # one gene
        (torch.arange(3.0), torch.full((3,), 2.0)),  # a constant target
        (torch.tensor([0.0, 1e300, -1e300], dtype=torch.float64), torch.arange(3.0)),  # overflows float64
    ],
)
def test_pcc_is_nan_where_it_is_undefined(prediction, target):
    assert math.isnan(pcc(prediction, target))


def test_pcc_sign_and_mse():
    x = torch.arange(5.0)
    assert abs(pcc(x, -2 * x) + 1.0) < 1e-12
    assert mse(x, x + 2) == 4.0
