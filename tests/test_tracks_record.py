"""deepdiff.tracks.record: checksums taken once, the build key, who owns a file in the output folder."""

import hashlib
import os

import pytest

from deepdiff.errors import ConfigError
from deepdiff.tracks.record import build_key, check_owner, describe_file, outputs_unchanged, read_record, write_record


def test_a_checksum_is_reused_while_the_fingerprint_is_unchanged(tmp_path):
    path = tmp_path / "a.bw"
    path.write_bytes(b"abc")
    first = describe_file(path, {})
    assert first["sha256"] == hashlib.sha256(b"abc").hexdigest() and first["size"] == 3
    fake = {**first, "sha256": "0" * 64}  # a recorded checksum is trusted while the stat fingerprint holds
    assert describe_file(path, {first["path"]: fake})["sha256"] == "0" * 64
    os.utime(path, ns=(5, 5))
    assert describe_file(path, {first["path"]: fake})["sha256"] == first["sha256"]


def test_the_build_key_depends_on_every_input():
    base = build_key(["A", "B"], {"annotation": "1", "A/H3K4me1": "2"}, {"seed": 0})
    assert base == build_key(["A", "B"], {"A/H3K4me1": "2", "annotation": "1"}, {"seed": 0})
    assert len({base, build_key(["B", "A"], {"annotation": "1", "A/H3K4me1": "2"}, {"seed": 0}),
                build_key(["A", "B"], {"annotation": "1", "A/H3K4me1": "3"}, {"seed": 0}),
                build_key(["A", "B"], {"annotation": "1", "A/H3K4me1": "2"}, {"seed": 1})}) == 4


def test_records_and_owners(tmp_path):
    (tmp_path / "A.train.csv").write_text("x")
    with pytest.raises(ConfigError, match=r"already holds A\.train\.csv, not written by deepdiff build-pair"):
        check_owner(tmp_path, ["A.train.csv", "B.train.csv"], "A-B")
    entry = describe_file(tmp_path / "A.train.csv", {})
    write_record(tmp_path / "A-B.build-pair.json", {"format": 1, "outputs": {"A.train.csv": entry}})
    check_owner(tmp_path, ["A.train.csv", "B.train.csv"], "A-B")
    with pytest.raises(ConfigError, match=r"A\.train\.csv belongs to the pair of A-B\.build-pair\.json"):
        check_owner(tmp_path, ["A.train.csv"], "A-C")
    record = read_record(tmp_path / "A-B.build-pair.json")
    assert outputs_unchanged(record, tmp_path)
    (tmp_path / "A.train.csv").write_text("y")
    assert not outputs_unchanged(record, tmp_path)
    (tmp_path / "broken.build-pair.json").write_text("{")
    assert read_record(tmp_path / "broken.build-pair.json") is None
