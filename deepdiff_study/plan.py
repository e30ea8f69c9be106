"""What a study runs: the run settings shared by all grid cells and one plan per grid cell (its searched
space, the published first point, the fields it fixes, its trial count). No Ray, no Optuna."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deepdiff_study.grid import Grid, GridCell, Param
from deepdiff_study.records import encode_meta


@dataclass(frozen=True)
class StudySettings:
    """Run-level settings shared by all grid cells."""

    samples: int  # trials per grid cell, the published one included
    max_epochs: int  # epochs of a trial that is never stopped early
    grace_period: int  # ASHA: epochs before a trial may be stopped
    reduction_factor: float  # ASHA: keep the best 1/reduction_factor at every rung
    seed: int = 0  # seeds every grid cell's sampler (mixed with its key) and every trial's training
    fixed: dict[str, Any] = field(default_factory=dict)  # extra config fields for every trial (e.g. eval_batch_size)

    def rungs(self) -> list[float]:
        """The epochs at which ASHA compares a grid cell's trials (its milestones below max_epochs)."""
        rungs, t = [], min(self.grace_period, self.max_epochs)
        while t < self.max_epochs:
            rungs.append(round(t, 2))
            t *= self.reduction_factor
        return rungs

    def stop_epochs(self) -> tuple[int, ...]:
        """The epochs after which ASHA may stop a trial: the first whole epoch at or past each rung."""
        return tuple(sorted({math.ceil(r) for r in self.rungs()}))


@dataclass(frozen=True)
class GridCellPlan:
    """What one grid cell runs."""

    cell: GridCell
    params: tuple[Param, ...]  # the searched fields that apply to its variant
    published: dict[str, Any]  # the paper's setting of those fields: the first trial
    fixed: dict[str, Any]  # trial-config entries the same for every trial of the grid cell (incl. META_KEYS)
    samples: int  # trials planned

    @property
    def key(self) -> str:
        return self.cell.key


def plan_grid_cells(grid: Grid, cells: list[GridCell], settings: StudySettings) -> list[GridCellPlan]:
    """A `GridCellPlan` per grid cell: the grid's space for its variant, its published point, the fixed fields."""
    plans = []
    for cell in cells:
        fixed = {
            **settings.fixed,
            **cell.fixed_config(),
            "epochs": settings.max_epochs,
            "seed": settings.seed,
            **encode_meta(cell.key, cell.pair.number, settings.stop_epochs()),
        }
        plans.append(GridCellPlan(cell, grid.space_for(cell), grid.published_for(cell), fixed, settings.samples))
    return plans
