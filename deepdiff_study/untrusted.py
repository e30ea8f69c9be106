"""What the study reads from places other people may write, checked before it is used.

- `plain_name`: a name read back from MLflow (a tag, a param: the store may be a server shared with
  others, or a copy of someone's database) that becomes part of a file path (an exported config, a
  regenerated pair's folder and files, a replicate trial's folder) must be one plain file name: no
  separator, no ``..``, nothing unprintable. Anything else is refused with one line, before anything
  is written.
- `check_private`: the files Tune unpickles when it resumes a study (``tuner.pkl``, the trials of its
  experiment state, its search generator's and our searcher's saves, a trial's ``error.pkl``: see
  `deepdiff_study.resume.check_tune_files`) run code of whoever wrote them; a local study folder is
  resumed only when each of them belongs to this user and nobody else may write it (nor the folder
  that holds them). On S3 storage there is no owner to check: the bucket's policy is the only guard.

Names that reach the HTML report are escaped by its template (`deepdiff_study.report.page`), names in
printed shell commands are quoted (`deepdiff.command.shell_command`), artifacts are downloaded by MLflow,
which keeps a listing's ``..`` or absolute names inside the destination; this module is the rest.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from deepdiff.errors import ConfigError

MAX_NAME = 200  # characters: with a suffix, within the 255 bytes a file name may have (most are ASCII)


def name_problem(value: object) -> str | None:
    """Why `value` cannot be one plain file name, or None if it can."""
    if not isinstance(value, str) or not value:
        return "empty" if value == "" else f"not text ({type(value).__name__})"
    if value in (".", ".."):
        return "a relative folder, not a name"
    if "/" in value or "\\" in value:
        return "it holds a path separator"
    if not value.isprintable():
        return "it holds an unprintable character"
    if len(value) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    return None


def plain_name(value: object, source: str) -> str:
    """`value` when it is one plain file name (`name_problem`); else a one-line `ConfigError` naming
    `source` (where it was read, e.g. "--experiment 'x': grid-cell tag grid_cell")."""
    problem = name_problem(value)
    if problem is not None:
        raise ConfigError(f"{source} {value!r} is not a plain file name ({problem}); refused as part of a file path "
                          "(the MLflow store holds a record this project did not write)")
    return value


def check_private(path: Path, what: str) -> None:
    """`path` (a local file Tune will unpickle) must belong to this user and be writable by nobody else,
    and so must its folder; else a one-line `ConfigError` naming the file and what to do. `what`: how the
    message names the command, e.g. "--resume"."""
    me = os.getuid()
    for item, kind in ((path, "file"), (path.parent, "folder")):
        try:
            info = os.lstat(item)
        except OSError as err:
            raise ConfigError(f"{what}: {item} cannot be checked ({err.strerror}); the study is not resumed") from None
        if stat.S_ISLNK(info.st_mode):
            problem = "is a symbolic link"
        elif info.st_uid != me:
            problem = f"belongs to another user (uid {info.st_uid})"
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"may be written by others (mode {stat.S_IMODE(info.st_mode):o})"
        else:
            continue
        raise ConfigError(
            f"{what}: the {kind} {item} {problem}: Tune's saved state runs code when it is read, so a study is "
            f"resumed only from files that are yours alone; check it, then copy the study folder to a place of "
            f"your own or `chmod go-w` it")
