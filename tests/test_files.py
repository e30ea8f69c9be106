"""Tests of deepdiff.files: a file replaced whole or not at all, a staging folder that leaves nothing."""

import errno
import os

import pytest

import deepdiff.files
from deepdiff.files import staging_folder, write_atomic


def test_text_bytes_and_a_writer_replace_the_file(tmp_path):
    path = tmp_path / "f.txt"
    assert write_atomic(path, "héllo\n") == path and path.read_bytes() == "héllo\n".encode()
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_atomic(path, lambda fh: fh.write(b"from a writer"))
    assert path.read_bytes() == b"from a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")
    real_fsync = os.fsync

    def full(fd):  # the disk fills up when the data reaches it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        write_atomic(path, "new")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)  # the file the user knows
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    monkeypatch.setattr(os, "fsync", real_fsync)

    def half_then_fail(fh):  # a writer that dies halfway (a bug, Ctrl-C): its exception as it is
        fh.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_folder_that_cannot_hold_the_file_names_the_file(tmp_path):
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(OSError) as caught:
        write_atomic(tmp_path / "afile" / "f.txt", "x")
    assert caught.value.errno == errno.ENOTDIR and caught.value.filename == str(tmp_path / "afile" / "f.txt")
    assert (tmp_path / "afile").read_text() == "keep"


def test_the_file_is_flushed_to_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(deepdiff.files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b)))
    write_atomic(tmp_path / "f", "x")
    assert events == ["fsync", "replace"]


def test_a_staging_folder_is_removed_with_what_is_left_in_it(tmp_path):
    with staging_folder(tmp_path / "new", ".s-") as folder:
        assert folder.parent == tmp_path / "new" and folder.name.startswith(".s-")
        (folder / "a").write_text("moved")
        (folder / "b").write_text("left behind")
        os.replace(folder / "a", tmp_path / "new" / "a")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["a"]
    with pytest.raises(RuntimeError):
        with staging_folder(tmp_path) as folder:
            (folder / "c").write_text("half")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
