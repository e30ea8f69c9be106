"""The ablation grid: `paper.yaml` read into grid cells and their search spaces. No Ray, Optuna or MLflow.

A **grid cell** (`GridCell`) is (variant, pair, aux mode, margin); a **pair** is two cell types, named by
their epigenome ids (E123 = K562, E003 = H1, ...). The aux mode exists only for variants with auxiliary
heads and the margin only for siamese variants; other grid cells carry ``None`` there, so every
distinct configuration is built exactly once (the paper's grid: 30 + 40 + 160 = 230 grid cells).
The paper's grid file is `ablations/paper.yaml` in the repository, shipped in the wheel as the package
data of ``deepdiff_study.ablations``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepdiff.config import AUX_MODES, INPUT_TRANSFORMS, ModelConfig, TrainConfig
from deepdiff.errors import ConfigError
from deepdiff.variants import VARIANTS
from deepdiff_study import ablations

PAPER_GRID = Path(ablations.__file__).with_name("paper.yaml")
SECTIONS = ("pairs", "variants", "aux_modes", "margins", "published", "search_space", "presets")
PARAM_KINDS = ("log_uniform", "uniform", "choice")
APPLIES_TO = ("all", "aux", "siamese")
# Searchable fields: the config field each one sets and the type its values must have.
SEARCHABLE = {
    "lr": float, "batch_size": int, "dropout": float, "level1_hidden": int, "level2_hidden": int,
    "input_transform": str, "aux_weight": float, "gamma": float,
}
PRESET_KEYS = ("pairs", "margins", "samples", "max_epochs", "grace_period", "reduction_factor", "synthetic_genes")


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
    presets: dict[str, dict[str, Any]]

    def select_pairs(self, spec: str | list | None) -> list[Pair]:
        """`all`, pair numbers and/or names, comma-separated: ``"all"``, ``"1,3"``, ``"E123-E003"``."""
        if spec is None or str(spec).strip().lower() == "all":
            return list(self.pairs.values())
        by_name = {p.name.upper(): p for p in self.pairs.values()}
        chosen: list[Pair] = []
        for item in _items(spec, "--pairs"):
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
    if not isinstance(doc, dict):
        raise ConfigError(f"{src}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{src}: unknown section {unknown[0]!r}; expected {', '.join(SECTIONS)}")
    missing = [s for s in SECTIONS if s not in doc]
    if missing:
        raise ConfigError(f"{src}: missing section {missing[0]!r}")

    pairs = _read_pairs(doc["pairs"], src)
    variants = tuple(_list(doc["variants"], "variants", src))
    for v in variants:
        if v not in VARIANTS:
            raise ConfigError(f"{src} variants: unknown variant {v!r}; expected any of {', '.join(VARIANTS)}")
    aux_modes = tuple(_list(doc["aux_modes"], "aux_modes", src))
    for mode in aux_modes:
        if mode not in AUX_MODES:
            raise ConfigError(f"{src} aux_modes: unknown mode {mode!r}; expected any of {', '.join(AUX_MODES)}")
    margins = tuple(_number(m, "margins", src, positive=True) for m in _list(doc["margins"], "margins", src))
    space = _read_space(doc["search_space"], src)
    published = _read_published(doc["published"], space, src)
    presets = _read_presets(doc["presets"], src)
    grid = Grid(src, pairs, variants, aux_modes, margins, published, space, presets)
    for name, preset in presets.items():  # a preset must select something that exists
        grid.select_pairs(preset.get("pairs", "all"))
        _choose_margins(preset.get("margins"), margins, f"{src} presets.{name}")
    return grid


def _read_pairs(section: Any, src: str) -> dict[int, Pair]:
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"{src} pairs: expected a mapping number: [EPIGENOME_A, EPIGENOME_B]")
    pairs: dict[int, Pair] = {}
    for number, cells in section.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ConfigError(f"{src} pairs: key {number!r} must be a pair number >= 1")
        if not (isinstance(cells, list) and len(cells) == 2 and all(isinstance(c, str) and c for c in cells)):
            raise ConfigError(f"{src} pairs.{number}: expected [EPIGENOME_A, EPIGENOME_B], got {cells!r}")
        if cells[0] == cells[1]:
            raise ConfigError(f"{src} pairs.{number}: both cell types are {cells[0]!r}")
        pairs[number] = Pair(number, cells[0], cells[1])
    return dict(sorted(pairs.items()))


def _read_space(section: Any, src: str) -> tuple[Param, ...]:
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"{src} search_space: expected a mapping field: {{kind: ..., ...}}")
    params = []
    for name, body in section.items():
        where = f"{src} search_space.{name}"
        if name not in SEARCHABLE:
            raise ConfigError(f"{where}: not a searchable field; expected one of {', '.join(SEARCHABLE)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping with kind and its bounds or values")
        extra = sorted(set(body) - {"kind", "low", "high", "values", "applies_to"})
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r}; expected kind, low, high, values, applies_to")
        kind = body.get("kind")
        if kind not in PARAM_KINDS:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(PARAM_KINDS)}, got {kind!r}")
        applies_to = body.get("applies_to", "all")
        if applies_to not in APPLIES_TO:
            raise ConfigError(f"{where}.applies_to: expected one of {', '.join(APPLIES_TO)}, got {applies_to!r}")
        if kind == "choice":
            values = tuple(_list(body.get("values"), f"search_space.{name}.values", src))
            for value in values:
                _check_value(name, value, f"{where}.values")
            params.append(Param(name, kind, values=values, applies_to=applies_to))
        else:
            if SEARCHABLE[name] is not float:
                raise ConfigError(f"{where}.kind: {name} takes whole numbers or words; use kind: choice")
            low = _number(body.get("low"), f"search_space.{name}.low", src, positive=kind == "log_uniform")
            high = _number(body.get("high"), f"search_space.{name}.high", src, positive=kind == "log_uniform")
            if not low < high:
                raise ConfigError(f"{where}: expected low < high, got low={low:g} high={high:g}")
            params.append(Param(name, kind, low=low, high=high, applies_to=applies_to))
    return tuple(params)


def _check_value(name: str, value: Any, where: str) -> None:
    kind = SEARCHABLE[name]
    ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if name == "input_transform" and value not in INPUT_TRANSFORMS:
        ok = False
    if not ok:
        expected = {int: "whole numbers", float: "numbers", str: f"one of {', '.join(INPUT_TRANSFORMS)}"}[kind]
        raise ConfigError(f"{where}: {value!r} is not valid for {name}; expected {expected}")


def _read_published(section: Any, space: tuple[Param, ...], src: str) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ConfigError(f"{src} published: expected a mapping field: value")
    by_name = {p.name: p for p in space}
    for name, value in section.items():
        where = f"{src} published.{name}"
        if name not in SEARCHABLE:
            raise ConfigError(f"{where}: not a searchable field; expected one of {', '.join(SEARCHABLE)}")
        _check_value(name, value, where)
        if name in by_name and not by_name[name].contains(value):
            raise ConfigError(f"{where}: {value!r} lies outside search_space.{name}; widen the space so the published setting is a valid first trial")
    missing = [name for name in by_name if name not in section]
    if missing:
        raise ConfigError(f"{src} published: missing {missing[0]!r}; every searched field needs its published value")
    # The published values must also be a valid run configuration.
    try:
        ModelConfig(**{k: v for k, v in section.items() if k in ModelConfig.__dataclass_fields__})
        TrainConfig(**{k: float(v) if SEARCHABLE[k] is float else v for k, v in section.items() if k in TrainConfig.__dataclass_fields__})
    except ConfigError as err:
        raise ConfigError(f"{src} published: {err}") from None
    return dict(section)


def _read_presets(section: Any, src: str) -> dict[str, dict[str, Any]]:
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"{src} presets: expected a mapping name: {{{', '.join(PRESET_KEYS)}}}")
    presets = {}
    for name, body in section.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{src} presets.{name}: expected a mapping")
        extra = sorted(set(body) - set(PRESET_KEYS))
        if extra:
            raise ConfigError(f"{src} presets.{name}: unknown key {extra[0]!r}; expected {', '.join(PRESET_KEYS)}")
        for key in ("samples", "max_epochs", "grace_period", "synthetic_genes"):
            if key in body and (isinstance(body[key], bool) or not isinstance(body[key], int) or body[key] < 1):
                raise ConfigError(f"{src} presets.{name}.{key}: expected a whole number >= 1, got {body[key]!r}")
        if "reduction_factor" in body:
            _number(body["reduction_factor"], f"presets.{name}.reduction_factor", src, positive=True)
        presets[str(name)] = dict(body)
    return presets


def _items(spec: str | list, flag: str) -> list[str]:
    raw = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    items = [str(x).strip() for x in raw if str(x).strip()]
    if not items:
        raise ConfigError(f"{flag} {spec!r}: empty selection; expected all or a comma-separated list")
    return items


def _choose(flag: str, spec: str | list | None, allowed: tuple[str, ...], src: str) -> tuple[str, ...]:
    if spec is None or str(spec).strip().lower() == "all":
        return allowed
    chosen = []
    for item in _items(spec, flag):
        if item not in allowed:
            raise ConfigError(f"{flag} {item!r}: not in the grid {src}; expected all or any of {', '.join(allowed)}")
        if item not in chosen:
            chosen.append(item)
    return tuple(chosen)


def _choose_margins(spec: str | list | None, allowed: tuple[float, ...], src: str) -> tuple[float, ...]:
    if spec is None or str(spec).strip().lower() == "all":
        return allowed
    chosen = []
    for item in _items(spec, "--margins"):
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


def _list(value: Any, field: str, src: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{src} {field}: expected a non-empty list, got {value!r}")
    return value


def _number(value: Any, field: str, src: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{src} {field}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{src} {field}: expected a number > 0, got {value!r}")
    return float(value)
