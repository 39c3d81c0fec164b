"""From what a user types to the model's own names: genes (exact, any case, or an alias),
perturbations (``A``, ``A+B``, ``A+ctrl``, ``["A", "B"]``), lists of perturbations and gene
signatures, each refused in one line that says what to do (with suggestions for a gene the
model does not know)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..data.conditions import format_condition, label, parse_condition
from ..errors import ConditionError, GrapeError, UnknownGeneError, echo
from ..io import read_text_file
from .loaded import LoadedModel, as_model


# ----------------------------------------------------------------------------- genes
def resolve_gene(model: LoadedModel | Bundle, symbol: str) -> str:
    """The model's symbol for ``symbol`` (exact, case-insensitive, or a known alias).

    Raises
    ------
    UnknownGeneError
        With close matches as suggestions; says so when the gene exists in the annotation
        but has no node in this model.
    """
    bundle = as_model(model).bundle
    text = symbol.strip()
    if text in bundle.node_index:
        return text
    folded = text.lower()
    same = [g for g in bundle.genes if g.lower() == folded]
    if len(same) == 1:
        return same[0]
    if len(same) > 1:
        raise UnknownGeneError(
            f"{echo(text)} is ambiguous in model {bundle.name!r}: its genes "
            f"{' and '.join(same[:4])} differ only in case; type the exact symbol",
            gene=text, suggestions=tuple(same[:5]))
    if "resolved_symbol" in bundle.table:  # current official symbol given for an old one
        hits = bundle.table.index[bundle.table["resolved_symbol"].astype(str).str.lower() == text.lower()]
        if len(hits) == 1:
            return str(hits[0])
    # the genes it starts (what a partial symbol was on its way to), shortest first, then
    # the genes that look like it: offered, never picked
    starts = sorted((g for g in bundle.genes if g.lower().startswith(folded)), key=lambda g: (len(g), g))
    close = difflib.get_close_matches(text.upper(), bundle.genes, n=5, cutoff=0.6)
    suggestions = tuple(dict.fromkeys([*starts, *close]))[:5] if folded else ()
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    if _in_annotation(text):
        raise UnknownGeneError(
            f"{text} is a known human gene but not in model {bundle.name!r} (its graph holds "
            f"the {len(bundle.genes)} genes of its training data){hint}",
            gene=text, suggestions=suggestions,
        )
    raise UnknownGeneError(f"unknown gene {echo(text)} for model {bundle.name!r}{hint}",
                           gene=text, suggestions=suggestions)


def _in_annotation(symbol: str) -> bool:
    try:
        from ..knowledge.genes import load_annotation

        ann = load_annotation()
        return symbol in ann.by_symbol or symbol.upper() in ann.by_upper or symbol in ann.by_alias
    except Exception:  # noqa: BLE001 - the annotation is optional here
        return False


def resolve_perturbation(model: LoadedModel | Bundle, perturbation: str | Sequence[str]) -> str:
    """Canonical condition (``A+ctrl`` or ``A+B``) with the model's gene symbols.

    ``perturbation``: a condition label (``"A"``, ``"A+B"``, ``"A+ctrl"``) or the genes
    themselves (``["A", "B"]``). A pair that was measured in either order is returned in the
    measured order.
    """
    bundle = as_model(model).bundle
    known = bundle.node_index
    if isinstance(perturbation, str):
        genes = parse_condition(perturbation, known=known)
        text = perturbation
    else:
        items = [item for item in perturbation if item and item.strip()]
        if len(items) > 2:
            raise ConditionError(f"condition {echo(label(items))} perturbs {len(items)} genes; "
                                 "only single genes and pairs are supported")
        genes = tuple(g for item in items for g in parse_condition(item, known=known))
        text = label(genes)
        if len(genes) > 2:
            raise ConditionError(f"condition {echo(text)} perturbs {len(genes)} genes; only single "
                                 "genes and pairs are supported")
    if not genes:
        raise ConditionError("choose at least one gene to perturb (control is the baseline)")
    genes = tuple(resolve_gene(bundle, g) for g in genes)
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ConditionError(f"{echo(text)} names the same gene twice")
    condition = format_condition(genes)
    measured = bundle.pseudobulk.find(condition)
    return measured or condition


def read_perturbations(path: str | Path) -> tuple[list[str], list[str]]:
    """A file listing perturbations (:func:`parse_perturbations`), with ``"FILE, line N"``
    for each.

    Raises
    ------
    GrapeError
        The file cannot be read or is not text, or lists no perturbation.

    Parameters
    ----------
    path
        A text file, one ``GENE`` or ``GENE_A+GENE_B`` per line (``#`` comments); a CSV or
        TSV whose header's first column is ``perturbation`` or ``condition``.

    Returns
    -------
    perturbations, where
        The perturbations as written, and ``"FILE, line N"`` for each.
    """
    from ..io import read_text_file

    text = read_text_file(path, what="perturbation list",
                          fix="give a text file with one perturbation (GENE or GENE_A+GENE_B) "
                              "per line")
    return parse_perturbations(text, source=str(path))


_HEADERS = frozenset({"perturbation", "condition"})


_SEPARATORS = ((",", "comma"), ("\t", "tab"))


def parse_perturbations(text: str, *, source: str = "") -> tuple[list[str], list[str]]:
    """Perturbations listed one per line, ``GENE`` or ``GENE_A+GENE_B`` (blank lines and what
    follows a ``#`` skipped). A table (CSV or TSV) works when its header's first column is
    ``perturbation`` or ``condition``: then each line's first field is read. Without such a
    header, a line with a comma or a tab is refused (``A,B`` is not the pair ``A+B``, nor
    the single ``A``).

    Returns
    -------
    perturbations, where
        The perturbations as written, and where each was (``"SOURCE, line N"``, or
        ``"line N"`` without a source): :func:`predict_many`'s ``where``.

    Raises
    ------
    GrapeError
        No perturbation is listed, or a line holds a separator other than ``+`` (with its
        line number).
    """
    from ..errors import echo

    perturbations, where = [], []
    table: str | None = None  # the separator of a table with a header; "" for a header alone
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        at = f"{source}, line {n}" if source else f"line {n}"
        if not perturbations and table is None:
            cut = min([i for i in (line.find(","), line.find("\t")) if i >= 0], default=-1)
            first = line if cut < 0 else line[:cut]
            if first.strip().strip('"').strip().lower() in _HEADERS:
                table = "" if cut < 0 else line[cut]
                continue
        if table:
            line = line.split(table)[0]
        else:
            for sep, word in _SEPARATORS:
                if sep in line:
                    raise GrapeError(
                        f"{at}: {echo(line)} holds a {word}; give one perturbation per line, "
                        "a pair as GENE_A+GENE_B (for a table, start it with a header whose "
                        "first column is perturbation)")
        line = line.strip().strip('"').strip()
        if not line:
            continue
        perturbations.append(line)
        where.append(at)
    if not perturbations:
        listed = f"perturbation list {source}" if source else "the list"
        raise GrapeError(f"{listed} names no perturbation; give one GENE or GENE_A+GENE_B per "
                         "line")
    return perturbations, where


def read_signature(path: str | Path) -> dict[str, float]:
    """A gene signature file: ``gene<TAB or comma>weight`` per line (weight optional, 1).

    Raises
    ------
    GrapeError
        Not found, a folder, not text (a binary file), or what :func:`parse_signature`
        refuses.
    """
    text = read_text_file(path, what="signature file",
                          fix="give a text file with one gene and weight per line")
    return parse_signature(text, source=str(path))


def parse_signature(text: str, *, source: str = "the pasted signature") -> dict[str, float]:
    """A gene signature given as text, one ``gene<TAB, comma or space>weight`` per line
    (weight optional, 1; ``#`` comments and a ``gene weight`` header skipped). With a tab or
    a comma on the line, a gene symbol may hold spaces.

    Raises
    ------
    GrapeError
        A weight that is not a finite, non-zero number, a gene listed twice (also in
        another case: ``HSPA5`` and ``hspa5``), naming ``source`` and the line; or no gene
        at all.
    """
    path = source
    out: dict[str, float] = {}
    seen: dict[str, tuple[int, str]] = {}  # case-folded gene -> (line, as written)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line or "," in line:  # a symbol may hold spaces ("my gene<TAB>1")
            parts = [p.strip() for p in re.split(r"[\t,]", line) if p.strip()]
        else:
            parts = line.split()
        if n == 1 and len(parts) == 2 and parts[1].lower() in {"weight", "w"}:
            continue  # header
        gene = parts[0]
        try:
            weight = float(parts[1]) if len(parts) > 1 else 1.0
        except ValueError as exc:
            raise GrapeError(f"{path}, line {n}: weight {echo(parts[1])} is not a number") from exc
        if not np.isfinite(weight):
            raise GrapeError(f"{path}, line {n}: weight {echo(parts[1])} of {echo(gene)} is not a "
                             "finite number; give a number such as 1 or -0.5")
        if weight == 0:
            raise GrapeError(f"{path}, line {n}: weight of {echo(gene)} is 0; leave the gene out "
                             "or give it a non-zero weight")
        folded = gene.lower()
        if folded in seen:
            first, written = seen[folded]
            again = "again" if written == gene else f"as {echo(written)} on line {first} too"
            raise GrapeError(f"{path}, line {n}: {echo(gene)} is listed {again}"
                             f"{'' if written != gene else f' (first on line {first})'}; give each "
                             "gene once")
        seen[folded] = (n, gene)
        out[gene] = weight
    if not out:
        raise GrapeError(f"signature {path} lists no genes")
    return out


def resolve_targets(bundle: Bundle, targets: Sequence[str] | Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if isinstance(targets, str):
        targets = [targets]
    weights = dict(targets) if isinstance(targets, Mapping) else {t: 1.0 for t in targets}
    if not weights:
        raise GrapeError("choose at least one target gene")
    position = {g: i for i, g in enumerate(bundle.measured)}
    idx, w, names = [], [], []
    given: dict[str, str] = {}  # model symbol -> as given
    for gene, weight in weights.items():
        symbol = resolve_gene(bundle, gene)
        if symbol not in position:
            raise GrapeError(f"{symbol} is in the graph but not measured by model {bundle.name!r}: "
                             "a target must be a measured gene")
        if symbol in given:
            raise GrapeError(f"{echo(given[symbol])} and {echo(gene)} are the same gene ({symbol}) "
                             f"of model {bundle.name!r}; give each target gene once")
        try:
            value = float(weight)
        except (TypeError, ValueError) as exc:
            raise GrapeError(f"the weight of target {symbol} is {echo(weight)}, not a "
                             "number") from exc
        if not np.isfinite(value):
            raise GrapeError(f"the weight of target {symbol} is {value}, not a finite number; give "
                             "a number such as 1 or -0.5")
        given[symbol] = gene
        idx.append(position[symbol])
        w.append(value)
        names.append(symbol)
    w = np.asarray(w, dtype=np.float64)
    if not np.any(w):
        raise GrapeError("all signature weights are zero; give at least one non-zero weight")
    w = w / np.abs(w).max()  # first to the largest: huge or tiny weights stay finite
    return np.asarray(idx), w / np.abs(w).sum(), names
