"""How many threads torch computes with on a CPU, and how its OpenMP threads wait: decided here only.

- **How many** (`choose_threads`): a number asked for (``--threads N``, `TrainConfig.threads`) is used as
  it is. Automatic (0): the CPUs this process may use (`usable_cpus`: its CPU affinity, a batch
  system's allocation, a cgroup CPU quota, ``OMP_NUM_THREADS``), less those that other processes keep
  busy (`CpuSample`: the CPU time others took on this process's CPUs over a window, from /proc/stat),
  at least one; `deepdiff train` chooses again after every epoch (`decide_again`). Measured, not the
  load average: the 1-minute load average still holds the previous run (a second `deepdiff train`
  right after a first would see its own past and halve its threads).
- **How they wait** (`WAIT_POLICY`): after a parallel region libgomp's threads spin waiting for the next
  one (300,000 spins by default). On CPUs that other processes keep busy the spinning threads take
  the CPU time the working ones need: next to other jobs two threads ran x2.5 the time of one
  (docs/performance.md, `benchmarks/bench_threads.py`). ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep
  at once (about 5% slower on free cores, measured once). Fewer threads and passive waiting together
  were the one policy within x1.2 of one thread in every condition measured. libgomp reads the policy
  once, when torch loads it, and the C kernel shares torch's libgomp (`deepdiff.cpu_kernel`), so it
  must be in the environment before torch is imported: `deepdiff.cli.main` sets it (`wait_policy_env`:
  unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``), and the study sets it in its trial
  workers' environment.

Results do not depend on the number of threads beyond float rounding: training steps were the same to
the bit on 1, 2 and 3 threads; evaluation sums in another order (PCCs within ~1e-7). Functions here
take the environment as an argument: only a command line's `main` reads ``os.environ``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}  # what the command lines and the study's workers start with
USER_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # either one set by the user: theirs is kept
# Variables that say how many CPUs a job was given: (variable, who sets it). The smallest one set counts.
CPU_ALLOCATIONS = (
    ("SLURM_CPUS_PER_TASK", "Slurm --cpus-per-task"),
    ("NCPUS", "PBS ncpus"),
    ("NSLOTS", "Grid Engine slots"),
    ("OMP_NUM_THREADS", "OMP_NUM_THREADS"),
)
MIN_WINDOW = 0.25  # seconds over which other processes' use of the CPUs is measured, at least
CGROUP_ROOT = Path("/sys/fs/cgroup")


def wait_policy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to `environ` before torch is imported: `WAIT_POLICY`, unless it sets its own."""
    return {} if any(name in environ for name in USER_WAIT_SETTINGS) else dict(WAIT_POLICY)


def usable_cpus(environ: Mapping[str, str], *, affinity: int | None = None, quota: int | None = None) -> tuple[int, str]:
    """(how many CPUs this process may use, what limits it): the fewest of its CPU affinity, the cgroup CPU
    quota (`cgroup_cpu_quota`) and the allocations in `environ` (`CPU_ALLOCATIONS`). `affinity` and
    `quota` default to this process's."""
    affinity = len(os.sched_getaffinity(0)) if affinity is None and hasattr(os, "sched_getaffinity") else affinity
    limits = [(affinity or os.cpu_count() or 1, "CPU affinity" if affinity else "CPUs")]
    quota = cgroup_cpu_quota() if quota is None else quota
    if quota:
        limits.append((quota, "cgroup CPU quota"))
    for name, who in CPU_ALLOCATIONS:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            limits.append((int(value), who))
    return min(limits, key=lambda limit: limit[0])


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")) -> int | None:
    """The CPUs this process's cgroup may use (its quota over its period, rounded up; the tightest of its
    and its parents' limits), or None: no quota, or no cgroup file system. cgroup v2 (``cpu.max``) and v1
    (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    candidates: list[tuple[Path, str]] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            candidates += [(folder, "cpu.max") for folder in _up_from(root, path)]
        elif "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                candidates += [(folder, "cpu.cfs_quota_us") for folder in _up_from(mount, path)]
    candidates += [(root, "cpu.max"), (root / "cpu", "cpu.cfs_quota_us")]  # a container's own view
    quotas = [quota for folder, name in candidates if (quota := _quota(folder, name)) is not None]
    return min(quotas) if quotas else None


def _up_from(mount: Path, path: str) -> list[Path]:
    folder = mount / path.strip("/")
    return [folder, *(parent for parent in folder.parents if parent.is_relative_to(mount))]


def _quota(folder: Path, name: str) -> int | None:
    try:
        if name == "cpu.max":
            quota, period = (folder / name).read_text().split()[:2]
        else:
            quota, period = (folder / name).read_text().strip(), (folder / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuSample:
    """The CPU time of this process's CPUs and of this process at one moment (`now`); two samples say
    how many CPUs other processes kept busy in between (`busy_elsewhere`)."""

    at: float  # time.monotonic()
    busy: float  # seconds the CPUs of `cpus` were busy (not idle or waiting for I/O) since boot, all together
    own: float  # seconds of CPU this process used (all its threads)
    cpus: int  # how many CPUs `busy` counts

    @classmethod
    def now(cls, stat: Path = Path("/proc/stat")) -> CpuSample | None:
        """A sample, or None where /proc/stat cannot be read (not Linux)."""
        mine = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy, cpus = 0, 0
        for line in lines:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()) or (mine is not None and int(name[3:]) not in mine):
                continue
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in (fields + ["0"] * 8)[:8])
            busy += user + nice + system + irq + softirq + steal
            cpus += 1
        times = os.times()
        return cls(time.monotonic(), busy / tick, times.user + times.system, cpus) if cpus else None

    def busy_elsewhere(self, later: CpuSample) -> float:
        """How many of the CPUs other processes kept busy on average from this sample to `later`."""
        seconds = later.at - self.at
        if seconds <= 0:
            return 0.0
        return min(float(self.cpus), max(0.0, (later.busy - self.busy) - (later.own - self.own)) / seconds)


def choose_threads(requested: int, usable: int, busy_elsewhere: float | None = None, cpus: int | None = None) -> int:
    """Threads for torch: `requested` if > 0; else one per usable CPU that other processes leave free.

    usable: CPUs this process may use (`usable_cpus`); busy_elsewhere: how many of the `cpus` CPUs it
    runs on other processes kept busy (`CpuSample.busy_elsewhere`; None: unknown, all usable are taken).
    """
    if requested > 0:
        return requested
    if busy_elsewhere is None:
        return max(1, usable)
    free = (cpus if cpus is not None else usable) - busy_elsewhere
    return max(1, min(usable, math.floor(free + 0.5)))


@dataclass(frozen=True)
class ThreadChoice:
    """What `decide` chose, and a line saying why when it is not every usable CPU."""

    threads: int
    usable: int
    limit: str  # what limits `usable` (`usable_cpus`)
    busy_elsewhere: float | None
    sample: CpuSample | None = None  # where the measured window ended: the start of the next one (`decide(since=)`)

    def note(self) -> str | None:
        if self.threads >= self.usable or self.busy_elsewhere is None:
            return None
        return (f"{self.threads} thread{'s' if self.threads > 1 else ''} for {self.usable} usable CPUs ({self.limit}): "
                f"other processes kept {self.busy_elsewhere:.1f} CPUs busy; --threads N sets it")


def decide(requested: int, environ: Mapping[str, str], since: CpuSample | None = None, *, usable: int | None = None) -> ThreadChoice:
    """`choose_threads` for this process: `usable` CPUs (default `usable_cpus(environ)`), their use by
    others measured from `since` (a sample taken earlier, e.g. when the command started; else one taken
    now) to now, over at least `MIN_WINDOW` seconds. A `requested` number measures nothing."""
    count, limit = usable_cpus(environ)
    if usable is not None and usable < count:
        count, limit = usable, "assigned"
    busy = cpus = later = None
    if requested <= 0:
        first = since or CpuSample.now()
        if first is not None:
            time.sleep(max(0.0, MIN_WINDOW - (time.monotonic() - first.at)))
            later = CpuSample.now()
            if later is not None and later.cpus == first.cpus:
                busy, cpus = first.busy_elsewhere(later), later.cpus
    return ThreadChoice(choose_threads(requested, count, busy, cpus), count, limit, busy, later)


def decide_again(previous: ThreadChoice, environ: Mapping[str, str]) -> ThreadChoice:
    """The automatic choice again, from the other processes' use of the CPUs since `previous` was made
    (e.g. over a training epoch; this process's own CPU time is not counted): a burst of other work
    when the run started, or work that began or ended since, changes the threads for what follows.
    `previous` itself when it measured nothing, or less than `MIN_WINDOW` ago (nothing is waited for)."""
    if previous.sample is None or time.monotonic() - previous.sample.at < MIN_WINDOW:
        return previous
    return decide(0, environ, previous.sample)


def apply(choice: ThreadChoice | int) -> int:
    """Set torch's number of threads (its OpenMP and MKL threads, and so the C kernel's); returns it."""
    import torch

    threads = choice if isinstance(choice, int) else choice.threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
