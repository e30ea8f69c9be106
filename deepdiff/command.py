"""What every command line of the distribution shares (``deepdiff``, ``deepdiff-ablation``,
``deepdiff-export``, ``deepdiff-report``): a parser whose usage errors are one line, `run_command`,
the one wrapper that turns the errors a user can cause into one line on stderr and an exit status, and
`shell_command`, the one way a command line printed for the user to run is spelled.

The exit statuses are the errors' own (`deepdiff.errors`: `EXIT_USAGE` for a `DeepDiffError`, a subclass
may say otherwise, e.g. the study's `StoreError` is `EXIT_STORE`); a command only says what an
interruption, a file-system error and (optionally) any other exception it knows mean for it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from deepdiff.errors import EXIT_INTERRUPTED, EXIT_USAGE, DeepDiffError, os_error_message

_NEGATIVE_NUMBER = re.compile(r"^(?:-(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-inf|-nan)$", re.IGNORECASE)


def shell_command(*argv: str | os.PathLike) -> str:
    """`argv` as one command line for a POSIX shell, each word quoted where it needs it: a path with a
    space, a quote or shell syntax (``$``, ``;``, ``*``...) runs as printed. Every command line the
    project prints for a user to copy (resume hints, "reproduce with ...") is spelled by this."""
    return shlex.join(os.fspath(word) for word in argv)


def say(message: str) -> None:
    """One line on stderr, flushed (errors, notes, warnings of every command)."""
    print(message, file=sys.stderr, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the one-line error of every other error (no usage dump), and negative numbers as
    values: ``--lr -1e-3`` reaches the validator that says what is expected (argparse alone takes
    ``-1e-3``, ``-inf`` for an option). Every command line of the project parses with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's own test for "a negative number, not an option" (only -1 and -.5 by default)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        say(f"error: {self.prog}: {message} (see {self.prog} --help)")
        sys.exit(EXIT_USAGE)


def out_of_memory(err: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's CPU allocator or CUDA out of memory."""
    return (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(err))


def run_command(
    body: Callable[[], int],
    *,
    interrupted: str | Callable[[], str] = "interrupted",
    os_error: tuple[int, str] | None = (EXIT_USAGE, ""),
    memory_hint: str | None = None,
    translate: Callable[[Exception], DeepDiffError | None] | None = None,
) -> int:
    """Run a command's `body` and return its exit status; every error a user can cause is one line.

    - a `DeepDiffError`: ``error: <message>``, exit `err.exit_status`;
    - an `OSError` (a path that cannot be read or written, a full or read-only disk):
      ``error: <path>: <what>`` + ``os_error[1]``, exit ``os_error[0]`` (``os_error=None``: left to `translate`);
    - `KeyboardInterrupt` (Ctrl-C; the study's SIGTERM too): the line `interrupted`, exit 130;
    - with `memory_hint`: an allocation that failed is ``error: not enough memory (...); <hint>``, exit 2;
    - with `translate`: any other exception it turns into a `DeepDiffError` is reported as one.
    Anything else propagates with its traceback: a bug, not a user's mistake.
    """
    try:
        return body()
    except KeyboardInterrupt:
        say(interrupted() if callable(interrupted) else interrupted)
        return EXIT_INTERRUPTED
    except Exception as err:
        if isinstance(err, OSError) and os_error is not None:
            say(f"error: {os_error_message(err)}{os_error[1]}")
            return os_error[0]
        if memory_hint is not None and out_of_memory(err):
            asked = re.search(r"tried to allocate [0-9.]+ ?[A-Za-z]*", str(err))
            say(f"error: not enough memory{f' ({asked.group()})' if asked else ''}; {memory_hint}")
            return EXIT_USAGE
        known = err if isinstance(err, DeepDiffError) else translate(err) if translate is not None else None
        if known is None:
            raise
        say(f"error: {known}")
        return known.exit_status
