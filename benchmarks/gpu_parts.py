"""Parts 1-3 of benchmarks/gpu_check.py, the checks (Level I against cuDNN and the CPU kernel, mixed
precision, CUDA graphs), what every part shares (`SIZES`, the two scales they run at; the device; test
inputs), and `describe`, the environment. A part is `part_*(report, sizes, device, deadline)`, run by
gpu_check.py in a fresh process (torch is imported inside the functions, so the checking process itself
never holds a CUDA context), and keeps to its wall-clock `deadline` (time.time()): a loop that runs out
of time stops and says where. Parts 4 and 5 are in gpu_speed.py.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sizes:
    model: dict  # ModelConfig fields besides the variant ({}: the published hidden 32/16, 5 marks, 200 bins)
    n_bins: int  # bins per gene of the synthetic pairs (= the model's n_bins)
    level1_genes: int  # part 1: genes of each forward and backward (the published batch: 10)
    amp_genes: int  # part 2: genes of its synthetic pair
    amp_signal: str  # part 2: the pair's signal ("realistic": calibrated on the real sample; "easy": strong)
    amp: dict  # part 2: TrainConfig fields of its runs
    pcc_tol: float  # part 2: |valid PCC of bfloat16 or float16 - float32's| at most this (same seed)
    graph_genes: int  # part 3: genes of its synthetic pair (its training split leaves a partial last batch)
    graph: dict  # part 3: TrainConfig fields of its runs
    train_batches: tuple[int, ...]  # part 4: training batch sizes, then doubling up to largest_cap
    largest_cap: int  # part 4: the doubling stops here (or at the first batch that does not fit)
    trial_s: float  # part 4: each throughput trial times about this many seconds of steps
    eval_genes: int  # part 4: genes of the evaluation pass (and of the host-to-device copy)
    eval_batches: tuple[int, ...]  # part 4: evaluation batch sizes
    processes: tuple[int, ...]  # part 5: training processes at once on the device
    share_batches: tuple[int, ...]  # part 5: their batch sizes (the study searches 10-100)
    window_s: float  # part 5: seconds each round of processes trains together
    budget_scale: float  # the parts' time budgets times this (gpu_check.PARTS: 1 on a GPU, whose run must fit 8 minutes)


SIZES = {
    # Part 2 as benchmarks/bench_amp.py measured it with CPU autocast (README: bfloat16 within 0.00005 of
    # float32 over seeds 0-2, float16 0.0054 lower at most, after its loss scaler skipped 3 of 90 steps).
    "gpu": Sizes(model={}, n_bins=200, level1_genes=10, amp_genes=1000, amp_signal="realistic",
                 amp=dict(epochs=10, batch_size=64, lr=6.4e-4), pcc_tol=0.01, graph_genes=613,
                 graph=dict(epochs=4, batch_size=10, lr=1e-4), train_batches=(10, 64, 256, 1024), largest_cap=65536,
                 trial_s=1.0, eval_genes=16384, eval_batches=(256, 1024, 4096), processes=(1, 2, 4, 8),
                 share_batches=(10, 100), window_s=6.0, budget_scale=1.0),
    # On a CPU the budgets are 4x: CI machines are shared (at a load of 8 on 2 cores part 2 took 65 s of 80).
    # Part 2's tiny runs (~100 steps) are noisier: measured over seeds 0-2 on the AMD EPYC, bfloat16 within
    # 0.0045 of float32, float16 within 0.011 (its 3 skipped first steps); the realistic signal is not
    # learnt at these sizes (valid PCC ~0.2, its differences up to 0.03).
    "cpu": Sizes(model=dict(level1_hidden=4, level2_hidden=3, n_bins=20), n_bins=20, level1_genes=3, amp_genes=300,
                 amp_signal="easy", amp=dict(epochs=6, batch_size=16, lr=1e-3), pcc_tol=0.03, graph_genes=100, graph=dict(epochs=2, batch_size=16, lr=3e-3),
                 train_batches=(4,), largest_cap=8, trial_s=0.05, eval_genes=64, eval_batches=(32,),
                 processes=(1, 2), share_batches=(4,), window_s=0.3, budget_scale=4.0),
}
# Part 1: |grouped - per channel| at most OUTPUT_TOL on every output (embeddings, attention, predictions:
# all of order 0.01-1), and on every parameter's gradient at most GRAD_TOL times that gradient's largest
# entry. float32 with TF32 off; a wrong gate, direction or time order is off by 1e-2 or more.
OUTPUT_TOL, GRAD_TOL = 1e-4, 1e-4
GRAPH_TOL = 1e-4  # part 3: relative difference of graphed and eager losses (and of their valid PCC)
CHECKPOINT_TOL = 1e-4  # part 2: valid PCC of best.pt evaluated on the CPU against the run's own figure


class NoDevice(Exception):
    """No CUDA device in GPU mode."""


def setup(mode: str):
    """The device of the parts (and one torch thread per process on a CPU)."""
    import torch

    if mode == "cpu":
        torch.set_num_threads(1)
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise NoDevice("no CUDA device here (torch.cuda.is_available() is False); "
                       "python3 benchmarks/gpu_check.py --cpu runs the check on the CPU")
    return torch.device("cuda")


def describe(mode: str) -> dict:
    """Device, torch, CUDA, cuDNN; TF32 defaults; the CPU kernel's status. `error` when no device."""
    import torch

    from deepdiff import cpu_kernel

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "error": None,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cpu": _cpu_name(), "cpu_kernel": cpu_kernel.status(), "torch_threads": torch.get_num_threads()}
    try:
        device = setup(mode)
    except NoDevice as err:
        return {**env, "device": "none", "device_name": "-", "error": str(err)}
    env["device"] = str(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, capability=list(torch.cuda.get_device_capability(device)),
                   memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count(),
                   bf16_supported=torch.cuda.is_bf16_supported(),
                   tf32_default={"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32})
    else:
        env["device_name"] = env["cpu"]
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return os.uname().machine


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _counts(torch, shape, gen, device):
    """Count-like inputs (the model reads raw read counts: mostly small, some larger)."""
    return torch.poisson(torch.rand(shape, generator=gen) * 4, generator=gen).to(device)


def _targets(torch, n, gen, device) -> dict:
    """Random targets of every kind `deepdiff.losses` reads."""
    return {"diff": torch.randn(n, generator=gen).to(device), "aux_reg_a": torch.rand(n, generator=gen).to(device),
            "aux_reg_b": torch.rand(n, generator=gen).to(device), "aux_cls_a": torch.randint(0, 2, (n,), generator=gen).to(device),
            "aux_cls_b": torch.randint(0, 2, (n,), generator=gen).to(device),
            "similar": torch.randint(0, 2, (n,), generator=gen).float().to(device)}


# ---- 1. correctness -------------------------------------------------------------------------------

def _exact_float32(torch) -> None:
    """Products in true float32 (cuDNN's default allows TF32, whose 10-bit mantissa would blur the comparison)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _outputs_and_grads(torch, model, impl, x_a, x_b) -> dict:
    """Every output of a training-mode forward (dropout 0) and every parameter's gradient of a fixed random
    weighted sum of all outputs; then the eval-mode (no_grad) prediction. float64 CPU copies, by name."""
    model.set_level1_impl(impl).train()
    out = model(x_a, x_b)
    named = {"prediction": out.prediction, **{f"aux.{k}": v for k, v in out.aux.items()},
             **{f"level1.{k}": v for k, v in out.level1.items()}, **{f"bin_attention.{k}": v for k, v in out.bin_attention.items()},
             **{f"mark_attention.{k}": v for k, v in out.mark_attention.items()}}
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t.device)).sum() for t in named.values())
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    result = {f"out {k}": v.detach().double().cpu() for k, v in named.items()}
    result.update({f"grad {k}": g.double().cpu() for k, g in zip(params, grads)})
    with torch.no_grad():
        result["out eval prediction"] = model.eval()(x_a, x_b).prediction.double().cpu()
    model.train()
    return result


def _differences(got: dict, ref: dict) -> tuple[float, float, str]:
    """(max |output difference|, max over gradients of |difference| / largest |entry|, the worst gradient)."""
    out = max((got[k] - ref[k]).abs().max().item() for k in ref if k.startswith("out "))
    rel = {k: (got[k] - ref[k]).abs().max().item() / max(ref[k].abs().max().item(), 1e-30) for k in ref if k.startswith("grad ")}
    worst = max(rel, key=rel.get)
    return out, rel[worst], worst.removeprefix("grad ")


def part_correctness(report, sizes: Sizes, device, deadline: float) -> None:
    import torch

    from deepdiff import cpu_kernel
    from deepdiff.config import ModelConfig
    from deepdiff.model import DeepDiff
    from deepdiff.variants import VARIANTS

    _exact_float32(torch)
    third = "fused" if cpu_kernel.available() else "grouped"
    report.note(f"tolerances: outputs {OUTPUT_TOL:g} absolute, gradients {GRAD_TOL:g} of each gradient's largest entry; "
                f"third opinion: {'the compiled CPU kernel' if third == 'fused' else 'grouped torch ops on the CPU (no C kernel)'}")
    figures = report.figures.setdefault("variants", {})
    for variant in VARIANTS:
        if time.time() > deadline:
            report.check(f"{variant}: grouped = per-channel", False, "not run: out of time")
            continue
        torch.manual_seed(0)
        model = DeepDiff.from_config(ModelConfig(variant=variant, dropout=0.0, **sizes.model))
        gen = torch.Generator().manual_seed(1)
        shape = (sizes.level1_genes, model.cfg.n_marks, model.cfg.n_bins)
        x_a, x_b = _counts(torch, shape, gen, "cpu"), _counts(torch, shape, gen, "cpu")
        on_cpu = copy.deepcopy(model)
        model.to(device)
        grouped = _outputs_and_grads(torch, model, "grouped", x_a.to(device), x_b.to(device))
        per_channel = _outputs_and_grads(torch, model, "per_channel", x_a.to(device), x_b.to(device))
        cpu = _outputs_and_grads(torch, on_cpu, third, x_a, x_b)
        out, grad, worst = _differences(grouped, per_channel)
        out3, grad3, worst3 = _differences(cpu, grouped)
        figures[variant] = {"grouped_vs_per_channel": {"outputs": out, "gradients": grad, "worst_gradient": worst},
                            f"cpu_{third}_vs_grouped": {"outputs": out3, "gradients": grad3, "worst_gradient": worst3}}
        report.check(f"{variant}: grouped = per-channel on {device}", out <= OUTPUT_TOL and grad <= GRAD_TOL,
                     f"outputs {out:.1e}, gradients {grad:.1e} ({worst})")
        report.check(f"{variant}: CPU {third} = grouped on {device}", out3 <= OUTPUT_TOL and grad3 <= GRAD_TOL,
                     f"outputs {out3:.1e}, gradients {grad3:.1e} ({worst3})")


# ---- 2. mixed precision ---------------------------------------------------------------------------

def _loss_scale_log(torch) -> list:
    """Record every update of an enabled GradScaler in this process as (scale before, scale after): the
    scale falls exactly when the step's gradients were not finite and the optimizer step was skipped
    (an instrument of this check; `deepdiff.train` itself reads nothing back per step)."""
    log: list[tuple[float, float]] = []
    update = torch.amp.GradScaler.update

    def logged(self, new_scale=None):
        if not self.is_enabled():
            return update(self, new_scale)
        before = self.get_scale()
        update(self, new_scale)
        log.append((before, self.get_scale()))

    torch.amp.GradScaler.update = logged
    return log


def _synthetic(tmp: str, genes: int, n_bins: int, signal: str = "realistic"):
    from deepdiff.data import load_pair
    from deepdiff.synthetic import write_synthetic_pair

    write_synthetic_pair(tmp, genes=genes, seed=1, n_bins=n_bins, signal=signal)
    return load_pair(tmp, "Cell1", "Cell2", n_bins=n_bins)


def part_precision(report, sizes: Sizes, device, deadline: float) -> None:
    import torch

    from deepdiff.config import ModelConfig, TrainConfig
    from deepdiff.results import diverged
    from deepdiff.train import BEST_CHECKPOINT, GRAD_SCALER, LAST_CHECKPOINT, evaluate, fit, load_model, prepare_split

    log = _loss_scale_log(torch)
    precisions = ["float32", "bfloat16", "float16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions.remove("bfloat16")
        report.note("this GPU does not compute bfloat16: bfloat16 not run")
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pair = _synthetic(tmp, sizes.amp_genes, sizes.n_bins, sizes.amp_signal)
        model_cfg = ModelConfig(variant="raw", **sizes.model)
        report.note(f"raw on a {sizes.amp_genes}-gene synthetic pair, signal {sizes.amp_signal} ({len(pair.train)} train, "
                    f"{len(pair.valid)} valid genes), " + ", ".join(f"{k} {v:g}" for k, v in sizes.amp.items()) + ", seed 0")
        for i, precision in enumerate(precisions):
            stop = time.time() + (deadline - 5 - time.time()) / (len(precisions) - i)
            del log[:]
            folder = Path(tmp) / precision
            results = []
            for result in fit(model_cfg, TrainConfig(seed=0, precision=precision, **sizes.amp), pair, device=device,
                              checkpoint_dir=folder):
                results.append(result)
                if time.time() > stop and not result.status.final:
                    report.note(f"{precision}: stopped after epoch {result.epoch}: out of time")
                    break
            scale = torch.load(folder / LAST_CHECKPOINT, map_location="cpu", weights_only=True).get(GRAD_SCALER) or {}
            best_model = load_model(folder / BEST_CHECKPOINT, "cpu")[0]
            on_cpu = evaluate(best_model, prepare_split(pair.valid, "raw", torch.device("cpu")), 256)[0]
            runs[precision] = {
                "valid_pcc": [r.valid_pcc for r in results], "best_valid_pcc": results[-1].best_valid_pcc,
                "train_loss": [r.train_loss for r in results], "status": str(results[-1].status),
                "s_per_epoch": statistics.median([r.seconds for r in results][1:] or [results[0].seconds]),
                "steps": len(log), "skipped_steps": sum(after < before for before, after in log),
                "final_scale": log[-1][1] if log else None, "checkpoint_scale": scale.get("scale"),
                "best_on_cpu": on_cpu,
            }
    report.figures["runs"] = runs
    epoch = min(len(run["valid_pcc"]) for run in runs.values())
    base = runs["float32"]["valid_pcc"][epoch - 1]
    for precision, run in runs.items():
        pcc = run["valid_pcc"][epoch - 1]
        scaled = f", loss scale skipped {run['skipped_steps']} of {run['steps']} steps" if run["steps"] else ""
        report.row(f"{precision} valid PCC at epoch {epoch}", f"{pcc:.4f} ({pcc - base:+.4f} vs float32; best "
                   f"{run['best_valid_pcc']:.4f}), {run['s_per_epoch']:.2f} s/epoch{scaled}")
        finite = all(math.isfinite(x) for x in run["train_loss"] + run["valid_pcc"]) and not diverged(run["status"])
        report.check(f"{precision}: no NaN, no divergence", finite, run["status"])
        if precision != "float32":
            report.check(f"{precision}: valid PCC within {sizes.pcc_tol} of float32", abs(pcc - base) <= sizes.pcc_tol,
                         f"{pcc:.4f} vs {base:.4f} at epoch {epoch}")
        report.check(f"{precision}: best.pt evaluates on the CPU as on {device}",
                     abs(run["best_on_cpu"] - run["best_valid_pcc"]) <= CHECKPOINT_TOL,
                     f"valid PCC {run['best_on_cpu']:.5f} vs {run['best_valid_pcc']:.5f}")
    if "float16" in runs:
        run = runs["float16"]
        report.check("float16: last.pt holds the loss scale", run["steps"] > 0 and run["checkpoint_scale"] == run["final_scale"],
                     f"scale {run['checkpoint_scale']} (the scaler's last: {run['final_scale']})")


# ---- 3. CUDA graphs -------------------------------------------------------------------------------

def _timed_fit(model_cfg, train_cfg, pair, device, graphs: bool) -> tuple[list, list[float]]:
    """fit()'s results and, per epoch, the mean seconds of its training steps after the first."""
    from deepdiff.train import fit

    marks: dict[str, float] = {}
    step_s: list[float] = []

    def on_batch(done: int, total: int) -> None:
        if done in (1, total):
            _sync(device)
            if done == 1:
                marks["first"] = time.perf_counter()
            elif total > 1:
                step_s.append((time.perf_counter() - marks["first"]) / (total - 1))

    results = list(fit(model_cfg, train_cfg, pair, device=device, on_batch=on_batch, cuda_graphs=graphs))
    return results, step_s


def part_graphs(report, sizes: Sizes, device, deadline: float) -> None:
    from deepdiff.config import ModelConfig, TrainConfig
    from deepdiff.device import autocast_dtype, dtype_name

    graphs = device.type == "cuda"
    if not graphs:
        report.note("no CUDA here: no graph is captured; each case runs eager steps twice (the comparison's own check)")
    cases = (("float32", 0.0, True), ("auto", 0.0, True), ("auto", 0.5, False))  # (precision, dropout, checked)
    figures = report.figures.setdefault("cases", {})
    with tempfile.TemporaryDirectory() as tmp:
        pair = _synthetic(tmp, sizes.graph_genes, sizes.n_bins)
        batch = sizes.graph["batch_size"]
        report.note(f"raw, {len(pair.train)} training genes at batch {batch} (last batch {len(pair.train) % batch or batch}), "
                    f"{sizes.graph['epochs']} epochs; step time: median over epochs 2 on")
        for precision, dropout, checked in cases:
            name = f"{precision} ({dtype_name(autocast_dtype(device, precision))}), dropout {dropout:g}"
            if time.time() > deadline - 5:
                if checked:
                    report.check(f"{name}: graphed losses = eager", False, "not run: out of time")
                continue
            model_cfg = ModelConfig(variant="raw", dropout=dropout, **sizes.model)
            train_cfg = TrainConfig(seed=0, precision=precision, **sizes.graph)
            eager, eager_s = _timed_fit(model_cfg, train_cfg, pair, device, False)
            other, other_s = _timed_fit(model_cfg, train_cfg, pair, device, graphs)
            loss = max(abs(a.train_loss - b.train_loss) / abs(a.train_loss) for a, b in zip(eager, other))
            pcc = max(abs(a.valid_pcc - b.valid_pcc) for a, b in zip(eager, other))
            same = all(a.train_loss == b.train_loss and a.valid_pcc == b.valid_pcc for a, b in zip(eager, other))
            t_eager, t_other = statistics.median(eager_s[1:] or eager_s), statistics.median(other_s[1:] or other_s)
            figures[name] = {"eager_step_s": t_eager, "graphed_step_s": t_other if graphs else None, "loss_rel_diff": loss,
                             "valid_pcc_diff": pcc, "bitwise_equal": same, "captured": graphs}
            label = "graphed" if graphs else "eager again"
            report.row(f"{name}: step time", f"eager {1e3 * t_eager:.2f} ms, {label} {1e3 * t_other:.2f} ms "
                       f"(x{t_eager / t_other:.2f}); losses {'bitwise equal' if same else f'differ by {loss:.1e}'}")
            if checked:
                report.check(f"{name}: {label} losses = eager", loss <= GRAPH_TOL and pcc <= GRAPH_TOL,
                             f"loss {loss:.1e} relative, valid PCC {pcc:.1e}")
