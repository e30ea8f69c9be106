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
from deepdiff.config import load_config
from deepdiff.data import load_pair

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_train_on_the_real_sample(sample_dir, tmp_path):
    code, stdout, stderr = _run(["train", "--data", str(sample_dir), "--pair", "Cell1", "Cell2", "--variant", "raw_d",
                                 "--epochs", "1", *SMALL_FLAGS], tmp_path)
    assert code == 0, stderr
    assert _last_result(stdout).group(6) == "completed"
    assert "epoch 1/1" in stderr


@pytest.mark.slow
def test_synth_then_prepare_uses_the_cache(tmp_path):
    code, stdout, _ = _run(["synth", "pair", "--genes", "30", "--seed", "1"], tmp_path)
    assert code == 0 and (tmp_path / "pair" / "Cell2.expr.csv").is_file()
    code, stdout, stderr = _run(["prepare", "--data", "pair", "--pair", "Cell1", "Cell2"], tmp_path)
    assert code == 0, stderr
    assert re.search(r"^train: \d+ genes, x \(\d+, 5, 200\)$", stdout, re.M)
    assert any((tmp_path / "cache" / "deepdiff-tune").rglob("*.arrow"))


@pytest.mark.slow
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
@pytest.mark.slow
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    _run(["synth", "pair", "--genes", "30"], tmp_path)
    code, stdout, stderr = _run(args, tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in stderr


@pytest.mark.slow
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


# ---------------------------------------------------------------------------------------------------
# Every error path: one line naming what is wrong, a meaningful exit status, nothing written changed


def _train(data, out, *extra, cache=None):
    return ["train", "--data", str(data), "--pair", "Cell1", "Cell2", "--epochs", "1", *SMALL_FLAGS,
            *(["--out", str(out)] if out else []), *(["--cache-dir", str(cache)] if cache else ["--no-cache"]), *extra]


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("change", [["--variant", "raw_c"], ["--variant", "raw_d", "--lr", "1e-3"]])
def test_a_refused_resume_changes_nothing(small_synthetic_dir, tmp_path, capsys, change):
    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(_train(small_synthetic_dir, out, *change, "--epochs", "2", "--resume")) == 2
    assert "cannot resume, field" in _error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a finished run is refused before anything is written, too
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--resume")) == 2
    assert _error_line(capsys) == f"error: {out}: this run already finished 1 epochs; raise --epochs above 1 to train on"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_a_resume_on_other_data_is_refused_unchanged(small_synthetic_dir, tmp_path, capsys):
    """--resume with the pair swapped or another folder's contents is refused before anything is written; the
    same data copied elsewhere goes on, with a note, and config.yaml then names the new folder."""
    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 0
    trained_on = load_config(out / "config.yaml")[2]
    assert trained_on["fingerprint"] == load_pair(small_synthetic_dir, "Cell1", "Cell2").fingerprint()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    swapped = _train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "2", "--resume")
    swapped[swapped.index("--pair") + 1 : swapped.index("--pair") + 3] = ["Cell2", "Cell1"]
    assert main(swapped) == 2
    assert _error_line(capsys) == (f"error: {out}: cannot resume on other data: it trained on Cell1 -> Cell2, now Cell2 -> "
                                   "Cell1; pass --pair Cell1 Cell2 to continue it, or choose another --out for a new run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    other = tmp_path / "other"
    shutil.copytree(small_synthetic_dir, other)
    _edit_line(other / "Cell2.test.csv", 5, 1, "7")  # one count of one bin
    assert main(_train(other, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 2
    assert re.fullmatch(rf"error: {re.escape(str(out))}: cannot resume on other data: Cell1/Cell2 in {re.escape(str(other))}, "
                        rf"not {re.escape(str(small_synthetic_dir))} it trained on, holds other contents \(fingerprint \w{{12}}, "
                        rf"\w{{12}} in its config.yaml\); pass the --data it trained on \(--data \S+\) to continue it, or "
                        "choose another --out for a new run", _error_line(capsys))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    same = tmp_path / "same"
    shutil.copytree(small_synthetic_dir, same)
    assert main(_train(same, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 0
    assert f"note: {out} trained on {small_synthetic_dir}; it goes on with the same data" in capsys.readouterr().err
    assert load_config(out / "config.yaml")[2] == {**trained_on, "dir": str(same)}


def test_numbers_in_a_config_file(small_synthetic_dir, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text('model:\n  variant: aux_siamese\n  level1_hidden: 8\n  level2_hidden: 4\n  dropout: "0.3"\n'
                      "train:\n  lr: 1e-3\n  margin: 5e-1\n  epochs: 1\n  batch_size: 32\n")
    assert main(["train", "--config", str(config), "--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2",
                 "--no-cache", "--out", str(tmp_path / "r")]) == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "lr: 0.001\n" in saved and "margin: 0.5\n" in saved and "dropout: 0.3\n" in saved
    config.write_text(config.read_text() + "  seed: 1.5\n")
    assert main(["train", "--config", str(config), "--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2"]) == 2
    assert _error_line(capsys) == f"error: {config}: field seed: expected an integer, got 1.5"


def test_a_split_without_a_pcc_is_refused(sample_dir, tmp_path, capsys):
    data = _copy_sample(sample_dir, tmp_path / "d")
    for cell in ("Cell1", "Cell2"):  # keep the first gene (200 rows) of the valid split
        path = data / f"{cell}.valid.csv"
        path.write_text("\n".join(path.read_text().split("\n")[:200]) + "\n")
    assert main(["prepare", "--data", str(data), "--pair", "Cell1", "Cell2", "--no-cache"]) == 2
    assert _error_line(capsys) == (f"error: {data}/Cell1.valid.csv / {data}/Cell2.valid.csv: split valid has 1 gene(s) "
                                   "listed by both cells; expected at least 2 (PCC is undefined for fewer)")


def test_a_diverged_run_exits_3_and_names_the_data_as_the_cause(small_synthetic_pair, tmp_path, capsys, monkeypatch):
    # Files cannot hold a non-finite count any more (the validator refuses it); a pair that does diverges.
    import dataclasses

    import deepdiff.data
    import torch

    valid = small_synthetic_pair.valid
    poisoned = dataclasses.replace(small_synthetic_pair, valid=dataclasses.replace(
        valid, x_b=valid.x_b.clone().index_fill_(0, torch.tensor([0]), float("nan"))))
    monkeypatch.setattr(deepdiff.data, "load_pair", lambda *args, **kwargs: poisoned)
    out = tmp_path / "r"
    assert main(_train("anywhere", out, "--variant", "raw_d", "--epochs", "3")) == 3
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == ("error: the model's valid/test predictions are not finite at epoch 1; "
                                                     "the input counts of split valid are not all finite: the data, not --lr, caused it")
    assert captured.out.strip().endswith("status=diverged")
    assert [row["status"] for row in csv.DictReader((out / "metrics.csv").open())] == ["diverged"]
    assert not (out / "last.pt").exists()


@pytest.mark.parametrize("where", ["file", "under_file", "read_only", "loop", "dangling"])
def test_an_out_dir_that_cannot_be_written(small_synthetic_dir, tmp_path, capsys, monkeypatch, where):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    out = {"file": afile, "under_file": afile / "run", "read_only": tmp_path / "ro" / "run",
           "loop": tmp_path / "loop" / "run", "dangling": tmp_path / "dangling"}[where]
    if where == "read_only":
        (tmp_path / "ro").mkdir()
        real_access = os.access
        # root may write anywhere whatever the mode: make the folder read-only to this process's checks
        monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path / "ro" else real_access(path, mode))
    expected = {"file": f"--out {afile}: is a file, not a directory",
                "under_file": f"--out {out}: {afile} is a file, not a directory",
                "read_only": f"--out {out}: {tmp_path / 'ro'} is not writable; expected a directory you can write to",
                "loop": f"--out {out}: {tmp_path / 'loop'} is a symlink loop; expected a directory",
                "dangling": f"--out {out}: is a symlink to {tmp_path / 'gone'}, which is missing; expected a directory"}
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 2
    assert _error_line(capsys) == f"error: {expected[where]}"
    assert afile.read_text() == "keep" and not (tmp_path / "ro" / "run").exists() and not (tmp_path / "gone").exists()


def test_a_write_that_fails_midway_is_one_line(small_synthetic_dir, tmp_path, capsys, monkeypatch):
    import errno

    import deepdiff.rundir

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(deepdiff.rundir, "save_config", full)
    assert main(_train(small_synthetic_dir, tmp_path / "r", "--variant", "raw_d")) == 2
    assert _error_line(capsys) == f"error: {tmp_path / 'r' / 'config.yaml'}: No space left on device"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; test_an_out_dir_that_cannot_be_written simulates it")
def test_synth_into_a_read_only_folder(tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    assert main(["synth", str(tmp_path / "ro" / "pair")]) == 2
    assert "is not writable" in _error_line(capsys)


@pytest.mark.parametrize(
    "args, message",
    [
        (["synth", "{tmp}/afile/pair"], "synth OUT_DIR {tmp}/afile/pair: {tmp}/afile is a file, not a directory"),
        (["synth", "{data}"], "{data}/Cell1.train.csv: already exists; expected a new OUT_DIR (synth never overwrites a pair)"),
        (["synth", "x", "--genes", "11"], "--genes 11: expected 12 to 100000 genes (two genes in every split)"),
        (["synth", "x", "--seed", "-1"], "--seed -1: expected an integer >= 0"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--cache-dir", "{tmp}/afile"],
         "--cache-dir {tmp}/afile: is a file, not a directory"),
        (["prepare", "--data", "{data}", "--pair", "Cell1", "Cell2", "--cache-dir", "{tmp}/afile/cache"],
         "--cache-dir {tmp}/afile/cache: {tmp}/afile is a file, not a directory"),
        (["prepare", "--data", "{tmp}/afile", "--pair", "Cell1", "Cell2"],
         "{tmp}/afile: is a file, not a directory; expected CELL.{{train,valid,test,expr}}.csv for cells Cell1 and Cell2 in it"),
        (["prepare", "--data", "{tmp}/loop", "--pair", "Cell1", "Cell2"],
         "{tmp}/loop: is a symlink loop; expected CELL.{{train,valid,test,expr}}.csv for cells Cell1 and Cell2 in it"),
        (["prepare", "--data", "{data}", "--pair", "../Cell1", "Cell2"],
         "--pair '../Cell1': expected a cell type name (letters, digits, '_', '-', '.'; not starting with '.' or '-'), "
         "the prefix of its files CELL.train.csv ..."),
        (["train", "--config", "{tmp}/loop"], "{tmp}/loop: is a symlink loop; expected a config file (YAML or JSON)"),
        (["synth", "{tmp}/s", "--cells", "Cell1", "../Cell2"], "--cells '../Cell2': expected a cell type name (letters, "
         "digits, '_', '-', '.'; not starting with '.' or '-'), the prefix of its files CELL.train.csv ..."),
        (["synth", "{tmp}/s", "--genes", "1000000000"], "--genes 1000000000: expected 12 to 100000 genes"),
        (["synth", "{tmp}/s", "--split-fractions", "nan", "0.1"],
         "--split-fractions nan 0.1: expected two finite shares of the genes, e.g. 0.54 0.13"),
        (["synth", "{tmp}/s", "--split-fractions", "-1e-1", "0.5"],  # a negative value of a two-value flag
         "synth: split_fractions=(-0.1, 0.5): expected two positive train/valid shares summing below 1"),
        (["baselines", "--data", "{data}", "--pair", "Cell1", "Cell2", "--baselines", ""],
         "--baselines '': expected a comma-separated subset of linear,svr,svr2,ridge,rbf_svr,gboost,best_simple "
         "(or all, paper, simple)"),
        (["baselines", "--data", "{data}", "--pair", "Cell1", "Cell2", "--seed", "-1"], "--seed -1: expected an integer in [0, 2**32)"),
        (["baselines", "--data", "{data}", "--pair", "Cell1", "Cell2", "--threads", "-1"],
         "--threads -1: expected an integer >= 0 (0 = automatic)"),
        (["baselines", "--data", "{data}", "--pair", "Cell1", "Cell2", "--seed", str(2**32)],
         f"--seed {2**32}: expected an integer in [0, 2**32)"),
        (["baselines", "--data", "{data}", "--pair", "Cell1", "Cell2", "--jobs", "0"],
         "--jobs 0: expected a number of processes >= 1 (or -1 for every core)"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--seed", "1e20"],
         "command line: field seed: expected an integer in [0, 2**63), got 100000000000000000000"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--epochs", "0"],
         "command line: field epochs: expected an integer > 0, got 0"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--batch-size", "0"],
         "command line: field batch_size: expected an integer > 0, got 0"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--lr", "inf"],
         "command line: field lr: expected a number > 0, got inf"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell1", "--variant", "raw_d"],
         "cells 'Cell1' and 'Cell1': expected two different cell types"),
        (["train", "--config", "{tmp}"], "{tmp}: is a directory, not a file; expected a config file (YAML or JSON)"),
        (["train", "--data", "{data}", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--epochs", "abc"],
         "command line: field epochs: expected an integer, got 'abc'"),
    ],
)
def test_more_bad_input_in_process(small_synthetic_dir, tmp_path, capsys, args, message):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "loop").symlink_to("loop")
    fill = {"tmp": tmp_path, "data": small_synthetic_dir}
    before = sorted(p.name for p in small_synthetic_dir.iterdir())
    assert main([a.format(**fill) for a in args]) == 2
    assert _error_line(capsys) == "error: " + message.format(**fill)
    assert sorted(p.name for p in small_synthetic_dir.iterdir()) == before and (tmp_path / "afile").read_text() == "keep"
    assert not (tmp_path / "s").exists() and not (tmp_path / "Cell2.train.csv").exists()


def test_a_truncated_checkpoint_is_refused_unchanged(small_synthetic_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 0
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 2
    assert _error_line(capsys) == f"error: {out / 'last.pt'}: not a readable deepdiff checkpoint (RuntimeError)"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # of the right format but incomplete (a KeyError traceback before), or a best.pt copied over last.pt
    import torch

    from deepdiff.train import CHECKPOINT_FORMAT

    for content, message in (({"format": CHECKPOINT_FORMAT}, "a damaged deepdiff checkpoint (no model_config)"),
                             (out / "best.pt", "cannot resume, the checkpoint holds no optimizer (a best.pt, or damaged)")):
        if isinstance(content, dict):
            torch.save(content, out / "last.pt")
        else:
            (out / "last.pt").write_bytes(content.read_bytes())
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 2
        assert _error_line(capsys) == f"error: {out / 'last.pt'}: {message}"
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before


class _Planted:
    """Pickled, it tells the unpickler to call Path.touch(marker): code run by merely reading the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_or_config_that_would_run_code_is_refused(small_synthetic_dir, tmp_path, capsys, one_thread):
    """A best.pt / last.pt from elsewhere holding a pickled object whose unpickling runs code (here: creates a
    file), and a YAML config with a python/object tag, are one-line errors; the code never runs."""
    import torch

    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 0
    marker = tmp_path / "code-ran"
    state = torch.load(out / "last.pt", weights_only=True)
    torch.save({**state, "model": {**state["model"], "extra": _Planted(marker)}}, out / "last.pt")
    torch.save({**state, "epoch": _Planted(marker)}, tmp_path / "best.pt")
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 2
    assert _error_line(capsys) == f"error: {out / 'last.pt'}: not a readable deepdiff checkpoint (UnpicklingError)"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["evaluate", "--checkpoint", str(tmp_path / "best.pt"), "--data", str(small_synthetic_dir),
                 "--pair", "Cell1", "Cell2", "--no-cache"]) == 2
    assert _error_line(capsys) == f"error: --checkpoint {tmp_path / 'best.pt'}: not a readable deepdiff checkpoint (UnpicklingError)"
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  variant: raw_d\ntrain: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
    assert main(["train", "--config", str(config), "--data", str(small_synthetic_dir), "--pair", "Cell1", "Cell2"]) == 2
    assert _error_line(capsys) == f"error: {config} line 3: not valid YAML/JSON (ConstructorError)"
    assert not marker.exists()
    torch.load(out / "last.pt", weights_only=False)  # the files do run code when read without the allow-list
    assert marker.exists()


def test_flags_a_variant_does_not_use_are_noted(small_synthetic_dir, capsys):
    assert main(_train(small_synthetic_dir, None, "--variant", "raw_d", "--aux", "classification", "--margin", "3")) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: --")]
    assert notes == ["note: --aux, --margin ignored: variant raw_d has no auxiliary task and no contrastive loss"]
    assert main(_train(small_synthetic_dir, None, "--variant", "aux", "--margin", "3")) == 0
    assert "note: --margin ignored: variant aux has no contrastive loss" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupt_leaves_the_run_consistent(small_synthetic_dir, tmp_path, capsys, monkeypatch):
    """Ctrl-C just after fit() wrote epoch 2's last.pt, before the CLI wrote its metrics row."""
    import signal

    import deepdiff.train

    save = deepdiff.train._atomic_save

    def save_then_interrupt(state, path):
        save(state, path)
        if path.name == "last.pt" and state["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(deepdiff.train, "_atomic_save", save_then_interrupt)
    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "4")) == 130
    assert _error_line(capsys).startswith("interrupted; everything written so far is kept")
    epochs = [row["epoch"] for row in csv.DictReader((out / "metrics.csv").open())]
    assert epochs == ["1", "2"] and deepdiff.train.load_checkpoint(out)["epoch"] == 2
    assert (out / "config.yaml").is_file() and not (out / "result.json").exists()
    monkeypatch.setattr(deepdiff.train, "_atomic_save", save)
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "4", "--resume")) == 0
    assert [row["epoch"] for row in csv.DictReader((out / "metrics.csv").open())] == ["1", "2", "3", "4"]


@pytest.mark.slow
def test_the_printed_resume_command_runs_as_printed(small_synthetic_dir, tmp_path, capsys, monkeypatch):
    """Ctrl-C prints the command that continues the run, quoted for a shell: with a space, a quote and shell
    syntax in the paths, a shell runs it as printed (and runs nothing else)."""
    import signal

    import deepdiff.train

    data = tmp_path / "my data; $(touch pwned)"
    shutil.copytree(small_synthetic_dir, data)
    out = tmp_path / "it's runs" / "r `x`"
    save = deepdiff.train._atomic_save

    def save_then_interrupt(state, path):
        save(state, path)
        if path.name == "last.pt" and state["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(deepdiff.train, "_atomic_save", save_then_interrupt)
    monkeypatch.chdir(tmp_path)
    assert main(_train(data, out, "--variant", "raw_d", "--epochs", "2")) == 130
    line = _error_line(capsys)
    assert line.startswith("interrupted; everything written so far is kept; continue with: deepdiff train ")
    command = line.split("; continue with: ", 1)[1]
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert f"resuming {out} after epoch 1" in done.stderr
    assert [row["epoch"] for row in csv.DictReader((out / "metrics.csv").open())] == ["1", "2"]
    assert not any(tmp_path.rglob("pwned")) and not any(tmp_path.rglob("x"))


@pytest.mark.slow
def test_a_negative_number_reaches_the_validator(tmp_path):
    code, _, stderr = _run(["train", "--data", "d", "--pair", "Cell1", "Cell2", "--variant", "raw_d", "--lr", "-1e-3"], tmp_path)
    assert code == 2 and stderr.splitlines() == ["error: command line: field lr: expected a number > 0, got -0.001"]
    code, _, stderr = _run(["train", "--variant", "raw_q"], tmp_path)
    assert code == 2 and len(stderr.splitlines()) == 1 and stderr.startswith("error: deepdiff train: argument --variant: ")


def test_a_config_data_section_is_checked_and_never_regenerated_over_files(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    config.write_text(f"model:\n  variant: raw_d\ndata:\n  dir: {folder}\n  cell_a: Cell1\n  cell_b: Cell2\n"
                      "  synthetic: {genes: 30, seed: 1}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert _error_line(capsys).startswith(f"error: {folder}: holds other files but not the synthetic pair Cell1/Cell2")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    config.write_text(f"model:\n  variant: raw_d\ndata:\n  dir: {tmp_path / 'new'}\n  cell_a: Cell1\n  cell_b: Cell2\n"
                      "  synthetic: {genes: 30, colour: red}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert _error_line(capsys).startswith(f"error: {config} section data: field synthetic: ")
    config.write_text("model:\n  variant: raw_d\ndata:\n  dir: 5\n  cell_a: Cell1\n  cell_b: Cell2\n")
    assert main(["train", "--config", str(config)]) == 2
    assert _error_line(capsys) == f"error: {config} section data: field dir: expected text, got 5"


# ---------------------------------------------------------------------------------------------------
# deepdiff evaluate

EVALUATE = re.compile(r"^result variant=(\w+) pair=(\S+) epoch=(\d+) valid_pcc=(-?[\d.]+) valid_mse=([\d.]+) "
                      r"test_pcc=(-?[\d.]+) test_mse=([\d.]+)$")


@pytest.mark.slow
def test_evaluate_reproduces_the_best_epoch_and_writes_attention(small_synthetic_dir, tmp_path, capsys, one_thread):
    import numpy as np

    run = tmp_path / "run"
    assert main(_train(small_synthetic_dir, run, "--variant", "raw_aux")) == 0
    trained = json.loads((run / "result.json").read_text())
    capsys.readouterr()
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(small_synthetic_dir),
                 "--pair", "Cell1", "Cell2", "--no-cache", "--split", "valid", "--out", str(out)]) == 0
    line = EVALUATE.match(capsys.readouterr().out.strip().splitlines()[-1])
    assert line, "no result line"
    assert (line[1], line[2], int(line[3])) == ("raw_aux", "Cell1-Cell2", trained["best_epoch"])
    assert float(line[4]) == pytest.approx(trained["valid_pcc"], abs=1e-6)
    assert float(line[6]) == pytest.approx(trained["test_pcc"], abs=1e-6)
    assert float(line[7]) == pytest.approx(trained["test_mse"], abs=1e-6)
    about = json.loads((out / "attention.json").read_text())
    arrays = np.load(out / "attention.npz")  # plain arrays: no pickle needed
    n = about["genes"]
    assert about["split"] == "valid" and about["valid_pcc"] == pytest.approx(trained["valid_pcc"], abs=1e-9)
    assert set(arrays.files) == set(about["arrays"])
    shapes = {name: arrays[name].shape for name in arrays.files}
    assert shapes["bin_attention_diff"] == (n, 15, 200) and shapes["bin_attention_A"] == (n, 5, 200)
    assert shapes["mark_attention_diff"] == (n, 25) and shapes["mark_attention_B"] == (n, 5)
    assert list(arrays["bin_channels_diff"][:2]) == ["A:H3K4me1", "A:H3K4me3"]
    assert arrays["mark_channels_diff"][15] == "f1^A:H3K4me1"
    for path in ("diff", "A", "B"):
        assert np.allclose(arrays[f"bin_attention_{path}"].sum(-1), 1.0, atol=1e-5)
        assert np.allclose(arrays[f"mark_attention_{path}"].sum(-1), 1.0, atol=1e-5)
    assert arrays["bin_centers_kb"][0] == pytest.approx(-9.95) and arrays["bin_centers_kb"][-1] == pytest.approx(9.95)
    assert shapes["target"] == shapes["prediction"] == shapes["gene_ids"] == (n,)
    # the predictions are the model's: their PCC with the targets is the valid PCC printed
    assert np.corrcoef(arrays["prediction"], arrays["target"])[0, 1] == pytest.approx(trained["valid_pcc"], abs=1e-5)
    # never overwritten
    before = (out / "attention.npz").read_bytes()
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(small_synthetic_dir),
                 "--pair", "Cell1", "Cell2", "--no-cache", "--out", str(out)]) == 2
    assert _error_line(capsys) == f"error: --out {out}: already holds attention.npz; choose another --out (never overwritten)"
    assert (out / "attention.npz").read_bytes() == before


def test_evaluate_errors_are_one_line(small_synthetic_dir, tmp_path, capsys, one_thread):
    from deepdiff.synthetic import write_synthetic_pair

    run = tmp_path / "run"
    assert main(_train(small_synthetic_dir, run, "--variant", "raw_d")) == 0
    foreign = tmp_path / "foreign.pt"
    foreign.write_text("not a model")
    write_synthetic_pair(tmp_path / "bins100", genes=30, n_bins=100)
    capsys.readouterr()

    def evaluate(checkpoint, data=small_synthetic_dir):
        return main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--pair", "Cell1", "Cell2",
                     "--no-cache", "--out", str(tmp_path / "ev")])

    assert evaluate(tmp_path / "missing.pt") == 2
    assert _error_line(capsys).startswith(f"error: --checkpoint {tmp_path / 'missing.pt'}: checkpoint not found")
    assert evaluate(foreign) == 2
    assert _error_line(capsys).startswith(f"error: --checkpoint {foreign}: not a readable deepdiff checkpoint")
    assert evaluate(run / "best.pt", tmp_path / "bins100") == 2
    line = _error_line(capsys)
    assert "expected 200 bins" in line and line.endswith(f"(the model in --checkpoint {run / 'best.pt'} reads 200 bins per gene)")
    assert not (tmp_path / "ev").exists()  # nothing written


def _disk_full_after(monkeypatch, module, writes):
    """`write_atomic` in `module` fails with ENOSPC from its `writes`-th call on, as a full disk does."""
    import errno

    import deepdiff.files

    real, calls = deepdiff.files.write_atomic, []

    def write(path, data):
        calls.append(path)
        if len(calls) >= writes:
            # the real writer, into a file whose write fails: what a full disk does to it
            class Full:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return False

                def write(self, data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(deepdiff.files, "open", lambda *a, **k: Full(), raising=False)
        return real(path, data)

    monkeypatch.setattr(module, "write_atomic", write)


def test_a_disk_full_while_training_keeps_the_run_as_it_was(small_synthetic_dir, tmp_path, capsys, monkeypatch):
    """torch.save on a full disk used to end in a RuntimeError traceback of its zip writer, with a
    half-written last.pt.tmp left behind."""
    import deepdiff.train

    out = tmp_path / "r"
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _disk_full_after(monkeypatch, deepdiff.train, 1)  # the first checkpoint of the resumed epoch
    assert main(_train(small_synthetic_dir, out, "--variant", "raw_d", "--epochs", "2", "--resume")) == 2
    assert _error_line(capsys) == f"error: {out / 'last.pt'}: No space left on device"
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    del before["config.yaml"], after["config.yaml"]  # rewritten on purpose: a resume may raise epochs
    assert after == before  # checkpoints and metrics as they were, and no temporary file


def test_a_disk_full_while_writing_a_synthetic_pair_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    import deepdiff.synthetic

    real, written = deepdiff.synthetic._write_table, []

    def write_then_fill(path, columns):
        if written:  # the second file: the disk is full (pyarrow names no file)
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        written.append(path)
        real(path, columns)

    monkeypatch.setattr(deepdiff.synthetic, "_write_table", write_then_fill)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for out in (tmp_path / "new", tmp_path / "mine"):
        written.clear()
        assert main(["synth", str(out), "--genes", "30"]) == 2
        assert _error_line(capsys) == f"error: {out}: No space left on device"
    assert not (tmp_path / "new").exists() and [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    monkeypatch.setattr(deepdiff.synthetic, "_write_table", real)
    assert main(["synth", str(tmp_path / "mine"), "--genes", "30"]) == 0  # the same command, once there is room


def test_a_model_too_large_for_memory_is_one_line(small_synthetic_dir, capsys, monkeypatch):
    import deepdiff.model

    def refuse(cfg):  # what torch's CPU allocator raises for --level1-hidden 100000 (160 GB of weights)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 160000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(deepdiff.model.DeepDiff, "from_config", staticmethod(refuse))
    for args in (["describe", "--variant", "raw", "--level1-hidden", "100000"],
                 _train(small_synthetic_dir, None, "--variant", "raw_d", "--level1-hidden", "100000")):
        assert main(args) == 2
        assert _error_line(capsys) == ("error: not enough memory (tried to allocate 160000000000 bytes); the model or a "
                                       "batch is too large for this machine: lower --level1-hidden, --level2-hidden or --batch-size")


def test_describe_notes_an_aux_mode_its_variant_does_not_use(capsys):
    assert main(["describe", "--variant", "raw_d", "--aux", "classification"]) == 0
    assert "note: --aux ignored: variant raw_d has no auxiliary task" in capsys.readouterr().err


def test_a_subcommand_is_one_registration(monkeypatch, capsys):
    """What the lead does for `deepdiff build-pair`: one more function in SUBCOMMANDS; main dispatches on its handler."""
    import deepdiff.cli
    from deepdiff.errors import ConfigError

    def add_hello(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--fail", action="store_true")
        p.set_defaults(handler=lambda args: (_ for _ in ()).throw(ConfigError("hello: refused")) if args.fail else 7)

    monkeypatch.setattr(deepdiff.cli, "SUBCOMMANDS", (*deepdiff.cli.SUBCOMMANDS, add_hello))
    assert main(["hello"]) == 7
    assert main(["hello", "--fail"]) == 2 and _error_line(capsys) == "error: hello: refused"
    with pytest.raises(SystemExit) as exit_:
        main(["hello", "--colour"])
    assert exit_.value.code == 2 and _error_line(capsys) == "error: deepdiff: unrecognized arguments: --colour (see deepdiff --help)"
