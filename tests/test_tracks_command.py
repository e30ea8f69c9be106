"""`deepdiff build-pair` as a user meets it: the manifest and the flag forms, one-line errors, a second
run that does nothing, and a built pair trained by `deepdiff train`, fitted by `deepdiff baselines` and
run through a tiny study (`tune/run_ablation.py --grid GRID --data OUT`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepdiff import cli
from deepdiff.command import OneLineParser
from deepdiff.data import MARKS, load_pair
from deepdiff.tracks.example import write_example
from tracks_files import write_bam

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """The planted example: 80 genes on 2 chromosomes of 1 Mb, bigWig tracks; returns its manifest."""
    return write_example(tmp_path_factory.mktemp("example"), genes=80, chroms=2, chrom_size=1_000_000)


def test_build_pair_is_a_deepdiff_command_with_one_line_usage_errors():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices["build-pair"], OneLineParser)
    args = parser.parse_args(["build-pair", "m.yaml", "--out", "o"])
    assert args.handler.__name__ == "cmd_build_pair"


def test_the_command_line_imports_no_track_library_until_a_track_is_opened():
    code = ("import sys, deepdiff.cli as c; c.build_parser(); import deepdiff.tracks.manifest; "
            "print(sorted(m for m in ('pyBigWig', 'pysam') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_manifest_then_nothing_to_do(example, tmp_path, capsys):
    out = tmp_path / "pair"
    code, stdout, stderr = run_cli(["build-pair", example, "--out", out, "--jobs", "1"], capsys)
    assert code == 0, stderr
    assert stdout.strip() == (f"pair CTRL-KO built in {out} (record CTRL-KO.build-pair.json); train it: "
                              f"deepdiff train --data {out} --pair CTRL KO --variant raw")
    assert "genes: " in stderr and "note: annotation: " in stderr and "not protein coding dropped" in stderr
    code, stdout, stderr = run_cli(["build-pair", example, "--out", out], capsys)
    assert code == 0 and stdout.startswith("pair CTRL-KO up to date in")
    assert "nothing rebuilt" in stderr


def test_the_flag_form_and_flags_over_options(example, tmp_path, capsys):
    doc = yaml.safe_load(example.read_text())
    folder = example.parent
    cells = []
    for name, body in doc["cells"].items():
        cells += ["--cell", name, folder / body["expression"], *(folder / body["marks"][m] for m in MARKS)]
    out = tmp_path / "flags"
    code, _, stderr = run_cli(["build-pair", "--annotation", folder / doc["annotation"], *cells, "--out", out,
                               "--all-genes", "--seed", "5", "--test-chroms", "chr2", "--jobs", "1"], capsys)
    assert code == 0, stderr
    record = json.loads((out / "CTRL-KO.build-pair.json").read_text())
    assert record["annotation"]["genes"] == "all" and record["split"]["seed"] == 5
    assert record["split"]["test_chroms"] == ["chr2"] and record["manifest"] == "the command line"
    assert record["summary"]["genes"]["kept"] == 80


@pytest.mark.parametrize("args, fragments", [
    (["--out", "{tmp}/o"], ["build-pair: expected a MANIFEST, or --annotation FILE and --cell"]),
    (["{manifest}", "--annotation", "x.gtf", "--out", "{tmp}/o"], ["give a MANIFEST or --annotation with two --cell, not both"]),
    (["{manifest}", "--out", "{tmp}/o", "--min-mapq", "256"], ["--min-mapq: expected a whole number from 0 to 255, got 256"]),
    (["{manifest}", "--out", "{tmp}/o", "--split-fractions", "0.9", "0.2"], ["--split-fractions: expected two shares"]),
    (["{manifest}", "--out", "{tmp}/o", "--test-chroms", "chr9"], ["--test-chroms chr9: no gene of the pair lies on it"]),
    (["{manifest}", "--out", "{tmp}/o", "--jobs", "0"], ["--jobs 0: expected a number of worker processes >= 1"]),
    (["{manifest}", "--out", "{tmp}/o", "--seed", "x"], ["deepdiff build-pair: argument --seed: invalid int value: 'x'"]),
    (["{manifest}", "--out", "{manifest}"], ["--out {manifest}: is a file, not a directory"]),
    (["{manifest}", "--out", "{tmp}/o", "--expression-column", "FPKX"], ["CTRL.genes.results line 1: no column 'FPKX'"]),
])
def test_bad_flags_are_one_line_errors(example, tmp_path, capsys, args, fragments):
    args = [a.format(tmp=tmp_path, manifest=example) for a in args]
    fragments = [f.format(tmp=tmp_path, manifest=example) for f in fragments]
    try:
        code, _, err = run_cli(["build-pair", *args], capsys)
    except SystemExit as exit:  # argparse's own errors exit from the parser
        code, err = exit.code, capsys.readouterr().err
    one_line_error(code, err, *fragments)
    assert not (tmp_path / "o").exists()


def test_a_bam_without_index_is_a_one_line_error_naming_it(example, tmp_path, capsys):
    doc = yaml.safe_load(example.read_text())
    bam = write_bam(tmp_path / "KO.H3K9me3.bam", {"chr1": 1_000_000, "chr2": 1_000_000},
                    [{"chrom": "chr1", "start": 5_000}], index=False)
    doc["cells"]["KO"]["marks"]["H3K9me3"] = str(bam)
    doc["annotation"] = str(example.parent / doc["annotation"])
    for cell in doc["cells"].values():
        cell["expression"] = str(example.parent / cell["expression"])
        cell["marks"] = {m: str(example.parent / p) for m, p in cell["marks"].items()}
    manifest = tmp_path / "pair.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    code, _, err = run_cli(["build-pair", manifest, "--out", tmp_path / "o"], capsys)
    one_line_error(code, err, f"error: {bam}: has no index; expected KO.H3K9me3.bam.bai (or .csi) beside it: samtools index {bam}")


@pytest.mark.slow
def test_a_built_pair_trains_end_to_end(example, tmp_path, capsys, one_thread):
    out = tmp_path / "pair"
    assert run_cli(["build-pair", example, "--out", out, "--jobs", "1"], capsys)[0] == 0
    code, stdout, stderr = run_cli(["train", "--data", out, "--pair", "CTRL", "KO", "--variant", "raw_d", "--epochs", "2",
                                    "--level1-hidden", "4", "--level2-hidden", "4", "--batch-size", "16", "--no-cache",
                                    "--out", tmp_path / "run"], capsys)
    assert code == 0, stderr
    assert stdout.startswith("result variant=raw_d pair=CTRL-KO ") and "status=completed" in stdout
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"
    code, stdout, stderr = run_cli(["baselines", "--data", out, "--pair", "CTRL", "KO", "--baselines", "linear",
                                    "--input-transform", "log1p", "--no-cache"], capsys)
    assert code == 0, stderr
    line = stdout.strip().splitlines()[-1]
    test_pcc = float(line.split("test_pcc=")[1].split()[0])
    assert test_pcc > 0.5, line  # the planted signal is found in the built files


TINY_GRID = """
pairs:
  1: [CTRL, KO]
variants: [raw_d, raw_c, raw, aux, raw_aux, aux_siamese, raw_aux_siamese]
aux_modes: [regression, classification]
margins: [1, 2]
published: {lr: 1.0e-3, batch_size: 32, dropout: 0.1, level1_hidden: 4, level2_hidden: 4, input_transform: log1p, aux_weight: 1.0, gamma: 4.0}
search_space:
  lr:              {kind: log_uniform, low: 1.0e-4, high: 3.0e-2}
  batch_size:      {kind: choice, values: [16, 32]}
  dropout:         {kind: uniform, low: 0.0, high: 0.5}
  level1_hidden:   {kind: choice, values: [4]}
  level2_hidden:   {kind: choice, values: [4]}
  input_transform: {kind: choice, values: [raw, log1p]}
  aux_weight:      {kind: log_uniform, low: 0.1, high: 10.0, applies_to: aux}
  gamma:           {kind: log_uniform, low: 0.5, high: 16.0, applies_to: siamese}
presets:
  quick: {pairs: "1", margins: [1], samples: 1, max_epochs: 1, grace_period: 1, reduction_factor: 2, synthetic_genes: 100}
  paper: {pairs: all, margins: [1, 2], samples: 1, max_epochs: 1, grace_period: 1, reduction_factor: 2, synthetic_genes: 100}
"""


@pytest.mark.slow
def test_a_built_pair_runs_in_a_tiny_study(example, tmp_path, capsys):
    """docs/own-data.md's path: a grid file naming the pair, then the study's entry script with --data."""
    out = tmp_path / "pair"
    assert run_cli(["build-pair", example, "--out", out, "--jobs", "1"], capsys)[0] == 0
    grid = tmp_path / "my-grid.yaml"
    grid.write_text(TINY_GRID)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tune" / "run_ablation.py"), "--grid", str(grid), "--data", str(out),
                           "--pairs", "CTRL-KO", "--variants", "raw_d", "--samples", "1", "--max-epochs", "1",
                           "--storage", str(tmp_path / "results"), "--mlflow-uri", f"sqlite:///{tmp_path / 'mlruns.db'}",
                           "--experiment", "own", "--precision", "float32"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    from deepdiff_study.records import Kind, study_runs

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("own").experiment_id
    (cell,) = study_runs(client, experiment, Kind.GRID_CELL)
    assert (cell.data.tags["epigenome_a"], cell.data.tags["epigenome_b"]) == ("CTRL", "KO")
    assert cell.data.tags["grid_cell"] == "p1-raw_d"
    (trial,) = study_runs(client, experiment, Kind.TRIAL)
    assert trial.data.tags["status"] == "completed"
    pair = load_pair(out, "CTRL", "KO")
    assert int(trial.data.metrics.get("epoch", 1)) == 1 and len(pair.train) > 0
