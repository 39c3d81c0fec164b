"""Perturbation labels: one parser for every layout seen in the wild.

Canonical form (GEARS): ``ctrl`` for control cells, ``GENE+ctrl`` for a single
perturbation, ``A+B`` for a pair. Accepted on input: ``ctrl+GENE``, plain ``GENE``
(PerturBench / scPerturb), a custom control label (``control``, ``non-targeting``...),
spaces around ``+``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .. import keys
from ..errors import ConditionError

_BAD_SEPARATORS = re.compile(r"[,;|/&_\s]")
_CONTROL_WORDS = {c.lower() for c in keys.CONTROL_CANDIDATES}


def parse_condition(label: str, *, control_label: str | None = None) -> tuple[str, ...]:
    """Genes perturbed in a condition label.

    Parameters
    ----------
    label
        ``"ctrl"``, ``"A+ctrl"``, ``"ctrl+A"``, ``"A"``, ``"A+B"`` (spaces around ``+`` allowed).
    control_label
        The file's own control label when it is not one of the usual words.

    Returns
    -------
    The perturbed genes in the order written: ``()`` for control, ``("A",)`` or ``("A", "B")``.

    Raises
    ------
    ConditionError
        Empty label, empty gene (``A++B``), an unknown separator (``A,B``, ``A_B``, ``A B``)
        or more than two genes.
    """
    if not isinstance(label, str):
        raise ConditionError(f"condition {label!r} is not a string")
    text = label.strip()
    if not text:
        raise ConditionError("empty condition label; write 'GENE', 'GENE+ctrl' or 'A+B'")
    controls = set(_CONTROL_WORDS)
    if control_label:
        controls.add(control_label.strip().lower())
    if text.lower() in controls:
        return ()
    parts = [p.strip() for p in text.split(keys.SEP)]
    if any(not p for p in parts):
        raise ConditionError(f"condition {label!r} has an empty gene; write 'A+B' or 'A+ctrl'")
    genes = tuple(p for p in parts if p.lower() not in controls)
    for gene in genes:
        bad = _BAD_SEPARATORS.search(gene)
        if bad:
            raise ConditionError(
                f"condition {label!r}: unexpected {bad.group()!r} in {gene!r}; "
                "separate the genes of a pair with '+', e.g. 'A+B'"
            )
    if len(genes) > 2:
        raise ConditionError(
            f"condition {label!r} perturbs {len(genes)} genes; only single genes and pairs "
            "are supported"
        )
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ConditionError(f"condition {label!r} names the same gene twice")
    return genes


def format_condition(genes: Sequence[str]) -> str:
    """Canonical label: ``ctrl``, ``A+ctrl`` or ``A+B`` (order kept)."""
    genes = tuple(genes)
    if len(genes) == 0:
        return keys.CTRL
    if len(genes) == 1:
        return f"{genes[0]}{keys.SEP}{keys.CTRL}"
    if len(genes) == 2:
        return f"{genes[0]}{keys.SEP}{genes[1]}"
    raise ConditionError(f"{len(genes)} genes given; only single genes and pairs are supported")


def canonical(label: str, *, control_label: str | None = None) -> str:
    """``format_condition(parse_condition(label))``."""
    return format_condition(parse_condition(label, control_label=control_label))


def genes_of(condition: str) -> tuple[str, ...]:
    """Genes of a canonical condition (``()`` for ``ctrl``)."""
    return parse_condition(condition)


def is_pair(condition: str) -> bool:
    return len(genes_of(condition)) == 2


def label(genes: Sequence[str]) -> str:
    """The perturbed genes as people write them: ``KLF1`` or ``KLF1 + MAP2K6``."""
    return " + ".join(genes)


def short_label(condition: str) -> str:
    """A condition without its control part: ``KLF1+ctrl`` -> ``KLF1``, ``A+B`` -> ``A+B``."""
    return keys.SEP.join(genes_of(condition))


def condition_label(condition: str) -> str:
    """:func:`label` of a condition: ``KLF1+ctrl`` -> ``KLF1``, ``A+B`` -> ``A + B``."""
    return label(genes_of(condition))


def canonical_map(labels: Iterable[str], *, control_label: str | None = None) -> dict[str, str]:
    """Map each raw label to its canonical form.

    ``ctrl+A`` and ``A+ctrl`` map to ``A+ctrl``. A pair keeps the order written in the file
    (GEARS splits depend on the exact strings), unless both ``A+B`` and ``B+A`` occur: then
    both map to the alphabetically sorted form so the two are one condition.
    """
    labels = list(dict.fromkeys(labels))
    parsed = {raw: parse_condition(raw, control_label=control_label) for raw in labels}
    pairs = {g for g in parsed.values() if len(g) == 2}
    out = {}
    for raw, genes in parsed.items():
        if len(genes) == 2 and (genes[1], genes[0]) in pairs:
            genes = tuple(sorted(genes))
        out[raw] = format_condition(genes)
    return out


def find_condition(query: str, conditions: Iterable[str]) -> str | None:
    """The condition among ``conditions`` that perturbs the same genes as ``query``.

    Pair order does not matter: ``B+A`` finds ``A+B``. Returns ``None`` when absent.
    """
    wanted = frozenset(parse_condition(query))
    for cond in conditions:
        if frozenset(genes_of(cond)) == wanted:
            return cond
    return None
