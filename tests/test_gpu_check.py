"""benchmarks/gpu_check.py, the one command a GPU machine runs: its --cpu mode runs every part at tiny
sizes here, so the script cannot rot while no GPU is around; a part out of time fails alone."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_parts import SIZES  # noqa: E402

VARIANTS = 7


def _run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_the_cpu_mode_runs_every_part_and_passes(tmp_path):
    done = _run("--cpu", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = [c for part in doc["parts"].values() for c in part["checks"]]
    assert done.stdout.strip().splitlines()[-1] == f"gpu-check: {len(checks)} passed, 0 failed"
    assert doc["mode"] == "cpu" and doc["device"] == "cpu" and doc["failed"] == 0 and doc["passed"] == len(checks)
    assert {"torch", "cuda", "cudnn", "device_name", "commit", "python", "cpu_kernel"} <= set(doc)
    parts = doc["parts"]
    assert sorted(parts) == ["1", "2", "3", "4", "5"]
    assert len(parts["1"]["checks"]) == 2 * VARIANTS and len(parts["1"]["figures"]["variants"]) == VARIANTS
    runs = parts["2"]["figures"]["runs"]
    assert sorted(runs) == ["bfloat16", "float16", "float32"]
    assert len(runs["float32"]["valid_pcc"]) == SIZES["cpu"].amp["epochs"]
    assert runs["float32"]["steps"] == runs["bfloat16"]["steps"] == 0  # no loss scaling
    assert 0 < runs["float16"]["skipped_steps"] < runs["float16"]["steps"]  # 2**16 overflows the first steps
    assert runs["float16"]["checkpoint_scale"] == runs["float16"]["final_scale"] < 2.0**16
    cases = parts["3"]["figures"]["cases"]
    assert len(cases) == 3 and not any(case["captured"] for case in cases.values())
    train = parts["4"]["figures"]["train"]
    assert {(t["impl"], t["precision"]) for t in train} == {(i, p) for i in ("grouped", "per_channel") for p in ("float32", "bfloat16")}
    assert all(t["genes_per_s"] > 0 for t in train) and len(parts["4"]["figures"]["eval"]) == 2
    rounds = parts["5"]["figures"]["rounds"]
    assert [(r["batch"], r["processes"], len(r["genes_per_s"])) for r in rounds] == [(4, 1, 1), (4, 2, 2)]
    table = done.stdout[done.stdout.index("part | "):]
    assert re.search(r"^   1 \| PASS raw_aux_siamese: grouped = per-channel on cpu +\| outputs ", table, re.M)


@pytest.mark.slow
def test_without_cuda_the_gpu_mode_says_so_in_one_line(tmp_path):
    done = _run("--parts", "1", "--out", str(tmp_path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no CUDA device here (torch.cuda.is_available() is False); python3 benchmarks/gpu_check.py --cpu "
        "runs the check on the CPU"]
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.slow
def test_a_part_out_of_time_fails_alone_and_sets_the_exit_status(tmp_path, monkeypatch, capfd):
    """Part 1 given no time reports each variant it could not run as failed (exit status 1: a correctness
    part); part 4, a measurement, still runs after it."""
    short = gpu_check.Part(1, "correctness, no time", "gpu_parts.part_correctness", 0.001, True)
    monkeypatch.setattr(gpu_check, "PARTS", (short, *gpu_check.PARTS[3:4]))
    assert gpu_check.main(["--cpu", "--parts", "1,4", "--out", str(tmp_path)]) == 1
    out = capfd.readouterr().out  # the parts print from their own processes
    assert out.strip().splitlines()[-1] == f"gpu-check: 1 passed, {VARIANTS} failed"
    assert "FAIL raw_d: grouped = per-channel: not run: out of time" in out and "PASS part 4 ran to the end" in out
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["parts"]["1"]["correctness"] and not doc["parts"]["4"]["correctness"]


def test_the_parts_fit_the_time_of_a_gpu_run():
    """At most 8 minutes on a GPU even if every part is killed at its budget and grace."""
    assert SIZES["gpu"].budget_scale == 1
    assert sum(p.budget_s + gpu_check.GRACE_S for p in gpu_check.PARTS) <= 8 * 60
    assert [p.number for p in gpu_check.PARTS] == [1, 2, 3, 4, 5]
    import importlib

    for part in gpu_check.PARTS:
        module, name = part.run.split(".")
        assert callable(getattr(importlib.import_module(module), name))
