"""deepdiff.attention: maps are computed where the model is (its device by default), arrays come back
to the host. (test_cli and test_study_report cover what evaluate --out and the report write.)"""

import numpy as np
import pytest
import torch

from deepdiff.attention import attention_maps
from deepdiff.config import ModelConfig
from deepdiff.model import DeepDiff


def test_maps_run_where_the_model_is_unless_told_otherwise(small_synthetic_pair):
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_aux", level1_hidden=4, level2_hidden=3))
    split = small_synthetic_pair.valid
    default = attention_maps(model, split, "raw", batch_size=8)
    asked = attention_maps(model, split, "log1p", batch_size=64, device="cpu")
    assert default.prediction.shape == (len(split),) and isinstance(default.prediction, np.ndarray)
    assert default.bin_attention["diff"].shape == (len(split), 15, split.x_a.shape[-1])
    assert not np.allclose(default.prediction, asked.prediction)  # the transform is applied
    again = attention_maps(model, split, "raw", batch_size=64, device=torch.device("cpu"))
    np.testing.assert_allclose(again.prediction, default.prediction, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="^attention_maps: the model is on cpu but device cuda:1 was asked for$"):
        attention_maps(model, split, "raw", device="cuda:1")
