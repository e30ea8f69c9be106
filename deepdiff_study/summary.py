"""What a study prints around its run: the plan (grid cells, trials, ASHA rungs) before it, and the closing
summary after it (trial counts, best PCC per grid cell with the winners marked, the data, where
everything is and how to look at it, the study report) with the exit status it comes to. Reads MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

from deepdiff.command import shell_command
from deepdiff.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED
from deepdiff_study.grid import GridCell, Pair
from deepdiff_study.schema import RunSizes
from deepdiff_study.spec import StudyManifest
from deepdiff_study.store import default_mlflow_uri, sqlite_path


def print_plan(cells: list[GridCell], sizes: RunSizes, preset: str, stream=None) -> None:
    stream = stream or sys.stdout
    print(f"{'grid cell':<40} {'variant':<16} {'pair':<14} {'aux mode':<15} {'margin':>6} {'trials':>6}", file=stream)
    for cell in cells:
        print(f"{cell.key:<40} {cell.variant:<16} {f'{cell.pair.number} {cell.pair.name}':<14} "
              f"{cell.aux_mode or '-':<15} {'-' if cell.margin is None else f'{cell.margin:g}':>6} {sizes.samples:>6}", file=stream)
    print(f"\n{len(cells)} grid cells x {sizes.samples} trials = {len(cells) * sizes.samples} trials "
          f"(preset {preset}), at most {sizes.max_epochs} epochs each; ASHA rungs at epochs "
          f"{', '.join(f'{r:g}' for r in sizes.rungs()) or 'none'} (reduction factor {sizes.reduction_factor:g})", file=stream)


def trial_shortfall(runs: list, planned: int, tune_errors: set[str]) -> tuple[int, int]:
    """(unfinished, lost) of a study's `planned` trials, from its MLflow trial runs: unfinished ones
    (running, or never started: an interrupted study) are finished by --resume; lost ones Tune failed
    before they reached MLflow."""
    from deepdiff_study.records import Tag, TrialStatus

    ended = sum(1 for r in runs if TrialStatus(r.data.tags.get(Tag.STATUS, TrialStatus.RUNNING)).ended)
    lost = len(tune_errors - {r.data.tags[Tag.TRIAL_ID] for r in runs})
    return max(0, planned - ended - lost), lost


def closing_summary(experiment: str, manifest: StudyManifest, exp_dir, wall: float, *,
                    tune_errors: frozenset[str] | set[str] = frozenset(), when_ended=None) -> int:
    """The closing summary of study `experiment`: best PCC per grid cell in plan order (the winner of each
    variant and pair marked), trial counts, the data, where everything is and how to look at it.
    `tune_errors`: ids of the trials Tune failed. `when_ended`: called before the report is written when
    no trial is left unfinished (the study's simple models). Returns the driver's exit status."""
    from mlflow.tracking import MlflowClient

    from deepdiff_study.export import format_table, winners
    from deepdiff_study.progress import clock
    from deepdiff_study.records import Kind, Tag, TrialStatus, best_trials, study_runs

    mlflow_uri = manifest.mlflow_uri
    client = MlflowClient(mlflow_uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    runs = study_runs(client, exp_id, Kind.TRIAL)
    statuses = [r.data.tags.get(Tag.STATUS) for r in runs]
    counts = {s: statuses.count(s) for s in TrialStatus}
    print(f"\nstudy {experiment!r}: {len(statuses)} trials: {counts[TrialStatus.COMPLETED]} completed, "
          f"{counts[TrialStatus.PRUNED]} stopped early by ASHA, {counts[TrialStatus.FAILED]} failed"
          + (f", {counts[TrialStatus.RUNNING]} unfinished" if counts[TrialStatus.RUNNING] else "")
          + f"; wall time {clock(wall)}\n")
    order = {key: i for i, key in enumerate(manifest.cells)}
    best = sorted(best_trials(mlflow_uri, experiment), key=lambda t: order.get(t.grid_cell, len(order)))
    for pair in (Pair(*p) for p in manifest.pairs):
        data = next((t.data for t in best if t.pair == pair.number and t.data), None) or {}
        where = (f"synthetic data standing in for {pair.imitates} ({data['synthetic']['genes']} genes, seed "
                 f"{data['synthetic']['seed']}) in {data['dir']}" if data.get("synthetic")
                 else f"the files in {data.get('dir', manifest.data)}")
        print(f"pair {pair.number} {pair.name}: {where}")
    print()
    rows = [t.row() for t in best]
    print(format_table(rows, winners=winners(rows)))
    print("* best grid cell of its variant and pair (by valid PCC)")
    db = sqlite_path(mlflow_uri)  # the file SQLAlchemy writes (a quoted '%' or '?' decoded)
    print(f"\nMLflow:        {mlflow_uri}" + (f"  (database file {db})" if db else ""))
    print(f"Tune results:  {exp_dir}  (rerun with --resume to finish an interrupted study)")
    if mlflow_uri.startswith(("http://", "https://")):  # a tracking server (on a cluster: reached through a tunnel)
        print(f"Look at it:    open {mlflow_uri} (the head's server: `ray attach cluster.yaml -p 5000`, then http://127.0.0.1:5000),")
    else:
        print(f"Look at it:    {shell_command('mlflow', 'ui', '--backend-store-uri', mlflow_uri)}   then open http://127.0.0.1:5000,")
    print("               switch to 'Model training' (top left) if MLflow opens its GenAI view, click experiment")
    print(f"               {experiment!r}; tick grid-cell runs and press Compare (params = each one's best trial).")
    export = ["python", "tune/export_best.py", "--experiment", experiment, "--out", "best_configs"]
    print(f"Export:        {shell_command(*export, *([] if mlflow_uri == default_mlflow_uri() else ['--mlflow-uri', mlflow_uri]))}")
    planned = len(manifest.cells) * manifest.sizes.samples
    unfinished, lost = trial_shortfall(runs, planned, set(tune_errors))
    if when_ended is not None and not unfinished:
        when_ended()
    write_study_report(mlflow_uri, experiment, exp_dir)
    if unfinished:
        print(f"\ninterrupted: {unfinished} of the {planned} trials unfinished; rerun the same command with --resume "
              "to finish the study", file=sys.stderr)
        return EXIT_INTERRUPTED
    if lost:  # Tune ended some without a callback: they never reached MLflow
        print(f"error: {lost} of the {planned} planned trials have no record in MLflow (Tune "
              f"ended them before they started; see the error.txt files in {exp_dir}); the table above lacks them",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def report_dir(experiment: str, exp_dir) -> Path:
    """Where a study's report goes: <study folder>/report, or ./report-<experiment> for a URI storage."""
    return exp_dir / "report" if isinstance(exp_dir, Path) else Path(f"report-{experiment}")


def write_study_report(mlflow_uri: str, experiment: str, exp_dir) -> Path | None:
    """`deepdiff_study.report` into `report_dir`; returns its index.html. A failure of the report never
    fails the study: one warning line, and None."""
    out = report_dir(experiment, exp_dir)
    try:
        from deepdiff_study.report import write_report

        index = write_report(mlflow_uri, experiment, out)
    except Exception as err:  # noqa: BLE001
        again = ["python", "ablations/report.py", "--experiment", experiment, "--out", str(out), "--mlflow-uri", mlflow_uri]
        print(f"warning: the study report was not written ({type(err).__name__}: {_first_line(err)}); "
              f"try {shell_command(*again)}")
        return None
    print(f"Report:        {index}  (open it in a browser)")
    return index
