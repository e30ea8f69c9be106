"""Tests of deepdiff.cpu_kernel's cache of compiled libraries: what it refuses to load and what it rebuilds.

(The kernel's numbers against the torch implementation are tested in test_model.py.) Compiling the
real kernel takes a minute on a busy machine, so the cache's rules are tested on a one-line C file
(`tiny_kernel`: `_build` compiles and finds, it never loads); one end-to-end test loads the real kernel
in a new process (a library truncated under a process that mapped it would kill that process).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import deepdiff
from deepdiff import cpu_kernel

PACKAGE_ROOT = Path(deepdiff.__file__).resolve().parents[1]  # the checkout whose deepdiff is under test
ROOT = os.geteuid() == 0
PLANTED = '#include <stdio.h>\n__attribute__((constructor)) static void planted(void) { FILE *f = fopen(MARKER, "w"); if (f) fclose(f); }\n'


def _compiler_or_skip() -> str:
    try:
        return cpu_kernel._compiler()
    except RuntimeError as err:
        pytest.skip(str(err))


@pytest.fixture
def tiny_kernel(tmp_path, monkeypatch):
    """`_build` compiling a one-line C file with one build's flags, cached in tmp_path/home then tmp_path/tmp."""
    _compiler_or_skip()
    source = tmp_path / "tiny.c"
    source.write_text("int dd_openmp(void) { return 0; }\n")
    monkeypatch.setattr(cpu_kernel, "SOURCE", source)
    monkeypatch.setattr(cpu_kernel, "BUILDS", (cpu_kernel.PORTABLE_FLAGS,))
    folders = [tmp_path / "home" / "kernels", tmp_path / "tmp" / f"deepdiff-tune-kernels-{os.geteuid()}"]
    monkeypatch.setattr(cpu_kernel, "_cache_dirs", lambda: folders)
    monkeypatch.setattr(cpu_kernel.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return folders


def _plant(library: Path, marker: Path) -> None:
    """Put at `library` a library whose constructor, when anything loads it, creates `marker`."""
    source = library.with_name("planted.c")
    source.write_text(PLANTED)
    subprocess.run([cpu_kernel._compiler(), "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=300)
    source.unlink()


@pytest.mark.parametrize("how", ["group_writable_file", "world_writable_file", "foreign_file", "symlink"])
def test_a_cached_library_another_user_could_have_written_is_rebuilt(tiny_kernel, tmp_path, how):
    """A library in the cache that is not this user's alone (another owner, a mode others may write, a
    symlink to elsewhere) is replaced by a new build before anything loads it."""
    if how == "foreign_file" and not ROOT:
        pytest.skip("only root can give a file to another user (test_ownership_and_mode_are_checked fakes it)")
    library, flags, notes = cpu_kernel._build()
    assert library.parent == tiny_kernel[0] and notes == [] and flags == cpu_kernel.PORTABLE_FLAGS
    built = library.read_bytes()
    assert cpu_kernel._build() == (library, flags, [])  # found, as built
    marker = tmp_path / "planted-library-ran"
    if how == "symlink":
        planted = tmp_path / "elsewhere.so"
        _plant(planted, marker)
        library.unlink()
        library.symlink_to(planted)
    else:
        _plant(library, marker)
    reason = {"group_writable_file": (lambda: library.chmod(0o775), f"{library} is writable by group (mode 775)"),
              "world_writable_file": (lambda: library.chmod(0o757), f"{library} is writable by others (mode 757)"),
              "foreign_file": (lambda: os.chown(library, 12345, 12345), f"{library} belongs to another user (uid 12345)"),
              "symlink": (lambda: None, f"{library} is a symlink")}
    change, why = reason[how]
    change()
    assert cpu_kernel._build() == (library, flags, [f"rebuilt: {why}"])
    assert library.read_bytes() == built and not library.is_symlink()
    assert library.stat().st_uid == os.geteuid() and library.stat().st_mode & 0o022 == 0
    assert cpu_kernel._build() == (library, flags, [])
    assert not marker.exists()


def test_a_truncated_or_altered_library_is_rebuilt(tiny_kernel):
    library, flags, _ = cpu_kernel._build()
    built = library.read_bytes()
    os.truncate(library, len(built) // 2)
    assert cpu_kernel._build() == (library, flags, [f"rebuilt: {library} is not the file built ({len(built) // 2} bytes, "
                                                    f"{len(built)} built, or another sha256)"])
    assert library.read_bytes() == built
    library.write_bytes(built[:-1] + bytes([built[-1] ^ 1]))
    assert cpu_kernel._build()[2] == [f"rebuilt: {library} is not the file built ({len(built)} bytes, {len(built)} built, or another sha256)"]
    library.with_name(library.name + ".sha256").unlink()  # a build of an older deepdiff: no sidecar
    assert cpu_kernel._build()[2] == [f"rebuilt: {library} has no {library.name}.sha256 (size and sha256)"]
    assert cpu_kernel._build()[2] == [] and library.read_bytes() == built


@pytest.mark.parametrize("how", ["foreign", "group_writable"])
def test_a_cache_folder_others_could_write_is_not_used(tiny_kernel, tmp_path, monkeypatch, how):
    """The home cache unusable and the temporary folder's per-user folder made by another user (or open to
    others): the library it holds is never used; the kernel is built in a private folder of this process."""
    if how == "foreign" and not ROOT:
        pytest.skip("only root can give a folder to another user (test_ownership_and_mode_are_checked fakes it)")
    home, shared = tiny_kernel
    home.parent.mkdir()
    home.write_text("not a folder")  # e.g. a read-only or full home
    library, flags, _ = cpu_kernel._build()
    assert library.parent == shared
    marker = tmp_path / "planted-library-ran"
    _plant(library, marker)
    if how == "foreign":
        for path in (shared, library, library.with_name(library.name + ".sha256")):
            os.chown(path, 12345, 12345)
        why = f"{shared} belongs to another user (uid 12345)"
    else:
        shared.chmod(0o777)
        why = f"{shared} is writable by group and others (mode 777)"
    private, flags, notes = cpu_kernel._build()
    assert private.parent.parent == tmp_path / "tmp" and private.parent.name.startswith(cpu_kernel.PRIVATE_BUILD)
    assert stat_mode(private.parent) == 0o700 and notes == [f"not used: {home} is not a folder", f"not used: {why}"]
    assert not marker.exists()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_ownership_and_mode_are_checked(tmp_path, monkeypatch):
    """`_untrusted` for any user: another owner (faked), a mode others may write, a symlink, a file for a folder."""
    folder = tmp_path / "kernels"
    assert cpu_kernel._private_folder(folder) is None and stat_mode(folder) == 0o700
    library = folder / "lstm_kernel-x.so"
    library.write_bytes(b"\x7fELF")
    library.chmod(0o755)
    assert cpu_kernel._untrusted(library, "file") is None
    library.chmod(0o775)
    assert cpu_kernel._untrusted(library, "file") == f"{library} is writable by group (mode 775)"
    library.chmod(0o777)
    assert cpu_kernel._untrusted(library, "file") == f"{library} is writable by group and others (mode 777)"
    (folder / "link.so").symlink_to(library)
    assert cpu_kernel._untrusted(folder / "link.so", "file") == f"{folder / 'link.so'} is a symlink"
    assert cpu_kernel._untrusted(folder, "file") == f"{folder} is not a regular file"
    assert cpu_kernel._private_folder(library) == f"{library} is not a folder"
    monkeypatch.setattr(cpu_kernel, "_uid", lambda: os.geteuid() + 1)
    assert cpu_kernel._private_folder(folder) == f"{folder} belongs to another user (uid {os.geteuid()})"


@pytest.mark.slow
def test_a_truncated_real_library_is_rebuilt_and_training_works(small_synthetic_dir, tmp_path):
    """The real kernel cut short in the cache (which killed every run with SIGBUS, exit 135, naming nothing)
    is found before it is loaded and rebuilt, and `deepdiff train` runs (a new process, HOME elsewhere)."""
    _compiler_or_skip()
    built, _, _ = cpu_kernel._build()  # this machine's build (cached: no compile when the tests ran before)
    kernels = tmp_path / "home" / ".cache" / "deepdiff-tune" / "kernels"
    kernels.mkdir(parents=True, mode=0o700)
    library = kernels / built.name
    for name in (built.name, built.name + ".sha256"):
        shutil.copy(built.parent / name, kernels / name)
    size = library.stat().st_size
    os.truncate(library, size * 6 // 10)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path), "PYTHONPATH": str(PACKAGE_ROOT),
           "OMP_NUM_THREADS": "1"}
    status = subprocess.run([sys.executable, "-c", "from deepdiff import cpu_kernel; print(cpu_kernel.status())"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert status.returncode == 0, (status.returncode, status.stderr[-2000:])  # -7: SIGBUS
    loaded, *notes = status.stdout.strip().split("; ")
    assert loaded.startswith(f"compiled C kernel {library}"), status.stdout
    assert notes == [f"rebuilt: {library} is not the file built ({size * 6 // 10} bytes, {size} built, or another sha256)"]
    assert library.stat().st_size == size and cpu_kernel._damaged(library) is None
    done = subprocess.run([sys.executable, "-m", "deepdiff.cli", "train", "--data", str(small_synthetic_dir), "--pair",
                           "Cell1", "Cell2", "--variant", "raw_d", "--epochs", "1", "--level1-hidden", "8",
                           "--level2-hidden", "4", "--batch-size", "16", "--no-cache"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.splitlines()[-1].startswith("result variant=raw_d")
