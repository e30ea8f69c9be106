"""Run configuration: what model to build and how to train it.

Two frozen dataclasses with one line of help per field (`_field`: its metadata, from which the command
lines generate their flags, `deepdiff.flags`). Their field names never collide, so a run is also one
flat ``dict`` (``flat_config``) that Ray Tune searches over, MLflow logs as params and a config file
stores; ``configs_from_flat`` turns it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepdiff.errors import ConfigError, path_problem
from deepdiff.files import write_atomic
from deepdiff.variants import VARIANTS

AUX_MODES = ("regression", "classification")
INPUT_TRANSFORMS = ("raw", "log1p")
CONTRASTIVE_FORMS = ("paper", "reference")
# What a training step computes in (deepdiff.device.autocast_dtype decides what "auto" is on a device).
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
MAX_LR = 1e6  # no Adam run means anything beyond; near 3e37 its step overflows float32 and torch raises


def _field(default: Any, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    """A config field: its default, its one line of help (also the command line's --help) and, for a
    text field, the values it may take (checked in `__post_init__`, offered as the flag's choices)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class ModelConfig:
    variant: str = _field("raw", "which DeepDiff model: a row of the variant table (deepdiff.variants)",
                          choices=tuple(VARIANTS))
    aux_mode: str = _field("regression", "cell-specific auxiliary task (aux variants)", choices=AUX_MODES)
    level1_hidden: int = _field(32, "Level I biLSTM hidden size per direction (paper: 32 -> bin states of 64)")
    level2_hidden: int = _field(16, "Level II biLSTM hidden size per direction (paper: 16 -> mark states of 32)")
    dropout: float = _field(0.5, "dropout on Level I embeddings and on the Level II embedding (paper: 0.5)")
    n_marks: int = _field(5, "histone marks per cell type (M; the data files hold 5)")
    n_bins: int = _field(200, "bins per gene (T): the split files must have as many rows per gene")

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_positive_int("level1_hidden", self.level1_hidden)
        _check_positive_int("level2_hidden", self.level2_hidden)
        _check_positive_int("n_marks", self.n_marks)
        _check_positive_int("n_bins", self.n_bins)
        if not 0.0 <= _finite(self.dropout) < 1.0:
            raise ConfigError(f"field dropout: expected a number in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _field(90, "maximum number of epochs (paper: 90-120)")
    batch_size: int = _field(10, "training batch size (paper: 10)")
    lr: float = _field(1e-4, "Adam learning rate (paper: 1e-4)")
    clip: float = _field(1.0, "gradient-norm clipping threshold (paper: 1)")
    seed: int = _field(0, "seeds init, dropout and batch order; a fixed seed gives the same run on CPU")
    input_transform: str = _field("raw", "the model's input: raw counts as the reference, or log1p of the counts",
                                  choices=INPUT_TRANSFORMS)
    aux_weight: float = _field(1.0, "weight of the cell-specific auxiliary loss (aux variants)")
    gamma: float = _field(4.0, "weight of the contrastive loss (siamese variants; reference: 4.0)")
    margin: float = _field(2.0, "contrastive margin m (siamese variants; paper: 2.0)")
    contrastive_form: str = _field("paper", "paper: the contrastive loss with its 1/2 factors; reference: "
                                   "DeepDiffChrome's, without (siamese variants)", choices=CONTRASTIVE_FORMS)
    patience: int = _field(0, "stop after this many epochs without a better valid PCC; 0 = never stop early")
    eval_batch_size: int = _field(256, "batch size for evaluation only (results do not depend on it)")
    precision: str = _field("auto", "what training steps compute in: auto = mixed precision on CUDA, float32 on "
                            "CPU (evaluation is always float32)", choices=PRECISIONS)
    threads: int = _field(0, "torch threads on a CPU; 0 = automatic: one per CPU this process may use that other "
                          "processes leave free (deepdiff.threads); results do not depend on it beyond float rounding")

    def __post_init__(self) -> None:
        _check_positive_int("epochs", self.epochs)
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("eval_batch_size", self.eval_batch_size)
        _check_choices(self)
        for name in ("lr", "clip", "margin"):
            if not _finite(getattr(self, name)) > 0:
                raise ConfigError(f"field {name}: expected a number > 0, got {getattr(self, name)!r}")
        if not self.lr <= MAX_LR:
            raise ConfigError(f"field lr: expected a number in (0, {MAX_LR:g}], got {self.lr!r}")
        for name in ("aux_weight", "gamma"):
            if not _finite(getattr(self, name)) >= 0:
                raise ConfigError(f"field {name}: expected a number >= 0, got {getattr(self, name)!r}")
        if not is_int(self.threads) or self.threads < 0:
            raise ConfigError(f"field threads: expected an integer >= 0 (0 = automatic), got {self.threads!r}")
        if not is_int(self.patience) or self.patience < 0:
            raise ConfigError(f"field patience: expected an integer >= 0, got {self.patience!r}")
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"field seed: expected an integer in [0, 2**63), got {self.seed!r}")


def is_int(value: Any) -> bool:
    """Whether `value` is an integer and not a bool (``True`` is an `int` to Python, never to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> float:
    """`value` as a float, NaN (failing every range check) if it is not a finite number."""
    if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value):
        return math.nan
    return float(value)


def _check_choices(config: Any) -> None:
    """Every field of `config` with choices (in its metadata) holds one of them."""
    for f in dataclasses.fields(config):
        choices, value = f.metadata["choices"], getattr(config, f.name)
        if choices is not None and value not in choices:
            raise ConfigError(f"field {f.name}: expected one of {', '.join(choices)}, got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if not is_int(value) or value <= 0:
        raise ConfigError(f"field {name}: expected an integer > 0, got {value!r}")


MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# Fields read only by some variants: the auxiliary task's by variants with aux heads, the contrastive
# loss's by siamese variants. Every other field applies to every variant.
AUX_FIELDS = ("aux_mode", "aux_weight")
SIAMESE_FIELDS = ("margin", "gamma", "contrastive_form")


def applicable_fields(variant: str) -> tuple[str, ...]:
    """The config fields (of both dataclasses, in field order) that change what `variant` trains."""
    from deepdiff.variants import get_variant

    spec = get_variant(variant)
    skip = (() if spec.aux else AUX_FIELDS) + (() if spec.siamese else SIAMESE_FIELDS)
    return tuple(name for name in MODEL_FIELDS + TRAIN_FIELDS if name not in skip)


def flat_config(model_cfg: ModelConfig, train_cfg: TrainConfig) -> dict[str, Any]:
    """One flat dict of every field of both configs (names do not collide)."""
    return {**dataclasses.asdict(model_cfg), **dataclasses.asdict(train_cfg)}


def configs_from_flat(values: dict[str, Any], *, source: str = "config") -> tuple[ModelConfig, TrainConfig]:
    """Split a flat dict into the two configs; unknown keys are an error naming `source`."""
    unknown = sorted(set(values) - set(MODEL_FIELDS) - set(TRAIN_FIELDS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown field {unknown[0]!r}; expected fields of ModelConfig "
            f"({', '.join(MODEL_FIELDS)}) or TrainConfig ({', '.join(TRAIN_FIELDS)})"
        )
    try:
        model_cfg = ModelConfig(**{k: _coerce(ModelConfig, k, v) for k, v in values.items() if k in MODEL_FIELDS})
        train_cfg = TrainConfig(**{k: _coerce(TrainConfig, k, v) for k, v in values.items() if k in TRAIN_FIELDS})
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return model_cfg, train_cfg


def _coerce(cls: type, name: str, value: Any) -> Any:
    """The value of field `name` of `cls` as its type; the one place numbers are read.

    Numbers arrive as text from the command line, MLflow params and YAML (PyYAML reads ``1e-3`` as a
    string), as int for a float field or as float for an int field (JSON, MLflow). A number written as
    text is the number it says; anything else that is not a number, or an int field's non-integer
    (``1.5``), is a `ConfigError` naming the field. Range checks are the dataclasses' own.
    """
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if kind not in ("int", "float"):
        return value
    number: int | float | None = None
    if is_int(value) or isinstance(value, float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                pass
    if number is None:
        raise ConfigError(f"field {name}: expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if kind == "float":
        return float(number)
    if isinstance(number, float):
        if not number.is_integer():
            raise ConfigError(f"field {name}: expected an integer, got {value!r}")
        return int(number)
    return number


def save_config(path: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig, data: dict[str, Any] | None = None) -> Path:
    """Write a config file (YAML) that `load_config` and `deepdiff train --config` read back (atomically).

    Layout: ``model:`` and ``train:`` sections with every field, and an optional ``data:`` section
    (``dir``, ``cell_a``, ``cell_b``, ...) naming what the run was trained on.
    """
    path = Path(path)
    doc: dict[str, Any] = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg)}
    if data:
        doc["data"] = dict(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """Read a config file written by `save_config` (YAML or JSON, same layout)."""
    path = Path(path)
    problem = path_problem(path, "config file")
    if problem is not None:
        raise ConfigError(f"{path}: {problem}" + ("" if problem.endswith("not found") else "; expected a config file (YAML or JSON)"))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror}); expected a readable config file") from None
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path} line {line}: expected UTF-8 text (YAML or JSON), got byte {err.object[err.start]:#04x}") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        line = line + 1 if line is not None else getattr(err, "lineno", "?")
        raise ConfigError(f"{path} line {line}: not valid YAML/JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with sections model, train (and optional data)")
    unknown = sorted(set(doc) - {"model", "train", "data"})
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}; expected model, train, data")
    for section in ("model", "train", "data"):
        if doc.get(section) is not None and not isinstance(doc[section], dict):
            raise ConfigError(f"{path} section {section}: expected a mapping of field: value")
    model_part = doc.get("model") or {}
    train_part = doc.get("train") or {}
    wrong = sorted(set(model_part) - set(MODEL_FIELDS)) or sorted(set(train_part) - set(TRAIN_FIELDS))
    if wrong:
        section = "model" if set(model_part) - set(MODEL_FIELDS) else "train"
        fields = MODEL_FIELDS if section == "model" else TRAIN_FIELDS
        raise ConfigError(f"{path} section {section}: unknown field {wrong[0]!r}; expected one of {', '.join(fields)}")
    model_cfg, train_cfg = configs_from_flat({**model_part, **train_part}, source=str(path))
    return model_cfg, train_cfg, dict(doc.get("data") or {})
