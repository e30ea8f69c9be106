"""deepdiff_study.schema: how a declared check becomes one line (the order of a mapping's faults, a part's
fault reported where its type sits, rules between fields), and the run sizes."""

from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError, model_validator

from deepdiff.errors import ConfigError
from deepdiff_study.schema import Count, Keys, RunSizes, Style, expect, fail, rule, validate

PLAIN = Style(lambda loc: ".".join(map(str, loc)) or "<top>", {
    "mapping": "{where}: expected {what}, got {value!r}",
    "unknown_key": "{where}: unknown {noun} {key!r}; expected {allowed}",
    "missing_key": "{where}: missing {key!r} ({what})",
    "count": "{where}: {value!r} is not a count",
    "odd": "{where}: {value!r} is not odd",
    "list": "{where}: expected a list, got {value!r}",
    "pair": "{where}: expected two names, got {value!r}",
    "says": "{where}: {message}",
    "*": "{where}: {msg}",
})


class Inner(Keys):
    WHAT = "an inner mapping"
    n: Count = None


class Outer(Keys):
    NOUN = "section"
    name: str = Field(description="the name")
    odds: Annotated[list[Annotated[int, rule(lambda n: n % 2 == 1, "odd")]], expect("list")] = []
    pair: Annotated[list[str], Field(min_length=2, max_length=2), expect("pair", whole=True)] = ["a", "b"]
    inner: Inner = Inner()
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _ordered(self):
        if self.low >= self.high:
            raise fail("says", message=f"low {self.low} >= high {self.high}", at=("high",))
        return self


def message(data: Any) -> str:
    with pytest.raises(ConfigError) as err:
        validate(Outer, data, PLAIN)
    return str(err.value)


def test_a_mapping_is_checked_for_shape_then_unknown_then_missing_keys():
    assert message(3) == "<top>: expected a mapping, got 3"
    assert message({"zeta": 1, "alpha": 2}) == "<top>: unknown section 'alpha'; expected name, odds, pair, inner, low, high"
    assert message({"odds": [1]}) == "<top>: missing 'name' (the name)"
    assert message({"name": "x", "inner": [1]}) == "inner: expected an inner mapping, got [1]"


def test_a_part_s_own_fault_is_reported_where_its_type_sits_unless_the_whole_is_wrong():
    assert message({"name": "x", "odds": [1, 4, 6]}) == "odds: 4 is not odd"  # the first bad item, at the list
    assert message({"name": "x", "odds": [1, "3"]}) == "odds: expected a list, got [1, '3']"  # no kind of its own
    assert message({"name": "x", "pair": ["a", 5]}) == "pair: expected two names, got ['a', 5]"
    assert message({"name": "x", "inner": {"n": 0}}) == "inner.n: 0 is not a count"


def test_a_rule_between_fields_names_its_place_and_other_checks_fall_back_to_pydantic_s_words():
    assert message({"name": "x", "low": 3, "high": 2}) == "high: low 3 >= high 2"
    assert message({"name": 5}) == "name: Input should be a valid string"
    assert validate(Outer, {"name": "x", "odds": [3]}, PLAIN).odds == [3]


def test_the_sizes_over_a_preset_each_checked_and_the_asha_rungs():
    sizes = RunSizes(samples=3).over({"samples": 20, "max_epochs": 90, "grace_period": 10, "reduction_factor": 3,
                                      "synthetic_genes": 500, "pairs": "all"})
    assert sizes == RunSizes(samples=3, max_epochs=90, grace_period=10, reduction_factor=3.0, synthetic_genes=500)
    assert sizes.rungs() == [10, 30] and sizes.stop_epochs() == (10, 30)
    with pytest.raises(ValidationError) as err:
        RunSizes(max_epochs=4).over(RunSizes(samples=2, grace_period=1, reduction_factor=2.0))
    first = err.value.errors()[0]
    assert (first["loc"], first["ctx"]["kind"], first["ctx"]["value"]) == (("synthetic_genes",), "count", None)
    assert RunSizes(samples=1, max_epochs=5, grace_period=5, reduction_factor=2.0).rungs() == []
