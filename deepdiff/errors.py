"""User-facing errors, and the checks of paths a user names that raise them.

Every error a user can cause (bad file, bad flag, bad config) is a `DeepDiffError` whose message is one
line naming the file, line and field where known, and what was expected. The CLI prints it as
``error: <message>`` and exits non-zero without a traceback.

Paths given on a command line are checked here, once for every tool (``deepdiff``, the study driver,
the export): `path_problem` says what is at a path instead of the file or folder expected (a
directory, a file, a symlink loop, a dangling symlink, a FIFO, nothing), `check_input_dir` and
`check_output_dir` turn that into one `ConfigError` naming the flag, before anything is written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


# Exit statuses of every command line (`deepdiff.command.run_command`); each kind of error carries its own.
EXIT_INCOMPLETE = 1  # the study ended, but trials Tune planned never reached MLflow (a Tune failure)
EXIT_USAGE = 2  # bad input: files, flags, configs, paths that cannot be read or written; nothing was changed
EXIT_NAN = 3  # training diverged (NaN loss or non-finite predictions)
EXIT_STORE = 75  # a store or storage failed (EX_TEMPFAIL): what ran is saved; fix it and rerun / --resume
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT)


class DeepDiffError(Exception):
    """A user-facing error with a one-line message; `exit_status` is what a command line exits with."""

    exit_status = EXIT_USAGE


class DataError(DeepDiffError):
    """Input data files are missing, malformed or inconsistent."""


class ConfigError(DeepDiffError):
    """A configuration value or config file is invalid."""


def os_error_message(err: OSError) -> str:
    """One line for a file-system error: the path(s), then what went wrong."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    what = os.strerror(err.errno) if err.errno else (err.strerror or str(err))  # pyarrow wraps the errno's text
    return f"{where}: {what}" if where else what


def path_problem(path: str | Path, want: str) -> str | None:
    """What is wrong with `path` as an existing `want` ("directory", or a kind of file: "file",
    "config file", ...), or None if it is one.

    E.g. "is a directory, not a file", "is a file, not a directory", "is a symlink loop",
    "is a symlink to X, which is missing", "is not a regular file", "file not found".
    """
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symlink loop"
        if path.is_symlink():
            return f"is a symlink to {os.readlink(path)}, which is missing"
        if err.errno == errno.ENOTDIR:
            return f"{_file_above(path)} is a file, not a directory"
        if err.errno == errno.ENOENT:
            return f"{want} not found"
        return f"cannot be accessed ({err.strerror})"
    if want != "directory":
        if stat.S_ISDIR(st.st_mode):
            return "is a directory, not a file"
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
    elif not stat.S_ISDIR(st.st_mode):
        return "is a file, not a directory" if stat.S_ISREG(st.st_mode) else "is not a directory"
    return None


def _file_above(path: Path) -> Path:
    """The nearest ancestor of `path` that exists and is not a directory (for ENOTDIR)."""
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return parent
    return path


def check_input_dir(path: str | Path, flag: str, expected: str) -> None:
    """A `ConfigError` ``FLAG PATH: <problem>; expected <expected>`` unless `path` is an existing directory."""
    if str(path) == "":
        raise ConfigError(f"{flag} '': expected {expected}")
    problem = path_problem(path, "directory")
    if problem is not None:
        raise ConfigError(f"{flag} {path}: {problem}; expected {expected}")


def check_output_dir(path: str | Path, flag: str, *, writable: bool = True) -> None:
    """`path` must be a directory or creatable as one (and, if `writable`, in a place this process may
    write): checked before anything is written, so a run is not refused halfway. A `ConfigError`
    naming `flag` otherwise."""
    if str(path) == "":
        raise ConfigError(f"{flag} '': expected a folder")
    path = Path(path)
    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    problem = path_problem(existing, "directory")
    if problem is not None:
        where = "" if existing == path else f"{existing} "
        expected = "" if problem.endswith("not a directory") else "; expected a directory"
        raise ConfigError(f"{flag} {path}: {where}{problem}{expected}")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; expected a directory you can write to")
