import pytest
import torch

from deepdiff.config import ModelConfig, TrainConfig
from deepdiff.losses import contrastive_loss, deepdiff_loss
from deepdiff.model import DeepDiff
from deepdiff.variants import VARIANTS


def test_contrastive_loss_by_hand():
    a = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]]])  # (N=2, K=1, E=2)
    b = torch.tensor([[[3.0, 4.0]], [[0.6, 0.8]]])  # distances 5 and 1
    s = torch.tensor([0.0, 1.0])  # gene 0 similar, gene 1 different
    # paper: mean(1/2 * 25, 1/2 * max(0, 2 - 1)^2) = mean(12.5, 0.5) = 6.5
    assert contrastive_loss(a, b, s, margin=2.0, form="paper").item() == pytest.approx(6.5)
    assert contrastive_loss(a, b, s, margin=2.0, form="reference").item() == pytest.approx(13.0)
    # a "different" pair already beyond the margin costs nothing
    assert contrastive_loss(a[:1], b[:1], torch.ones(1), margin=2.0).item() == 0.0


def test_contrastive_gradient_is_finite_for_identical_embeddings():
    a = torch.zeros(3, 2, 4, requires_grad=True)
    loss = contrastive_loss(a, a.detach().clone(), torch.tensor([0.0, 1.0, 1.0]), margin=1.0)
    loss.backward()
    assert torch.isfinite(a.grad).all()


def _targets(n):
    g = torch.Generator().manual_seed(0)
    return {
        "diff": torch.randn(n, generator=g), "aux_reg_a": torch.rand(n, generator=g) * 10,
        "aux_reg_b": torch.rand(n, generator=g) * 10, "aux_cls_a": torch.randint(0, 2, (n,), generator=g),
        "aux_cls_b": torch.randint(0, 2, (n,), generator=g), "similar": torch.tensor([0.0, 1.0, 0.0, 1.0]),
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("aux_mode", ["regression", "classification"])
def test_total_is_the_weighted_sum_of_the_variants_parts(variant, aux_mode):
    spec = VARIANTS[variant]
    model_cfg = ModelConfig(variant=variant, aux_mode=aux_mode, level1_hidden=4, level2_hidden=3, n_bins=10)
    train_cfg = TrainConfig(aux_weight=0.7, gamma=3.0)
    out = DeepDiff(spec, model_cfg)(torch.rand(4, 5, 10), torch.rand(4, 5, 10))
    parts = deepdiff_loss(out, _targets(4), spec, model_cfg, train_cfg)
    assert (parts.aux.item() > 0) == spec.aux
    assert (parts.siamese.item() > 0) == spec.siamese
    expected = parts.diff + 0.7 * parts.aux + 3.0 * parts.siamese
    torch.testing.assert_close(parts.total, expected)
    parts.total.backward()  # differentiable end to end


def test_aux_classification_is_nll_of_a_softmax():
    spec = VARIANTS["aux"]
    model_cfg = ModelConfig(variant="aux", aux_mode="classification", level1_hidden=4, level2_hidden=3, n_bins=10)
    out = DeepDiff(spec, model_cfg)(torch.rand(4, 5, 10), torch.rand(4, 5, 10))
    t = _targets(4)
    parts = deepdiff_loss(out, t, spec, model_cfg, TrainConfig())
    by_hand = sum(
        -torch.log_softmax(out.aux[c], -1)[torch.arange(4), t[f"aux_cls_{c.lower()}"]].mean() for c in ("A", "B")
    )
    torch.testing.assert_close(parts.aux, by_hand)
