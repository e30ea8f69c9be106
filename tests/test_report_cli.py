"""The report's command line: --seeds (which trained) points to the study command in one line, before
anything is read or written; flag mistakes are one line like every other command's."""

import pytest

from deepdiff_study.report import main


def test_seeds_is_a_one_line_pointer_to_the_study_command(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["--seeds", "3", "--experiment", "my-study", "--out", str(out), "--mlflow-uri",
                 f"sqlite:///{tmp_path / 'absent.db'}"]) == 2
    assert capsys.readouterr().err == (
        "error: deepdiff-report --seeds moved to the study command: deepdiff-ablation --replicates 3 "
        "--experiment my-study (it retrains, then writes this report)\n")
    assert not out.exists() and not (tmp_path / "absent.db").exists()


def test_the_other_replicate_flags_point_there_too(tmp_path, capsys):
    assert main(["--address", "auto", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (
        "error: deepdiff-report --address moved to the study command: deepdiff-ablation --replicates K "
        "--experiment deepdiff-ablation (it retrains, then writes this report)\n")


def test_help_says_where_seeds_went_and_flag_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "moved: deepdiff-ablation --replicates K" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["--out", "x", "--attention-pair", "one"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: deepdiff-report: argument --attention-pair") and err.count("\n") == 1


def test_the_pointer_s_command_runs_as_printed_with_a_name_that_needs_quoting(tmp_path, capsys):
    import shlex

    name = "my study $(touch pwned); ls"
    assert main(["--seeds", "2", "--experiment", name, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    command = err.split("moved to the study command: ", 1)[1].rsplit(" (it retrains", 1)[0]
    assert shlex.split(command) == ["deepdiff-ablation", "--replicates", "2", "--experiment", name]
