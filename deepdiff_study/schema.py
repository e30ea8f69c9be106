"""Declared checks of the study's inputs (the grid file, the command line, a study's manifest), the run
sizes they share, and `one_line`: the one function that turns a failed check into the one-line error a
user reads. Pydantic only (no Ray, Optuna, MLflow or torch).

How it fits together:

- Every input is a `Keys` model: frozen and strict (``True`` is not a number, ``"3"`` not a whole
  number); it refuses what is not a mapping, then an unknown key, then a missing one, in that order.
- Every constrained value type ends in `expect(kind)`: whatever fails inside it becomes ONE error of
  that kind about the value as given, where the type sits (a list reports a bad item at the list). A
  rule between fields raises `fail(kind, ...)`, naming the place below the model in ``at``.
- `one_line` words the first error by its source's `Style`: how the source names a place
  (``FILE presets.quick.samples``, ``--samples``, ``field sizes.samples``) and its sentence per kind,
  so the same check reads as each source has always said it.

`RunSizes` (trials per grid cell, epochs, ASHA's grace period and reduction factor, synthetic genes) is
the one place the run sizes are named: a grid file's presets, the flags and the manifest all read them
through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from deepdiff.synthetic import MAX_SYNTH_GENES
from deepdiff.errors import ConfigError

ERROR = "deepdiff_study"  # the pydantic error type of every check declared here
MIN_STUDY_GENES = 20  # a synthetic pair with a few genes in every split


def fail(kind: str, value: Any = None, **ctx: Any) -> PydanticCustomError:
    """An error of `kind` about `value`; ``at``: the place below the validated model it is about."""
    return PydanticCustomError(ERROR, kind, {"kind": kind, "value": value, **ctx})


def expect(kind: str, *, whole: bool = False, **ctx: Any) -> WrapValidator:
    """Annotated metadata: whatever fails in the validation to its left is one error of `kind` about the
    value as given, here. A part's error of a kind of its own (e.g. a list's unknown item) keeps its
    kind and moves here, unless `whole`: then the whole value is wrong, in words of `kind`."""
    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as err:
            first = err.errors()[0]
            if first["type"] == ERROR and not whole:
                raise PydanticCustomError(ERROR, first["msg"], first["ctx"]) from None
            raise fail(kind, value, **ctx) from None
    return WrapValidator(validate)


def rule(check: Callable[[Any], bool], kind: str, **ctx: Any) -> AfterValidator:
    """Annotated metadata: a value of the right type must also pass `check`, else an error of `kind`."""
    def validate(value: Any) -> Any:
        if not check(value):
            raise fail(kind, value, **ctx)
        return value
    return AfterValidator(validate)


class Keys(BaseModel):
    """A mapping with known keys: not a mapping is an error of kind `SHAPE` (a `WHAT`), then the first
    unknown key (sorted; when extra keys are forbidden), then the first missing required key."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")
    SHAPE: ClassVar[str] = "mapping"  # the error kind when the value is not a mapping
    WHAT: ClassVar[str] = "a mapping"  # what it is, in words
    NOUN: ClassVar[str] = "key"  # what its keys are called ("section" in a grid file)
    LISTED: ClassVar[tuple[str, ...] | None] = None  # its keys in the order errors list them (default: the fields')

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        allowed = ", ".join(cls.LISTED or cls.model_fields)
        if not isinstance(data, Mapping):
            raise fail(cls.SHAPE, data, what=cls.WHAT, allowed=allowed)
        if cls.model_config.get("extra") == "forbid":
            unknown = sorted((k for k in data if k not in cls.model_fields), key=str)
            if unknown:
                raise fail("unknown_key", data, key=unknown[0], noun=cls.NOUN, allowed=allowed)
        missing = [name for name, f in cls.model_fields.items() if f.is_required() and name not in data]
        if missing:
            raise fail("missing_key", data, key=missing[0], noun=cls.NOUN, what=cls.model_fields[missing[0]].description)
        return data


# ---- value types (each says what it expects through its kind) -------------------------------------------

def _genes(n: int) -> int:
    if not MIN_STUDY_GENES <= n <= MAX_SYNTH_GENES:
        raise fail("genes", n, low=MIN_STUDY_GENES, high=MAX_SYNTH_GENES,
                   hint=" (two genes in every split)" if n < MIN_STUDY_GENES else "")
    return n


Count = Annotated[int, Field(strict=True, ge=1), expect("count")]  # a whole number >= 1
Genes = Annotated[Count, AfterValidator(_genes)]  # a synthetic pair's genes
Factor = Annotated[float, Field(strict=True, gt=1, allow_inf_nan=False), expect("factor")]  # > 1, finite
Seed = Annotated[int, Field(strict=True, ge=0, lt=2**32), expect("seed")]  # numpy and scikit-learn take it
Text = Annotated[str, Field(strict=True, min_length=1), expect("text")]  # a non-empty string


# The --help sections of the study's flags (`deepdiff_study.driver` builds one flag per field), in order.
GRID, SEARCH, DATA, RESULTS, CLUSTER = "the grid", "search and ASHA", "data", "where results go", "cluster"
FLAG_GROUPS = (GRID, SEARCH, DATA, RESULTS, CLUSTER)


def flag_meta(group: str, *, saved: bool = False, metavar: str | None = None) -> dict[str, Any]:
    """A field's ``json_schema_extra``: its flag's --help section, whether it is a setting of the study
    itself (kept in its manifest, so ignored with --resume), and the flag's metavar."""
    return {"flag_group": group, "saved": saved, "metavar": metavar}


class RunSizes(Keys):
    """How much a study runs: the run sizes, named here only. ``None``: not set (the preset sets it)."""

    WHAT = "the run sizes"
    samples: Count = Field(None, description="trials per grid cell, the published setting first",
                           json_schema_extra=flag_meta(SEARCH, saved=True))
    max_epochs: Count = Field(None, description="epochs of a trial that is never stopped early",
                              json_schema_extra=flag_meta(SEARCH, saved=True))
    grace_period: Count = Field(None, description="ASHA: epochs before a trial may be stopped",
                                json_schema_extra=flag_meta(SEARCH, saved=True))
    reduction_factor: Factor = Field(None, description="ASHA: keep the best 1/N at every rung",
                                     json_schema_extra=flag_meta(SEARCH, saved=True))
    synthetic_genes: Genes = Field(None, description="genes per synthetic pair", json_schema_extra=flag_meta(DATA, saved=True))

    def over(self, below: Mapping[str, Any] | RunSizes) -> RunSizes:
        """Every size: this one's where set, else `below`'s (a preset), each checked; one not set in
        either is the error of its kind about None."""
        base = below.model_dump() if isinstance(below, RunSizes) else dict(below)
        return RunSizes.model_validate({**{name: base.get(name) for name in RunSizes.model_fields},
                                        **self.model_dump(exclude_none=True)})

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


# ---- from an error to one line ----------------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """How one source of input words its errors."""

    place: Callable[[tuple[Any, ...]], str]  # the place of an error, from its location (dict keys, fields)
    sentences: Mapping[str, str]  # kind -> str.format template; "*" for any other kind


def one_line(err: ValidationError, style: Style, model: type[BaseModel] | None = None, **context: Any) -> str:
    """The first error of `err` as one line in `style`. The template gets ``where`` (the place),
    ``parent`` (the place above it), ``value``, ``msg`` (pydantic's words), the error's own context,
    ``what`` (else the description of `model`'s field at the top of the place) and `context`."""
    first = err.errors(include_url=False)[0]
    ctx = dict(first.get("ctx") or {})
    if first["type"] == ERROR:
        kind, value = ctx.pop("kind"), ctx.pop("value")
    else:  # a check of pydantic's own (only an API caller passing a wrong type gets here)
        kind, value = first["type"], first.get("input")
    loc = tuple(p for p in (*first["loc"], *ctx.pop("at", ())) if p != "[key]")
    if "what" not in ctx or ctx["what"] is None:
        field = model.model_fields.get(str(loc[0])) if model is not None and loc else None
        ctx["what"] = field.description if field is not None and field.description else "a valid value"
    template = style.sentences.get(kind) or style.sentences["*"]
    return template.format(where=style.place(loc), parent=style.place(loc[:-1]), value=value, msg=first["msg"],
                           **{**ctx, **context})


def validate(model: type[BaseModel], data: Any, style: Style, **context: Any):
    """`model` validated from `data`; a failure is a `ConfigError` with `one_line`'s message."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(one_line(err, style, model, **context)) from None
