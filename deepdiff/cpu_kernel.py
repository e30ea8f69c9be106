"""Level I on the CPU as compiled C (`lstm_kernel.c`), behind a `torch.autograd.Function`.

`fused_level1(x, w, context) -> (m, alpha)` (the autograd Function `FusedLevel1`) has the contract of
`deepdiff.grouped_lstm.grouped_level1` (K channels' biLSTMs and their bin attention, gradients for all
three inputs), so `deepdiff.model` swaps one for the other by device (`deepdiff.model.level1_impl`):

- **Build.** At first use the C file shipped in this package is compiled by the machine's C compiler
  (``cc``, else ``gcc`` or ``clang``; ``-O3 -march=native -fopenmp``, about a second; then without
  OpenMP, then without ``-march=native``, if the compiler refuses) into a shared library
  cached under ``~/.cache/deepdiff-tune/kernels`` (else ``deepdiff-tune-kernels-<uid>`` in the temporary
  folder), named by a hash of the source, the compiler, its flags and the CPU's instruction-set flags,
  so machines of a cluster that share a home folder each get a build of their own. A build is written
  to a temporary name and renamed into place, so processes starting together (Ray trial workers) never
  load half a file. The library is then checked against the torch implementation on small inputs; a
  build that disagrees is not used.
- **Trust.** Loading a library runs its code, so a cached one is loaded only from a folder of this user
  that no one else may write (created 0700; one that exists with another owner, or writable by group
  or others, is not used) and only if the file, too, is this user's and writable by no one else; and
  only if it is the file that was built: a sidecar ``<name>.sha256`` written after each build holds its
  size and sha256, checked before loading, so a truncated or altered library (which killed every run
  with SIGBUS) is rebuilt instead. With no usable cache folder the kernel is built into a private
  temporary folder for this process alone.
- **Fallback.** No compiler, a failed build or a failed check: `available()` is False, `status()` says
  why, and Level I runs through torch ops. Nothing fails.
- **Threads.** Each phase of the kernel (see `lstm_kernel.c`: training's recurrences over the 2K
  direction x channel groups, then the attention over the K channels; the backward the other way round)
  runs in `torch.get_num_threads()` contiguous parts, so a trial uses the CPUs it was given. Groups
  rather than channels keep two threads evenly loaded (15 + 15 groups for 15 channels, not 8 + 7
  channels). The kernel is built with OpenMP where the compiler has it (``-fopenmp``), and its
  libgomp is then the one torch loaded: the parts run on torch's own OpenMP threads, which right after
  torch's parallel work wait spinning, so threads of ours would fight them for the two cores (at batch
  10 that doubled the kernel's time). Without OpenMP the parts are ctypes calls on a small pool of
  threads (ctypes releases the GIL).
- **Memory.** Training saves the states and 6 floats per gate unit and step for the backward,
  7 x (2K, T, N, H) floats: 54 MB for `raw` at batch 10. Buffers that size are above glibc's mmap
  threshold, so a fresh one per batch would go back to the system and be faulted in again each time
  (which doubled the forward's cost): they are taken from and given back to a small pool
  (`release_workspace()` empties it, e.g. between trials).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from deepdiff.files import write_atomic

SOURCE = Path(__file__).with_name("lstm_kernel.c")
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=gnu11", "-fno-math-errno")
PORTABLE_FLAGS = ("-O3", "-fPIC", "-shared", "-std=gnu11", "-fno-math-errno")  # a compiler without -march=native
# Tried in this order: OpenMP first (the kernel then runs on torch's own OpenMP threads), then without.
BUILDS = (FLAGS + ("-fopenmp",), FLAGS, PORTABLE_FLAGS + ("-fopenmp",), PORTABLE_FLAGS)

PRIVATE_BUILD = "deepdiff-tune-kernel-"  # prefix of a process's own build folder (no trusted cache folder): removed once loaded
_load_lock = threading.RLock()  # the self-check runs the kernel while the library is being loaded
_lock = threading.Lock()  # the workspace and the thread pool
_lib: ctypes.CDLL | None = None
_openmp = False  # _lib was built with OpenMP (asked once, at load)
_flags: tuple[str, ...] = ()  # the compiler flags of _lib's build
_status: str | None = None  # None: not tried yet
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def available() -> bool:
    """The compiled kernel can be used in this process (built, loaded and checked on first call)."""
    return _load() is not None


def status() -> str:
    """One line: where the kernel was loaded from, or why it is not used."""
    _load()
    return _status or "not tried"


def _load() -> ctypes.CDLL | None:
    global _lib, _status, _openmp, _flags
    if _status is not None:
        return _lib
    with _load_lock:
        if _status is None:
            try:
                path, flags, notes = _build()
                try:
                    lib = ctypes.CDLL(str(path))
                finally:
                    if path.parent.name.startswith(PRIVATE_BUILD):  # loaded (or not): no one will use it again
                        shutil.rmtree(path.parent, ignore_errors=True)
                _declare(lib)
                _lib, _status, _openmp, _flags = lib, "checking", bool(lib.dd_openmp()), flags
                mismatch = _self_check()
                if mismatch:
                    _lib, _status = None, f"not used: {path} disagrees with the torch implementation ({mismatch})"
                else:
                    _status = "; ".join([f"compiled C kernel {path}" + (" (OpenMP: torch's threads)" if _openmp else ""), *notes])
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as err:  # AttributeError: a symbol missing
                _lib, _status = None, f"not used: {err}"
    return _lib


def _compiler() -> str:
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no C compiler (cc, gcc or clang) on PATH; Level I runs through torch ops")


def _cpu_signature() -> str:
    """The CPU's instruction-set flags (Linux), so -march=native builds are never shared across CPUs."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dirs() -> list[Path]:
    """The cache folders tried in order: the user's, then one of this user's own in the temporary folder
    (never one shared by all users: another user could put a library there first)."""
    return [Path.home() / ".cache" / "deepdiff-tune" / "kernels",
            Path(tempfile.gettempdir()) / f"deepdiff-tune-kernels-{_uid()}"]


def _uid() -> int:
    """The user whose files may be loaded (the process's effective user)."""
    return os.geteuid()


def _untrusted(path: Path, kind: str) -> str | None:
    """Why `path` (a "folder" or a "file") may hold code another user wrote, or None: it must be a real
    folder or regular file (not a symlink) of this user, writable by no one else."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symlink"
    if not (stat.S_ISDIR if kind == "folder" else stat.S_ISREG)(st.st_mode):
        return f"{path} is not a {'folder' if kind == 'folder' else 'regular file'}"
    if st.st_uid != _uid():
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by {'group and others' if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else 'group' if st.st_mode & stat.S_IWGRP else 'others'} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_folder(folder: Path) -> str | None:
    """Create `folder` 0700 (its parents as the umask says) unless it exists; None if it is a folder only
    this user may write, else why it is not used."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as err:
        return f"{folder}: {err.strerror or err}"
    return _untrusted(folder, "folder")


def _sidecar(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _fingerprint(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}\n"


def _damaged(library: Path) -> str | None:
    """Why the cached `library` is not the file its build wrote (truncated, altered, or no sidecar), or None."""
    sidecar = _sidecar(library)
    problem = _untrusted(sidecar, "file")
    if problem is not None:
        return problem if sidecar.exists() or sidecar.is_symlink() else f"{library} has no {sidecar.name} (size and sha256)"
    try:
        expected, data = sidecar.read_text(), library.read_bytes()
    except (OSError, UnicodeDecodeError) as err:
        return f"{library}: {getattr(err, 'strerror', None) or err}"
    if _fingerprint(data) != expected:
        size = expected.split()[-1] if expected.split() else "?"
        return f"{library} is not the file built ({len(data)} bytes, {size} built, or another sha256)"
    return None


def _library_key(compiler: str, version: str, flags: tuple[str, ...]) -> str:
    return hashlib.sha256(b"\0".join([SOURCE.read_bytes(), version.encode(), " ".join(flags).encode(),
                                      _cpu_signature().encode(), platform.machine().encode()])).hexdigest()[:20]


def _build() -> tuple[Path, tuple[str, ...], list[str]]:
    """The cached or new build of the kernel, the flags it was built with (the first of BUILDS that works)
    and notes on what was not used (folders and files refused, libraries rebuilt)."""
    compiler = _compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    errors: list[str] = []
    notes: list[str] = []
    folders = []
    for folder in _cache_dirs():
        problem = _private_folder(folder)
        if problem is None:
            folders.append(folder)
        else:
            notes.append(f"not used: {problem}")
    for flags in BUILDS:
        key = _library_key(compiler, version, flags)
        # With no cache folder this user alone may write: a private folder for this process (built each time).
        for folder in folders or [Path(tempfile.mkdtemp(prefix=PRIVATE_BUILD))]:
            path = folder / f"lstm_kernel-{key}.so"
            if path.exists() or path.is_symlink():
                problem = _untrusted(path, "file") or _damaged(path)
                if problem is None:
                    return path, flags, notes
                notes.append(f"rebuilt: {problem}")
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".build-", suffix=".so")
                os.close(fd)
            except OSError as err:
                errors.append(f"{folder}: {err.strerror or err}")
                continue
            try:
                done = subprocess.run([compiler, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=300)
                if done.returncode != 0:
                    errors.append(f"{Path(compiler).name} {' '.join(flags)}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
                    break  # the same flags fail in every folder: try the next build
                # The sidecar first: a library in place always has the sidecar of its build (or of a build
                # racing it, whose mismatch only costs a rebuild).
                os.chmod(tmp, 0o755)  # whatever the umask: writable by this user alone
                os.chmod(write_atomic(_sidecar(path), _fingerprint(Path(tmp).read_bytes())), 0o644)
                os.replace(tmp, path)
                return path, flags, notes
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    raise RuntimeError("could not build the C kernel: " + "; ".join(errors + notes))


def profiling_build(omit: int, folder: Path, vector_width: int | None = None) -> ctypes.CDLL:
    """The kernel built with -DDD_OMIT=omit into `folder` (lstm_kernel.c: those parts left out, for
    benchmarks/bench_kernel.py --parts to time what each costs; its results are wrong by design), by the
    compiler and flags of this process's build, loaded and declared; never checked, never used here.
    `vector_width`: floats per vector (-DDD_VW; 4, 8 or 16) instead of the CPU's own, to test or time
    another machine's code path here. Swap it in as `_lib` to time it. Needs `available()`."""
    if _load() is None:
        raise RuntimeError(f"the C kernel is not available: {status()}")
    width = [] if vector_width is None else [f"-DDD_VW={vector_width}"]
    path = Path(folder) / f"lstm_kernel-omit{omit}{'' if vector_width is None else f'-vw{vector_width}'}.so"
    subprocess.run([_compiler(), *_flags, f"-DDD_OMIT={omit}", *width, "-o", str(path), str(SOURCE)], check=True,
                   capture_output=True, timeout=300)
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    i, p, i64 = ctypes.c_int, ctypes.c_void_p, ctypes.c_int64
    for name, args in (("dd_state_floats", [i, i, i, i]), ("dd_save_floats", [i, i, i, i]), ("dd_grad_floats", [i, i, i]),
                       ("dd_forward_scratch", [i, i, i]), ("dd_infer_scratch", [i, i, i]), ("dd_backward_scratch", [i, i, i]),
                       ("dd_attend_scratch", [i, i])):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, i64
    for name in ("dd_max_hidden", "dd_openmp", "dd_vector_width"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [], i
    for name, pointers in (("dd_forward_groups", 7), ("dd_attend", 5), ("dd_infer", 6), ("dd_backward_attend", 8),
                           ("dd_backward_groups", 11)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [i] * 7 + [p] * pointers, None  # T, K, N, H, range, threads; arrays


def _self_check() -> str:
    """'' if the kernel matches `deepdiff.model.grouped_level1` run with torch ops (values and gradients
    of x, the weights and the contexts) on small inputs, at H = 16 (no padding) and H = 5, else what
    differs."""
    with torch.inference_mode(False), torch.enable_grad():  # the first call may come from evaluation
        return _compare()


def _compare() -> str:
    from deepdiff.grouped_lstm import grouped_level1

    gen = torch.Generator().manual_seed(0)
    for hid in (16, 5):
        k, n, steps = 3, 4, 9
        x = torch.poisson(torch.rand(n, k, steps, generator=gen) * 4, generator=gen)
        w = (torch.rand(2 * k, hid + 2, 4 * hid, generator=gen) - 0.5) * 0.4
        context = torch.rand(k, 2 * hid, generator=gen) - 0.5
        dm, dalpha = torch.randn(n, k, 2 * hid, generator=gen), torch.randn(n, k, steps, generator=gen)
        ours = [t.detach().clone().requires_grad_() for t in (x, w, context)]
        theirs = [t.detach().clone().requires_grad_() for t in (x, w, context)]
        m1, a1 = fused_level1(*ours)
        m2, a2 = grouped_level1(*theirs)
        (m1 * dm).sum().add((a1 * dalpha).sum()).backward()
        (m2 * dm).sum().add((a2 * dalpha).sum()).backward()
        pairs = (("m", m1, m2), ("alpha", a1, a2), ("d x", ours[0].grad, theirs[0].grad),
                 ("d w", ours[1].grad, theirs[1].grad), ("d context", ours[2].grad, theirs[2].grad))
        for name, a, b in pairs:
            if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                return f"{name} at H={hid}: max difference {(a - b).abs().max().item():.2e}"
    return ""


# ---- workspace ----------------------------------------------------------------------------------

_free: dict[int, list[torch.Tensor]] = {}
_FREE_MAX = 4  # buffers kept for reuse (sizes differ only for a split's last, smaller batch)


def _take(numel: int) -> torch.Tensor:
    with _lock:
        stack = _free.get(numel)
        if stack:
            return stack.pop()
    return torch.empty(numel)


def _give(buffer: torch.Tensor) -> None:
    with _lock:
        if sum(len(v) for v in _free.values()) >= _FREE_MAX:
            _free.pop(next(iter(_free)))
        _free.setdefault(buffer.numel(), []).append(buffer)


def release_workspace() -> None:
    """Drop the pooled buffers (their memory goes back to the system)."""
    with _lock:
        _free.clear()


# ---- calls --------------------------------------------------------------------------------------

def _split(call, count: int, scratch_floats: int) -> None:
    """call(i0, i1, threads, scratch) over range(count) (channels or groups) on torch's number of threads.

    A kernel built with OpenMP gets one call and spreads it over torch's own OpenMP threads (which spin
    waiting right after torch's parallel work: threads of ours would fight them for the cores); else the
    range is split here, one call per part on a thread of a small pool (ctypes releases the GIL)."""
    global _pool, _pool_size
    threads = max(1, min(torch.get_num_threads(), count))
    if threads == 1 or _openmp:
        call(0, count, threads, torch.empty(threads * scratch_floats))
        return
    with _lock:
        if _pool is None or _pool_size < threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="deepdiff-level1"), threads
        pool = _pool
    bounds = [count * i // threads for i in range(threads + 1)]
    part = lambda i: call(bounds[i], bounds[i + 1], 1, torch.empty(scratch_floats))  # noqa: E731
    jobs = [pool.submit(part, i) for i in range(1, threads)]
    part(0)
    for job in jobs:
        job.result()


class FusedLevel1(torch.autograd.Function):
    """Level I of K channels: x (N, K, T), w (2K, H + 2, 4H) from
    `deepdiff.grouped_lstm.stack_lstm_weights`, context (K, 2H) -> m (N, K, 2H), alpha (N, K, T).

    What `deepdiff.grouped_lstm.grouped_level1` computes with torch ops (biLSTM per channel, zero
    initial state, bin attention), in two threaded phases of the compiled kernel each way (one in
    evaluation); float32 CPU tensors.
    `record`: the caller's `torch.is_grad_enabled()` (see `fused_level1`): False keeps no buffers for a
    backward (evaluation under no_grad, where a parameter still says requires_grad)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, context: torch.Tensor, record: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        lib = _load()
        if lib is None:
            raise RuntimeError(f"the C kernel is not available: {status()}")
        if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in (x, w, context)):
            raise ValueError(f"the C kernel takes float32 CPU tensors, got {x.dtype} on {x.device}")
        x, w, context = x.contiguous(), w.contiguous(), context.contiguous()
        n, k, steps = x.shape
        hid = w.shape[-1] // 4
        if hid > lib.dd_max_hidden():
            raise ValueError(f"the C kernel takes at most {lib.dd_max_hidden()} hidden units, got {hid}")
        keep = record and any(ctx.needs_input_grad)
        m, alpha = x.new_empty(n, k, 2 * hid), x.new_empty(n, k, steps)
        if not keep:  # evaluation: a channel at a time, nothing kept
            _split(lambda k0, k1, threads, scratch: lib.dd_infer(
                steps, k, n, hid, k0, k1, threads, x.data_ptr(), w.data_ptr(), context.data_ptr(), m.data_ptr(),
                alpha.data_ptr(), scratch.data_ptr()), k, lib.dd_infer_scratch(steps, n, hid))
            return m, alpha
        h, save = _take(lib.dd_state_floats(steps, k, n, hid)), _take(lib.dd_save_floats(steps, k, n, hid))
        scores = torch.empty(2 * k * steps * n)
        # Both of a channel's groups must be done before its attention.
        _split(lambda g0, g1, threads, scratch: lib.dd_forward_groups(
            steps, k, n, hid, g0, g1, threads, x.data_ptr(), w.data_ptr(), context.data_ptr(), h.data_ptr(),
            save.data_ptr(), scores.data_ptr(), scratch.data_ptr()), 2 * k, lib.dd_forward_scratch(steps, n, hid))
        _split(lambda k0, k1, threads, scratch: lib.dd_attend(
            steps, k, n, hid, k0, k1, threads, h.data_ptr(), scores.data_ptr(), m.data_ptr(), alpha.data_ptr(),
            scratch.data_ptr()), k, lib.dd_attend_scratch(steps, hid))
        ctx.save_for_backward(x, w, context, alpha)
        ctx.workspace = h, save
        return m, alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, dm: torch.Tensor | None, dalpha: torch.Tensor | None):
        lib = _load()
        x, w, context, alpha = ctx.saved_tensors
        h, save = ctx.workspace
        del ctx.workspace
        n, k, steps = x.shape
        hid = w.shape[-1] // 4
        dm = torch.zeros(n, k, 2 * hid) if dm is None else dm.contiguous()
        dalpha = None if dalpha is None else dalpha.contiguous()
        # The HM counts need no gradient (x is data): then the kernel skips dx altogether.
        dxg = x.new_empty(2, n, k, steps) if ctx.needs_input_grad[0] else None
        dw, dcontext = torch.empty_like(w), torch.empty_like(context)
        dmp, dscores = torch.empty(lib.dd_grad_floats(k, n, hid)), torch.empty(2 * k * steps * n)
        # Every group's incoming gradient before any back-propagation through time.
        _split(lambda k0, k1, threads, scratch: lib.dd_backward_attend(
            steps, k, n, hid, k0, k1, threads, alpha.data_ptr(), h.data_ptr(), dm.data_ptr(), _ptr(dalpha),
            dmp.data_ptr(), dscores.data_ptr(), dcontext.data_ptr(), scratch.data_ptr()), k, lib.dd_attend_scratch(steps, hid))
        _split(lambda g0, g1, threads, scratch: lib.dd_backward_groups(
            steps, k, n, hid, g0, g1, threads, x.data_ptr(), w.data_ptr(), context.data_ptr(), alpha.data_ptr(),
            h.data_ptr(), save.data_ptr(), dmp.data_ptr(), dscores.data_ptr(), _ptr(dxg), dw.data_ptr(),
            scratch.data_ptr()), 2 * k, lib.dd_backward_scratch(steps, n, hid))
        dx = None if dxg is None else dxg[0].add_(dxg[1])
        _give(h)
        _give(save)
        return dx, dw, dcontext, None


def fused_level1(x: torch.Tensor, w: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`FusedLevel1` told whether autograd records this call (a Function's forward cannot see it)."""
    return FusedLevel1.apply(x, w, context, torch.is_grad_enabled())


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()

