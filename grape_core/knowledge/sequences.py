"""DNA sequences of genes, from a pluggable :class:`SequenceSource`: the EPDnew promoters in
``Paths.gene_sources`` (default) or a FASTA file of gene bodies. No network, no torch."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import pandas as pd

from ..config import Paths
from ..errors import DataFormatError, GrapeError

log = logging.getLogger(__name__)


EPD_SEQUENCES = "epd_hs006_promoters_60bp.tsv"


EPD_ENSEMBL = "epd_hs006_promoter_ensembl.tsv"


# ----------------------------------------------------------------------------------------
# sequence sources
# ----------------------------------------------------------------------------------------
class SequenceSource(Protocol):
    """Where DNA comes from. ``lookup`` gets, per gene, candidate keys (Ensembl ids first,
    then symbols) and returns one sequence per gene (upper case, ``''`` when none)."""

    name: str

    def lookup(self, candidates: Sequence[Sequence[str]]) -> list[str]: ...


@dataclass(frozen=True)
class EPDPromoters:
    """EPDnew human promoters (release 006, hg38): 60 bp around the main TSS, on the gene
    strand. Genes are matched by Ensembl id (``epd_hs006_promoter_ensembl.tsv``), then by
    symbol; of several promoters the first (``SYMBOL_1``, EPD's representative) is used."""

    folder: Path
    name: str = "epd"

    def lookup(self, candidates: Sequence[Sequence[str]]) -> list[str]:
        table = _epd_index(str(self.folder))
        return [next((table[k] for k in keys_ if k in table), "") for keys_ in candidates]


def _promoter_rank(name: str) -> tuple[str, int]:
    symbol, _, n = name.rpartition("_")
    return (symbol, int(n)) if n.isdigit() else (name, 0)


@lru_cache(maxsize=2)
def _epd_index(folder: str) -> dict[str, str]:
    root = Path(folder)
    seqs = pd.read_csv(root / EPD_SEQUENCES, sep="\t", header=None, names=["id", "seq"],
                       dtype=str, keep_default_na=False)
    ranked = sorted(((*_promoter_rank(i), s) for i, s in zip(seqs["id"], seqs["seq"])),
                    key=lambda r: (r[0], r[1]))
    by_symbol: dict[str, str] = {}
    by_promoter = dict(zip(seqs["id"], seqs["seq"]))
    for symbol, _, seq in ranked:
        by_symbol.setdefault(symbol, seq.upper())
    out: dict[str, str] = {}
    path = root / EPD_ENSEMBL
    if path.is_file():
        ens = pd.read_csv(path, sep="\t", header=None, names=["id", "ensembl"], dtype=str,
                          keep_default_na=False)
        order = sorted(zip(ens["id"], ens["ensembl"]), key=lambda r: _promoter_rank(r[0]))
        for pid, ensg in order:
            if pid in by_promoter:
                out.setdefault(ensg.split(".")[0], by_promoter[pid].upper())
    for symbol, seq in by_symbol.items():
        out.setdefault(symbol, seq)
    return out


_HEADER_FIELDS = re.compile(r"(?:gene_symbol|gene_name|gene|gene_id|symbol)[:=]([\w.\-]+)")


def _fasta_keys(header: str) -> list[str]:
    """Identifiers in a FASTA header: the first word, ``|``-separated fields and
    ``gene:``/``gene_symbol:``/``gene_name=`` values; Ensembl versions stripped."""
    words = header.split()
    out = [w for w in words[0].split("|") if w] if words else []
    out += _HEADER_FIELDS.findall(header)
    return list(dict.fromkeys(k.split(".")[0] if k.startswith("ENS") else k for k in out))


def parse_fasta(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(header, sequence)`` of each FASTA record in ``lines`` (text before the first
    ``>`` is ignored); the one FASTA reader of the project."""
    header, chunks = None, []
    for line in lines:
        if line.startswith(">"):
            if header is not None:
                yield header, "".join(chunks)
            header, chunks = line[1:].strip(), []
        elif header is not None:
            chunks.append(line.strip())
    if header is not None:
        yield header, "".join(chunks)


def _read_fasta(path: Path) -> Iterator[tuple[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        yield from parse_fasta(fh)


@dataclass(frozen=True)
class FastaSequences:
    """A FASTA (optionally ``.gz``) of gene sequences, e.g. gene bodies. A record matches
    a gene when an identifier of its header (first word, ``|`` fields, ``gene:ENSG...``,
    ``gene_symbol:TP53``) equals the gene's Ensembl id or symbol; of several records of one
    gene (under any of its identifiers) the longest is kept. Only wanted records are held in
    memory."""

    path: Path
    name: str = "fasta"

    def lookup(self, candidates: Sequence[Sequence[str]]) -> list[str]:
        if not self.path.is_file():
            raise GrapeError(f"sequence FASTA {self.path} not found; give an existing file")
        wanted = {k for keys_ in candidates for k in keys_}
        best: dict[str, str] = {}
        n_records = 0
        for header, seq in _read_fasta(self.path):
            n_records += 1
            for key in _fasta_keys(header):
                if key in wanted and len(seq) > len(best.get(key, "")):
                    best[key] = seq.upper()
        if n_records == 0:
            raise DataFormatError(f"{self.path} holds no FASTA record ('>' header lines)")
        return [max((best[k] for k in keys_ if k in best), key=len, default="")
                for keys_ in candidates]


def sequence_source(spec: str = "epd", *, paths: Paths | None = None) -> SequenceSource | None:
    """The sequence source named by a setting.

    Parameters
    ----------
    spec
        ``"epd"``: EPD promoters in ``paths.gene_sources``; ``"none"``: no sequences;
        anything else: a FASTA file path (``.fa``, ``.fasta``, optionally ``.gz``).

    Returns
    -------
    A :class:`SequenceSource`, or ``None`` when there is none (``"none"``, or ``"epd"``
    without a configured gene-sources folder, which logs a warning).
    """
    if spec == "none":
        return None
    if spec == "epd":
        paths = paths or Paths.from_env()
        folder = Path(paths.gene_sources) if paths.gene_sources else None
        if folder is None or not (folder / EPD_SEQUENCES).is_file():
            log.warning("no EPD promoter file (%s) in GRAPE_GENE_SOURCES=%r; genes get no "
                        "sequence (DNA view marked missing)", EPD_SEQUENCES,
                        paths.gene_sources)
            return None
        return EPDPromoters(folder)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise GrapeError(
            f"sequence source {spec!r} is neither 'epd', 'none' nor an existing FASTA file; "
            "give one of these"
        )
    return FastaSequences(path)
