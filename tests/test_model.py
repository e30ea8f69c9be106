import pytest
import torch

from deepdiff.config import ModelConfig
from deepdiff.model import INIT_RANGE, BinEncoder, DeepDiff, MarkEncoder, count_parameters
from deepdiff.variants import VARIANTS, VariantSpec

# Exact trainable parameter counts at the published sizes (Level I hidden 32, Level II hidden 16).
# By hand: one Level I channel = biLSTM(1->32) 8,960 + context 64 = 9,024; one Level II = biLSTM(64->16)
# 10,496 + context 32 = 10,528; linear(32->1) = 33; MLP 64->32->1 = 2,113; a classification aux head 66.
PINNED = {
    ("raw_d", "regression"): 55_681,  # 5 ch + f2 + linear
    ("raw_c", "regression"): 100_801,  # 10 ch
    ("raw", "regression"): 145_921,  # 15 ch
    ("aux", "regression"): 113_475,  # 2 x (5 ch + f2 + head) + MLP
    ("aux", "classification"): 113_541,
    ("raw_aux", "regression"): 257_283,  # 15 + 5 + 5 ch, three f2, two aux heads, linear
    ("raw_aux", "classification"): 257_349,
    ("aux_siamese", "regression"): 68_355,  # aux with one shared 5-channel f1
    ("aux_siamese", "classification"): 68_421,
    ("raw_aux_siamese", "regression"): 212_163,
    ("raw_aux_siamese", "classification"): 212_229,
}

SMALL = dict(level1_hidden=4, level2_hidden=3, n_bins=12)


@pytest.mark.parametrize("variant, aux_mode", sorted(PINNED))
def test_parameter_count_is_pinned(variant, aux_mode):
    model = DeepDiff.from_config(ModelConfig(variant=variant, aux_mode=aux_mode))
    assert count_parameters(model) == PINNED[variant, aux_mode]


def test_aux_mode_does_not_change_variants_without_aux():
    for name in ("raw_d", "raw_c", "raw"):
        counts = {count_parameters(DeepDiff.from_config(ModelConfig(variant=name, aux_mode=m))) for m in ("regression", "classification")}
        assert len(counts) == 1


def test_encoders_state_their_shapes():
    x = torch.rand(4, 3, 12)
    emb, alpha = BinEncoder(3, 5)(x)
    assert emb.shape == (4, 3, 10) and alpha.shape == (4, 3, 12)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 3))
    v, beta = MarkEncoder(10, 2)(emb)
    assert v.shape == (4, 4) and beta.shape == (4, 3)
    torch.testing.assert_close(beta.sum(-1), torch.ones(4))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("aux_mode", ["regression", "classification"])
def test_forward_contract(variant, aux_mode):
    spec = VARIANTS[variant]
    model = DeepDiff(spec, ModelConfig(variant=variant, aux_mode=aux_mode, **SMALL))
    out = model(torch.rand(6, 5, 12), torch.rand(6, 5, 12))
    assert out.prediction.shape == (6,)
    n_main = 5 * len(spec.level1_inputs)
    if spec.level1_inputs:
        assert out.level1["diff"].shape == (6, n_main, 8)
        assert out.bin_attention["diff"].shape == (6, n_main, 12)
        assert out.mark_attention["diff"].shape == (6, n_main + (10 if spec.cell_encoders else 0))
    if spec.cell_encoders:
        for cell in ("A", "B"):
            assert out.level1[cell].shape == (6, 5, 8)
            assert out.bin_attention[cell].shape == (6, 5, 12)
            assert out.mark_attention[cell].shape == (6, 5)
            assert out.aux[cell].shape == ((6,) if aux_mode == "regression" else (6, 2))
    else:
        assert out.aux == {} and set(out.level1) == {"diff"}
    names = model.channel_names(("m1", "m2", "m3", "m4", "m5"))
    for path, labels in names.items():
        assert len(labels) == out.bin_attention[path].shape[1]


def test_siamese_variants_call_one_level1_module_for_both_cells():
    model = DeepDiff(VARIANTS["aux_siamese"], ModelConfig(variant="aux_siamese", **SMALL))
    assert set(model.level1) == {"AB"}
    x = torch.rand(3, 5, 12)
    model.eval()
    out = model(x, x.clone())
    torch.testing.assert_close(out.level1["A"], out.level1["B"])  # same weights, same input
    unshared = DeepDiff(VARIANTS["aux"], ModelConfig(variant="aux", **SMALL)).eval()
    out = unshared(x, x.clone())
    assert not torch.allclose(out.level1["A"], out.level1["B"])


def test_raw_variant_orders_channel_groups_as_the_reference():
    model = DeepDiff(VARIANTS["raw"], ModelConfig(variant="raw", **SMALL))
    assert model.channel_names(("k4me1",))["diff"] == ["A:k4me1", "B:k4me1", "A-B:k4me1"]


def test_init_is_uniform_within_published_range():
    model = DeepDiff.from_config(ModelConfig(variant="raw_aux"))
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.abs().max() <= INIT_RANGE
    assert values.std() > 0.05  # really spread over the range, not zeros


def test_dropout_acts_in_training_and_not_in_eval():
    torch.manual_seed(0)
    model = DeepDiff.from_config(ModelConfig(variant="raw_d", dropout=0.5, **SMALL))
    x_a, x_b = torch.rand(8, 5, 12), torch.rand(8, 5, 12)
    model.train()
    assert not torch.allclose(model(x_a, x_b).prediction, model(x_a, x_b).prediction)
    model.eval()
    torch.testing.assert_close(model(x_a, x_b).prediction, model(x_a, x_b).prediction)
    no_dropout = DeepDiff.from_config(ModelConfig(variant="raw_d", dropout=0.0, **SMALL)).train()
    torch.testing.assert_close(no_dropout(x_a, x_b).prediction, no_dropout(x_a, x_b).prediction)


def test_an_eighth_variant_is_one_row():
    spec = VariantSpec("raw_c_aux", ("A", "B"), True, False, True, False)
    out = DeepDiff(spec, ModelConfig(variant="raw", **SMALL))(torch.rand(2, 5, 12), torch.rand(2, 5, 12))
    assert out.prediction.shape == (2,) and set(out.aux) == {"A", "B"}
