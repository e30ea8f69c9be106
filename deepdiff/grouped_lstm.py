"""Level I's K per-channel biLSTMs run as one grouped recurrence, with a hand-written backward.

`BinEncoder` owns K `nn.LSTM(1, H, bidirectional=True)` modules (their parameters are the model's
state_dict). Run one after another they are 2K recurrences of T tiny steps each (on CPU PyTorch runs
each as a fused oneDNN kernel; on a GPU each is a cuDNN call far too small to fill the device). Here
the G = 2K (direction x channel) recurrences, or those of several encoders, advance together, reading
the same parameters:

- `stack_lstm_weights` stacks the modules' parameters per forward (autograd flows back to them) into
  one (G, H + 2, 4H) matrix per group: [W_hh^T; W_ih; b_ih + b_hh], groups in direction-major order
  g = d*K + k (d = 0 forward, 1 backward). The input has size 1, so input projection and biases ride
  in the same product as the recurrence: [h_{t-1}, x_t, 1] @ W.
- Per time step ONE batched matrix product over the G groups (`torch.bmm`), then the gates (PyTorch's
  order i, f, g, o), c = f*c + i*g, h = o*tanh(c). The backward direction reads its channel reversed in
  time, in the same step.
- `GroupedLSTM` is a `torch.autograd.Function`: its forward records no autograd graph and, while each
  step's values are in cache, stores what back-propagation needs (gate derivatives times their
  partners, o (1 - tanh^2 c), f). Its backward runs back-propagation through time in one reverse loop
  of 6 ops per step: two `addcmul`/`mul_` for the cell and gate gradients, one `baddbmm_` accumulating
  dW for all groups, one `baddbmm_` giving d[h_{t-1}, x_t]. That is one autograd node per forward
  instead of ~10 per step and group.

Under the trainer's mixed precision (autocast) only the two recurrence products run in the low dtype;
gates, cell state, the dW accumulation and the outputs stay float32 (`GroupedLSTM`, `grouped_level1`).

No Python branch depends on data or shapes inside either time loop and nothing syncs with the host, so
the loops can be captured in a CUDA graph. Contract: ``GroupedLSTM.apply(sequence(x), stack_lstm_weights(lstms))``
-> (T, 2K, N, H) holds the states of ``stack([lstm(x[:, k, :, None])[0] for k, lstm in enumerate(lstms)], 1)``
(N, K, T, 2H) (to float rounding) in the grouped layout, the backward direction in its own (reversed)
time order; `grouped_level1` adds the bin attention, as Level I of `deepdiff.model` (the compiled CPU
kernel `deepdiff.cpu_kernel.FusedLevel1` computes the same in C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from deepdiff.device import autocast_dtype_in_effect


def stack_lstm_weights(lstms: Sequence[nn.LSTM]) -> torch.Tensor:
    """W (G, H + 2, 4H) of K one-layer biLSTMs with input size 1, for [h, x, 1] (G, N, H + 2) @ W.

    Group g = d*K + k (d = 0 forward, 1 backward direction). Rows: W_hh transposed (H rows), then
    W_ih (the input has size 1), then b_ih + b_hh. Columns in PyTorch's gate order i, f, g, o, with the
    g columns doubled: `GroupedLSTM` evaluates tanh(z) as 2 * sigmoid(2z) - 1 (one sigmoid over all
    four gates; CPU tanh is several times slower than sigmoid). Built from the parameters with autograd
    ops, so gradients flow back to every parameter of every `nn.LSTM`.
    """
    hid = lstms[0].hidden_size
    rows = []
    for suffix in ("", "_reverse"):
        for m in lstms:
            w_hh, w_ih = getattr(m, "weight_hh_l0" + suffix), getattr(m, "weight_ih_l0" + suffix)
            bias = getattr(m, "bias_ih_l0" + suffix) + getattr(m, "bias_hh_l0" + suffix)
            rows.append(torch.cat((w_hh, w_ih, bias[:, None]), dim=1))  # (4H, H + 2)
    w = torch.stack(rows)  # (G, 4H, H + 2)
    scale = w.new_ones(4 * hid)
    scale[2 * hid : 3 * hid] = 2.0
    return (w * scale[:, None]).transpose(1, 2)


def _product(w: torch.Tensor, low: torch.dtype | None, n: int, accumulate: bool):
    """The time loops' matrix product with w (G, R, C): a function (a, out) doing out <- a @ w, or
    out += a @ w with `accumulate`, for a (G, n, R) and out (G, n, C) in float32.

    `low` None: one float32 `bmm`/`baddbmm_` into `out`. Otherwise (mixed precision) the operands are
    rounded to `low` (w once here, a at every step into a buffer made here) and the product comes back
    into float32 `out`: three ops per step instead of one, no allocation in the loop, nothing the host
    reads. Which kind runs is fixed per call, never decided in the loop, so the loops stay capturable.
    """
    if low is None:
        w = w.contiguous()
        if accumulate:
            return lambda a, out: out.baddbmm_(a, w)
        return lambda a, out: torch.bmm(a, w, out=out)
    groups, rows, cols = w.shape
    w_low = w.to(low).contiguous()
    a_low = w.new_empty(groups, n, rows, dtype=low)
    out_low = w.new_empty(groups, n, cols, dtype=low)

    def product(a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.bmm(a_low.copy_(a), w_low, out=out_low)
        return out.add_(out_low) if accumulate else out.copy_(out_low)

    return product


def _recurrence(seq: torch.Tensor, w: torch.Tensor, keep: bool, low: torch.dtype | None = None):
    """Run the grouped LSTM without autograd. seq: (T, G, N) inputs; w: (G, H + 2, 4H) from
    `stack_lstm_weights`; `low`: the dtype of the step's matrix product (None: float32), see `_product`.

    Returns (z, saved): z (T + 1, G, N, H + 2) holds [h_{t-1}, x_t, 1] at step t, so h_t is
    z[t + 1, ..., :H] (z[0] holds the zero initial state). With `keep`, saved = (q, p, f), what
    back-propagation needs from step t, computed here while the step's values are in cache:
    q (T, G, N, 4H) = sigmoid'(gate) times what multiplies the gate (g, c_{t-1}, i, tanh c_t for
    i, f, g, o; the g gate is 2 sigmoid(2 z) - 1 so its factor carries a 2); p (T, G, N, H) =
    o (1 - tanh^2 c_t), how h_t reaches c_t; f (T, G, N, H), how c_{t-1} reaches c_t.
    """
    steps, groups, n = seq.shape
    hid = w.shape[-1] // 4
    gates = _product(w, low, n, accumulate=False)
    z = seq.new_empty(steps + 1, groups, n, hid + 2)
    z[0, ..., :hid] = 0.0
    z[:steps, ..., hid] = seq
    z[steps, ..., hid] = 0.0
    z[..., hid + 1] = 1.0
    c = seq.new_zeros(groups, n, hid)
    a = seq.new_empty(groups, n, 4 * hid)
    if keep:
        q = seq.new_empty(steps, groups, n, 4 * hid)
        p = seq.new_empty(steps, groups, n, hid)
        f_all = seq.new_empty(steps, groups, n, hid)
    for t in range(steps):
        gates(z[t], a)
        a.sigmoid_()
        i, f, s, o = a.chunk(4, dim=-1)
        g = s * 2 - 1
        c_prev, c = c, torch.addcmul(f * c, i, g)
        tanh_c = torch.sigmoid(c * 2).mul_(2).sub_(1)
        torch.mul(o, tanh_c, out=z[t + 1, ..., :hid])
        if keep:  # a Python constant of the call, not data: the loop stays capturable
            torch.mul(a, 1 - a, out=q[t])
            qi, qf, qs, qo = q[t].chunk(4, dim=-1)
            qi.mul_(g)
            qf.mul_(c_prev)
            qs.mul_(i).mul_(2)
            qo.mul_(tanh_c)
            torch.mul(o, 1 - tanh_c * tanh_c, out=p[t])
            f_all[t] = f
    return z, ((q, p, f_all) if keep else None)


class GroupedLSTM(torch.autograd.Function):
    """h (T, G, N, H) of G independent LSTMs over inputs seq (T, G, N) with weights w (G, H + 2, 4H)
    from `stack_lstm_weights`; zero initial state. Backward: hand-written BPTT, returns d seq and d w.
    `record`: the caller's `torch.is_grad_enabled()` (a Function's forward always runs without grad, so
    it cannot tell); False keeps nothing for a backward (evaluation under no_grad).

    `low` (None: float32 throughout): the dtype of the two recurrence products, [h_{t-1}, x_t, 1] @ W
    forward and d gates @ W^T backward (mixed precision, `grouped_level1` passes autocast's dtype).
    Everything else stays float32 whatever autocast says (it is off inside): the gates and their
    nonlinearities, the cell state, what is kept for the backward, the dW accumulation over the T steps
    (a running sum of 200 terms kept in bfloat16's 8 mantissa bits drops the terms small beside it),
    h and d seq.
    """

    @staticmethod
    def forward(ctx, seq: torch.Tensor, w: torch.Tensor, record: bool = True, low: torch.dtype | None = None) -> torch.Tensor:
        keep = record and any(ctx.needs_input_grad)
        with torch.autocast(seq.device.type, enabled=False):
            z, saved = _recurrence(seq, w, keep, low)
        if keep:
            ctx.save_for_backward(w)
            ctx.buffers = z, *saved
            ctx.low = low
        return z[1:, ..., : w.shape[-1] // 4]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        with torch.autocast(grad_h.device.type, enabled=False):
            return (*_backward_through_time(ctx, grad_h.float()), None, None)


def _backward_through_time(ctx, grad_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d seq, d w of `GroupedLSTM` from the gradient of its output h: one reverse loop over the steps."""
    (w,) = ctx.saved_tensors
    z, q, p, f = ctx.buffers
    del ctx.buffers
    steps, groups, n, hid = p.shape
    q_gates = q.view(steps, groups, n, 4, hid)
    back = _product(w.transpose(1, 2), ctx.low, n, accumulate=True)  # += d gates @ W^T, (G, 4H, H + 2)
    d_w = w.new_zeros(w.shape)  # contiguous (w itself is a transposed view): baddbmm_'s fast path
    # dz[t] accumulates d[h_{t-1}, x_t, 1]; it starts as the gradient arriving at h_{t-1} from above.
    dz = grad_h.new_zeros(steps, groups, n, hid + 2)
    dz[1:, ..., :hid] = grad_h[:-1]
    dh, dc_next = grad_h[steps - 1], torch.zeros_like(p[0])  # dc_next = d c_{t+1} * f_{t+1}
    for t in range(steps - 1, -1, -1):  # 6 ops per step (8 with a low-precision product)
        dc = torch.addcmul(dc_next, dh, p[t])
        q_gates[t, :, :, :3].mul_(dc[:, :, None])  # q[t] becomes d pre-activations of i, f, g ...
        q_gates[t, :, :, 3].mul_(dh)  # ... and o
        d_w.baddbmm_(z[t].transpose(1, 2), q[t])
        back(q[t], dz[t])
        dh, dc_next = dz[t, ..., :hid], dc * f[t]
    return dz[..., hid], d_w


def sequence(x: torch.Tensor) -> torch.Tensor:
    """(N, K, T) -> seq (T, 2K, N), the input of `GroupedLSTM`: channel k feeds group k in time order
    and group K + k (its backward direction) in reversed time."""
    xt = x.permute(2, 1, 0)  # (T, K, N)
    return torch.cat((xt, xt.flip(0)), dim=1)


def grouped_level1(x: torch.Tensor, w: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Level I of K channels in torch ops: x (N, K, T), w (2K, H + 2, 4H) from `stack_lstm_weights`,
    context (K, 2H) -> embeddings m (N, K, 2H), bin attention alpha (N, K, T), both float32.

    The states h (T, 2K, N, H) of `GroupedLSTM` stay in their grouped layout (the backward groups in
    reversed time); attention is computed there by batched products, so the (N, K, T, 2H) states are
    never assembled. `deepdiff.cpu_kernel.FusedLevel1` has the same contract.

    Under autocast (the trainer's mixed precision) the recurrence's products take autocast's dtype and
    the rest stays float32: autocast itself would also run the attention's products and (on a CPU) its
    softmax in bfloat16, rounding the embeddings that Level II and the contrastive loss read.
    """
    low = autocast_dtype_in_effect(x.device.type)
    with torch.autocast(x.device.type, enabled=False):
        return _level1(x.float(), w.float(), context.float(), low)


def _level1(x: torch.Tensor, w: torch.Tensor, context: torch.Tensor, low: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    k = x.shape[1]
    h = GroupedLSTM.apply(sequence(x), w, torch.is_grad_enabled(), low)
    steps, groups, n, hid = h.shape
    by_gene = h.view(steps, groups * n, hid).transpose(0, 1)  # (2K*N, T, H), a view: batched products, no copy
    ctx = context.view(k, 2, hid).transpose(0, 1).reshape(groups, 1, hid, 1)  # (2K, 1, H, 1)
    part = torch.bmm(by_gene, ctx.expand(groups, n, hid, 1).reshape(groups * n, hid, 1))
    part = part.view(groups, n, steps)  # h_t . W_b per direction, each group in its own time order
    alpha = torch.softmax(part[:k] + part[k:].flip(-1), dim=-1)  # (K, N, T)
    weights = torch.cat((alpha, alpha.flip(-1)), dim=0)  # (2K, N, T), each group's own time order
    m = torch.bmm(weights.view(groups * n, 1, steps), by_gene).view(groups, n, hid)  # (2K, N, H)
    return torch.cat((m[:k], m[k:]), dim=-1).transpose(0, 1), alpha.transpose(0, 1)
