"""Perturbation labels: one parser for every layout seen in the wild.

Canonical form (GEARS): ``ctrl`` for control cells, ``GENE+ctrl`` for a single
perturbation, ``A+B`` for a pair. Accepted on input: ``ctrl+GENE``, plain ``GENE``
(PerturBench / scPerturb), a custom control label (``control``, ``non-targeting``...),
spaces around ``+``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from .. import keys
from ..errors import ConditionError, echo

_NEVER_IN_A_SYMBOL = re.compile(r"[,;|/&]")
_MAYBE_A_SEPARATOR = re.compile(r"[_\s]+")
_CONTROL_WORDS = {c.lower() for c in keys.CONTROL_CANDIDATES}


def parse_condition(label: str, *, control_label: str | None = None,
                    known: Collection[str] | None = None, trusted: bool = False) -> tuple[str, ...]:
    """Genes perturbed in a condition label.

    Gene symbols are data: ``_``, ``.``, ``-`` and spaces inside a symbol (GENCODE's
    ``Y_RNA``, ``HLA-A``) are kept. Only ``+`` separates genes.

    Parameters
    ----------
    label
        ``"ctrl"``, ``"A+ctrl"``, ``"ctrl+A"``, ``"A"``, ``"A+B"`` (spaces around ``+`` allowed).
    control_label
        The file's own control label when it is not one of the usual words.
    known
        The symbols of the data or model. A gene written with ``_`` or a space is then
        refused only when its pieces are known genes (``KLF1_MAP2K6``: a pair written with
        the wrong separator); without it, ``_`` and spaces are refused.
    trusted
        The label was written by this project (a canonical condition, a split file): its
        genes are taken as written (only ``, ; | / &``, never part of a symbol, are refused).

    Returns
    -------
    The perturbed genes in the order written: ``()`` for control, ``("A",)`` or ``("A", "B")``.

    Raises
    ------
    ConditionError
        Empty label, empty gene (``A++B``), an unknown separator (``A,B``; ``A_B``, ``A B``
        as said above) or more than two genes. Long labels are cut in the message.
    """
    if not isinstance(label, str):
        raise ConditionError(f"condition {echo(label)} is not a string")
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
        raise ConditionError(f"condition {echo(label)} has an empty gene; write 'A+B' or 'A+ctrl'")
    genes = tuple(p for p in parts if p.lower() not in controls)
    if len(genes) > 2:
        raise ConditionError(
            f"condition {echo(label)} perturbs {len(genes)} genes; only single genes and pairs "
            "are supported"
        )
    for gene in genes:
        _check_symbol(gene, label, known, trusted)
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ConditionError(f"condition {echo(label)} names the same gene twice")
    return genes


def _check_symbol(gene: str, label: str, known: Collection[str] | None, trusted: bool) -> None:
    if known is not None and gene in known:
        return
    bad = _NEVER_IN_A_SYMBOL.search(gene)
    if bad is None:
        if trusted:
            return
        bad = _MAYBE_A_SEPARATOR.search(gene)
        if bad is None:
            return
        if known is not None:
            pieces = [p for p in _MAYBE_A_SEPARATOR.split(gene) if p]
            if len(pieces) < 2 or not all(p in known for p in pieces):
                return  # a symbol of its own, e.g. Y_RNA
    raise ConditionError(
        f"condition {echo(label)}: unexpected {bad.group()[0]!r} in {echo(gene)}; "
        "separate the genes of a pair with '+', e.g. 'A+B'"
    )


def format_condition(genes: Sequence[str]) -> str:
    """Canonical label: ``ctrl``, ``A+ctrl`` or ``A+B`` (order kept).

    Parameters
    ----------
    genes
        The perturbed genes: none (control), one or two.

    Returns
    -------
    str
    """
    genes = tuple(genes)
    if len(genes) == 0:
        return keys.CTRL
    if len(genes) == 1:
        return f"{genes[0]}{keys.SEP}{keys.CTRL}"
    if len(genes) == 2:
        return f"{genes[0]}{keys.SEP}{genes[1]}"
    raise ConditionError(f"{len(genes)} genes given; only single genes and pairs are supported")


def canonical(label: str, *, control_label: str | None = None,
              known: Collection[str] | None = None, trusted: bool = False) -> str:
    """``format_condition(parse_condition(label, ...))``: a label in the project's one form.

    Parameters
    ----------
    label
        A condition as written (``A``, ``A+ctrl``, ``ctrl+A``, ``A+B``, PerturBench's
        ``A_B``...).
    control_label, known, trusted
        As :func:`parse_condition`.

    Returns
    -------
    str
        ``ctrl``, ``A+ctrl`` or ``A+B``.
    """
    return format_condition(parse_condition(label, control_label=control_label, known=known,
                                            trusted=trusted))


def genes_of(condition: str) -> tuple[str, ...]:
    """Genes of a canonical condition (``()`` for ``ctrl``; ``ctrl+A`` gives ``("A",)``).

    Symbols are data and taken as written, whatever characters they hold: only ``+``
    separates genes (use :func:`parse_condition` for labels typed by people or read from
    files).
    """
    if not isinstance(condition, str):
        raise ConditionError(f"condition {echo(condition)} is not a string")
    return tuple(p for p in (part.strip() for part in condition.split(keys.SEP))
                 if p and p.lower() not in _CONTROL_WORDS)


def is_pair(condition: str) -> bool:
    return len(genes_of(condition)) == 2


def label(genes: Sequence[str]) -> str:
    """The perturbed genes as people write them: ``KLF1`` or ``KLF1 + MAP2K6``."""
    return " + ".join(genes)


def short_label(condition: str) -> str:
    """A condition without its control part: ``KLF1+ctrl`` -> ``KLF1``, ``A+B`` -> ``A+B``."""
    return keys.SEP.join(genes_of(condition))


def perturbation_label(condition: str) -> str:
    """The label pertpy and cell-eval read in ``obs['perturbation']``: ``KLF1+ctrl`` ->
    ``KLF1``, ``A+B`` -> ``A+B``, ``ctrl`` -> ``control``."""
    return short_label(condition) or keys.PERTURBATION_CONTROL


def canonical_map(labels: Iterable[str], *, control_label: str | None = None,
                  known: Collection[str] | None = None) -> dict[str, str]:
    """Map each raw label to its canonical form.

    ``ctrl+A`` and ``A+ctrl`` map to ``A+ctrl``. A pair keeps the order written in the file
    (GEARS splits depend on the exact strings), unless both ``A+B`` and ``B+A`` occur: then
    both map to the alphabetically sorted form so the two are one condition.
    """
    labels = list(dict.fromkeys(labels))
    parsed = {raw: parse_condition(raw, control_label=control_label, known=known) for raw in labels}
    pairs = {g for g in parsed.values() if len(g) == 2}
    out = {}
    for raw, genes in parsed.items():
        if len(genes) == 2 and (genes[1], genes[0]) in pairs:
            genes = tuple(sorted(genes))
        out[raw] = format_condition(genes)
    return out


def find_condition(query: str, conditions: Iterable[str]) -> str | None:
    """The condition among ``conditions`` (canonical) that perturbs the same genes as
    ``query`` (any layout; symbols of ``conditions`` are known).

    Pair order does not matter: ``B+A`` finds ``A+B``. Returns ``None`` when absent.
    """
    conditions = list(conditions)
    known = {g for c in conditions for g in genes_of(c)}
    wanted = frozenset(parse_condition(query, known=known))
    for cond in conditions:
        if frozenset(genes_of(cond)) == wanted:
            return cond
    return None
