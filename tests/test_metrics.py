import numpy as np
import torch

from deepdiff.metrics import mse, pcc


def test_pcc_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100)
    b = a + 0.5 * b
    assert abs(pcc(torch.tensor(a, dtype=torch.float32), torch.tensor(b)) - np.corrcoef(a, b)[0, 1]) < 1e-6


def test_pcc_of_a_constant_prediction_is_zero():
    assert pcc(torch.zeros(10), torch.arange(10.0)) == 0.0


def test_pcc_sign_and_mse():
    x = torch.arange(5.0)
    assert abs(pcc(x, -2 * x) + 1.0) < 1e-12
    assert mse(x, x + 2) == 4.0
