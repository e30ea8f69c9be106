"""The GPU path checked and measured in one command: run it once on a CUDA machine and read everything.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--out DIR] [--parts 1,2,3,4,5]
    PYTHONPATH=. python3 benchmarks/gpu_check.py --cpu [--out DIR]   # the same code at tiny sizes (CI)

Needs only the `deepdiff` core and torch (no Ray, MLflow or Optuna, no network); runs from the
repository root. Six parts, each in a process of its own with its own time budget (a part that fails,
hangs or crashes the CUDA context stops only itself), about 7.5 minutes at most on a GPU:

1. correctness: every variant's forward and backward at the published sizes, float32 (TF32 off), with
   the grouped Level I against one nn.LSTM per channel (cuDNN), and the CPU kernel on the same inputs;
2. mixed precision: `raw` trained on a calibrated synthetic pair in float32, bfloat16 and float16 from
   one seed: valid PCC, NaNs, the loss scaler's skipped steps, checkpoints read back on the CPU;
3. CUDA graphs: `fit(cuda_graphs=True)` against eager steps on the same batches: losses, step times;
4. throughput: training genes/s per batch size (up to the largest that fits), grouped vs per-channel,
   float32 and bfloat16, peak memory of each trial; evaluation genes/s; moving a pair to the GPU;
5. trials sharing one GPU: 1, 2, 4, 8 training processes at once: total genes/s, each one's slowdown;
6. the summary: a table, `gpu_check.json` with every figure (in $OUT when set, else --out), and the
   last line ``gpu-check: N passed, M failed``. Exit status 1 when a check of parts 1-3 failed (a
   comparison out of tolerance, or the part raised or ran out of time), 3 when only part 4 or 5 did not
   finish, 2 without a CUDA device (or --cpu). Speed is printed, never checked.

`--cpu` runs every part at tiny sizes on the CPU (where part 3 cannot capture a graph and says so);
tests/test_gpu_check.py runs it. docs/gpu.md says what each line means.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_parts  # noqa: E402  (parts 1-3 and what all share; imports torch only inside its functions)


@dataclass(frozen=True)
class Part:
    number: int  # as printed and selected by --parts
    title: str  # one line in the summary
    run: str  # "module.function" under benchmarks/: function(report, sizes, device, deadline)
    budget_s: float  # wall seconds it may take on a GPU (x Sizes.budget_scale), its process's start included; killed GRACE_S after
    correctness: bool  # a failed check of it is exit status 1 (else 3: a measurement that did not finish)


PARTS = (
    Part(1, "correctness of Level I on the device (float32)", "gpu_parts.part_correctness", 50, True),
    Part(2, "mixed precision (float32, bfloat16, float16)", "gpu_parts.part_precision", 80, True),
    Part(3, "CUDA graphs against eager steps", "gpu_parts.part_graphs", 50, True),
    Part(4, "throughput and memory", "gpu_speed.part_throughput", 130, False),
    Part(5, "several trials on one device", "gpu_speed.part_sharing", 100, False),
)
GRACE_S = 10  # a part still running this long after its budget is killed


@dataclass
class Report:
    """What a part hands back: pass/fail checks, figures (JSON), table rows and notes (stdout)."""

    checks: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"  {'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)

    def row(self, what: str, value: str) -> None:
        self.rows.append((what, value))
        print(f"  {what}: {value}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)


def _part_child(number: int, mode: str, deadline: float, announce: bool, conn) -> None:
    """One part in this fresh process; (the environment, its Report) go back through `conn` whatever
    happens. `announce`: print the device and versions first (the first part)."""
    report = Report()
    part = next(p for p in PARTS if p.number == number)
    env = gpu_parts.describe(mode)
    if announce and not env["error"]:
        print(f"  on {env['device']} ({env['device_name']}), torch {env['torch']}, CUDA {env['cuda']}, "
              f"cuDNN {env['cudnn']}; CPU kernel: {env['cpu_kernel']}", flush=True)
    try:
        if not env["error"]:
            module, name = part.run.split(".")
            getattr(importlib.import_module(module), name)(report, gpu_parts.SIZES[mode], gpu_parts.setup(mode), deadline)
    except BaseException as err:  # noqa: BLE001 - a part's failure is reported, never propagated
        traceback.print_exc()
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else "no message"
        report.check(f"part {number} ran to the end", False, f"{type(err).__name__}: {first}")
    conn.send((env, asdict(report)))
    conn.close()


def run_part(part: Part, mode: str, announce: bool) -> tuple[dict | None, dict, float]:
    """Run `part` in a spawned process under its budget: the environment it saw (None if it died), its
    report (a failed check if it died or hung), its seconds."""
    budget = part.budget_s * gpu_parts.SIZES[mode].budget_scale
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    started = time.time()
    proc = ctx.Process(target=_part_child, args=(part.number, mode, started + budget, announce, send), daemon=False)
    proc.start()
    send.close()
    env = report = None
    try:
        if receive.poll(budget + GRACE_S):
            env, report = receive.recv()
    except EOFError:
        pass
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if report is None:
        why = (f"killed after {budget + GRACE_S:.0f} s (its budget {budget:.0f} s)"
               if time.time() - started >= budget + GRACE_S else f"its process died (exit code {proc.exitcode})")
        report = asdict(Report(checks=[{"name": f"part {part.number} ran to the end", "ok": False, "detail": why}]))
        print(f"  FAIL part {part.number}: {why}", flush=True)
    return env, report, time.time() - started


def commit() -> str | None:
    """The checked-out commit, when the copy has its .git."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def print_table(env: dict, parts: dict) -> None:
    """Every part's figures and checks as one table: part | what | value."""
    lines = [("", "device", f"{env['device']} ({env['device_name']})"),
             ("", "versions", f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python {env['python']}")]
    for number, part in parts.items():
        for what, value in part["rows"]:
            lines.append((str(number), what, value))
        for check in part["checks"]:
            lines.append((str(number), f"{'PASS' if check['ok'] else 'FAIL'} {check['name']}", check["detail"]))
    width = max(len(what) for _, what, _ in lines)
    print("\npart | " + "what".ljust(width) + " | value")
    for number, what, value in lines:
        print(f"{number:>4} | {what.ljust(width)} | {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="every part at tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--out", default=os.environ.get("OUT") or os.path.join(tempfile.gettempdir(), "deepdiff-gpu-check"),
                        help="folder of gpu_check.json (default: $OUT when set, else %(default)s)")
    parser.add_argument("--parts", default=",".join(str(p.number) for p in PARTS), help="comma list of parts to run")
    args = parser.parse_args(argv)
    mode = "cpu" if args.cpu else "gpu"
    try:
        chosen = [p for p in PARTS if str(p.number) in args.parts.split(",")]
    except ValueError:
        chosen = []
    if not chosen:
        parser.error(f"--parts {args.parts}: expected a comma list of {', '.join(str(p.number) for p in PARTS)}")
    started = time.time()
    print(f"gpu-check ({mode}): parts {', '.join(str(p.number) for p in chosen)}, "
          f"at most {sum(p.budget_s * gpu_parts.SIZES[mode].budget_scale + GRACE_S for p in chosen):.0f} s", flush=True)
    env: dict | None = None
    parts: dict[int, dict] = {}
    for part in chosen:
        print(f"\n{part.number}. {part.title} (budget {part.budget_s * gpu_parts.SIZES[mode].budget_scale:.0f} s)", flush=True)
        seen, parts[part.number], seconds = run_part(part, mode, announce=env is None)
        env = env or seen
        if env is not None and env["error"]:
            print(f"error: {env['error']}", file=sys.stderr)
            return 2
        parts[part.number].update(title=part.title, seconds=round(seconds, 1), correctness=part.correctness)
    env = {**(env or {"device": "unknown", "device_name": "-", "torch": "-", "cuda": "-", "cudnn": "-"}),
           "python": platform.python_version(), "commit": commit()}
    checks = [c for part in parts.values() for c in part["checks"]]
    failed = [c for c in checks if not c["ok"]]
    print_table(env, parts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"mode": mode, **env, "seconds": round(time.time() - started, 1), "passed": len(checks) - len(failed),
           "failed": len(failed), "parts": {str(n): p for n, p in parts.items()}}
    path = out / "gpu_check.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {path} ({time.time() - started:.0f} s in all)")
    print(f"gpu-check: {len(checks) - len(failed)} passed, {len(failed)} failed", flush=True)
    if any(not c["ok"] for part in parts.values() if part["correctness"] for c in part["checks"]):
        return 1
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
