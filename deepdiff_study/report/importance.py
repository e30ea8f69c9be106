"""Which hyperparameters mattered within a grid cell: Optuna's fANOVA importances over its scored trials.

Each grid cell's scored trial runs (completed or pruned, with a finite best valid PCC) are rebuilt as
an Optuna study over the distributions its grid-cell run recorded (tag ``search_space``,
`records.decode_search_space`: log-uniform, uniform or a choice, as the grid file said), and
`optuna.importance.FanovaImportanceEvaluator(seed=0)` shares the variation of best valid PCC among the
searched params that varied. Only grid cells with at least `MIN_TRIALS` scored trials are looked at:
with fewer, fANOVA's shares are noise, and one sentence says how many were left out and why. A grid
cell without a recorded search space (a study from before it was recorded), or whose trials lie outside
it, gets a note instead: log scales are never guessed. Optuna is imported at call time (a note when it
is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepdiff_study.records import TrialStatus, decode_params

if TYPE_CHECKING:
    from deepdiff_study.report.load import Study

COLUMNS = ["grid_cell", "param", "importance", "trials"]
MIN_TRIALS = 10  # scored trials (completed, or stopped early by ASHA with a valid PCC) a grid cell needs
SHOWN_NAMES = 10  # grid cells named in the note about missing search spaces (then "and N more")


def distribution(param: Any):
    """The Optuna distribution of a recorded searched param (`deepdiff_study.grid.Param`)."""
    import optuna

    if param.kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(param.values))
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.kind == "log_uniform")


def scored_trials(study: Study, grid_cell: str) -> list[tuple[dict[str, Any], float]]:
    """(typed params, best valid PCC) of a grid cell's scored trial runs."""
    trials = study.trials
    mine = trials[(trials["grid_cell"] == grid_cell) & trials["status"].isin([s.value for s in TrialStatus if s.scored])]
    mine = mine[np.isfinite(mine["best_valid_pcc"].astype(float))]
    decoded = []
    for t in mine.itertuples():
        model_cfg, train_cfg = decode_params(t.params, source=f"MLflow run {t.run_id}")
        typed = {**model_cfg.__dict__, **train_cfg.__dict__}
        decoded.append(({k: typed[k] for k in t.params if k in typed}, float(t.best_valid_pcc)))
    return decoded


def cell_importance(grid_cell: str, space: tuple, trials: list[tuple[dict[str, Any], float]]) -> tuple[list[dict], str | None]:
    """(rows of COLUMNS, None) or ([], the note saying why a grid cell has no importances)."""
    import optuna

    varied = [p for p in space if len({repr(params.get(p.name)) for params, _ in trials}) > 1
              and all(p.name in params for params, _ in trials)]
    if len(trials) < 2 or not varied:
        return [], (f"{grid_cell}: {len(trials)} scored trial(s)"
                    + ("" if len(trials) < 2 else ", no hyperparameter varied") + "; importance skipped.")
    for params, _ in trials:
        outside = [p for p in varied if not p.contains(params[p.name])]
        if outside:
            return [], (f"{grid_cell}: a trial's {outside[0].name}={params[outside[0].name]!r} lies outside the "
                        "recorded search space; importance skipped.")
    dists = {p.name: distribution(p) for p in varied}
    opt = optuna.create_study(direction="maximize")
    for params, value in trials:
        opt.add_trial(optuna.trial.create_trial(params={k: params[k] for k in dists}, distributions=dists, value=value))
    try:
        found = optuna.importance.get_param_importances(opt, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as err:  # noqa: BLE001 - e.g. every value equal; one grid cell never stops the report
        return [], f"{grid_cell}: importance not computed ({type(err).__name__}: {err})."
    return [{"grid_cell": grid_cell, "param": k, "importance": float(v), "trials": len(trials)}
            for k, v in found.items()], None


def importance_table(study: Study) -> tuple[pd.DataFrame, list[str]]:
    """(grid_cell, param, importance, trials) of every grid cell that has them, and the notes of those that do
    not (the first, when some have fewer than `MIN_TRIALS` scored trials, says how many and why)."""
    try:
        import optuna
    except ImportError:
        return pd.DataFrame(columns=COLUMNS), ["optuna is not installed: no hyperparameter importances."]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows, notes, unrecorded, few = [], [], [], {}
    for cell in study.cells.itertuples():
        trials = scored_trials(study, cell.grid_cell)
        if len(trials) < MIN_TRIALS:
            few[cell.grid_cell] = len(trials)
            continue
        if cell.search_space is None:
            if isinstance(cell.search_space_problem, str):
                notes.append(f"{cell.grid_cell}: {cell.search_space_problem}; importance skipped.")
            else:
                unrecorded.append(cell.grid_cell)
            continue
        found, note = cell_importance(cell.grid_cell, cell.search_space, trials)
        rows += found
        notes += [note] if note else []
    if few:
        most = max(few.values())
        notes.insert(0, f"Hyperparameter importance omitted for {len(few)} of {len(study.cells)} grid cell(s): they have "
                        f"fewer than {MIN_TRIALS} scored trials (at most {most}), and fANOVA over so few is noise; "
                        f"--samples {MIN_TRIALS} or more gives them.")
    if unrecorded:
        shown = ", ".join(unrecorded[:SHOWN_NAMES]) + (f" and {len(unrecorded) - SHOWN_NAMES} more"
                                                        if len(unrecorded) > SHOWN_NAMES else "")
        notes.append(f"No importances for {len(unrecorded)} grid cell(s) whose runs record no search space (a study "
                     f"recorded before it was; its log scales are not guessed): {shown}.")
    return pd.DataFrame(rows, columns=COLUMNS), notes
