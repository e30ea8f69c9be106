"""Faults from outside a running study, watched from the driver, each ending the study with one line and
exit 75 (what ran is saved; the same command with ``--resume`` finishes it): never a traceback, a hang,
a trial wrongly recorded as failed, or exit 0 for a study that is not where it says it is.

- **The storage failing** (full, read-only, over quota, gone): a trial whose checkpoint cannot be
  written raises `StorageFault` (`deepdiff_study.trainable`) and the driver's writes of Tune's
  snapshots are recorded as they fail (`deepdiff_study.storage.write_faults`). `FaultWatch`, the
  first of the study's Tune callbacks, stops the study at the first one, before the MLflow tracker
  records the trial as failed: Tune's saved state still has it running, so ``--resume`` runs it again
  from its last checkpoint.
- **The MLflow file replaced or moved away** (`deepdiff_study.store.check_same_file`: the inode the
  study started with), checked at every step, so the study never ends "finished" while the file
  named holds none of it.
- **Ray dying on this machine** (`RayWatch`): the raylet of the driver's node, or the GCS server when
  the head is here. The driver's Ray client ends the process within seconds of that with Ray's own
  line and exit 1 (C++, no Python runs); the watch, a thread looking every `POLL_S`, says what died
  and ends the process first with exit 75. Tune's last snapshot is what it was (a local folder's is
  written whole, `deepdiff_study.storage`).
- **No room on the cluster** (`Waiting`): every wait for a trial's resources is bounded by
  ``--wait-timeout`` and says what it waits for every `REPORT_S` seconds; then exit 75, or 2 when no
  node of the cluster could ever hold the request (`deepdiff_study.calibrate` waits the same way).

`FaultWatch` is pickled with the Tuner (``tuner.pkl``) and restored on ``--resume``; what it watches
belongs to one run of the driver, so it holds nothing itself and asks `FaultWatch.session` (set by
`watching`, in the driver's process only). Ray (for `FaultWatch`), no MLflow.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ray.tune import Callback

from deepdiff.errors import (
    EXIT_INTERRUPTED,
    EXIT_STORE,
    ConfigError,
    DeepDiffError,
    os_error_message,
)

POLL_S = 0.25  # how often Ray's processes on this machine are looked at
REPORT_S = 30.0  # a line at most this often while a wait for the cluster goes on
DYING = "killed, out of memory or crashed"


class StorageFault(RuntimeError):
    """Raised in a trial whose checkpoint could not be written (the storage failed, not the trial's
    configuration): the driver stops the study on it and ``--resume`` runs the trial again."""


class ClusterError(DeepDiffError):
    """The cluster cannot run what the study asks now (no room within the wait): fix it, rerun."""

    exit_status = EXIT_STORE


def raised_within(err: BaseException) -> DeepDiffError | None:
    """The `DeepDiffError` in `err`'s chain (Tune wraps what a callback raises in a TuneError), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, DeepDiffError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def stopped_on_a_fault() -> None:
    """The study stops on a fault its one line names: Ray must not print, at exit, the traceback of a
    trial's result that nobody fetched (the failed trial's, whose error that line already says)."""
    os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"


def storage_fault_of(reason: str) -> str | None:
    """The message of a `StorageFault` in a trial's error line (`records.error_reason`), else None."""
    found = re.search(rf"{StorageFault.__name__}: (.*)", reason)
    return found.group(1).strip() if found else None


# ---- what a trial asks of the cluster, and how long it may wait for it ----------------------------------

@dataclass(frozen=True)
class Request:
    """One trial's (or calibration task's) resources."""

    cpus: float
    gpus: float

    def __str__(self) -> str:
        return f"{self.cpus:g} CPU + {self.gpus:g} GPU"

    def bundle(self) -> dict[str, float]:
        """As a placement-group bundle (Ray refuses zero amounts)."""
        return {k: v for k, v in (("CPU", self.cpus), ("GPU", self.gpus)) if v > 0}

    def fits(self, resources: dict[str, float]) -> bool:
        return all(resources.get(k, 0.0) + 1e-9 >= v for k, v in self.bundle().items())


def cluster_room() -> str:
    """What the cluster has free now, e.g. "the cluster has 0 of 2 CPUs and 0 of 0 GPUs free (1 node)"."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    return (f"the cluster has {free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} of "
            f"{total.get('GPU', 0):g} GPUs free ({nodes} node{'s' if nodes != 1 else ''})")


def largest_node() -> dict[str, float]:
    """The CPUs and GPUs of the alive node with the most (its totals, busy or not)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    return max(({"CPU": r.get("CPU", 0.0), "GPU": r.get("GPU", 0.0)} for r in nodes),
               key=lambda r: (r["GPU"], r["CPU"]), default={"CPU": 0.0, "GPU": 0.0})


@dataclass
class Waiting:
    """A bounded wait for the cluster to place `request` for `what` (e.g. "the next trial"): `tick` while
    it goes on (a line every `REPORT_S` seconds, at most half the timeout, saying what it waits for), a
    one-line error once `timeout_s` passed; `then` says what to do after it (rerun, --resume)."""

    request: Request
    timeout_s: float
    what: str
    then: str
    never_is_usage: bool = True  # exit 2 when no node could ever hold it (else 75, e.g. mid-study)
    stream: object = None  # default sys.stdout
    since: float | None = None  # when this wait began (monotonic)
    last_line: float = 0.0

    @property
    def every_s(self) -> float:
        return min(REPORT_S, self.timeout_s / 2)

    def reset(self) -> None:
        self.since = None

    def tick(self) -> None:
        """One look while nothing is placed: starts the clock, says what it waits for, raises past the bound."""
        now = time.monotonic()
        if self.since is None:
            self.since, self.last_line = now, now
            return
        waited = now - self.since
        if waited >= self.timeout_s:
            raise self.gave_up()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            print(f"  ... waiting {waited:.0f} s for a node with {self.request} for {self.what}: {cluster_room()}; "
                  f"stops after --wait-timeout {self.timeout_s:g} s", file=self.stream or sys.stdout, flush=True)

    def gave_up(self) -> DeepDiffError:
        """Exit 2 when no alive node could ever hold the request (none joined within the wait; 75 when
        `never_is_usage` is off), else 75."""
        largest = largest_node()
        if not self.request.fits(largest):
            error = ConfigError if self.never_is_usage else ClusterError
            return error(f"--cpus-per-trial/--gpus-per-trial: no node of the cluster has {self.request} in all (the "
                         f"largest has {largest['CPU']:g} CPU + {largest['GPU']:g} GPU) and none joined within "
                         f"--wait-timeout {self.timeout_s:g} s; ask for less, or add nodes that have it"
                         + ("" if self.never_is_usage else f"; {self.then}"))
        return ClusterError(f"no node had {self.request} free for {self.what} within --wait-timeout {self.timeout_s:g} s "
                            f"({cluster_room()}: other work holds it); {self.then}")


# ---- Ray's processes on this machine --------------------------------------------------------------------

def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process this user can see: from /proc, else from ps."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                yield int(entry.name), [a.decode(errors="replace") for a in argv if a]
        return
    try:
        listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, timeout=10,
                                 check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in listing.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            yield int(pid), args.split()


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def ray_processes() -> dict[str, int]:
    """The pids of the raylet of the driver's node and, when the head is this machine, of the GCS server:
    {"raylet": pid, "GCS server": pid}, those found. Ray's node table names the raylet's socket, which
    is on its command line, in its session folder, which is on the GCS server's."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n["NodeID"] == node_id), None)
    if node is None or not node.get("RayletSocketName"):
        return {}
    socket_arg = f"--raylet_socket_name={node['RayletSocketName']}"
    session_arg = f"--session-dir={Path(node['RayletSocketName']).parent.parent}"
    found = {}
    for pid, argv in _processes():
        program = os.path.basename(argv[0]) if argv else ""
        if program == "raylet" and socket_arg in argv:
            found["raylet"] = pid
        elif program == "gcs_server" and session_arg in argv:
            found["GCS server"] = pid
    return found


class RayWatch:
    """A thread that ends this process with one line and exit 75 (130 once `interrupted` is set: Ctrl-C
    or SIGTERM came first) when one of `processes` (name -> pid) dies; `then`: what to do next. `close`
    it before Ray is shut down on purpose."""

    def __init__(self, processes: dict[str, int], *, then: str):
        self.processes = processes
        self.then = then
        self.interrupted = threading.Event()  # set by the driver's signal handlers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deepdiff-ray-watch", daemon=True)

    @classmethod
    def of_this_node(cls, *, then: str) -> RayWatch:
        return cls(ray_processes(), then=then)

    def start(self) -> RayWatch:
        if self.processes:
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop watching (before Ray is shut down on purpose)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def dead(self) -> str | None:
        """The first watched process that is gone, as "raylet (pid N)", else None."""
        return next((f"{name} (pid {pid})" for name, pid in self.processes.items() if not alive(pid)), None)

    def check(self) -> None:
        """End the process now if a watched one died (also called from Tune's loop, before a trial that
        lost its worker is recorded as failed)."""
        if not self._stop.is_set() and (what := self.dead()) is not None:
            self.exit(what)

    def exit(self, what: str) -> None:
        sys.stdout.flush()
        if self.interrupted.is_set():  # stopping anyway: Ray went down with the stop
            print(f"interrupted: Ray's {what} on this machine ended while the study stopped; {self.then}",
                  file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        print(f"error: Ray's {what} on this machine died while the study ran ({DYING}); {self.then}",
              file=sys.stderr, flush=True)
        os._exit(EXIT_STORE)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.check()


# ---- the Tune callback ------------------------------------------------------------------------------------

@dataclass
class Session:
    """What `FaultWatch` watches during one run of the driver."""

    storage: str  # the --storage given, for messages
    check_store: Callable[[], None]  # raises a StoreError if the MLflow file is no longer the study's
    waiting: Waiting  # for the next trial when none runs
    ray: RayWatch | None = None
    faults_before: int = 0  # storage write faults recorded before this run
    write_faults: Callable[[], list[OSError]] = field(default=list)
    then: str = "rerun the same command with --resume"


def check(s: Session) -> None:
    """Raise (or, for Ray, end the process) if a fault of the module docstring happened during `s`: also
    called once Tune has returned (its last snapshot may have failed to be written)."""
    if s.ray is not None:
        s.ray.check()
    faults = s.write_faults()
    if len(faults) > s.faults_before:
        from deepdiff_study.store import StoreError

        raise StoreError(f"the study stopped: writing to its storage {s.storage} failed "
                         f"({os_error_message(faults[s.faults_before])}); what ran is saved: free space or make "
                         f"it writable, then {s.then}")
    s.check_store()


@contextmanager
def watching(session: Session):
    """`FaultWatch` callbacks watch `session` while the block runs (the driver's `tuner.fit()`)."""
    FaultWatch.session = session
    try:
        yield session
    finally:
        FaultWatch.session = None


class FaultWatch(Callback):
    """The first of the study's Tune callbacks: stops the study at the first fault of the module docstring,
    before the callbacks after it (the MLflow tracker) hear of the event. Raising here ends `tuner.fit()`
    with the error (Tune keeps its last snapshot); Ray dying ends the process (`RayWatch.exit`)."""

    session: ClassVar[Session | None] = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        pass

    def setup(self, **info) -> None:
        """Tune has installed its Ctrl-C handler by now: note a Ctrl-C for `RayWatch` before it runs."""
        s = FaultWatch.session
        if s is None or s.ray is None or threading.current_thread() is not threading.main_thread():
            return
        tunes = signal.getsignal(signal.SIGINT)

        def interrupted(signum, frame):
            s.ray.interrupted.set()
            if callable(tunes):
                tunes(signum, frame)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, interrupted)

    def _check(self) -> None:
        if FaultWatch.session is not None:
            check(FaultWatch.session)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self._check()

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._check()
        s = FaultWatch.session
        if s is None:
            return
        from deepdiff_study.records import TuneStatus

        if any(t.status == TuneStatus.PENDING for t in trials) and not any(t.status == TuneStatus.RUNNING for t in trials):
            s.waiting.tick()
        else:
            s.waiting.reset()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._check()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._trial_failed(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._trial_failed(trial)

    def _trial_failed(self, trial) -> None:
        s = FaultWatch.session
        if s is None:
            return
        if s.ray is not None:
            s.ray.check()  # its worker died with Ray: not the trial's failure
        from deepdiff_study.records import error_reason
        from deepdiff_study.store import StoreError

        fault = storage_fault_of(error_reason(trial))
        if fault is not None:
            raise StoreError(f"the study stopped: trial {trial.trial_id} could not write its checkpoint ({fault}); what "
                             f"ran is saved and the trial runs again: free space or make the storage writable, then {s.then}")
        self._check()
