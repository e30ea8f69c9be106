"""The ablation grid: `paper.yaml` read into grid cells and their search spaces.

A **grid cell** (`GridCell`) is (variant, pair, aux mode, margin); a **pair** is two cell types, named by
their epigenome ids (E123 = K562, E003 = H1, ...). The aux mode exists only for variants with auxiliary
heads and the margin only for siamese variants; other grid cells carry ``None`` there, so every
distinct configuration is built exactly once (the paper's grid: 30 + 40 + 160 = 230 grid cells).
The paper's grid file is `ablations/paper.yaml` in the repository, shipped in the wheel as the package
data of ``deepdiff_study.ablations``; it also names each epigenome's cell type (``cell_types``, optional).

A grid file is checked against its declared schema (`GridFile`, its sections and presets; the run sizes
are `deepdiff_study.schema.RunSizes`), and every fault is one line naming the file and field
(`grid_style`). No Ray, Optuna or MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, model_validator

from deepdiff.config import AUX_MODES, INPUT_TRANSFORMS, ModelConfig, TrainConfig
from deepdiff.errors import ConfigError
from deepdiff.variants import VARIANTS
from deepdiff_study import ablations
from deepdiff_study.schema import Keys, RunSizes, Style, Text, expect, fail, rule, validate

PAPER_GRID = Path(ablations.__file__).with_name("paper.yaml")
PARAM_KINDS = ("log_uniform", "uniform", "choice")
APPLIES_TO = ("all", "aux", "siamese")
# Searchable fields: the config field each one sets and the type its values must have.
SEARCHABLE = {
    "lr": float, "batch_size": int, "dropout": float, "level1_hidden": int, "level2_hidden": int,
    "input_transform": str, "aux_weight": float, "gamma": float,
}
# A searchable field's values: checked by the type of SEARCHABLE, and what that type is in words.
VALUE_TYPES = {
    int: (TypeAdapter(Annotated[int, Field(strict=True)]), "whole numbers"),
    float: (TypeAdapter(Annotated[float, Field(strict=True)]), "numbers"),
    str: (TypeAdapter(Literal[INPUT_TRANSFORMS]), f"one of {', '.join(INPUT_TRANSFORMS)}"),
}


@dataclass(frozen=True)
class Pair:
    number: int  # the paper's pair number (Table 6), 1-based
    epigenome_a: str  # cell type A by its epigenome id (e.g. E123); diff = B - A
    epigenome_b: str
    imitates: str | None = None  # a synthetic stand-in: the name of the real pair it takes the place of

    @property
    def name(self) -> str:
        return f"{self.epigenome_a}-{self.epigenome_b}"

    def synthetic(self) -> "Pair":
        """The synthetic stand-in of this pair: never named like a real epigenome (``syn1A-syn1B``)."""
        return Pair(self.number, f"syn{self.number}A", f"syn{self.number}B", imitates=self.name)


@dataclass(frozen=True)
class GridCell:
    variant: str
    pair: Pair
    aux_mode: str | None  # None for variants without auxiliary heads
    margin: float | None  # None for variants without the siamese loss

    @property
    def key(self) -> str:
        """Stable id used in trial configs, Optuna study names and MLflow tags, e.g. ``p1-aux_siamese-regression-m2``."""
        parts = [f"p{self.pair.number}", self.variant]
        if self.aux_mode is not None:
            parts.append(self.aux_mode)
        if self.margin is not None:
            parts.append(f"m{self.margin:g}")
        return "-".join(parts)

    def fixed_config(self) -> dict[str, Any]:
        """Config fields the grid cell fixes (variant, and aux_mode / margin where they apply)."""
        fixed: dict[str, Any] = {"variant": self.variant}
        if self.aux_mode is not None:
            fixed["aux_mode"] = self.aux_mode
        if self.margin is not None:
            fixed["margin"] = float(self.margin)
        return fixed


@dataclass(frozen=True)
class Param:
    name: str  # config field it sets (a key of SEARCHABLE)
    kind: str  # one of PARAM_KINDS
    low: float | None = None  # log_uniform / uniform
    high: float | None = None
    values: tuple[Any, ...] = ()  # choice
    applies_to: str = "all"  # one of APPLIES_TO

    def applies(self, variant: str) -> bool:
        spec = VARIANTS[variant]
        return self.applies_to == "all" or (self.applies_to == "aux" and spec.aux) or (
            self.applies_to == "siamese" and spec.siamese)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Grid:
    source: str  # file it was read from (named in errors)
    pairs: dict[int, Pair]
    variants: tuple[str, ...]
    aux_modes: tuple[str, ...]
    margins: tuple[float, ...]
    published: dict[str, Any]
    space: tuple[Param, ...]
    presets: dict[str, dict[str, Any]]  # name -> its keys as written (checked by `Preset`)
    cell_types: dict[str, str] = field(default_factory=dict)  # epigenome id -> cell type name, where the file says

    def cell_names(self, pair: Pair) -> tuple[str | None, str | None]:
        """The cell type names of a pair's A and B (of the real pair a synthetic stand-in imitates), or None."""
        real = self.pairs.get(pair.number, pair) if pair.imitates else pair
        return self.cell_types.get(real.epigenome_a), self.cell_types.get(real.epigenome_b)

    def select_pairs(self, spec: str | list | None) -> list[Pair]:
        """`all`, pair numbers and/or names, comma-separated: ``"all"``, ``"1,3"``, ``"E123-E003"``."""
        if spec is None or str(spec).strip().lower() == "all":
            return list(self.pairs.values())
        by_name = {p.name.upper(): p for p in self.pairs.values()}
        chosen: list[Pair] = []
        for item in _selected(spec, "--pairs"):
            pair = self.pairs.get(int(item)) if item.isdigit() else by_name.get(item.upper())
            if pair is None:
                raise ConfigError(
                    f"--pairs {item!r}: no such pair in {self.source}; expected all, numbers "
                    f"{min(self.pairs)}-{max(self.pairs)} or names like {next(iter(by_name.values())).name}"
                )
            if pair not in chosen:
                chosen.append(pair)
        return chosen

    def grid_cells(
        self,
        pairs: str | list | None = "all",
        variants: str | list | None = None,
        aux_modes: str | list | None = None,
        margins: str | list | None = None,
    ) -> list[GridCell]:
        """The valid grid cells of the sub-grid selected (None = everything in the grid), each once."""
        chosen_pairs = self.select_pairs(pairs)
        chosen_variants = _choose("--variants", variants, self.variants, self.source)
        chosen_aux = _choose("--aux", aux_modes, self.aux_modes, self.source)
        chosen_margins = _choose_margins(margins, self.margins, self.source)
        cells: list[GridCell] = []
        for pair in chosen_pairs:
            for variant in chosen_variants:
                spec = VARIANTS[variant]
                for aux_mode in chosen_aux if spec.aux else (None,):
                    for margin in chosen_margins if spec.siamese else (None,):
                        cells.append(GridCell(variant, pair, aux_mode, margin))
        return cells

    def space_for(self, cell: GridCell) -> tuple[Param, ...]:
        """The searched parameters that apply to the cell's variant."""
        return tuple(p for p in self.space if p.applies(cell.variant))

    def published_for(self, cell: GridCell) -> dict[str, Any]:
        """The published setting restricted to the parameters searched in this cell."""
        return {p.name: self.published[p.name] for p in self.space_for(cell) if p.name in self.published}


# ---- the grid file's schema ---------------------------------------------------------------------------

def _mapping(what: str, *, empty: bool = False) -> BeforeValidator:
    """A section that is a mapping (non-empty unless `empty`); its entries are checked one by one."""
    def check(value: Any) -> Any:
        if not isinstance(value, dict) or not (value or empty):
            raise fail("mapping", value, what=what)
        return value
    return BeforeValidator(check)


def _items(item: Any) -> Any:
    """A non-empty list of `item`s; a bad item is reported at the list."""
    return Annotated[list[item], Field(min_length=1), expect("list")]


Number = Annotated[float, Field(strict=True, allow_inf_nan=False), expect("number")]
MaybeNumber = Annotated[Annotated[int, Field(strict=True)] | Annotated[float, Field(strict=True, allow_inf_nan=False)] | None,
                        expect("number")]  # a bound as written (reported as written)
Positive = Annotated[Number, Field(gt=0), expect("positive")]
PairCells = Annotated[list[Text], Field(min_length=2, max_length=2), expect("pair_cells", whole=True),
                      rule(lambda cells: cells[0] != cells[1], "same_cells")]
PairNumber = Annotated[int, Field(strict=True, ge=1), expect("pair_number")]
Searchable = Annotated[str, Field(strict=True), expect("searchable"), rule(SEARCHABLE.__contains__, "searchable")]
Selection = Annotated[str | int | float | list[str | int | float], expect("selection")]  # --pairs / --margins as a preset


class ParamBody(Keys):
    """One searched field in the grid file (its name is the key it sits under)."""

    WHAT = "a mapping with kind and its bounds or values"
    kind: Annotated[Literal[PARAM_KINDS], expect("one_of", allowed=", ".join(PARAM_KINDS))] = Field(None, validate_default=True)
    low: MaybeNumber = None  # log_uniform / uniform
    high: MaybeNumber = None
    values: Annotated[list[Any] | None, expect("list"), rule(lambda v: v is None or len(v) > 0, "list")] = None  # choice
    applies_to: Annotated[Literal[APPLIES_TO], expect("one_of", allowed=", ".join(APPLIES_TO))] = "all"

    def param(self, name: str) -> Param:
        """The `Param` this body declares for field `name`; a value that does not fit the field is an error."""
        at = ("search_space", name)
        if self.kind == "choice":
            if self.values is None:
                raise fail("list", None, at=(*at, "values"))
            return Param(name, self.kind, values=tuple(_field_value(name, v, (*at, "values")) for v in self.values),
                         applies_to=self.applies_to)
        if SEARCHABLE[name] is not float:
            raise fail("says", message=f"{name} takes whole numbers or words; use kind: choice", at=(*at, "kind"))
        for end in ("low", "high"):
            value = getattr(self, end)
            if value is None:
                raise fail("number", None, at=(*at, end))
            if self.kind == "log_uniform" and value <= 0:
                raise fail("positive", value, at=(*at, end))
        if not self.low < self.high:
            raise fail("says", message=f"expected low < high, got low={self.low:g} high={self.high:g}", at=at)
        return Param(name, self.kind, low=float(self.low), high=float(self.high), applies_to=self.applies_to)


class Preset(RunSizes):
    """A named set of run sizes in the grid file, plus the pairs and margins it selects."""

    WHAT = "a mapping"
    LISTED = ("pairs", "margins", *RunSizes.model_fields)
    pairs: Selection = None
    margins: Selection = None


class GridFile(Keys):
    """A grid file (e.g. ablations/paper.yaml), section by section; see that file for what each means."""

    SHAPE = "grid_doc"
    NOUN = "section"
    pairs: Annotated[dict[PairNumber, PairCells], _mapping("a mapping number: [EPIGENOME_A, EPIGENOME_B]")]
    variants: _items(Annotated[Any, rule(lambda v: isinstance(v, str) and v in VARIANTS, "variant", allowed=", ".join(VARIANTS))])
    aux_modes: _items(Annotated[Any, rule(lambda v: v in AUX_MODES, "aux_mode", allowed=", ".join(AUX_MODES))])
    margins: _items(Positive)
    published: Annotated[dict[Searchable, Any], _mapping("a mapping field: value", empty=True)]
    search_space: Annotated[dict[Searchable, ParamBody], _mapping("a mapping field: {kind: ..., ...}")]
    presets: Annotated[dict[Any, Preset], _mapping(f"a mapping name: {{{', '.join(Preset.LISTED)}}}")]
    cell_types: Annotated[dict[Text, Text], _mapping("a mapping epigenome id: cell type name", empty=True)] = {}

    @model_validator(mode="after")
    def _fits(self) -> GridFile:
        """Every searched field's values fit the field; the published setting is a valid first trial."""
        space = {name: body.param(name) for name, body in self.search_space.items()}
        for name, value in self.published.items():
            _field_value(name, value, ("published", name))
            if name in space and not space[name].contains(value):
                raise fail("says", message=f"{value!r} lies outside search_space.{name}; widen the space so the "
                           "published setting is a valid first trial", at=("published", name))
        missing = [name for name in space if name not in self.published]
        if missing:
            raise fail("says", message=f"missing {missing[0]!r}; every searched field needs its published value",
                       at=("published",))
        try:  # the published values must also be a valid run configuration
            ModelConfig(**{k: v for k, v in self.published.items() if k in ModelConfig.__dataclass_fields__})
            TrainConfig(**{k: float(v) if SEARCHABLE[k] is float else v for k, v in self.published.items()
                           if k in TrainConfig.__dataclass_fields__})
        except ConfigError as err:
            raise fail("says", message=str(err), at=("published",)) from None
        return self


def _field_value(name: str, value: Any, at: tuple[str, ...]) -> Any:
    """`value` as a value of the searchable field `name`, else an error saying what the field takes."""
    adapter, words = VALUE_TYPES[SEARCHABLE[name]]
    try:
        adapter.validate_python(value)
    except ValidationError:
        raise fail("param_value", value, name=name, words=words, at=at) from None
    return value


def grid_style(src: str) -> Style:
    """How a grid file's errors read: ``FILE section.key: ...``."""
    def place(loc: tuple) -> str:
        return " ".join([src, ".".join(str(p) for p in loc)]) if loc else src

    return Style(place, {
        "grid_doc": "{where}: expected a mapping with sections {allowed}",
        "mapping": "{where}: expected {what}",
        "unknown_key": "{where}: unknown {noun} {key!r}; expected {allowed}",
        "missing_key": "{where}: missing {noun} {key!r}",
        "list": "{where}: expected a non-empty list, got {value!r}",
        "pair_number": "{parent}: key {value!r} must be a pair number >= 1",
        "pair_cells": "{where}: expected [EPIGENOME_A, EPIGENOME_B], got {value!r}",
        "same_cells": "{where}: both cell types are {value[0]!r}",
        "variant": "{where}: unknown variant {value!r}; expected any of {allowed}",
        "aux_mode": "{where}: unknown mode {value!r}; expected any of {allowed}",
        "number": "{where}: expected a number, got {value!r}",
        "positive": "{where}: expected a number > 0, got {value!r}",
        "searchable": "{where}: not a searchable field; expected one of " + ", ".join(SEARCHABLE),
        "one_of": "{where}: expected one of {allowed}, got {value!r}",
        "param_value": "{where}: {value!r} is not valid for {name}; expected {words}",
        "says": "{where}: {message}",
        "text": "{where}: expected a non-empty string, got {value!r}",
        "selection": "{where}: expected all, a comma-separated string or a list, got {value!r}",
        "count": "{where}: expected a whole number >= 1, got {value!r}",
        "factor": "{where}: expected a finite number > 1, got {value!r}",
        "genes": "{where}: expected {low} to {high} genes, got {value!r}",
        "*": "{where}: expected {what}, got {value!r}",
    })


def load_grid(path: str | Path = PAPER_GRID) -> Grid:
    """Read and validate a grid file; every problem is a one-line `ConfigError` naming file and field."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ConfigError(f"{src}: grid file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{src}{where}: not valid YAML ({getattr(err, 'problem', None) or type(err).__name__})") from None
    spec = validate(GridFile, doc, grid_style(src))
    grid = Grid(
        src, {n: Pair(n, a, b) for n, (a, b) in sorted(spec.pairs.items())}, tuple(spec.variants), tuple(spec.aux_modes),
        tuple(spec.margins), dict(spec.published), tuple(body.param(name) for name, body in spec.search_space.items()),
        {str(name): preset.model_dump(exclude_unset=True) for name, preset in spec.presets.items()}, dict(spec.cell_types),
    )
    for name, preset in grid.presets.items():  # a preset must select something that exists
        grid.select_pairs(preset.get("pairs", "all"))
        _choose_margins(preset.get("margins"), grid.margins, f"{src} presets.{name}")
    return grid


def _selected(spec: str | list, flag: str) -> list[str]:
    raw = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    items = [str(x).strip() for x in raw if str(x).strip()]
    if not items:
        raise ConfigError(f"{flag} {spec!r}: empty selection; expected all or a comma-separated list")
    return items


def _choose(flag: str, spec: str | list | None, allowed: tuple[str, ...], src: str) -> tuple[str, ...]:
    if spec is None or str(spec).strip().lower() == "all":
        return allowed
    chosen = []
    for item in _selected(spec, flag):
        if item not in allowed:
            raise ConfigError(f"{flag} {item!r}: not in the grid {src}; expected all or any of {', '.join(allowed)}")
        if item not in chosen:
            chosen.append(item)
    return tuple(chosen)


def _choose_margins(spec: str | list | None, allowed: tuple[float, ...], src: str) -> tuple[float, ...]:
    if spec is None or str(spec).strip().lower() == "all":
        return allowed
    chosen = []
    for item in _selected(spec, "--margins"):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        match = [m for m in allowed if math.isclose(m, value)]
        if not match:
            raise ConfigError(f"--margins {item!r}: not in the grid {src}; expected all or any of {', '.join(f'{m:g}' for m in allowed)}")
        if match[0] not in chosen:
            chosen.append(match[0])
    return tuple(chosen)
