"""What a study runs: one plan per grid cell (its searched space, the published first point, the fields it
fixes, its trial count), from the grid and the study's run sizes (`deepdiff_study.schema.RunSizes`). No
Ray, no Optuna."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepdiff_study.grid import Grid, GridCell, Param
from deepdiff_study.records import encode_meta
from deepdiff_study.schema import RunSizes


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


def plan_grid_cells(grid: Grid, cells: list[GridCell], sizes: RunSizes, *, seed: int = 0,
                    fixed: Mapping[str, Any] | None = None) -> list[GridCellPlan]:
    """A `GridCellPlan` per grid cell: the grid's space for its variant, its published point, the fixed fields.
    `seed` seeds every trial's training; `fixed`: extra config fields for every trial (e.g. precision)."""
    plans = []
    for cell in cells:
        fields = {
            **(fixed or {}),
            **cell.fixed_config(),
            "epochs": sizes.max_epochs,
            "seed": seed,
            **encode_meta(cell.key, cell.pair.number, sizes.stop_epochs()),
        }
        plans.append(GridCellPlan(cell, grid.space_for(cell), grid.published_for(cell), fields, sizes.samples))
    return plans
