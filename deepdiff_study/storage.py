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
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs

from deepdiff.errors import ConfigError

# Generated synthetic pairs and the data cache of a study whose --storage is a URI: on the driver's
# disk (both are rebuilt from their inputs when missing, e.g. on a new head node).
LOCAL_WORK_DIR = Path("~/.cache/deepdiff-tune/study").expanduser()


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

    def tune_kwargs(self) -> dict:
        """`storage_path` (and `storage_filesystem` for a URI) for Tune's RunConfig."""
        if self.fs is None:
            return {"storage_path": self.root}
        return {"storage_path": self.root, "storage_filesystem": self.fs}

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
        """`path` (and `storage_filesystem`) of the experiment `name` for `Tuner.restore`."""
        if self.fs is None:
            return {"path": str(Path(self.root) / name)}
        return {"path": posixpath.join(self.root, name), "storage_filesystem": self.fs}
