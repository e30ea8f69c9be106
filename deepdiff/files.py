"""Files replaced whole: `write_atomic` for one file, `staging_folder` for a set of new files.

A reader never sees half a file, and a failed write (a full disk, a read-only folder, a writer that
raises, Ctrl-C) leaves what was there as it was and no temporary file behind. The one place the
`deepdiff` package replaces files that others may read: configs, metrics, results, checkpoints, the
data cache, attention arrays.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]  # writes a file's content into the open binary file it is given


def write_atomic(path: str | Path, data: str | bytes | Writer) -> Path:
    """Replace the file `path` by `data` at once and return `path`.

    `data` is text (written as UTF-8), bytes, or a writer: a callable given the open binary file
    (e.g. ``lambda fh: np.savez(fh, **arrays)``). It is written to a temporary file in the same folder,
    flushed to the disk (fsync), then renamed over `path` (`os.replace`). On any failure the temporary
    file is removed, the old file is left as it was, and an `OSError` names `path` (not the temporary
    file); other exceptions of a writer propagate as they are.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # e.g. the folder is a file: there is no tmp to remove
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and (err.filename is None or Path(err.filename) == tmp):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None  # the file the user knows
        raise
    return path


@contextlib.contextmanager
def staging_folder(parent: str | Path, prefix: str = ".staging-") -> Iterator[Path]:
    """A new empty folder in `parent` (created if missing), removed with whatever is left in it on exit.

    Write a set of files there, then move them (or the folder) into place with `os.replace`: in the
    same file system, so each move is a rename, and a failure before it leaves nothing half-written.
    """
    Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
