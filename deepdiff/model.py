"""DeepDiff: Level I (bin) and Level II (mark) attention encoders assembled from a `VariantSpec`.

Tensor contracts (N genes, M marks, T bins, K channels):
- `BinEncoder` (Level I, f1): (N, K, T) -> embeddings (N, K, 2*H1), bin attention alpha (N, K, T).
  One biLSTM per channel (input size 1, hidden H1 per direction) and one context vector per channel.
- `MarkEncoder` (Level II, f2): (N, K, E) -> embedding v (N, 2*H2), mark attention beta (N, K).
- `DeepDiff(spec, cfg)`: (x_a (N, M, T), x_b (N, M, T)) -> `DeepDiffOutput`.

Dropout (paper: 0.5) acts on every Level I channel embedding before Level II and on every Level II
embedding before a head. (The reference code passes dropout to one-layer nn.LSTMs, where PyTorch
ignores it, so the reference trains without dropout; set dropout=0 to reproduce that.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepdiff.config import ModelConfig
from deepdiff import cpu_kernel
from deepdiff.grouped_lstm import grouped_level1, stack_lstm_weights
from deepdiff.variants import VariantSpec, get_variant

INIT_RANGE = 0.1  # all parameters ~ U(-0.1, 0.1), as published


LEVEL1_IMPLS = ("fused", "grouped", "per_channel")


GROUPED_MIN_CPU_TRAIN_BATCH = 64  # without the C kernel, CPU training batches from this size run grouped


def level1_impl(device: torch.device, batch: int) -> str:
    """How Level I runs for a batch of `batch` genes on `device`: the one place this is decided (never
    a config field, so MLflow params and checkpoints do not depend on the machine; every way reads the
    same parameters and computes the same function).

    - CUDA: "grouped" (`deepdiff.grouped_lstm`: all channels, directions and encoders of a forward in
      one recurrence of torch ops with a hand-written backward). Per channel would be 2K cuDNN calls per
      batch, each far too small to fill a GPU; the grouped step is CUDA-graph capturable. (Not measured
      here, as no GPU was at hand: for very large batches per-channel cuDNN may catch up.)
    - CPU: "fused" (`deepdiff.cpu_kernel`: the same grouped recurrence as compiled C, forward and
      backward, for training and inference at any batch) when the kernel could be built on this
      machine; otherwise "grouped" for training batches from `GROUPED_MIN_CPU_TRAIN_BATCH` and
      "per_channel" (one `nn.LSTM` per channel, PyTorch's fused oneDNN kernel) below that and for
      inference, which is what measured fastest without it (benchmarks/bench_train.py part 0).
    """
    if device.type == "cuda":
        return "grouped"
    if cpu_kernel.available():
        return "fused"
    return "grouped" if torch.is_grad_enabled() and batch >= GROUPED_MIN_CPU_TRAIN_BATCH else "per_channel"


# Level I of all channels at once, (x (N, K, T), w, context) -> (m, alpha): torch ops, or compiled C on the CPU.
_GROUPED = {"fused": cpu_kernel.fused_level1, "grouped": grouped_level1}


class BinEncoder(nn.Module):
    """Level I: per-channel biLSTM over bins + bin attention. (N, K, T) -> (N, K, 2*H1), (N, K, T).

    The parameters are K `nn.LSTM(1, H1, bidirectional=True)` modules (state_dict keys
    ``lstms.{k}.weight_ih_l0`` ...) and the contexts; `impl` (None: `level1_impl(device, batch)`, or one of
    `LEVEL1_IMPLS`) only picks how the recurrence runs, never what it computes.
    """

    def __init__(self, n_channels: int, hidden: int) -> None:
        super().__init__()
        self.lstms = nn.ModuleList(
            nn.LSTM(1, hidden, batch_first=True, bidirectional=True) for _ in range(n_channels)
        )
        self.context = nn.Parameter(torch.empty(n_channels, 2 * hidden))  # W_b_j, one per channel
        self.impl: str | None = None

    @property
    def n_channels(self) -> int:
        return len(self.lstms)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        impl = self.impl or level1_impl(x.device, x.shape[0])
        if impl == "per_channel":
            return self._per_channel(x)
        if impl in _GROUPED:
            return _GROUPED[impl](x, stack_lstm_weights(self.lstms), self.context)
        raise ValueError(f"Level I impl {impl!r}: expected one of {', '.join(LEVEL1_IMPLS)}")

    def _per_channel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = torch.stack([lstm(x[:, j, :, None])[0] for j, lstm in enumerate(self.lstms)], dim=1)  # (N, K, T, 2H)
        alpha = torch.softmax(torch.einsum("nkth,kh->nkt", states, self.context), dim=-1)
        return torch.einsum("nkt,nkth->nkh", alpha, states), alpha


def run_level1(calls: list[tuple[BinEncoder, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """encoder(x) for every (encoder, x) of one forward pass; grouped, all of them in ONE recurrence
    (a siamese encoder called twice contributes its LSTMs twice; their gradients add up)."""
    encoder, x = calls[0]
    impl = encoder.impl or level1_impl(x.device, x.shape[0])
    if impl not in _GROUPED or len(calls) == 1:
        return [enc(x) for enc, x in calls]
    w = stack_lstm_weights([lstm for enc, _ in calls for lstm in enc.lstms])
    context = torch.cat([enc.context for enc, _ in calls])
    m, alpha = _GROUPED[impl](torch.cat([x for _, x in calls], dim=1), w, context)
    sizes = [enc.n_channels for enc, _ in calls]
    return list(zip(m.split(sizes, dim=1), alpha.split(sizes, dim=1)))


class MarkEncoder(nn.Module):
    """Level II: biLSTM over channel embeddings + mark attention. (N, K, E) -> (N, 2*H2), (N, K)."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True, bidirectional=True)
        self.context = nn.Parameter(torch.empty(2 * hidden))  # W_h

    def forward(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.lstm(m)[0]  # (N, K, 2H)
        beta = torch.softmax(states @ self.context, dim=-1)
        return torch.einsum("nk,nkh->nh", beta, states), beta


@dataclass(frozen=True)
class DeepDiffOutput:
    """What one forward pass returns; losses, metrics and attention export all read this object.

    Keys of the dicts: "diff" (the main f1^d / f2^d path), "A" and "B" (cell-specific paths).
    """

    prediction: torch.Tensor  # (N,) predicted differential expression
    aux: dict[str, torch.Tensor]  # "A"/"B": (N,) log2 expression (regression) or (N, 2) logits (classification)
    level1: dict[str, torch.Tensor]  # Level I embeddings per path: (N, K, 2*H1)
    bin_attention: dict[str, torch.Tensor]  # alpha per Level I path: (N, K, T)
    mark_attention: dict[str, torch.Tensor]  # beta per Level II path: (N, K)


class DeepDiff(nn.Module):
    """Any of the seven variants, built from its `VariantSpec` row; only what the row asks for exists.

    Modules (all in `nn.ModuleDict`s keyed by path):
    - level1["diff"]: f1^d over the channel groups `spec.level1_inputs` (M channels each).
    - level1["A"], level1["B"]: f1^A, f1^B over X_A, X_B; a siamese variant has one shared
      level1["AB"] instead, called for both cells.
    - level2["diff"]: f2^d over f1^d's channels, followed (raw_aux*) by the M channels of f1^A and of f1^B.
    - level2["A"], level2["B"]: f2^A, f2^B (never shared).
    - heads["diff"]: linear(v_d), or for variants without f1^d an MLP([v_A, v_B]): 4*H2 -> 2*H2, ReLU, -> 1.
    - heads["A"], heads["B"]: auxiliary heads on v_A, v_B (1 output, or 2 logits for classification).
    """

    def __init__(self, spec: VariantSpec, cfg: ModelConfig) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg
        m, h1, h2 = cfg.n_marks, cfg.level1_hidden, cfg.level2_hidden
        self.level1 = nn.ModuleDict()
        self.level2 = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.dropout = nn.Dropout(cfg.dropout)
        n_main = m * len(spec.level1_inputs)
        if spec.cell_encoders:
            for key in ("AB",) if spec.share_cell_encoder else ("A", "B"):
                self.level1[key] = BinEncoder(m, h1)
            for cell in ("A", "B"):
                self.level2[cell] = MarkEncoder(2 * h1, h2)
            if spec.aux:
                n_out = 1 if cfg.aux_mode == "regression" else 2
                for cell in ("A", "B"):
                    self.heads[cell] = nn.Linear(2 * h2, n_out)
        if spec.level1_inputs:
            self.level1["diff"] = BinEncoder(n_main, h1)
            self.level2["diff"] = MarkEncoder(2 * h1, h2)
            self.heads["diff"] = nn.Linear(2 * h2, 1)
        else:
            self.heads["diff"] = nn.Sequential(nn.Linear(4 * h2, 2 * h2), nn.ReLU(), nn.Linear(2 * h2, 1))
        self.reset_parameters()

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "DeepDiff":
        return cls(get_variant(cfg.variant), cfg)

    def reset_parameters(self) -> None:
        """Initialise every parameter U(-0.1, 0.1), as published (uses the global torch RNG)."""
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-INIT_RANGE, INIT_RANGE)

    def set_level1_impl(self, impl: str | None) -> "DeepDiff":
        """Run every Level I module the given way (None: chosen by device); for tests and benchmarks."""
        if impl is not None and impl not in LEVEL1_IMPLS:
            raise ValueError(f"Level I impl {impl!r}: expected one of {', '.join(LEVEL1_IMPLS)}")
        for encoder in self.level1.values():
            encoder.impl = impl
        return self

    def _cell_level1(self, cell: str) -> BinEncoder:
        return self.level1["AB" if self.spec.share_cell_encoder else cell]

    def channel_names(self, marks: tuple[str, ...]) -> dict[str, list[str]]:
        """Channel labels per path, in the order of the K axis of its attention maps."""
        names: dict[str, list[str]] = {}
        if self.spec.level1_inputs:
            names["diff"] = [f"{group}:{mark}" for group in self.spec.level1_inputs for mark in marks]
        if self.spec.cell_encoders:
            names["A"] = [f"A:{mark}" for mark in marks]
            names["B"] = [f"B:{mark}" for mark in marks]
        return names

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> DeepDiffOutput:
        level1: dict[str, torch.Tensor] = {}
        alpha: dict[str, torch.Tensor] = {}
        beta: dict[str, torch.Tensor] = {}
        v: dict[str, torch.Tensor] = {}
        aux: dict[str, torch.Tensor] = {}
        calls: dict[str, tuple[BinEncoder, torch.Tensor]] = {}
        if self.spec.cell_encoders:
            calls.update(A=(self._cell_level1("A"), x_a), B=(self._cell_level1("B"), x_b))
        if self.spec.level1_inputs:
            groups = {"A": x_a, "B": x_b, "A-B": x_a - x_b}
            calls["diff"] = (self.level1["diff"], torch.cat([groups[g] for g in self.spec.level1_inputs], dim=1))
        for path, (m, a) in zip(calls, run_level1(list(calls.values()))):
            level1[path], alpha[path] = m, a
        if self.spec.cell_encoders:
            for cell in ("A", "B"):
                v[cell], beta[cell] = self.level2[cell](self.dropout(level1[cell]))
                if self.spec.aux:
                    out = self.heads[cell](self.dropout(v[cell]))
                    aux[cell] = out.squeeze(-1) if out.shape[-1] == 1 else out
        if self.spec.level1_inputs:
            seq = [level1["diff"]] + ([level1["A"], level1["B"]] if self.spec.cell_encoders else [])
            v["diff"], beta["diff"] = self.level2["diff"](self.dropout(torch.cat(seq, dim=1)))
            prediction = self.heads["diff"](self.dropout(v["diff"]))
        else:
            prediction = self.heads["diff"](self.dropout(torch.cat([v["A"], v["B"]], dim=-1)))
        return DeepDiffOutput(prediction.squeeze(-1), aux, level1, alpha, beta)


def count_parameters(model: nn.Module) -> int:
    """Exact number of trainable parameters (a shared module counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
