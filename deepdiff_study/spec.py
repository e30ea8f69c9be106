"""One description of a study (`StudySpec`) and its saved form (`StudyManifest`, ``deepdiff-study.json``).

A `StudySpec` says what a study searches (grid file, preset, the pairs / variants / aux modes / margins
selected), how much it runs (`RunSizes`) and its seed, its data, the resources of its trials, and where
its results go. It is what `deepdiff_study.run` takes; the command line (`deepdiff_study.driver`) only
turns flags into one. Every value is checked when a spec is made: a bad one is a `ConfigError` naming
the flag, worded as the command line always has (`FLAGS`). Sizes left unset come from the grid file's
preset (`StudySpec.resolved`): a value set in the spec wins over the preset's.

A `StudyManifest` is the study as it started (the spec resolved on its grid, its grid cells and pairs),
written beside Tune's files before Tune starts; ``--resume`` reads it back into a `StudySpec`
(`StudyManifest.spec`), so a resumed study runs with the settings it started with. Its format is the
one the driver wrote before `StudySpec` existed: a study started then resumes now. A damaged one is one
line naming the field (`MANIFEST`). Pydantic only (no Ray, Optuna, MLflow or torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from deepdiff.config import PRECISIONS
from deepdiff.errors import ConfigError
from deepdiff_study.grid import PAPER_GRID, Grid, GridCell, Selection
from deepdiff_study.schema import (
    CLUSTER,
    DATA,
    GRID,
    RESULTS,
    SEARCH,
    Keys,
    RunSizes,
    Seed,
    Style,
    Text,
    expect,
    flag_meta,
    one_line,
    rule,
    validate,
)
from deepdiff_study.store import DEFAULT_EXPERIMENT


def flag(name: str) -> str:
    """The command-line flag of a spec field (``max_epochs`` -> ``--max-epochs``)."""
    return "--" + name.replace("_", "-")


def _is_address(address: str) -> bool:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT`` (whether one answers: `study.check_address`)."""
    if address in ("auto", "local"):
        return True
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _is_study_name(name: str) -> bool:
    """A study name is an MLflow experiment and a folder under --storage: one plain folder name."""
    return (name.strip() == name and name not in ("", ".", "..") and not any(c in name for c in "/\\")
            and name.isprintable())


StudyName = Annotated[str, Field(strict=True), rule(_is_study_name, "study_name")]
Storage = Annotated[str, Field(strict=True), rule(lambda s: s.strip() != "", "storage")]
Address = Annotated[str | None, expect("address"), rule(lambda a: a is None or _is_address(a), "address")]
Cpus = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False), expect("cpus")]
# Ray gives a trial a fraction of one GPU or whole GPUs
Gpus = Annotated[Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None, expect("gpus"),
                 rule(lambda g: g is None or g <= 1 or float(g).is_integer(), "gpu_share")]
Failures = Annotated[int, Field(strict=True, ge=0), expect("failures")]
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False), expect("seconds")]
Precision = Annotated[Literal[PRECISIONS] | None, expect("one_of", allowed=", ".join(PRECISIONS))]
Choice = Annotated[Selection | None, expect("selection")]
MaybePath = Annotated[str | None, expect("text")]

class StudySpec(Keys):
    """One study (see the module docstring). Unset sizes, pairs and margins come from the preset."""

    WHAT = "a study spec"
    # what it searches
    grid: Annotated[str, expect("text")] = Field(
        str(PAPER_GRID), description="grid and search space (default ablations/paper.yaml)",
        json_schema_extra=flag_meta(GRID, saved=True, metavar="FILE"))
    preset: MaybePath = Field(None, description="run sizes from the grid file: quick (default without --pairs) or "
                              "paper (default with --pairs)", json_schema_extra=flag_meta(GRID, saved=True))
    pairs: Choice = Field(None, description="all, pair numbers or names, comma-separated: all | 1,3 | E123-E003",
                          json_schema_extra=flag_meta(GRID, saved=True))
    variants: Choice = Field(None, description="comma-separated variants (default all seven)",
                             json_schema_extra=flag_meta(GRID, saved=True))
    aux: Choice = Field(None, description="aux modes for the aux variants: regression,classification (default both)",
                        json_schema_extra=flag_meta(GRID, saved=True))
    margins: Choice = Field(None, description="contrastive margins for the siamese variants, e.g. 0.5,1,2,4",
                            json_schema_extra=flag_meta(GRID, saved=True))
    # its data; how much it runs, and its seed
    data: MaybePath = Field(None, description="folder with the paper's files (E123.train.csv ...); default: synthetic pairs",
                            json_schema_extra=flag_meta(DATA, saved=True, metavar="DIR"))
    sizes: RunSizes = RunSizes()
    seed: Seed = Field(0, description="seeds the samplers and every trial's training (default 0)",
                       json_schema_extra=flag_meta(SEARCH, saved=True))
    warm_starts: Annotated[bool, Field(strict=True), expect("flag")] = Field(
        False, description="give each grid cell, before its own proposals, up to a third of its trials of the best "
        "configurations related grid cells found (same variant, other pairs, aux modes or margins); off by default: "
        "it saved no trial-hours in benchmarks/bench_warmstart.py (see docs/warm-starts.md)",
        json_schema_extra=flag_meta(SEARCH, saved=True))
    # where its results go
    storage: Storage = Field("tune_results", description="Tune results: a folder (default ./tune_results) or a URI "
                             "every node reaches, e.g. s3://bucket/prefix", json_schema_extra=flag_meta(RESULTS, metavar="DIR|URI"))
    experiment: StudyName = Field(DEFAULT_EXPERIMENT, description="study name: Tune run and MLflow experiment "
                                  f"(default {DEFAULT_EXPERIMENT})", json_schema_extra=flag_meta(RESULTS))
    mlflow_uri: MaybePath = Field(None, description="MLflow tracking URI (default sqlite:///mlruns.db in this folder)",
                                  json_schema_extra=flag_meta(RESULTS, saved=True))
    # where its trials run
    address: Address = Field(None, description="join this Ray cluster (default: start a local one)",
                             json_schema_extra=flag_meta(CLUSTER))
    cpus_per_trial: Cpus = Field(1.0, description="CPUs per trial (default 1)", json_schema_extra=flag_meta(CLUSTER))
    gpus_per_trial: Gpus = Field(None, description="GPUs per trial, fractions allowed (default 0.25 if the cluster has "
                                 "GPUs, else 0)", json_schema_extra=flag_meta(CLUSTER))
    max_failures: Failures = Field(1, description="retries of a crashed trial from its last checkpoint (default 1)",
                                   json_schema_extra=flag_meta(CLUSTER))
    wait_timeout: Seconds = Field(900.0, description="seconds a trial (or a dry run's calibration) may wait for the "
                                  "cluster to have room for it before the study stops with exit 75 (2 if no node could "
                                  "ever hold it); a line every 30 s says what it waits for (default 900)",
                                  json_schema_extra=flag_meta(CLUSTER, metavar="S"))
    precision: Precision = Field(None, description="what every trial's training steps compute in (default auto: "
                                 "bfloat16 or float16 mixed precision on CUDA GPUs, float32 on CPUs); evaluation is "
                                 "float32 always", json_schema_extra=flag_meta(CLUSTER, saved=True))

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            preset = _preset_named(values.get("preset"), values.get("pairs"))
            raise ConfigError(one_line(err, FLAGS, StudySpec, preset=preset)) from None

    @property
    def preset_name(self) -> str:
        """The preset the sizes come from: the one named, else quick without pairs and paper with them."""
        return _preset_named(self.preset, self.pairs)

    def resolved(self, grid: Grid) -> StudySpec:
        """This spec on `grid`: its preset's sizes, pairs and margins under those set here, every size set."""
        name = self.preset_name
        if name not in grid.presets:
            raise ConfigError(f"--preset {name!r}: not in {grid.source}; expected one of {', '.join(grid.presets)}")
        preset = grid.presets[name]
        try:
            sizes = self.sizes.over(preset)
        except ValidationError as err:
            raise ConfigError(one_line(err, FLAGS, RunSizes, preset=name)) from None
        return self.model_copy(update={
            "preset": name, "sizes": sizes, "pairs": self.pairs if self.pairs is not None else preset.get("pairs"),
            "margins": self.margins if self.margins is not None else preset.get("margins")})

    def saved_settings_set(self) -> list[str]:
        """The settings of the study itself (kept in its manifest) this spec sets, as flags: what a resume ignores."""
        default, found = StudySpec(), []
        for name, info in StudySpec.model_fields.items():
            if name == "sizes":
                found += [flag(size) for size, value in self.sizes if value is not None]
            elif (info.json_schema_extra or {}).get("saved") and getattr(self, name) != getattr(default, name):
                found.append(flag(name))
        return found


def _preset_named(preset: Any, pairs: Any) -> str:
    return preset if preset is not None else "paper" if pairs is not None else "quick"


FLAGS = Style(lambda loc: flag(str(loc[-1])) if loc else "StudySpec", {
    "count": "{where} {value!r}: expected a whole number >= 1 (set it or add it to preset {preset})",
    "genes": "{where} {value}: expected {low} to {high} genes{hint}",
    "factor": "{where}: expected a finite number > 1, got {value!r}",
    "seed": "{where} {value}: expected an integer in [0, 2**32)",
    "cpus": "{where}: expected a finite number > 0, got {value!r}",
    "gpus": "{where}: expected a finite number >= 0, got {value!r}",
    "gpu_share": "{where} {value:g}: expected a fraction of one GPU or a whole number of GPUs",
    "failures": "{where}: expected a whole number >= 0",
    "seconds": "{where}: expected a finite number of seconds > 0, got {value!r}",
    "study_name": "{where} {value!r}: expected a study name that is also a folder name (no '/', not empty, '.' or "
                  "'..', no surrounding spaces), e.g. deepdiff-ablation-2",
    "storage": "{where} {value!r}: expected a folder or a URI such as s3://bucket/prefix",
    "address": "{where} {value!r}: expected auto, HOST:PORT or ray://HOST:PORT of a Ray cluster's head",
    "one_of": "{where} {value!r}: expected one of {allowed}",
    "selection": "{where} {value!r}: expected all or a comma-separated list",
    "text": "{where} {value!r}: expected a string",
    "flag": "{where} {value!r}: expected true or false",
    "unknown_key": "{where}: unknown field {key!r}; expected {allowed}",
    "*": "{where} {value!r}: {msg}",
})


# ---- the manifest -------------------------------------------------------------------------------------

def _whole(what_kind: type) -> Any:
    """A manifest field checked as a whole: any fault is "field F: expected <its description>, got <F>"."""
    return Annotated[what_kind, expect("field", whole=True)]


PairRow = Annotated[tuple[Annotated[int, Field(strict=True, ge=1)], Text, Text, Text | None], Field(strict=False)]


def _every_size(sizes: Any) -> Any:
    """A manifest names every size: one missing is None (and refused as such)."""
    return {**dict.fromkeys(RunSizes.model_fields), **sizes} if isinstance(sizes, Mapping) else sizes


class RecordedSizes(RunSizes):
    """The run sizes a study started with, and the preset they came from (absent in manifests of tests)."""

    model_config = ConfigDict(extra="ignore")
    preset: str | None = None


class StudyManifest(Keys):
    """The manifest ``deepdiff-study.json`` (see the module docstring); unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")
    SHAPE = "manifest_doc"
    experiment: _whole(Text) = Field(description="a study name")
    mlflow_uri: _whole(Text) = Field(description="an MLflow tracking URI")
    grid: _whole(Text) = Field(description="the grid file's path")
    seed: _whole(Seed) = Field(description="an integer in [0, 2**32)")
    data: _whole(Text | None) = Field(description="the data folder or null (synthetic pairs)")
    cells: _whole(Annotated[list[Text], Field(min_length=1)]) = Field(description="a list of grid cell names")
    pairs: _whole(Annotated[list[PairRow], Field(min_length=1)]) = Field(
        description="a list of [number, epigenome A, epigenome B, imitates]")
    sizes: Annotated[RecordedSizes, BeforeValidator(_every_size)] = Field(description="the run sizes")
    warm_starts: _whole(Annotated[bool, Field(strict=True)]) = Field(False, description="true or false (absent: false)")

    @classmethod
    def of(cls, spec: StudySpec, cells: list[GridCell], *, mlflow_uri: str) -> StudyManifest:
        """The manifest of a new study: `spec` resolved (`StudySpec.resolved`), its grid cells in plan order."""
        return cls(
            experiment=spec.experiment, mlflow_uri=mlflow_uri, grid=str(Path(spec.grid).resolve()), seed=spec.seed,
            data=str(Path(spec.data).resolve()) if spec.data is not None else None, cells=[c.key for c in cells],
            pairs=sorted({(c.pair.number, c.pair.epigenome_a, c.pair.epigenome_b, c.pair.imitates) for c in cells}),
            sizes={**spec.sizes.model_dump(), "preset": spec.preset}, warm_starts=spec.warm_starts,
        )

    @classmethod
    def load(cls, text: str | bytes, source: str) -> StudyManifest:
        """A manifest from its JSON text; a damaged one is one `ConfigError` naming `source` and the field."""
        import json

        cannot = "the study cannot be resumed (restore the file, or start the study again under another --experiment)"
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{source}: unreadable study manifest ({type(err).__name__}); {cannot}") from None
        return validate(cls, data, MANIFEST, source=source, cannot=cannot)

    def dumps(self) -> str:
        """The manifest as JSON, as it is written."""
        import json

        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True)

    def spec(self, given: StudySpec) -> StudySpec:
        """The saved study as a spec, with where it runs now (storage, cluster, retries) taken from `given`."""
        run_here = ("storage", "experiment", "address", "cpus_per_trial", "gpus_per_trial", "max_failures", "wait_timeout")
        return StudySpec(grid=self.grid, preset=self.sizes.preset, sizes=RunSizes(**{
            name: getattr(self.sizes, name) for name in RunSizes.model_fields}), seed=self.seed, data=self.data,
            mlflow_uri=self.mlflow_uri, warm_starts=self.warm_starts, **{name: getattr(given, name) for name in run_here})


MANIFEST = Style(lambda loc: ".".join(str(p) for p in loc), {
    "manifest_doc": "{source}: expected a JSON object (a study manifest); {cannot}",
    "missing_key": "{source}: field {key} is missing; expected {what}; {cannot}",
    "field": "{source}: field {where}: expected {what}, got {value!r}; {cannot}",
    "mapping": "{source}: field {where}: expected {what}, got {value!r}; {cannot}",
    "count": "{source}: field {where}: expected an integer >= 1, got {value!r}; {cannot}",
    "genes": "{source}: field {where}: expected {low} to {high} genes, got {value!r}; {cannot}",
    "factor": "{source}: field {where}: expected a number > 1, got {value!r}; {cannot}",
    "*": "{source}: field {where}: expected {what}, got {value!r}; {cannot}",
})
