"""Tests of deepdiff.flags: a flag for every config field, its help and choices from the field."""

import dataclasses
from dataclasses import dataclass

import pytest

from deepdiff.cli import build_parser
from deepdiff.command import OneLineParser
from deepdiff.config import AUX_MODES, PRECISIONS, ModelConfig, TrainConfig, _field
from deepdiff.flags import add_config_flags, flag, given
from deepdiff.variants import VARIANTS


def _options(parser):
    return {action.dest: action for action in parser._actions}


def _subparser(name):
    (sub,) = (a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name]


def test_train_has_a_flag_with_help_for_every_config_field():
    options = _options(_subparser("train"))
    for config in (ModelConfig, TrainConfig):
        for f in dataclasses.fields(config):
            action = options[f.name]
            assert action.option_strings == [flag(f.name)]
            assert action.help.startswith(f.metadata["help"]) and len(f.metadata["help"]) > 10
            assert action.default is None and not action.required
    assert _options(_subparser("train"))["aux_mode"].option_strings == ["--aux"]  # the flag keeps its name
    assert options["variant"].choices == tuple(VARIANTS) and options["aux_mode"].choices == AUX_MODES
    assert options["precision"].choices == PRECISIONS and options["lr"].choices is None
    assert options["lr"].help.endswith("(default 0.0001)") and "default" not in options["variant"].help


def test_describe_has_the_model_fields_and_requires_a_variant():
    options = _options(_subparser("describe"))
    assert {f.name for f in dataclasses.fields(ModelConfig)} <= set(options)
    assert not {f.name for f in dataclasses.fields(TrainConfig)} & set(options)
    assert options["variant"].required


def test_a_new_config_field_gets_its_flag():
    @dataclass(frozen=True)
    class Extra:
        warmup_epochs: int = _field(3, "epochs at a rising learning rate (100% at the end)")
        schedule: str = _field("cosine", "how the learning rate falls", choices=("cosine", "step"))

    parser = OneLineParser(prog="t")
    add_config_flags(parser, Extra)
    options = _options(parser)
    assert options["warmup_epochs"].option_strings == ["--warmup-epochs"] and options["warmup_epochs"].metavar == "N"
    assert options["schedule"].choices == ("cosine", "step")
    assert "100% at the end" in parser.format_help()  # a % in help text is not a format directive
    args = parser.parse_args(["--warmup-epochs", "5"])
    assert given(args, Extra) == {"warmup_epochs": "5"}  # text: configs_from_flat reads the number
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "linear"])


def test_given_returns_only_the_flags_set_in_field_order():
    args = build_parser().parse_args(["train", "--margin", "1", "--aux", "classification", "--device", "cpu"])
    assert given(args, ModelConfig, TrainConfig) == {"aux_mode": "classification", "margin": "1"}
    assert list(given(args, TrainConfig)) == ["margin"]
