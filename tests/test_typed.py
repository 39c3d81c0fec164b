"""The one typed decoder (grape_core.typed) behind configs, manifests and planted screens."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from grape_core import typed
from grape_core.config import ArchitectureConfig, SplitConfig, TrainConfig
from grape_core.errors import GrapeError


@dataclass(frozen=True)
class Inner:
    n: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outer:
    name: str
    sizes: tuple[int, ...]
    pair: tuple[float, float]
    kind: Literal["a", "b"] = "a"
    inner: Inner | None = None
    scores: dict[str, int | float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _fail(key, value, tp):
    if value is dataclasses.MISSING:
        return ValueError(f"{key} missing")
    return ValueError(f"{key} must be {typed.type_name(tp)}, not {typed.shown(value)}")


def _decode(data):
    return typed.decode(Outer, data, fail=_fail, missing=lambda k: ValueError(f"{k} missing"))


def test_values_become_the_types_their_fields_hold():
    out = _decode({"name": "x", "sizes": [1, 2], "pair": [1, 2.5], "kind": "b",
                   "inner": {"n": 3, "later": True}, "scores": {"a": 1, "b": None},
                   "unknown": 7})
    assert out.sizes == (1, 2) and out.pair == (1.0, 2.5) and isinstance(out.pair[0], float)
    assert out.inner.n == 3 and out.inner.extra == {"later": True}
    assert out.extra == {"unknown": 7} and out.scores == {"a": 1, "b": None}


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "sizes": [1, "2"], "pair": [1, 2]}, "sizes[1] must be an integer, not \"2\""),
    ({"name": "x", "sizes": [], "pair": [1, 2, 3]}, "pair must be a list of 2 values"),
    ({"name": "x", "sizes": [], "pair": [1, 2], "kind": "c"}, "kind must be one of 'a', 'b'"),
    ({"name": "x", "sizes": [], "pair": [1, 2], "inner": {}}, "inner.n missing"),
    ({"name": "x", "sizes": [True], "pair": [1, 2]}, "sizes[0] must be an integer, not true"),
    ({"sizes": [], "pair": [1, 2]}, "name missing"),
])
def test_a_wrong_value_is_one_error_naming_its_key(data, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _decode(data)


def test_configs_are_checked_when_built_and_when_read():
    assert ArchitectureConfig.from_dict({"prior": ["go", "coexpression"]}).prior == ("go", "coexpression")
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0
    with pytest.raises(GrapeError, match="TrainConfig setting 'max_steps' must be a whole number, not \"5\""):
        TrainConfig(max_steps="5")  # type: ignore[arg-type]
    with pytest.raises(GrapeError, match="unknown SplitConfig setting"):
        SplitConfig.from_dict({"nmae": "grape"})
    with pytest.raises(GrapeError, match="'name' must be one of 'simulation', 'grape'"):
        SplitConfig.from_dict({"name": "random"})
