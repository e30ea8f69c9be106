"""Losses: differential MSE, cell-specific auxiliary (regression MSE or classification NLL), and the
siamese contrastive loss with margin m. `deepdiff_loss` returns every part and the total, so each
part can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepdiff.config import ModelConfig, TrainConfig
from deepdiff.model import DeepDiffOutput
from deepdiff.variants import VariantSpec


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor  # diff + aux_weight * aux + gamma * siamese (scalar)
    diff: torch.Tensor  # MSE of the differential prediction
    aux: torch.Tensor  # sum over cells A, B of the auxiliary loss (0 for variants without aux)
    siamese: torch.Tensor  # contrastive loss (0 for variants without it)


def contrastive_loss(
    emb_a: torch.Tensor, emb_b: torch.Tensor, similar: torch.Tensor, *, margin: float, form: str = "paper"
) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra, LeCun 2006) on flattened Level I embeddings.

    emb_a, emb_b: (N, K, E) -> flattened (N, K*E); similar: (N,) S, 1 = "different" (|diff| >= 2).
    d = Euclidean distance. form="paper": mean((1-S) * 1/2 * d^2 + S * 1/2 * max(0, m - d)^2);
    form="reference" (DeepDiffChrome's code): the same without the 1/2 factors.
    d^2 is computed without a square root, so identical embeddings give a finite gradient.
    """
    sq = (emb_a.flatten(1) - emb_b.flatten(1)).pow(2).sum(dim=1)
    d = torch.sqrt(sq + 1e-12)
    per_gene = (1 - similar) * sq + similar * torch.clamp(margin - d, min=0.0).pow(2)
    scale = 0.5 if form == "paper" else 1.0
    return scale * per_gene.mean()


def aux_loss(out: DeepDiffOutput, targets: dict[str, torch.Tensor], aux_mode: str) -> torch.Tensor:
    """Cell-specific auxiliary loss summed over A and B: MSE on log2(expr+1), or NLL of a softmax
    (cross-entropy on logits) on "expressed above the cell's median"."""
    total = out.prediction.new_zeros(())
    for cell in ("A", "B"):
        key = cell.lower()
        if aux_mode == "regression":
            total = total + F.mse_loss(out.aux[cell], targets[f"aux_reg_{key}"])
        else:
            total = total + F.cross_entropy(out.aux[cell], targets[f"aux_cls_{key}"])
    return total


def deepdiff_loss(
    out: DeepDiffOutput,
    targets: dict[str, torch.Tensor],
    spec: VariantSpec,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
) -> LossParts:
    """The variant's total loss: l_diff (+ aux_weight * l_aux) (+ gamma * l_siamese).

    targets: "diff" (N,), "aux_reg_a"/"aux_reg_b" (N,), "aux_cls_a"/"aux_cls_b" (N,) int64, "similar" (N,).
    """
    diff = F.mse_loss(out.prediction, targets["diff"])
    zero = diff.new_zeros(())
    aux = aux_loss(out, targets, model_cfg.aux_mode) if spec.aux else zero
    siamese = (
        contrastive_loss(
            out.level1["A"], out.level1["B"], targets["similar"],
            margin=train_cfg.margin, form=train_cfg.contrastive_form,
        )
        if spec.siamese
        else zero
    )
    total = diff + train_cfg.aux_weight * aux + train_cfg.gamma * siamese
    return LossParts(total=total, diff=diff, aux=aux, siamese=siamese)
