"""Perturbation labels: one parser for GEARS, PerturBench and hand-typed conditions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grape_core import keys
from grape_core.data.conditions import (
    canonical,
    canonical_map,
    find_condition,
    format_condition,
    genes_of,
    is_pair,
    parse_condition,
)
from grape_core.errors import ConditionError, GrapeError


@pytest.mark.parametrize(
    "label, genes",
    [
        ("ctrl", ()),
        ("control", ()),
        ("CONTROL", ()),
        ("non-targeting", ()),
        ("A+ctrl", ("A",)),
        ("ctrl+A", ("A",)),
        ("A", ("A",)),
        ("  A  ", ("A",)),
        ("A+B", ("A", "B")),
        ("B+A", ("B", "A")),
        (" A + B ", ("A", "B")),
        ("HLA-A+ctrl", ("HLA-A",)),
        ("RP11-34P13.7", ("RP11-34P13.7",)),
    ],
)
def test_parse_condition(label, genes):
    assert parse_condition(label) == genes


def test_custom_control_label():
    assert parse_condition("NoGuide", control_label="NoGuide") == ()
    assert parse_condition("A+NoGuide", control_label="NoGuide") == ("A",)
    # without the hint the label is a gene symbol
    assert parse_condition("NoGuide") == ("NoGuide",)


@pytest.mark.parametrize(
    "label, phrase",
    [
        ("A,B", "unexpected ','"),
        ("A_B", "unexpected '_'"),
        ("A B", "unexpected ' '"),
        ("A;B", "unexpected ';'"),
        ("A|B", "unexpected '|'"),
        ("A+B+C", "perturbs 3 genes"),
        ("A++B", "empty gene"),
        ("+A", "empty gene"),
        ("A+", "empty gene"),
        ("", "empty condition"),
        ("   ", "empty condition"),
        ("A+A", "same gene twice"),
    ],
)
def test_parse_condition_errors(label, phrase):
    with pytest.raises(ConditionError) as info:
        parse_condition(label)
    assert phrase in str(info.value)
    # a ConditionError is both a GrapeError (CLI: one line) and a ValueError
    assert isinstance(info.value, GrapeError) and isinstance(info.value, ValueError)


def test_parse_condition_rejects_non_strings():
    with pytest.raises(ConditionError, match="not a string"):
        parse_condition(None)  # type: ignore[arg-type]


def test_format_condition():
    assert format_condition(()) == "ctrl"
    assert format_condition(["A"]) == "A+ctrl"
    assert format_condition(("A", "B")) == "A+B"
    with pytest.raises(ConditionError, match="3 genes"):
        format_condition(("A", "B", "C"))


@pytest.mark.parametrize(
    "label, expected",
    [("ctrl", "ctrl"), ("control", "ctrl"), ("ctrl+A", "A+ctrl"), ("A+ctrl", "A+ctrl"),
     ("A", "A+ctrl"), (" A + B ", "A+B"), ("B+A", "B+A")],
)
def test_canonical(label, expected):
    assert canonical(label) == expected


def test_genes_of_and_is_pair():
    assert genes_of("ctrl") == ()
    assert genes_of("A+ctrl") == ("A",)
    assert genes_of("A+B") == ("A", "B")
    assert is_pair("A+B") and not is_pair("A+ctrl") and not is_pair("ctrl")


def test_canonical_map_merges_both_single_orders():
    mapping = canonical_map(["ctrl", "ctrl+A", "A+ctrl", "B", "C+D"])
    assert mapping == {"ctrl": "ctrl", "ctrl+A": "A+ctrl", "A+ctrl": "A+ctrl",
                       "B": "B+ctrl", "C+D": "C+D"}


def test_canonical_map_keeps_pair_order_unless_both_orders_occur():
    # the file's order is kept (GEARS split lists use the exact strings)...
    assert canonical_map(["B+A"]) == {"B+A": "B+A"}
    # ...but when both orders occur they become one (sorted) condition
    assert canonical_map(["B+A", "A+B"]) == {"B+A": "A+B", "A+B": "A+B"}


def test_canonical_map_with_perturbench_control():
    mapping = canonical_map(["control", "KLF1", "KLF1+MAP2K6"], control_label="control")
    assert mapping == {"control": "ctrl", "KLF1": "KLF1+ctrl", "KLF1+MAP2K6": "KLF1+MAP2K6"}


def test_canonical_map_propagates_bad_labels():
    with pytest.raises(ConditionError, match="'A,B'"):
        canonical_map(["ctrl", "A,B"])


def test_find_condition():
    conds = ["ctrl", "A+ctrl", "A+B", "C+ctrl"]
    assert find_condition("ctrl+A", conds) == "A+ctrl"
    assert find_condition("A", conds) == "A+ctrl"
    assert find_condition("B+A", conds) == "A+B"
    assert find_condition(" A + B ", conds) == "A+B"
    assert find_condition("control", conds) == "ctrl"
    assert find_condition("B", conds) is None
    assert find_condition("A+C", conds) is None
    with pytest.raises(ConditionError):
        find_condition("A,B", conds)


# ----------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------
_CONTROL_WORDS = {c.lower() for c in keys.CONTROL_CANDIDATES}
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
symbols = st.builds(
    lambda head, body, suffix: head + body + suffix,
    st.sampled_from(_UPPER),
    st.text(_UPPER + "0123456789", max_size=6),
    st.sampled_from(["", "-AS1", ".2", "-1"]),
).filter(lambda s: s.lower() not in _CONTROL_WORDS)
"""HGNC-like symbols (letters, digits, '-' and '.'), never a control word."""
gene_tuples = st.one_of(
    st.just(()),
    st.tuples(symbols),
    st.tuples(symbols, symbols).filter(lambda t: t[0] != t[1]),
)


@settings(max_examples=200, deadline=None)
@given(gene_tuples)
def test_parse_format_round_trip(genes):
    assert parse_condition(format_condition(genes)) == genes


@settings(max_examples=200, deadline=None)
@given(symbols, symbols, st.sampled_from(["ctrl", "control", "{a}+ctrl", "ctrl+{a}", "{a}",
                                          " {a} ", "{a}+{b}", " {a} + {b} "]))
def test_canonical_is_idempotent(a, b, template):
    if a == b:
        b = b + "X"
    label = template.format(a=a, b=b)
    once = canonical(label)
    assert canonical(once) == once
    # the canonical form perturbs the same genes as the label
    assert frozenset(genes_of(once)) == frozenset(parse_condition(label))
