"""`write_report`: every report file from a study's MLflow experiment into one folder, and the folder
logged back as the artifacts of a ``kind=report`` run (see the package docstring for the files)."""

from __future__ import annotations

from pathlib import Path

from deepdiff.errors import ConfigError
from deepdiff_study.records import Kind, Tag, open_store
from deepdiff_study.report.attention import attention_section
from deepdiff_study.report.figures import plot_aux_mode, plot_by_variant, plot_importance, plot_margin
from deepdiff_study.report.importance import importance_table
from deepdiff_study.report.load import Study, load_study
from deepdiff_study.report.page import Tables, markdown_table, write_html
from deepdiff_study.report.seeds import replicate_runs, replicate_table, replicate_tests, with_seeds
from deepdiff_study.report.stats import against_baselines, axes_table, cost_table, study_trial_hours, table3

REPORT_FILES = ("index.html", "against_baselines.csv", "table3.csv", "table3.md", "axes.csv", "importance.csv",
                "cost.csv", "test_pcc_by_variant.png", "aux_mode.png", "margin.png")  # always written
IMPORTANCE_FIGURE = "importance.png"  # when a grid cell has enough trials for importances
REPLICATE_FILES = ("replicates.csv", "replicate_tests.csv")  # when replicate runs are recorded


def check_out(out: Path) -> None:
    """`out` is (or can become) a folder; a one-line `ConfigError` naming --out otherwise."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create it ({err.strerror})") from None


def compute(study: Study) -> Tables:
    """Every table of the page from `study` (already `seeds.with_seeds`)."""
    importance, notes = importance_table(study)
    runs = replicate_runs(study)
    replicates = None if runs.empty else (replicate_table(study, runs), replicate_tests(study, runs))
    return Tables(table3=table3(study), against=against_baselines(study), axes=axes_table(study),
                  importance=importance, importance_notes=notes, cost=cost_table(study),
                  trial_hours=study_trial_hours(study), replicates=replicates)


def write_files(study: Study, out: Path, *, attention_pair: int | None = None) -> list[str]:
    """Write every report file of `study` into the folder `out`; returns their names. Every test PCC is the
    mean over seeds where the study has replicates (`seeds.with_seeds`)."""
    study = with_seeds(study)
    tables = compute(study)
    written = list(REPORT_FILES)
    tables.against.to_csv(out / "against_baselines.csv", index=False)
    tables.table3.to_csv(out / "table3.csv", index=False)
    (out / "table3.md").write_text(
        "Relative test PCC (%) of each variant's best grid cell vs the pair's two-layer SVR\n\n"
        + markdown_table(tables.table3))
    tables.axes.to_csv(out / "axes.csv", index=False)
    tables.importance.to_csv(out / "importance.csv", index=False)
    tables.cost.to_csv(out / "cost.csv", index=False)
    plot_by_variant(study, out / "test_pcc_by_variant.png")
    plot_aux_mode(study, out / "aux_mode.png")
    plot_margin(study, out / "margin.png")
    if not tables.importance.empty:
        plot_importance(tables.importance, out / IMPORTANCE_FIGURE)
        written.append(IMPORTANCE_FIGURE)
    if tables.replicates is not None:
        tables.replicates[0].to_csv(out / "replicates.csv", index=False)
        tables.replicates[1].to_csv(out / "replicate_tests.csv", index=False)
        written += REPLICATE_FILES
    attention = attention_section(study, out, attention_pair)
    written += attention.files
    write_html(study, out, tables, list(study.notes), attention=attention)
    return written


def publish(study: Study, out: Path, names: list[str]) -> str:
    """Log the files `names` of `out` as the artifacts of a new ``kind=report`` run; returns its run id."""
    client = open_store(study.tracking_uri)
    run = client.create_run(study.experiment_id, tags={Tag.KIND: str(Kind.REPORT)}, run_name="report")
    for name in names:
        client.log_artifact(run.info.run_id, str(out / name))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def write_report(tracking_uri: str, experiment: str, out_dir: str | Path, *, log: bool = True,
                 attention_pair: int | None = None) -> Path:
    """Write every report file into `out_dir` (and log them as a ``kind=report`` run); returns index.html.
    Reads only: the replicates shown are those MLflow holds (``deepdiff-ablation --replicates K`` trains them)."""
    out = Path(out_dir)
    study = load_study(tracking_uri, experiment)  # the experiment exists and has grid cells
    if attention_pair is not None and attention_pair not in set(study.pairs["pair"]):
        raise ConfigError(f"--attention-pair {attention_pair}: not a pair of experiment {experiment!r}; expected one of "
                          f"{', '.join(str(p) for p in study.pairs['pair'])}")
    check_out(out)
    written = write_files(study, out, attention_pair=attention_pair)
    if log:
        publish(study, out, written)
    return out / "index.html"
