"""The trainer: `fit()` yields one `EpochResult` per epoch. It knows nothing of Ray.

It owns Adam, gradient clipping, initialisation (through the model), dropout (train/eval modes), the
best-by-valid-PCC selection with the test PCC of that epoch, checkpoint save/restore (model,
optimizer, RNG, epoch, best so far) and divergence detection: a non-finite training loss ends the run
with status `EpochStatus.NAN`, non-finite valid/test metrics (the predictions) with
`EpochStatus.DIVERGED`, instead of an exception or a number that is no result. The whole pair lives
on the device as tensors; batches are index slices of a seeded permutation, so a fixed seed gives the
same run on CPU.

Training steps run in `TrainConfig.precision` (mixed precision by default on CUDA, float32 on CPU:
`deepdiff.device.autocast_dtype` decides); evaluation, and so every reported PCC and the model
selection, always runs in float32, as `deepdiff evaluate` does on a saved model. On CUDA the steps can
be replayed from CUDA graphs (`fit(cuda_graphs=True)`, `GraphedSteps`), off by default until measured
(benchmarks/gpu_check.py part 3; docs/gpu.md).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepdiff.config import ModelConfig, TrainConfig, flat_config
from deepdiff.data import PairData, SplitData, check_trainable
from deepdiff.device import autocast, autocast_dtype, dtype_name, needs_loss_scaling, pick_device
from deepdiff.errors import ConfigError, path_problem
from deepdiff.files import write_atomic
from deepdiff.losses import LossParts, deepdiff_loss
from deepdiff.metrics import mse, pcc
from deepdiff.model import DeepDiff, DeepDiffOutput
from deepdiff.results import EpochResult, EpochStatus
from deepdiff.variants import VariantSpec, get_variant

TARGET_FIELDS = ("diff", "aux_reg_a", "aux_reg_b", "aux_cls_a", "aux_cls_b", "similar")
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CHECKPOINT_FORMAT = 1
# Fields of the configs that may differ between a checkpoint and the run resuming it.
# `precision` changes how steps compute, not what is trained: a run started on a GPU that computes
# bfloat16 may go on in float32 elsewhere (`deepdiff train` says when a resume changes the dtype).
RESUMABLE_CHANGES = {"epochs", "patience", "eval_batch_size", "precision", "threads"}
COMPUTE_DTYPE = "compute_dtype"  # checkpoint key: `deepdiff.device.dtype_name` of the steps that wrote it
# What every checkpoint holds (best.pt), and what a resume also reads from last.pt (and, when the
# checkpoint has it, GRAD_SCALER: the float16 loss scale; older checkpoints, all float32, have none).
CHECKPOINT_KEYS = ("model_config", "train_config", "epoch", "model", "best")
RESUME_KEYS = ("optimizer", "torch_rng", "cuda_rng", "order_rng")
GRAD_SCALER = "grad_scaler"
# Adam's flags that say how its step runs on this process's device, not what it computes: a resume keeps
# the optimizer's own (a checkpoint of a run with CUDA graphs, capturable=True, resumes on a CPU, where a
# capturable Adam refuses to step, and the other way round).
OPTIMIZER_RUNTIME = ("capturable", "fused", "foreach")
# EpochResult field <- the LossParts field it averages over an epoch's batches.
LOSS_METRICS = (("train_loss", "total"), ("train_diff_loss", "diff"), ("train_aux_loss", "aux"), ("train_siamese_loss", "siamese"))


@dataclass
class _Best:
    epoch: int = 0
    valid_pcc: float = -math.inf
    test_pcc: float = math.nan
    test_mse: float = math.nan


@dataclass(frozen=True)
class PreparedSplit:
    """A split ready for the model: transformed inputs and the targets, all on one device."""

    x_a: torch.Tensor  # (N, M, T)
    x_b: torch.Tensor  # (N, M, T)
    targets: dict[str, torch.Tensor]  # TARGET_FIELDS -> (N,)

    def __len__(self) -> int:
        return self.x_a.shape[0]

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        return self.x_a[index], self.x_b[index], {k: v[index] for k, v in self.targets.items()}


def prepare_split(split: SplitData, input_transform: str, device: torch.device) -> PreparedSplit:
    """Move a split to `device` and apply the input transform once ("raw" counts or "log1p")."""
    split = split.to(device)
    transform = torch.log1p if input_transform == "log1p" else (lambda x: x)
    return PreparedSplit(
        transform(split.x_a), transform(split.x_b), {name: getattr(split, name) for name in TARGET_FIELDS}
    )


@torch.no_grad()
def predict(model: DeepDiff, split: PreparedSplit, batch_size: int) -> torch.Tensor:
    """Predicted differential expression (N,) in eval mode (no dropout), batch by batch."""
    was_training = model.training
    model.eval()
    out = [model(split.x_a[i : i + batch_size], split.x_b[i : i + batch_size]).prediction for i in range(0, len(split), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: DeepDiff, split: PreparedSplit, batch_size: int) -> tuple[float, float]:
    """(PCC, MSE) of the differential prediction on a split."""
    prediction = predict(model, split, batch_size)
    return pcc(prediction, split.targets["diff"]), mse(prediction, split.targets["diff"])


def fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: PairData,
    *,
    device: torch.device | str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    cuda_graphs: bool = False,
) -> Iterator[EpochResult]:
    """Train one model, yielding an `EpochResult` after every epoch.

    checkpoint_dir: after each epoch write `last.pt` (everything needed to resume) and, when valid
    PCC improved, `best.pt` (the model at the best epoch), both with the configs inside.
    resume_from: a `last.pt` file or a directory holding one; training continues after its epoch
    and reaches the same result as an uninterrupted run.
    on_batch: called as on_batch(batches_done, batches_per_epoch) after every training batch
    (progress bars); evaluation follows the last batch of each epoch.
    cuda_graphs: replay the training steps from CUDA graphs (`GraphedSteps`; CUDA only): the same
    steps, without launching each of the recurrence's kernels from Python. Never a config field, as it
    changes how the steps run, not what they compute (benchmarks/gpu_check.py compares both).
    """
    device = torch.device(device) if device is not None else pick_device()
    if cuda_graphs and device.type != "cuda":
        raise ConfigError(f"cuda_graphs: CUDA graphs need a CUDA device, this run trains on {device}")
    check_shapes(model_cfg, data)
    check_trainable(data)
    spec = get_variant(model_cfg.variant)
    torch.manual_seed(train_cfg.seed)
    model = DeepDiff(spec, model_cfg).to(device)
    optimizer = make_optimizer(model, train_cfg.lr, capturable=cuda_graphs)
    dtype = autocast_dtype(device, train_cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_loss_scaling(dtype))  # disabled: a pass-through
    order_rng = torch.Generator().manual_seed(train_cfg.seed)
    splits = {name: prepare_split(data.split(name), train_cfg.input_transform, device) for name in ("train", "valid", "test")}
    best, start_epoch = _Best(), 0
    if resume_from is not None:
        start_epoch, best = _restore(Path(resume_from), model, optimizer, scaler, order_rng, model_cfg, train_cfg)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)

    train = splits["train"]
    step = functools.partial(_step_losses, model, optimizer, scaler, dtype, train, spec, model_cfg, train_cfg)
    if cuda_graphs:
        step = GraphedSteps(step, device)
    batches_per_epoch = math.ceil(len(train) / train_cfg.batch_size)
    for epoch in range(start_epoch + 1, train_cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums = torch.zeros(len(LOSS_METRICS), device=device)
        order = torch.randperm(len(train), generator=order_rng).to(device)
        n_batches = 0
        for i in range(0, len(train), train_cfg.batch_size):
            sums += step(order[i : i + train_cfg.batch_size])
            n_batches += 1
            if on_batch is not None:
                on_batch(n_batches, batches_per_epoch)
        means = {metric: value for (metric, _), value in zip(LOSS_METRICS, (sums / n_batches).tolist())}  # one sync
        scores, ended = (math.nan,) * 4, None
        if not all(math.isfinite(x) for x in means.values()):
            ended = EpochStatus.NAN
        else:
            scores = (*evaluate(model, splits["valid"], train_cfg.eval_batch_size),
                      *evaluate(model, splits["test"], train_cfg.eval_batch_size))
            ended = None if all(math.isfinite(x) for x in scores) else EpochStatus.DIVERGED
        valid_pcc, valid_mse, test_pcc, test_mse = scores
        if ended is not None:  # nothing of this epoch is kept: no checkpoint, no best
            yield EpochResult(
                epoch=epoch, **means, valid_pcc=valid_pcc, valid_mse=valid_mse, test_pcc=test_pcc, test_mse=test_mse,
                best_epoch=best.epoch, best_valid_pcc=best.valid_pcc, best_test_pcc=best.test_pcc,
                best_test_mse=best.test_mse, seconds=time.perf_counter() - started, status=ended,
            )
            return
        improved = valid_pcc > best.valid_pcc
        if improved:
            best = _Best(epoch, valid_pcc, test_pcc, test_mse)
        if epoch == train_cfg.epochs:
            status = EpochStatus.COMPLETED
        elif train_cfg.patience and epoch - best.epoch >= train_cfg.patience:
            status = EpochStatus.EARLY_STOPPED
        else:
            status = EpochStatus.RUNNING
        result = EpochResult(
            epoch=epoch, **means, valid_pcc=valid_pcc, valid_mse=valid_mse, test_pcc=test_pcc, test_mse=test_mse,
            best_epoch=best.epoch, best_valid_pcc=best.valid_pcc, best_test_pcc=best.test_pcc,
            best_test_mse=best.test_mse, seconds=time.perf_counter() - started, status=status,
        )
        if ckpt_dir is not None:
            state = _checkpoint_state(model, optimizer, scaler, dtype, order_rng, model_cfg, train_cfg, epoch, best)
            _atomic_save(state, ckpt_dir / LAST_CHECKPOINT)
            if improved:
                _atomic_save({k: state[k] for k in ("format", "model_config", "train_config", "epoch", "model", "best", COMPUTE_DTYPE)},
                             ckpt_dir / BEST_CHECKPOINT)
        yield result
        if status.final:
            return


def train_step(model: DeepDiff, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               dtype: torch.dtype | None, batch: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
               spec: VariantSpec, model_cfg: ModelConfig, train_cfg: TrainConfig, *, cache: bool = True) -> LossParts:
    """One step on `batch` (x_a, x_b, targets): forward under autocast to `dtype` (None: float32), the
    loss in float32, backward, gradient clipping, Adam; returns the loss parts (not read back here).

    The loss is computed from float32 outputs outside autocast: autocast's lists of ops kept in float32
    differ by device (a CPU keeps softmax in bfloat16), and the losses are cheap. With float16 the
    scaler multiplies the loss before backward and divides the gradients before clipping, so `clip`
    means the same in every precision; a step whose gradients overflowed is skipped and the scale lowered
    (all on the device: with the fused Adam nothing is read back to the host). Disabled (any other
    precision), the scaler passes everything through unchanged. `cache`: autocast's cache of casted
    weights (off for a step captured in a CUDA graph).
    """
    x_a, x_b, targets = batch
    with autocast(x_a.device, dtype, cache=cache):
        out = model(x_a, x_b)
    parts = deepdiff_loss(_float32(out), targets, spec, model_cfg, train_cfg)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(parts.total).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip)
    scaler.step(optimizer)
    scaler.update()
    return parts


def _step_losses(model, optimizer, scaler, dtype, split: PreparedSplit, spec, model_cfg, train_cfg,
                 index: torch.Tensor, *, cache: bool = True) -> torch.Tensor:
    """`train_step` on the genes `index` of `split`; its `LOSS_METRICS` parts stacked (on the device)."""
    parts = train_step(model, optimizer, scaler, dtype, split.batch(index), spec, model_cfg, train_cfg, cache=cache)
    return torch.stack([getattr(parts, part).detach() for _, part in LOSS_METRICS])


class GraphedSteps:
    """`steps(index)` does what `step(index)` does (a `_step_losses` bound to its run), replayed from a
    CUDA graph: one graph per batch size (an epoch's last batch may be smaller), captured after
    `WARMUP` eager steps of that size on a side stream (these create Adam's moments, the loss scale and
    cuBLAS's workspaces, which a capture must not). Each call copies `index` into the graph's own index
    tensor and replays: the gathering of the batch from the split (on the device for the whole run), the
    forward, loss, backward, clipping, loss scaling and Adam, all without Python. What this needs of the
    step, and has: nothing read back to the host, no shape that depends on data, a capturable fused Adam
    (`make_optimizer(capturable=True)`), autocast without its weight cache. Dropout draws from the CUDA
    generator's graph-safe stream, so a graphed run is as random as an eager one, but not mask for mask
    the same. Returns the graph's output tensor, which the next call overwrites: use it before.
    """

    WARMUP = 2

    def __init__(self, step: Callable[..., torch.Tensor], device: torch.device) -> None:
        self.step, self.device = step, device
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.warm: dict[int, int] = {}  # eager steps run so far per batch size
        self.pool = None  # one memory pool for all of the run's graphs
        self.stream = torch.cuda.Stream(device)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        size = index.shape[0]
        if size in self.graphs:
            graph, static_index, out = self.graphs[size]
            static_index.copy_(index)
            graph.replay()
            return out
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        if self.warm.get(size, 0) < self.WARMUP:
            self.warm[size] = self.warm.get(size, 0) + 1
            with torch.cuda.stream(self.stream), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable=True.*")  # warm-up steps are not captured
                out = self.step(index, cache=False)
            current.wait_stream(self.stream)
            return out
        static_index = index.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):  # records the step, runs nothing
            out = self.step(static_index, cache=False)
        self.pool = graph.pool()
        self.graphs[size] = graph, static_index, out
        graph.replay()
        return out


def _float32(out: DeepDiffOutput) -> DeepDiffOutput:
    """Every tensor of `out` in float32 (those already float32 as they are, not copied)."""
    def as_float(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: t.float() for key, t in tensors.items()}

    return DeepDiffOutput(out.prediction.float(), as_float(out.aux), as_float(out.level1),
                          as_float(out.bin_attention), as_float(out.mark_attention))


def make_optimizer(model: torch.nn.Module, lr: float, *, capturable: bool = False) -> torch.optim.Adam:
    """Adam over the model's parameters, as published; PyTorch's fused implementation where the
    installed torch has one for the device (one kernel over all ~130 parameter tensors instead of a
    dozen small ops for each; measured on a CPU for `raw` at batch 10, 1 thread: Adam's step went from
    3.0 to 0.9 ms of a 22 ms training step), else the plain one. `capturable`: its step counts live on
    the device, so a CUDA graph can capture the step (`GraphedSteps`; CUDA only)."""
    if capturable:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=True)
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch or a device without a fused Adam
        return torch.optim.Adam(model.parameters(), lr=lr)


def check_shapes(model_cfg: ModelConfig, data: PairData) -> None:
    """A `ConfigError` unless the model's marks and bins are the data's (a config file or a checkpoint
    may say otherwise)."""
    _, n_marks, n_bins = data.train.x_a.shape
    for name, expected, got in (("n_marks", n_marks, model_cfg.n_marks), ("n_bins", n_bins, model_cfg.n_bins)):
        if expected != got:
            raise ConfigError(f"field {name}: the model expects {got} but the data of {data.cell_a}-{data.cell_b} has {expected}")


def _checkpoint_state(model, optimizer, scaler, dtype, order_rng, model_cfg, train_cfg, epoch, best) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": dataclasses.asdict(model_cfg),
        "train_config": dataclasses.asdict(train_cfg),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "order_rng": order_rng.get_state(),
        GRAD_SCALER: scaler.state_dict(),  # {} unless float16
        COMPUTE_DTYPE: dtype_name(dtype),  # what `precision` came to on the device that trained
        "best": dataclasses.asdict(best),
    }


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    # Serialised in memory first: torch.save reports a failed write (disk full) as a RuntimeError of
    # its zip writer; write_atomic raises an OSError naming the file and leaves the old one intact.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `fit` (a file, or a directory holding last.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST_CHECKPOINT
    problem = path_problem(path, "checkpoint")
    if problem is not None:
        raise ConfigError(f"{path}: {problem} (expected a {LAST_CHECKPOINT} written by deepdiff train --out)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ConfigError(f"{path}: not a readable deepdiff checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path}: not a deepdiff checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    epoch = state.get("epoch")
    if missing or isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"{path}: a damaged deepdiff checkpoint ({f'no {missing[0]}' if missing else f'epoch {epoch!r}'})")
    return state


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[DeepDiff, ModelConfig, TrainConfig]:
    """The model stored in a checkpoint (best.pt or last.pt), in eval mode, with its configs."""
    state = load_checkpoint(path)
    try:
        model_cfg = ModelConfig(**state["model_config"])
        train_cfg = TrainConfig(**state["train_config"])
        model = DeepDiff.from_config(model_cfg)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as err:  # configs or weights not of this version's model
        raise ConfigError(f"{path}: not a checkpoint of this deepdiff model ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200] if str(err) else 'no message'})") from None
    return model.to(device).eval(), model_cfg, train_cfg


def check_resumable(path: str | Path, state: dict[str, Any], model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """A `ConfigError` if the configs differ from checkpoint `state` (read from `path`) in a field that
    a resumed run may not change (all but `RESUMABLE_CHANGES`). A field newer than the checkpoint
    (e.g. `precision`) counts as its default there, the behaviour of the version that wrote it."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise ConfigError(f"{path}: cannot resume, the checkpoint holds no {missing[0]} (a best.pt, or damaged)")
    saved = {**flat_config(ModelConfig(), TrainConfig()), **state["model_config"], **state["train_config"]}
    current = {**dataclasses.asdict(model_cfg), **dataclasses.asdict(train_cfg)}
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if changed:
        k = changed[0]
        raise ConfigError(f"{path}: cannot resume, field {k} is {saved.get(k)!r} in the checkpoint but {current[k]!r} now")


def _restore(path, model, optimizer, scaler, order_rng, model_cfg, train_cfg) -> tuple[int, _Best]:
    state = load_checkpoint(path)
    check_resumable(path, state, model_cfg, train_cfg)
    model.load_state_dict(state["model"])
    running = [{key: group[key] for key in OPTIMIZER_RUNTIME if key in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, flags in zip(optimizer.param_groups, running):
        group.update(flags)
    if state.get(GRAD_SCALER):  # a float16 run's loss scale ({} otherwise; a disabled scaler ignores it)
        scaler.load_state_dict(state[GRAD_SCALER])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    order_rng.set_state(state["order_rng"])
    return state["epoch"], _Best(**state["best"])
