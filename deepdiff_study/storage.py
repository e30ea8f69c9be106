"""Where a study's Tune files live (``--storage``): a local folder, or any URI pyarrow speaks
(``s3://bucket/prefix``, ``gs://...``) so that every node of a cluster writes checkpoints to it and a
study survives the loss of the machine that started it. No Ray.

A URI may carry pyarrow's S3 options as a query, e.g. a private endpoint:
``s3://bucket/prefix?endpoint_override=host:9000&scheme=http``; pyarrow also honours the environment
(AWS credentials, AWS_ENDPOINT_URL). Tune is handed the filesystem and the path on it, never the
query string (Ray's experiment paths would otherwise end in it).

`StudyStorage.experiment_dir(name)` is a `pathlib.Path` for a folder and a `RemotePath` (the few
`Path` methods the study uses: ``/``, ``is_file``, ``read_text``, ``write_text``, ``parent.mkdir``)
for a URI, so `deepdiff_study.resume` reads and writes either alike.

A local folder is handed to Tune as `WholeFiles` (a pyarrow filesystem over the folder): each file
Tune writes there (experiment snapshots, trial checkpoints) appears whole or not at all, so a disk
that fills up or turns read-only mid-study leaves the last good snapshot in place (Tune itself
rewrote it in place: a full disk left it truncated and --resume impossible), and each write that
failed is recorded in the process that tried it (`write_faults`, read by `deepdiff_study.faults`).
`storage_fault` tells such an error (disk full, read-only, quota, I/O error) from others. An object
store's upload is already all or nothing.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs

from deepdiff.errors import ConfigError

# Generated synthetic pairs and the data cache of a study whose --storage is a URI: on the driver's
# disk (both are rebuilt from their inputs when missing, e.g. on a new head node).
LOCAL_WORK_DIR = Path("~/.cache/deepdiff-tune/study").expanduser()
# OS errors that say the storage failed (not the data or a trial's configuration): full, over quota, a
# file too large for it, read-only, an I/O error, a network file system's handle gone, no permission.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.ESTALE, errno.EACCES})


def storage_fault(err: BaseException) -> bool:
    """Whether `err` is the storage failing (an `OSError` with one of `STORAGE_ERRNOS`)."""
    return isinstance(err, OSError) and err.errno in STORAGE_ERRNOS


_WRITE_FAULTS: list[OSError] = []  # writes through `WholeFiles` that failed in this process, oldest first


def write_faults() -> list[OSError]:
    """The writes to a local study folder that failed in this process (through `WholeFiles`), oldest first."""
    return list(_WRITE_FAULTS)


class _WholeFile:
    """A file being written under a temporary name beside its own, renamed over it when closed: readers
    see the old file or the new one. A failed write or close removes the temporary file, records the
    error (`write_faults`) and raises it."""

    def __init__(self, path: str):
        self.path = path
        folder, name = os.path.split(path)
        self.temporary = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part")
        self.closed = True  # until the temporary file is open
        self._fh = os.fdopen(self._failing(os.open, self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        self.closed = False

    def _failing(self, call, *args):
        try:
            return call(*args)
        except OSError as err:
            if err.filename is None:  # a failed write names no file: this one
                err.filename = self.path
            _WRITE_FAULTS.append(err)
            self._abandon()
            raise

    def _abandon(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._fh.close()
            except OSError:
                pass
            _remove(self.temporary)

    def write(self, data) -> int:
        return self._failing(self._fh.write, data)

    def flush(self) -> None:
        self._failing(self._fh.flush)

    def tell(self) -> int:
        return self._fh.tell()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if self.closed:
            return
        self._failing(self._fh.close)
        self._failing(os.replace, self.temporary, self.path)
        self.closed = True

    def __del__(self) -> None:  # abandoned unclosed (its writer failed elsewhere): never half a file
        self._abandon()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class WholeFiles(pyarrow.fs.FileSystemHandler):
    """The local file system for Tune (as ``pyarrow.fs.PyFileSystem(WholeFiles())``), every file written
    through `_WholeFile`; everything else is `pyarrow.fs.LocalFileSystem`'s. Picklable (Tune hands it
    to the trial workers)."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFiles)

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "local-whole-files"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        self.local.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        with self.local.open_input_stream(src) as source:
            stream = self.open_output_stream(dest, None)
            try:
                while chunk := source.read(1 << 20):
                    stream.write(chunk)
            finally:
                stream.close()

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_WholeFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


@dataclass(frozen=True)
class RemotePath:
    """A path on a pyarrow filesystem, with the pathlib methods the study needs."""

    fs: pyarrow.fs.FileSystem
    path: str  # on `fs`: "bucket/prefix/..." for S3
    scheme: str  # for display: "s3"

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(self.fs, posixpath.join(self.path, name), self.scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}"

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, posixpath.dirname(self.path), self.scheme)

    def is_file(self) -> bool:
        return self.fs.get_file_info(self.path).type == pyarrow.fs.FileType.File

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as fh:  # a missing object: FileNotFoundError (an OSError)
            return fh.read().decode()

    def write_text(self, text: str) -> None:
        """The object written whole: a reader sees the old one or the new one (one upload)."""
        with self.fs.open_output_stream(self.path) as fh:
            fh.write(text.encode())


@dataclass(frozen=True)
class StudyStorage:
    """The study storage named by ``--storage``; see the module docstring."""

    given: str  # as given on the command line
    fs: pyarrow.fs.FileSystem | None  # None: a local folder
    root: str  # the folder's absolute path, or the path on `fs`

    @classmethod
    def parse(cls, value: str) -> StudyStorage:
        if "://" not in value:
            return cls(value, None, str(Path(value).expanduser().resolve()))
        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(value)
        except (pyarrow.ArrowException, ValueError, OSError) as err:
            raise ConfigError(f"--storage {value}: not a storage URI pyarrow can open ({err})") from None
        return cls(value, fs, path.rstrip("/"))

    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def scheme(self) -> str:
        return urlsplit(self.given).scheme

    def experiment_dir(self, name: str) -> Path | RemotePath:
        if self.fs is None:
            return Path(self.root) / name
        return RemotePath(self.fs, self.root, self.scheme) / name

    @property
    def local_dir(self) -> Path:
        """Where the driver keeps synthetic pairs and the data cache: the folder itself when local."""
        return Path(self.root) if self.fs is None else LOCAL_WORK_DIR

    def tune_filesystem(self) -> pyarrow.fs.FileSystem:
        """The filesystem Tune writes through: the URI's, or `WholeFiles` for a local folder."""
        return self.fs if self.fs is not None else pyarrow.fs.PyFileSystem(WholeFiles())

    def tune_kwargs(self) -> dict:
        """`storage_path` and `storage_filesystem` for Tune's RunConfig."""
        return {"storage_path": self.root, "storage_filesystem": self.tune_filesystem()}

    def prune_checkpoints(self, name: str) -> int:
        """Delete every checkpoint of study `name` but each trial's last one; returns how many went.

        Only for a study whose trials have all ended (Tune's final snapshot then names each trial's last
        checkpoint, and no resume restores from an older one). Each trial folder's ``checkpoint_NNNNNN``
        folders are found from one listing of the study's files (one paginated listing on S3).
        """
        fs = self.fs or pyarrow.fs.LocalFileSystem()
        base = posixpath.join(self.root, name)
        try:
            infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
        except (OSError, pyarrow.ArrowException):  # a storage hiccup costs disk, never the study
            return 0
        by_trial: dict[str, set[str]] = {}
        for info in infos:
            parts = info.path[len(base):].strip("/").split("/")
            for depth, part in enumerate(parts[:-1]):
                if part.startswith("checkpoint_"):
                    folder = posixpath.join(base, *parts[:depth])
                    by_trial.setdefault(folder, set()).add(posixpath.join(folder, part))
                    break
        removed = 0
        for checkpoints in by_trial.values():
            for path in sorted(checkpoints)[:-1]:  # checkpoint_000003 sorts after checkpoint_000002
                try:
                    fs.delete_dir(path)
                    removed += 1
                except (OSError, pyarrow.ArrowException):
                    pass
        return removed

    def tune_restore_kwargs(self, name: str) -> dict:
        """`path` and `storage_filesystem` of the experiment `name` for `Tuner.restore`."""
        return {"path": posixpath.join(self.root, name), "storage_filesystem": self.tune_filesystem()}
