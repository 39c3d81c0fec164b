"""Build the compact human gene annotation shipped in ``assets/genes/``.

Reads the SQLite files of the Bioconductor annotation packages ``org.Hs.eg.db`` and
``GO.db`` (Artistic-2.0) without R, and writes three Parquet tables plus a JSON manifest:

``orghs_genes.parquet``   one row per Entrez gene: entrez_id, symbol, full_name,
                          gene_type (NCBI), ensembl_ids, chromosome, cytoband, aliases,
                          go_bp, go_mf, go_cc (direct annotations, GO ids joined by ``;``)
``go_terms.parquet``      go_id, ontology (BP/MF/CC), term, n_genes (human genes annotated
                          to the term or a descendant, from ``go_*_all``), n_direct
``go_parents.parquet``    go_id, parent_id, relationship (every GO.db relation type; the
                          closure over them reproduces ``go_*_all``, checked below)
``manifest.json``         source versions and dates, licence, row counts, SHA-256 of outputs

How to get the SQLite files (no R needed; Debian/Ubuntu)::

    ANNOT=$(mktemp -d) && cd "$ANNOT"
    apt-get download r-bioc-org.hs.eg.db r-bioc-go.db
    for f in *.deb; do dpkg -x "$f" x; done
    cd -   # back to the repository
    python scripts/build_annotation.py \\
        --orgdb "$ANNOT"/x/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite \\
        --godb  "$ANNOT"/x/usr/lib/R/site-library/GO.db/extdata/GO.sqlite \\
        --out assets/genes

The output is deterministic for a given pair of input files (rows sorted by Entrez id,
multi-values sorted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

ONTOLOGIES = ("bp", "mf", "cc")
GO_ROOTS = {"GO:0008150", "GO:0003674", "GO:0005575"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _metadata(con: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in con.execute("SELECT name, value FROM metadata")}


def _joined(con: sqlite3.Connection, sql: str) -> dict[int, str]:
    """``_id -> 'a;b;c'`` (sorted, unique) from a two-column query."""
    values: dict[int, set[str]] = defaultdict(set)
    for key, value in con.execute(sql):
        if value is not None and str(value).strip():
            values[int(key)].add(str(value).strip())
    return {k: ";".join(sorted(v)) for k, v in values.items()}


def read_genes(orgdb: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    con = sqlite3.connect(f"file:{orgdb}?mode=ro", uri=True)
    meta = _metadata(con)
    base = pd.read_sql_query(
        "SELECT g._id AS _id, g.gene_id AS entrez_id, i.symbol AS symbol, "
        "i.gene_name AS full_name, t.gene_type AS gene_type "
        "FROM genes g JOIN gene_info i USING(_id) LEFT JOIN genetype t USING(_id)",
        con,
    )
    # Ensembl: the NCBI gene2ensembl mapping (primary assembly) first, then other ids.
    primary: dict[int, list[str]] = defaultdict(list)
    for key, ens in con.execute("SELECT _id, ensembl_id FROM ncbi2ensembl ORDER BY ensembl_id"):
        primary[int(key)].append(ens)
    others: dict[int, set[str]] = defaultdict(set)
    for key, ens in con.execute("SELECT _id, ensembl_id FROM ensembl"):
        others[int(key)].add(ens)
    ensembl = {}
    for key in set(primary) | set(others):
        first = list(dict.fromkeys(primary.get(key, [])))
        rest = sorted(others.get(key, set()) - set(first))
        ensembl[key] = ";".join(first + rest)

    chromosome = _joined(con, "SELECT _id, chromosome FROM chromosomes")
    cytoband = _joined(con, "SELECT _id, cytogenetic_location FROM cytogenetic_locations")
    aliases = _joined(con, "SELECT _id, alias_symbol FROM alias")
    go = {ont: _joined(con, f"SELECT _id, go_id FROM go_{ont}") for ont in ONTOLOGIES}

    out = base.copy()
    out["ensembl_ids"] = out["_id"].map(ensembl).fillna("")
    out["chromosome"] = out["_id"].map(chromosome).fillna("")
    out["cytoband"] = out["_id"].map(cytoband).fillna("")
    # aliases without the gene's own current symbol
    own = dict(zip(out["_id"], out["symbol"]))
    out["aliases"] = [
        ";".join(a for a in aliases.get(k, "").split(";") if a and a != own[k])
        for k in out["_id"]
    ]
    for ont in ONTOLOGIES:
        out[f"go_{ont}"] = out["_id"].map(go[ont]).fillna("")
    out["entrez_id"] = out["entrez_id"].astype("int64")
    out["gene_type"] = out["gene_type"].fillna("unknown")
    out = out.drop(columns="_id").sort_values("entrez_id").reset_index(drop=True)
    con.close()
    return out, meta


def read_go(godb: Path, orgdb: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    con = sqlite3.connect(f"file:{godb}?mode=ro", uri=True)
    meta = _metadata(con)
    terms = pd.read_sql_query(
        "SELECT go_id, ontology, term FROM go_term WHERE ontology IN ('BP','MF','CC')", con
    )
    id_of = dict(con.execute("SELECT _id, go_id FROM go_term"))
    rows = []
    for ont in ONTOLOGIES:
        for child, parent, rel in con.execute(
            f"SELECT _id, _parent_id, relationship_type FROM go_{ont}_parents"
        ):
            rows.append((id_of[child], id_of[parent], str(rel).replace(" ", "_")))
    parents = pd.DataFrame(rows, columns=["go_id", "parent_id", "relationship"])
    parents = parents.sort_values(["go_id", "parent_id", "relationship"]).reset_index(drop=True)
    con.close()

    org = sqlite3.connect(f"file:{orgdb}?mode=ro", uri=True)
    counts = {}
    direct = {}
    for ont in ONTOLOGIES:
        counts.update(dict(org.execute(
            f"SELECT go_id, COUNT(DISTINCT _id) FROM go_{ont}_all GROUP BY go_id")))
        direct.update(dict(org.execute(
            f"SELECT go_id, COUNT(DISTINCT _id) FROM go_{ont} GROUP BY go_id")))
    org.close()
    terms["n_genes"] = terms["go_id"].map(counts).fillna(0).astype("int64")
    terms["n_direct"] = terms["go_id"].map(direct).fillna(0).astype("int64")
    terms = terms.sort_values("go_id").reset_index(drop=True)
    return terms, parents, meta


def check_closure(genes: pd.DataFrame, parents: pd.DataFrame, orgdb: Path, symbols) -> None:
    """The closure of direct annotations over ``parents`` must equal ``go_*_all``."""
    up: dict[str, list[str]] = defaultdict(list)
    for child, parent in zip(parents["go_id"], parents["parent_id"]):
        up[child].append(parent)
    memo: dict[str, frozenset[str]] = {}

    def ancestors(term: str) -> frozenset[str]:
        if term not in memo:
            out = {term}
            for p in up.get(term, ()):
                out |= ancestors(p)
            memo[term] = frozenset(out)
        return memo[term]

    org = sqlite3.connect(f"file:{orgdb}?mode=ro", uri=True)
    by_symbol = genes.set_index("symbol")
    for symbol in symbols:
        row = by_symbol.loc[symbol]
        (key,) = org.execute("SELECT _id FROM genes WHERE gene_id=?", (str(row["entrez_id"]),)).fetchone()
        for ont in ONTOLOGIES:
            direct = [t for t in row[f"go_{ont}"].split(";") if t]
            closed = set().union(*(ancestors(t) for t in direct)) if direct else set()
            expected = {t for (t,) in org.execute(f"SELECT go_id FROM go_{ont}_all WHERE _id=?", (key,))}
            if closed - {"all"} != expected:
                raise SystemExit(f"GO closure mismatch for {symbol} {ont}: "
                                 f"{len(closed)} vs {len(expected)} terms")
    org.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgdb", required=True, type=Path, help="org.Hs.eg.sqlite")
    parser.add_argument("--godb", required=True, type=Path, help="GO.sqlite")
    parser.add_argument("--out", required=True, type=Path, help="output folder (assets/genes)")
    parser.add_argument("--orgdb-deb", default="r-bioc-org.hs.eg.db 3.16.0-1",
                        help="Debian package and version the file came from (recorded)")
    parser.add_argument("--godb-deb", default="r-bioc-go.db 3.16.0-1",
                        help="Debian package and version the file came from (recorded)")
    args = parser.parse_args(argv)
    for path in (args.orgdb, args.godb):
        if not path.is_file():
            print(f"error: {path} not found; see the docstring for how to get it", file=sys.stderr)
            return 1

    genes, org_meta = read_genes(args.orgdb)
    terms, parents, go_meta = read_go(args.godb, args.orgdb)
    check_closure(genes, parents, args.orgdb, ["TP53", "HSPA5", "MALAT1", "GAPDH"])

    args.out.mkdir(parents=True, exist_ok=True)
    outputs = {
        "orghs_genes.parquet": genes,
        "go_terms.parquet": terms,
        "go_parents.parquet": parents,
    }
    for name, frame in outputs.items():
        frame.to_parquet(args.out / name, index=False, compression="zstd", compression_level=19)
    manifest = {
        "format": 1,
        "built_by": "scripts/build_annotation.py",
        "sources": {
            "org.Hs.eg.db": {
                "debian_package": args.orgdb_deb,
                "sqlite_sha256": _sha256(args.orgdb),
                "metadata": org_meta,
            },
            "GO.db": {
                "debian_package": args.godb_deb,
                "sqlite_sha256": _sha256(args.godb),
                "metadata": go_meta,
            },
        },
        "licence": "Artistic-2.0 (Bioconductor org.Hs.eg.db and GO.db)",
        "rows": {name: int(len(frame)) for name, frame in outputs.items()},
        "gene_types": {str(k): int(v) for k, v in genes["gene_type"].value_counts().items()},
        "sha256": {name: _sha256(args.out / name) for name in outputs},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    for name, frame in outputs.items():
        size = (args.out / name).stat().st_size
        print(f"{name}: {len(frame):,} rows, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
