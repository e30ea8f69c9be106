"""Tests of deepdiff.command: the quoting of printed command lines (`shell_command`)."""

import shlex
import subprocess
from pathlib import Path

import pytest

from deepdiff.command import shell_command

AWKWARD = ["my runs/a b", "it's", "$(touch pwned)", "a;b", "*", "`x`", "tab\there", "", "é ü", "--lr", "-1e-3"]


def test_a_command_line_reads_back_word_for_word():
    line = shell_command("deepdiff", "train", *AWKWARD, Path("runs") / "x y")
    assert shlex.split(line) == ["deepdiff", "train", *AWKWARD, "runs/x y"]
    assert shell_command("deepdiff", "train", "--out", "runs/plain") == "deepdiff train --out runs/plain"  # nothing quoted that needs none


@pytest.mark.parametrize("word", AWKWARD)
def test_a_shell_runs_each_word_as_printed(tmp_path, word):
    """printf through a real POSIX shell receives exactly the word; nothing in it is executed."""
    done = subprocess.run(["sh", "-c", shell_command("printf", "%s", word)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == word
    assert list(tmp_path.iterdir()) == []
