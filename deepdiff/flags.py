"""Command-line flags generated from the config dataclasses' fields (`deepdiff.config`).

One flag per field: ``--level1-hidden`` for `level1_hidden` (`FLAG_NAMES` where a flag is spelled
otherwise), its help the field's own help line with its default, its choices the field's. A new config
field gets its flag without a line here. A flag that is not given stays None, so `given` returns only
what the command line set (defaults < a config file < flags). Numbers stay text: `configs_from_flat`
reads them as it reads config files and MLflow params, with the same one-line errors.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection
from typing import Any

FLAG_NAMES = {"aux_mode": "aux"}  # field -> flag name, where the flag is not the field's name
METAVARS = {"int": "N", "float": "X"}  # what a flag's value is in --help, by the field's type (name)


def flag(field: str) -> str:
    """The flag that sets config field `field`, e.g. ``--aux`` for aux_mode, ``--batch-size`` for batch_size."""
    return "--" + FLAG_NAMES.get(field, field).replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, *configs: type, required: Collection[str] = (),
                     no_default: Collection[str] = ()) -> None:
    """Add a flag for every field of the dataclasses `configs` (their values land on ``args.<field>``).

    `required`: fields the command line must give (argparse refuses it otherwise); `no_default`: fields
    whose help names no default (e.g. a field that must come from the flag or a config file).
    """
    for f in (f for config in configs for f in dataclasses.fields(config)):
        choices = f.metadata["choices"]
        shown = "" if f.name in required or f.name in no_default else f" (default {f.default})"
        parser.add_argument(flag(f.name), dest=f.name, required=f.name in required, choices=choices,
                            metavar=None if choices else METAVARS.get(getattr(f.type, "__name__", f.type), "VALUE"),
                            help=(f.metadata["help"] + shown).replace("%", "%%"))  # argparse formats help with %


def given(args: argparse.Namespace, *configs: type) -> dict[str, Any]:
    """{field: value} of the fields of `configs` whose flag was given, in field order."""
    names = (f.name for config in configs for f in dataclasses.fields(config))
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
