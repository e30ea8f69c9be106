"""Per-grid-cell ASHA behind one Ray Tune scheduler.

`GridCellScheduler` (a `FIFOScheduler`) holds one `AsyncHyperBandScheduler` per grid cell and forwards
each trial event to its grid cell's ASHA: a trial is only ever compared with trials of its own grid
cell (PCCs of different pairs are not comparable). Tune never saves a scheduler, so a restored trial's
earlier results are replayed into its grid cell's rungs when Tune adds it (`deepdiff_study.resume`).
A trial's outcome (completed / pruned / failed) is decided from its last result, in
`deepdiff_study.records.trial_outcome`, not here.
"""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from deepdiff.results import diverged
from deepdiff_study import ray_private
from deepdiff_study.records import TUNE_ENDED, grid_cell_of
from deepdiff_study.resume import replay_results
from deepdiff_study.searcher import METRIC, MODE, usable

TIME_ATTR = "epoch"


class GridCellScheduler(FIFOScheduler):
    """One ASHA per grid cell behind one Tune scheduler; see the module docstring."""

    def __init__(
        self, cell_keys: list[str], *, max_t: int, grace_period: int, reduction_factor: float,
        metric: str = METRIC, mode: str = MODE, time_attr: str = TIME_ATTR,
    ):
        super().__init__()
        # The base class owns the `metric`/`mode` properties (read by Tune to validate results): set its field.
        self._metric = metric
        self._time_attr = time_attr
        self._asha = {
            key: AsyncHyperBandScheduler(
                time_attr=time_attr, metric=metric, mode=mode, max_t=max_t,
                grace_period=grace_period, reduction_factor=reduction_factor,
            )
            for key in cell_keys
        }
        self._live: set[str] = set()  # trials added to their ASHA and not yet completed/removed

    def _of(self, trial) -> AsyncHyperBandScheduler:
        return self._asha[grid_cell_of(trial.config)]

    def on_trial_add(self, tune_controller, trial) -> None:
        asha = self._of(trial)
        asha.on_trial_add(tune_controller, trial)
        self._live.add(trial.trial_id)
        replay_results(trial, lambda result: asha.on_trial_result(tune_controller, trial, result),
                       usable=lambda result: self._time_attr in result and usable(result, self.metric))
        if trial.status in TUNE_ENDED:  # restored as ended: its results stay in the rungs
            self._forget(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if diverged(result.get("status")):  # the trial ends by itself; a diverged result is no evidence for a rung
            return TrialScheduler.CONTINUE
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.trial_id not in self._live:
            return
        if self._time_attr in result and usable(result, self.metric):
            self._of(trial).on_trial_complete(tune_controller, trial, result)
            self._live.discard(trial.trial_id)
        else:
            self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if trial.trial_id in self._live:
            self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def _forget(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)
        self._live.discard(trial.trial_id)

    def rung_records(self, key: str) -> list[dict[str, float]]:
        """Recorded metric values per rung of a grid cell's ASHA (lowest milestone first), for inspection."""
        return ray_private.asha_rungs(self._asha[key])

    def debug_string(self) -> str:
        return f"Per-grid-cell ASHA over {len(self._asha)} grid cells"
