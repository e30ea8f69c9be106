"""Tests of deepdiff.threads: the CPUs a process may use, their use by others, the threads chosen, and the
OpenMP wait policy reaching libgomp (end to end through `deepdiff`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deepdiff
from deepdiff import threads
from deepdiff.cli import main
from deepdiff.config import TrainConfig, load_config
from deepdiff.errors import ConfigError
from deepdiff.threads import CpuSample, choose_threads, cgroup_cpu_quota, decide, usable_cpus, wait_policy_env

PACKAGE_ROOT = Path(deepdiff.__file__).resolve().parents[1]


@pytest.mark.parametrize("requested, usable, busy, cpus, expected", [
    (3, 2, 2.0, 2, 3),  # asked for: used as it is, even above the CPUs
    (0, 8, None, None, 8),  # others' use unknown: every usable CPU
    (0, 2, 0.1, 2, 2),  # an idle machine
    (0, 2, 2.0, 2, 1),  # both CPUs busy elsewhere: one thread, never none
    (0, 2, 1.0, 2, 1),
    (0, 2, 0.5, 2, 2),  # half a CPU busy: rounds to the nearer whole
    (0, 2, 0.6, 2, 1),
    (0, 4, 10.0, 16, 4),  # 6 of the machine's 16 CPUs free, 4 usable (a quota)
    (0, 16, 14.2, 16, 2),  # a trial among others filling the node
])
def test_choose_threads(requested, usable, busy, cpus, expected):
    assert choose_threads(requested, usable, busy, cpus) == expected


def test_usable_cpus_are_the_fewest_of_affinity_quota_and_allocations():
    assert usable_cpus({}, affinity=8, quota=0) == (8, "CPU affinity")
    assert usable_cpus({}, affinity=8, quota=3) == (3, "cgroup CPU quota")
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "2"}, affinity=8, quota=3) == (2, "Slurm --cpus-per-task")
    assert usable_cpus({"NSLOTS": "4", "OMP_NUM_THREADS": "1"}, affinity=8, quota=0) == (1, "OMP_NUM_THREADS")
    for junk in ("", "0", "-2", "two", "1.5"):  # not a count: ignored
        assert usable_cpus({"SLURM_CPUS_PER_TASK": junk}, affinity=8, quota=0) == (8, "CPU affinity")


def test_cgroup_quotas_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "job" / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs: 3 threads may run
    (v2 / "job" / "step" / "cpu.max").write_text("max 100000\n")
    membership = tmp_path / "cgroup"
    membership.write_text("0::/job/step\n")
    assert cgroup_cpu_quota(v2, membership) == 3
    (v2 / "cpu.max").write_text("100000 100000\n")  # a container's own view: the root of the namespace
    assert cgroup_cpu_quota(v2, membership) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "slurm").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_period_us").write_text("100000\n")
    membership.write_text("4:memory:/x\n3:cpu,cpuacct:/slurm\n")
    assert cgroup_cpu_quota(v1, membership) == 4
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1, membership) is None
    assert cgroup_cpu_quota(tmp_path / "none", tmp_path / "missing") is None


def _stat(tmp_path, *cpus):
    """A /proc/stat whose CPU n spent `cpus[n]` = (busy, idle) ticks."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    lines += [f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0" for n, (busy, idle) in enumerate(cpus)]
    path = tmp_path / "stat"
    path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 9"]) + "\n")
    return path


def test_busy_elsewhere_is_the_cpu_time_of_other_processes(tmp_path, monkeypatch):
    tick = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    before = CpuSample.now(_stat(tmp_path, (0, 0), (0, 0), (0, 0)))
    assert before.cpus == 2 and before.busy == 0  # CPU 2 is not this process's
    later = CpuSample.now(_stat(tmp_path, (tick * 3 // 2, 0), (tick, 0), (tick, 0)))
    # 2.5 CPU-seconds busy on this process's CPUs in 2 s, 1 of them this process's own: 0.75 CPUs elsewhere
    assert CpuSample(before.at, before.busy, 10.0, 2).busy_elsewhere(CpuSample(before.at + 2, later.busy, 11.0, 2)) == 0.75
    assert CpuSample(0, 0, 0, 2).busy_elsewhere(CpuSample(1, 9, 0, 2)) == 2.0  # never more than the CPUs
    assert CpuSample.now(tmp_path / "missing") is None


def test_decide_measures_others_over_a_window(monkeypatch):
    samples = iter([CpuSample(0.0, 100.0, 5.0, 16), CpuSample(1.0, 115.0, 5.8, 16)])  # 15 busy, 0.8 of it ours
    monkeypatch.setattr(CpuSample, "now", classmethod(lambda cls, stat=None: next(samples)))
    monkeypatch.setattr(threads, "usable_cpus", lambda environ: (16, "CPU affinity"))
    choice = decide(0, {})
    assert (choice.threads, choice.usable, round(choice.busy_elsewhere, 6)) == (2, 16, 14.2)
    assert choice.note() == "2 threads for 16 usable CPUs (CPU affinity): other processes kept 14.2 CPUs busy; --threads N sets it"
    assert decide(5, {}).threads == 5 and decide(5, {}).note() is None  # asked for: nothing measured


def test_the_wait_policy_is_passive_unless_the_user_set_one():
    assert wait_policy_env({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert wait_policy_env({"OMP_WAIT_POLICY": "active"}) == {}
    assert wait_policy_env({"GOMP_SPINCOUNT": "10000"}) == {}


def _libgomp_spin_count(extra_env):
    """How long libgomp's threads spin before they sleep, as libgomp read it when `deepdiff describe` loaded
    torch (OMP_DISPLAY_ENV=VERBOSE prints it: 300000 by default, 0 for OMP_WAIT_POLICY=PASSIVE)."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(PACKAGE_ROOT), "OMP_DISPLAY_ENV": "VERBOSE", **extra_env}
    done = subprocess.run([sys.executable, "-m", "deepdiff.cli", "describe", "--variant", "raw_d"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    shown = dict(line.strip().split(" = ", 1) for line in done.stderr.splitlines() if " = " in line)
    return shown["GOMP_SPINCOUNT"]


@pytest.mark.slow
def test_the_passive_wait_policy_reaches_libgomp():
    """`deepdiff` sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp; a user's own setting is kept."""
    assert _libgomp_spin_count({}) == "'0'"
    assert _libgomp_spin_count({"GOMP_SPINCOUNT": "1000"}) == "'1000'"
    assert _libgomp_spin_count({"OMP_WAIT_POLICY": "ACTIVE"}) != "'0'"


def test_threads_is_a_field_a_flag_and_checked():
    assert TrainConfig().threads == 0
    with pytest.raises(ConfigError, match=r"^field threads: expected an integer >= 0 \(0 = automatic\), got -1$"):
        TrainConfig(threads=-1)


@pytest.mark.slow
def test_train_threads_and_a_resume_with_others(small_synthetic_dir, tmp_path, capsys):
    """--threads N sets torch's threads and is kept in config.yaml; results are the same with 1 and 2 threads;
    a resume may use other threads."""
    before = torch.get_num_threads()
    flags = ["--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--level1-hidden", "8",
             "--level2-hidden", "4", "--batch-size", "16", "--no-cache"]
    try:
        results = {}
        for n in (1, 2):
            assert main(["train", *flags, "--epochs", "2", "--threads", str(n), "--out", str(tmp_path / str(n))]) == 0
            captured = capsys.readouterr()
            assert f" with {n} thread{'s' * (n > 1)}, float32" in captured.err
            assert torch.get_num_threads() == n and load_config(tmp_path / str(n) / "config.yaml")[1].threads == n
            results[n] = captured.out.splitlines()[-1]
        assert results[1] == results[2]
        assert main(["train", *flags, "--epochs", "3", "--threads", "1", "--out", str(tmp_path / "2"), "--resume"]) == 0
        assert f"resuming {tmp_path / '2'} after epoch 2" in capsys.readouterr().err
        assert main(["train", *flags, "--epochs", "1", "--threads", "-1"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == ("error: command line: field threads: expected an integer >= 0 "
                                                             "(0 = automatic), got -1")
    finally:
        torch.set_num_threads(before)


def test_decide_again_follows_the_others_use_since_the_last_choice(monkeypatch):
    """After an epoch the automatic choice is made again from the CPU time others took during it (this
    process's own time left out); a choice that measured nothing, or just now, stays as it is."""
    import time

    monkeypatch.setattr(threads, "usable_cpus", lambda environ: (2, "CPU affinity"))
    first = threads.ThreadChoice(1, 2, "CPU affinity", 1.9, CpuSample(0.0, 0.0, 0.0, 2))
    # 10 s later: the CPUs were busy 12 s, 9 s of it this process's: 0.3 CPUs elsewhere
    monkeypatch.setattr(CpuSample, "now", classmethod(lambda cls, stat=None: CpuSample(10.0, 12.0, 9.0, 2)))
    again = threads.decide_again(first, {})
    assert (again.threads, round(again.busy_elsewhere, 6), again.sample.at) == (2, 0.3, 10.0)
    assert again.note() is None
    unmeasured = threads.ThreadChoice(2, 2, "CPU affinity", None, None)
    assert threads.decide_again(unmeasured, {}) is unmeasured
    recent = threads.ThreadChoice(1, 2, "CPU affinity", 1.9, CpuSample(time.monotonic(), 0.0, 0.0, 2))
    assert threads.decide_again(recent, {}) is recent
