"""End-to-end `deepdiff` commands as a user runs them."""

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepdiff.cli import main

REPO = Path(__file__).resolve().parents[1]

RESULT = re.compile(
    r"^result variant=(\w+) pair=\S+ best_epoch=(\d+) valid_pcc=(-?[\d.]+) test_pcc=(-?[\d.]+) test_mse=([\d.]+) status=(\w+)$"
)
SMALL_FLAGS = ["--level1-hidden", "8", "--level2-hidden", "4", "--batch-size", "16"]


def _run(args, tmp_path):
    """Run the console script on this checkout's package; return (exit code, stdout, stderr).

    PYTHONPATH puts this checkout first: the installed script may point at another checkout.
    """
    proc = subprocess.run(["deepdiff", *args], capture_output=True, text=True, cwd=tmp_path,
                          env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": os.environ["PATH"],
                               "PYTHONPATH": str(REPO)})
    return proc.returncode, proc.stdout, proc.stderr


def _copy_sample(sample_dir, target):
    """A writable copy of the real sample pair (Cell1, Cell2) at `target`."""
    shutil.copytree(sample_dir, target)
    for path in [target, *target.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _edit_line(path, line, column, value):
    """Set field `column` of 1-based `line` of a CSV file to `value`."""
    lines = path.read_text().split("\n")
    fields = lines[line - 1].split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines))


def _last_result(stdout):
    match = RESULT.match(stdout.strip().splitlines()[-1])
    assert match, stdout
    return match


def test_train_writes_its_run_and_ends_with_a_parseable_line(small_synthetic_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2", "--variant", "raw_aux_siamese",
                 "--aux", "classification", "--margin", "1", "--epochs", "2", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), *SMALL_FLAGS])
    assert code == 0
    match = _last_result(capsys.readouterr().out)
    assert match.group(1) == "raw_aux_siamese" and match.group(6) == "completed"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.csv", "last.pt", "best.pt", "result.json"}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"train_loss", "valid_pcc", "test_pcc", "test_mse"} <= set(rows[0])
    assert json.loads((out / "result.json").read_text())["config"]["margin"] == 1.0

    # the resolved config reproduces the run
    code = main(["train", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert _last_result(capsys.readouterr().out).groups() == match.groups()

    # an existing run is never overwritten; --resume continues it
    before = (out / "metrics.csv").read_text()
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err and (out / "metrics.csv").read_text() == before
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(out), "--resume", "--epochs", "3",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())] == ["1", "2", "3"]


def test_train_on_the_real_sample(sample_dir, tmp_path):
    code, stdout, stderr = _run(["train", "--data", str(sample_dir), "--pair", "Cell1", "Cell2", "--variant", "raw_d",
                                 "--epochs", "1", *SMALL_FLAGS], tmp_path)
    assert code == 0, stderr
    assert _last_result(stdout).group(6) == "completed"
    assert "epoch 1/1" in stderr


def test_synth_then_prepare_uses_the_cache(tmp_path):
    code, stdout, _ = _run(["synth", "pair", "--genes", "30", "--seed", "1"], tmp_path)
    assert code == 0 and (tmp_path / "pair" / "Cell2.expr.csv").is_file()
    code, stdout, stderr = _run(["prepare", "--data", "pair", "--pair", "Cell1", "Cell2"], tmp_path)
    assert code == 0, stderr
    assert re.search(r"^train: \d+ genes, x \(\d+, 5, 200\)$", stdout, re.M)
    assert any((tmp_path / "cache" / "deepdiff-tune").rglob("*.parquet"))


def test_describe_prints_the_exact_parameter_count(tmp_path):
    code, stdout, _ = _run(["describe", "--variant", "raw_d"], tmp_path)
    assert code == 0 and stdout.strip().endswith("trainable parameters: 55681")
    assert "BinEncoder" in stdout and "MarkEncoder" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "nowhere", "--pair", "Cell1", "Cell2", "--variant", "raw"], "nowhere"),
        (["train", "--data", "pair", "--pair", "Cell1", "Cell9", "--variant", "raw"], "Cell9"),
        (["train", "--data", "pair", "--pair", "Cell1", "Cell2"], "--variant is required"),
        (["train", "--data", "pair", "--pair", "Cell1", "Cell2", "--variant", "raw", "--lr", "-1"], "field lr"),
        (["train", "--config", "missing.yaml"], "missing.yaml: config file not found"),
        (["train", "--variant", "raw", "--resume"], "--resume needs --out"),
        (["synth", "x", "--genes", "1"], "--genes 1"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    _run(["synth", "pair", "--genes", "30"], tmp_path)
    code, stdout, stderr = _run(args, tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in stderr


def test_train_on_files_named_by_epigenome(sample_dir, tmp_path):
    # The paper's files are E123.train.csv ... ; the sample's Cell1 is E123 and Cell2 is E003.
    data = tmp_path / "remc"
    data.mkdir()
    for cell, epigenome in (("Cell1", "E123"), ("Cell2", "E003")):
        for kind in ("train", "valid", "test", "expr"):
            (data / f"{epigenome}.{kind}.csv").symlink_to(sample_dir / f"{cell}.{kind}.csv")
    code, stdout, stderr = _run(["train", "--data", str(data), "--pair", "E123", "E003", "--variant", "aux",
                                 "--epochs", "1", *SMALL_FLAGS], tmp_path)
    assert code == 0, stderr
    assert " pair=E123-E003 " in stdout.splitlines()[-1]


@pytest.mark.slow
def test_an_error_exit_never_aborts(sample_dir, tmp_path):
    """A bad value found just after parsing used to race Arrow's reader threads at exit: about one exit
    in five was SIGABRT (134, "terminate called without an active exception") instead of 2."""
    data = _copy_sample(sample_dir, tmp_path / "d")
    _edit_line(data / "Cell1.train.csv", 10, 2, "")
    codes, stderr = [], ""
    for _ in range(30):
        code, _, stderr = _run(["prepare", "--data", "d", "--pair", "Cell1", "Cell2", "--no-cache"], tmp_path)
        codes.append(code)
    assert codes == [2] * 30, stderr
    assert stderr.strip().splitlines()[-1] == "error: d/Cell1.train.csv line 10 field H3K4me3: expected a non-negative count, got ''"
