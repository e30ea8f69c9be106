"""Parts 4 and 5 of benchmarks/gpu_check.py, the measurements: training and evaluation genes/s and memory
per batch size and Level I way (`part_throughput`), and several training processes sharing one device
(`part_sharing`). Same contract as `gpu_parts`: `part_*(report, sizes, device, deadline)` in a fresh
process, torch imported inside; nothing here is checked but that it ran.
"""

from __future__ import annotations

import gc
import math
import statistics
import time

from gpu_parts import SIZES, Sizes, _counts, _sync, _targets, setup

# ---- 4. throughput --------------------------------------------------------------------------------

def _free(torch, device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(torch, device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _train_rate(torch, device, model_cfg, dtype, impl: str, batch: int, seconds: float) -> tuple[float, float | None]:
    """Training genes/s of the trainer's `train_step` at `batch` on device-resident inputs; peak MiB."""
    from deepdiff.config import TrainConfig
    from deepdiff.model import DeepDiff
    from deepdiff.train import make_optimizer, train_step

    _free(torch, device)
    torch.manual_seed(0)
    model = DeepDiff.from_config(model_cfg).to(device).set_level1_impl(impl)
    optimizer = make_optimizer(model, 1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # float32 / bfloat16: no loss scaling
    gen = torch.Generator().manual_seed(0)
    shape = (batch, model_cfg.n_marks, model_cfg.n_bins)
    data = (_counts(torch, shape, gen, device), _counts(torch, shape, gen, device), _targets(torch, batch, gen, device))
    train_cfg = TrainConfig(batch_size=batch)

    def step() -> None:
        train_step(model, optimizer, scaler, dtype, data, model.spec, model_cfg, train_cfg)

    step()
    step()
    _sync(device)
    started = time.perf_counter()
    step()
    _sync(device)
    steps = max(2, min(200, int(seconds / max(time.perf_counter() - started, 1e-6))))
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - started), _peak_mib(torch, device)


def _eval_rate(torch, device, model_cfg, impl: str, genes: int, batch: int) -> tuple[float, float | None]:
    """Evaluation genes/s (`deepdiff.train.predict`, float32, no_grad) over `genes` genes; peak MiB."""
    from deepdiff.model import DeepDiff
    from deepdiff.train import PreparedSplit, predict

    _free(torch, device)
    torch.manual_seed(0)
    model = DeepDiff.from_config(model_cfg).to(device).set_level1_impl(impl)
    gen = torch.Generator().manual_seed(0)
    shape = (genes, model_cfg.n_marks, model_cfg.n_bins)
    split = PreparedSplit(_counts(torch, shape, gen, device), _counts(torch, shape, gen, device), _targets(torch, genes, gen, device))
    predict(model, PreparedSplit(split.x_a[:batch], split.x_b[:batch], {}), batch)
    _sync(device)
    started = time.perf_counter()
    predict(model, split, batch)
    _sync(device)
    return genes / (time.perf_counter() - started), _peak_mib(torch, device)


def _oom(torch, err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err)


def part_throughput(report, sizes: Sizes, device, deadline: float) -> None:
    import torch

    from deepdiff.config import ModelConfig

    model_cfg = ModelConfig(variant="raw", **sizes.model)
    report.note(f"raw at {'the published sizes' if not sizes.model else sizes.model}; training: the trainer's train_step "
                f"on inputs already on the device; memory: torch's peak allocation in the trial")
    precisions = [("float32", None), ("bfloat16", torch.bfloat16)]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        precisions.pop()
        report.note("this GPU does not compute bfloat16: bfloat16 not run")
    sweeps = [(precision, dtype, impl) for precision, dtype in precisions for impl in ("grouped", "per_channel")]
    batches = list(sizes.train_batches)
    while batches[-1] * 2 <= sizes.largest_cap:
        batches.append(batches[-1] * 2)
    reserve = 0.2 * (deadline - time.time())  # for evaluation and the copy
    train, largest = report.figures.setdefault("train", []), report.figures.setdefault("largest_batch", {})
    for i, (precision, dtype, impl) in enumerate(sweeps):
        stop = time.time() + (deadline - reserve - time.time()) / (len(sweeps) - i)
        fits, limit = None, "cap"
        for batch in batches:
            if time.time() > stop:
                limit = "time"
                report.note(f"{impl} {precision}: stopped before batch {batch}: out of time")
                break
            try:
                rate, peak = _train_rate(torch, device, model_cfg, dtype, impl, batch, sizes.trial_s)
            except (RuntimeError, MemoryError) as err:
                # Out of memory ends the sweep; so does any error beyond the listed batch sizes (a library's
                # limit on huge batches), said in its first line. Below them an error fails the part.
                if not _oom(torch, err) and batch in sizes.train_batches:
                    raise
                first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
                limit = "memory" if _oom(torch, err) else f"error: {first}"
                report.row(f"train {impl} {precision} batch {batch}", "out of memory" if _oom(torch, err) else limit)
                break
            finally:
                _free(torch, device)
            fits = batch
            train.append({"impl": impl, "precision": precision, "batch": batch, "genes_per_s": rate, "peak_mib": peak})
            report.row(f"train {impl} {precision} batch {batch}", f"{rate:.0f} genes/s" + (f", peak {peak:.0f} MiB" if peak else ""))
        largest[f"{impl} {precision}"] = {"batch": fits, "stopped_by": limit}
        why = {"cap": f"the sweep stops at {sizes.largest_cap}", "time": "the sweep ran out of time",
               "memory": "the next did not fit in memory"}.get(limit, f"the next failed: {limit}")
        report.row(f"train {impl} {precision}: largest batch that ran", f"{fits} ({why})")
    rates = {(t["impl"], t["precision"], t["batch"]): t["genes_per_s"] for t in train}
    for (impl, precision, batch), rate in rates.items():
        if impl == "grouped" and ("per_channel", precision, batch) in rates:
            report.row(f"grouped / per-channel {precision} batch {batch}", f"x{rate / rates['per_channel', precision, batch]:.2f}")
    for batch in sizes.eval_batches:
        for impl in ("grouped", "per_channel"):
            if time.time() > deadline - 2:
                report.note(f"evaluation {impl} batch {batch}: not run, out of time")
                continue
            rate, peak = _eval_rate(torch, device, model_cfg, impl, sizes.eval_genes, batch)
            report.figures.setdefault("eval", []).append({"impl": impl, "batch": batch, "genes_per_s": rate, "peak_mib": peak})
            report.row(f"evaluate {impl} float32 batch {batch}", f"{rate:.0f} genes/s" + (f", peak {peak:.0f} MiB" if peak else ""))
    if device.type == "cuda":
        _copy_times(report, torch, device, model_cfg, sizes.eval_genes)
    report.check("part 4 ran to the end", True)


def _copy_times(report, torch, device, model_cfg, genes: int) -> None:
    """A pair's inputs to the GPU: once per trial in `deepdiff.train.prepare_split` (pageable memory)."""
    x = torch.poisson(torch.rand(2, genes, model_cfg.n_marks, model_cfg.n_bins) * 4)
    x.to(device)
    _sync(device)
    started = time.perf_counter()
    x.to(device)
    _sync(device)
    pageable = time.perf_counter() - started
    started = time.perf_counter()
    pinned = x.pin_memory()
    pinning = time.perf_counter() - started
    started = time.perf_counter()
    pinned.to(device, non_blocking=True)
    _sync(device)
    copy_s = time.perf_counter() - started
    report.figures["copy_to_device"] = {"genes": genes, "mib": x.numel() * 4 / 2**20, "pageable_s": pageable,
                                        "pinned_s": copy_s, "pinning_s": pinning}
    report.row(f"inputs of {genes} genes ({x.numel() * 4 / 2**20:.0f} MiB) to the GPU",
               f"pageable {1e3 * pageable:.1f} ms; pinned {1e3 * copy_s:.1f} ms after {1e3 * pinning:.1f} ms of pinning")


# ---- 5. several trials on one device --------------------------------------------------------------

def _share_worker(rank: int, mode: str, deadline: float, barrier, queue) -> None:
    """One training process of part 5: `raw` in precision auto; in each round (batch, P) the first P
    processes train for the window while the rest wait; each sends its genes/s."""
    try:
        import torch

        from deepdiff.config import ModelConfig, TrainConfig
        from deepdiff.device import autocast_dtype
        from deepdiff.model import DeepDiff
        from deepdiff.train import make_optimizer, train_step

        device = setup(mode)
        sizes = SIZES[mode]
        model_cfg = ModelConfig(variant="raw", **sizes.model)
        dtype = autocast_dtype(device, "auto")
        torch.manual_seed(rank)
        model = DeepDiff.from_config(model_cfg).to(device)
        optimizer = make_optimizer(model, 1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        gen = torch.Generator().manual_seed(rank)
        most = max(sizes.share_batches)
        shape = (most, model_cfg.n_marks, model_cfg.n_bins)
        x_a, x_b, targets = _counts(torch, shape, gen, device), _counts(torch, shape, gen, device), _targets(torch, most, gen, device)
        cfgs = {b: TrainConfig(batch_size=b) for b in sizes.share_batches}

        def step(b: int) -> None:
            train_step(model, optimizer, scaler, dtype, (x_a[:b], x_b[:b], {k: v[:b] for k, v in targets.items()}),
                       model.spec, model_cfg, cfgs[b])

        for b in sizes.share_batches:
            step(b)
            step(b)
        _sync(device)
        for b in sizes.share_batches:
            for p in sizes.processes:
                barrier.wait(timeout=max(1.0, deadline - time.time()))
                if rank < p:
                    steps, started = 0, time.perf_counter()
                    while time.perf_counter() - started < sizes.window_s:
                        step(b)
                        steps += 1
                    _sync(device)
                    queue.put(("rate", b, p, rank, b * steps / (time.perf_counter() - started)))
        queue.put(("done", rank, _peak_mib(torch, device)))
    except BaseException as err:  # noqa: BLE001 - reported to the part, which fails its check
        queue.put(("error", rank, f"{type(err).__name__}: {str(err)[:200]}"))


def part_sharing(report, sizes: Sizes, device, deadline: float) -> None:
    import queue as queues

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    workers = max(sizes.processes)
    barrier, inbox = ctx.Barrier(workers), ctx.Queue()
    mode = "gpu" if device.type == "cuda" else "cpu"
    procs = [ctx.Process(target=_share_worker, args=(rank, mode, deadline - 3, barrier, inbox), daemon=True)
             for rank in range(workers)]
    for proc in procs:
        proc.start()
    rates: dict[tuple[int, int], list[float]] = {}
    done, errors = {}, []
    while len(done) + len(errors) < workers and time.time() < deadline - 1:
        try:
            message = inbox.get(timeout=max(0.1, min(1.0, deadline - 1 - time.time())))
        except queues.Empty:
            if not any(proc.is_alive() for proc in procs):
                break
            continue
        if message[0] == "rate":
            rates.setdefault((message[1], message[2]), []).append(message[4])
        elif message[0] == "done":
            done[message[1]] = message[2]
        else:
            errors.append(f"process {message[1]}: {message[2]}")
    for proc in procs:
        proc.join(1)
        if proc.is_alive():
            proc.kill()
    report.note(f"{workers} processes (torch.multiprocessing, spawn) train raw in precision auto on {device}; "
                f"in each round the first P of them train together for {sizes.window_s:g} s")
    table = report.figures.setdefault("rounds", [])
    for batch in sizes.share_batches:
        alone = statistics.mean(rates.get((batch, 1), [math.nan]))
        totals: dict[int, float] = {}
        for p in sizes.processes:
            each = rates.get((batch, p), [])
            if len(each) != p:  # a round that did not finish
                continue
            totals[p] = sum(each)
            slow = [alone / r for r in each]
            table.append({"batch": batch, "processes": p, "genes_per_s": each, "total": totals[p], "slowdown": slow})
            report.row(f"batch {batch}, {p} trial(s) at once", f"total {totals[p]:.0f} genes/s (x{totals[p] / alone:.2f} one "
                       f"alone), each x{min(slow):.2f}-x{max(slow):.2f} slower")
        if totals and device.type == "cuda":
            best = max(totals, key=totals.get)
            report.row(f"batch {batch}: most genes/s", f"{best} trial(s) at once: --gpus-per-trial {1 / best:g}")
    report.figures["peak_mib_per_process"] = [done.get(rank) for rank in range(workers)]
    complete = not errors and len(done) == workers
    report.check("part 5 ran to the end", complete, "; ".join(errors) or (f"{len(done)} of {workers} processes finished"))
