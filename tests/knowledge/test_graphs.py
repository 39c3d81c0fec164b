"""Prior graphs: hand-computed similarity, GO Jaccard on real genes, co-expression with a
known correlation structure, union weights, typing by biotype and the PyG split."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from grape_core import keys
from grape_core.errors import GrapeError
from grape_core.knowledge.graphs import (
    coexpression_prior,
    edge_frame,
    go_jaccard,
    go_prior,
    graph_stats,
    similarity_prior,
    to_edge_index_dict,
    type_edges,
    union_prior,
)


@pytest.fixture(scope="module")
def ups_table():
    from grape_core.knowledge.genes import gene_table

    # ER stress / chaperones, the p53 axis, histones, and a lncRNA
    return gene_table(["HSPA5", "HSP90B1", "DDIT3", "ATF4", "TP53", "MDM2", "CDKN1A",
                       "H1-2", "H1-4", "MALAT1", "NOTAGENE1"])


def test_edge_columns_and_dtypes():
    e = edge_frame([1, 0], [0, 1], [0.5, 0.25], "go")
    assert list(e.columns) == ["src", "dst", "weight", "source", "relation"]
    assert e["src"].dtype == np.int64 and e["weight"].dtype == np.float32
    assert e["dst"].tolist() == [0, 1]


# ----------------------------------------------------------------------------------------
# similarity
# ----------------------------------------------------------------------------------------
def test_similarity_prior_hand_computed():
    # genes 0, 1, 2 point almost the same way, gene 3 is orthogonal
    x = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0]], dtype=np.float32)
    e = similarity_prior(x, None, None, threshold=0.6, min_weight=0.0)
    assert not (e["src"] == e["dst"]).any()  # no self-loops
    assert set(zip(e["src"], e["dst"])) == {(0, 1), (2, 1), (1, 0), (2, 0), (0, 2), (1, 2)}
    sums = e.groupby("dst")["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-6)  # row-normalised per dst
    cos01 = 1 / np.sqrt(1.01)
    cos12 = (1 - 0.01) / 1.01
    w = e.set_index(["src", "dst"])["weight"]
    assert w[(1, 0)] == pytest.approx(cos01 / (2 * cos01), rel=1e-5)
    assert w[(2, 1)] == pytest.approx(cos12 / (cos01 + cos12), rel=1e-5)
    assert 3 not in set(e["src"]) | set(e["dst"])


def test_similarity_prior_min_weight_prunes_after_normalising():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 8))
    x = base + 0.01 * rng.normal(size=(100, 8))  # 100 near-identical genes
    e = similarity_prior(x, None, None, threshold=0.6, min_weight=0.015)
    assert len(e) == 0  # each weight is 1/99 < 0.015: the paper's pruning empties the rows
    e = similarity_prior(x[:50], None, None, threshold=0.6, min_weight=0.015)
    assert len(e) == 50 * 49


def test_similarity_prior_averages_views_and_skips_missing_dna():
    text = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    dna = np.array([[1, 0], [-1, 0], [0, 0]], dtype=np.float32)
    # with DNA: genes 0 and 1 average cos 1 (text) and -1 (dna) -> 0: no edge
    e = similarity_prior(text, dna, None, threshold=0.6, min_weight=0.0)
    assert len(e) == 0
    # gene 1 has no sequence: its pairs use the text view only
    e = similarity_prior(text, dna, None, threshold=0.6, min_weight=0.0,
                         dna_missing=np.array([False, True, True]))
    assert set(zip(e["src"], e["dst"])) == {(0, 1), (1, 0)}


def test_similarity_prior_chunks_match_dense():
    from grape_core.knowledge.graphs.builtin import _unit_rows

    rng = np.random.default_rng(1)
    n = 1500  # more than one chunk of rows
    text = rng.normal(size=(n, 6)).astype(np.float32)
    fused = (text @ rng.normal(size=(6, 6)) + 0.3 * rng.normal(size=(n, 6))).astype(np.float32)
    e = similarity_prior(text, None, fused, threshold=0.6, min_weight=0.015)
    s = (_unit_rows(text, center=False) @ _unit_rows(text, center=False).T
         + _unit_rows(fused, center=False) @ _unit_rows(fused, center=False).T) / 2
    np.fill_diagonal(s, 0)
    s[s < 0.6] = 0
    w = s / np.maximum(s.sum(1, keepdims=True), 1e-30)
    w[w < 0.015] = 0
    dst, src = np.nonzero(w)
    assert len(e) == len(dst) > 0
    got = sp.csr_matrix((e["weight"], (e["dst"], e["src"])), shape=(n, n)).toarray()
    np.testing.assert_allclose(got, w, atol=1e-5)


# ----------------------------------------------------------------------------------------
# GO
# ----------------------------------------------------------------------------------------
def test_go_jaccard_symmetric_and_hand_checked(ups_table):
    jac = go_jaccard(ups_table, propagate=False)
    dense = jac.toarray()
    np.testing.assert_allclose(dense, dense.T)  # symmetric before any top-k
    assert np.all(np.diag(dense) == 0) and dense.max() <= 1
    sets = [set(t for c in ("go_bp", "go_mf", "go_cc") for t in r[c].split(";") if t)
            for _, r in ups_table.iterrows()]
    i, j = 0, 1  # HSPA5, HSP90B1 share ER-chaperone terms
    expected = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
    assert dense[i, j] == pytest.approx(expected, rel=1e-6) and expected > 0.05
    assert not dense[10].any()  # unresolved gene: no GO, no edges


def test_go_propagation_adds_ancestors(ups_table):
    from grape_core.knowledge.graphs import go_membership

    direct, direct_terms = go_membership(ups_table.loc[["HSPA5"]], propagate=False)
    closed, closed_terms = go_membership(ups_table.loc[["HSPA5"]], propagate=True)
    assert set(direct_terms) < set(closed_terms)
    # ERAD pathway (direct) implies its ancestor "protein catabolic process"
    assert "GO:0030433" in direct_terms and "GO:0030163" in closed_terms
    assert "GO:0008150" in closed_terms  # root: biological_process
    jac = go_jaccard(ups_table, propagate=True).toarray()
    np.testing.assert_allclose(jac, jac.T)
    assert jac[0, 1] > jac[0, 7]  # HSPA5 ~ HSP90B1 more than HSPA5 ~ a histone


def test_go_prior_top_k_per_destination(ups_table):
    e = go_prior(ups_table, top_k=2, min_jaccard=0.05)
    assert e.groupby("dst").size().max() <= 2
    jac = go_jaccard(ups_table).toarray()
    for dst, group in e.groupby("dst"):
        best = np.sort(jac[dst])[::-1][:2]
        np.testing.assert_allclose(np.sort(group["weight"].to_numpy())[::-1], best[:len(group)],
                                   rtol=1e-6)
        np.testing.assert_allclose(group["weight"], jac[dst, group["src"]], rtol=1e-6)
    assert (e["source"] == "go").all() and not (e["src"] == e["dst"]).any()


# ----------------------------------------------------------------------------------------
# co-expression
# ----------------------------------------------------------------------------------------
def _control_cells(n=400, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    X = np.stack([a + 0.1 * rng.normal(size=n),      # column 0
                  -a + 0.1 * rng.normal(size=n),     # column 1: anti-correlated with 0
                  rng.normal(size=n),                # column 2: noise
                  a + 0.1 * rng.normal(size=n),      # column 3: like 0
                  np.full(n, 1.0)], axis=1)          # column 4: constant
    return np.clip(X + 3, 0, None)


def test_coexpression_prior_known_structure():
    X = _control_cells()
    measured_index = [0, 2, 3, 5, 6]  # node 1 and node 4 are unmeasured perturbed genes
    e = coexpression_prior(X, measured_index, 7, threshold=0.4, top_k=20)
    pairs = set(zip(e["src"], e["dst"]))
    assert pairs == {(2, 0), (5, 0), (0, 2), (5, 2), (0, 5), (2, 5)}
    assert not ({1, 3, 4, 6} & (set(e["src"]) | set(e["dst"])))  # noise, constant, unmeasured
    r = np.corrcoef(X[:, :4].T)
    w = e.set_index(["src", "dst"])["weight"]
    assert w[(2, 0)] == pytest.approx(abs(r[1, 0]), abs=1e-4)  # |r| of anti-correlation
    e1 = coexpression_prior(X, measured_index, 7, threshold=0.4, top_k=1)
    assert e1.groupby("dst").size().max() == 1
    es = coexpression_prior(sp.csr_matrix(X), measured_index, 7, threshold=0.4, top_k=20)
    pd.testing.assert_frame_equal(e, es, atol=1e-5)


def test_coexpression_large_sparse_path_agrees(monkeypatch):
    import grape_core.knowledge.graphs.builtin as G

    X = _control_cells(seed=3)
    dense = coexpression_prior(X, [0, 1, 2, 3, 4], 5)
    monkeypatch.setattr(G, "_DENSE_LIMIT", 0)  # moments from sparse products instead
    sparse = coexpression_prior(sp.csr_matrix(X), [0, 1, 2, 3, 4], 5)
    pd.testing.assert_frame_equal(dense, sparse, atol=1e-4)


def test_top_k_ties_go_to_the_lower_index():
    from grape_core.knowledge.graphs.builtin import _top_k_dense

    block = np.array([[0.5, 0.2, 0.5, 0.5], [0.0, 0.3, 0.0, 0.0]], dtype=np.float32)
    rows, cols, vals = _top_k_dense(block, 2, 0.1, 10)
    assert rows.tolist() == [10, 10, 11] and cols.tolist() == [0, 2, 1]
    assert vals.tolist() == pytest.approx([0.5, 0.5, 0.3])


def test_coexpression_prior_checks():
    with pytest.raises(ValueError, match="measured_index"):
        coexpression_prior(np.ones((5, 3)), [0, 1], 3)
    with pytest.raises(ValueError, match="measured_index"):
        coexpression_prior(np.ones((5, 2)), [0, 5], 3)


# ----------------------------------------------------------------------------------------
# union, types, tensors, statistics
# ----------------------------------------------------------------------------------------
def test_union_prior_weights():
    a = edge_frame([1, 2], [0, 0], [0.3, 0.1], "go")
    b = edge_frame([1, 3], [0, 2], [2.0, 5.0], "coexpression")
    u = union_prior({"go": a, "coexpression": b}).set_index(["src", "dst"])["weight"]
    # dst 0: go gives 0.75 / 0.25, coexpression 1.0 to src 1; mean over the two priors
    assert u[(1, 0)] == pytest.approx((0.75 + 1.0) / 2)
    assert u[(2, 0)] == pytest.approx(0.25 / 2)
    # dst 2 is reached by one prior only: its weights still sum to 1
    assert u[(3, 2)] == pytest.approx(1.0)
    assert union_prior([]).empty


def test_a_signed_prior_keeps_its_signs_and_is_normalised_by_size():
    """A negative weight is a repression: kept through the user prior, the union (each
    destination's sizes sum to 1; two priors whose signs cancel on an edge drop it) and the
    model's graph (the strongest in-edges by size, sizes summing to 1)."""
    import numpy as np

    from grape_core.knowledge.graphs import prior_from_table
    from grape_core.nn.inputs import graph_inputs

    edges, _ = prior_from_table(_table([("ATF4", "DDIT3", -3.0), ("HSPA5", "DDIT3", 1.0),
                                        ("TP53", "ATF4", -0.5)]), GENES)
    assert sorted(edges["weight"]) == pytest.approx([-1.0, -1 / 6, 1 / 3])  # the largest size 1
    a = edge_frame([1, 2], [0, 0], [-0.3, 0.1], "signed")
    b = edge_frame([1, 3], [0, 0], [0.5, 0.5], "other")
    u = union_prior([a, b]).set_index(["src", "dst"])["weight"]
    assert u[(1, 0)] == pytest.approx((-0.75 + 0.5) / 2) and u[(2, 0)] == pytest.approx(0.125)
    cancel = union_prior([edge_frame([1], [0], [-1.0], "a"), edge_frame([1], [0], [1.0], "b")])
    assert cancel.empty

    class Knowledge:  # the few things graph_inputs reads
        genes = GENES
        table = pd.DataFrame({"is_coding": [True] * 4 + [False]})
        text, dna = np.zeros((5, 2)), np.zeros((5, 2))
        dna_missing = np.zeros(5, dtype=bool)

    prior = edge_frame([0, 2, 3], [1, 1, 1], [0.2, -0.6, 0.2], "signed")
    graph, _, kept = graph_inputs(Knowledge(), list(GENES), prior, max_in_degree=2)
    by_source = dict(zip(kept["src"], kept["weight"]))
    assert set(by_source) == {2, 0}  # -0.6 is the strongest; of the tied 0.2s, the first
    assert by_source[2] == pytest.approx(-0.75)
    assert graph.prior_weight.abs().sum().item() == pytest.approx(1.0)


def test_type_edges_and_edge_index_dict():
    is_coding = np.array([True, False, True, False])
    e = edge_frame([0, 1, 2, 3, 1], [1, 0, 0, 1, 3], [0.1, 0.2, 0.3, 0.4, 0.5], "go")
    typed = type_edges(e, is_coding)
    rel = dict(zip(zip(typed["src"], typed["dst"]), typed["relation"]))
    assert rel[(0, 1)] == f"{keys.CODING}->{keys.NONCODING}"
    assert rel[(2, 0)] == "coding->coding" and rel[(3, 1)] == "noncoding->noncoding"
    assert rel[(1, 0)] == "noncoding->coding"
    h = to_edge_index_dict(e, is_coding)
    assert set(h.edge_index_dict) == set(keys.RELATIONS)
    assert h.node_index[keys.CODING].tolist() == [0, 2]
    assert h.node_index[keys.NONCODING].tolist() == [1, 3]
    assert h.local_index.tolist() == [0, 0, 1, 1]
    index, weight = h.edge_index_dict[(keys.CODING, "to", keys.NONCODING)]
    assert index.tolist() == [[0], [0]] and weight.tolist() == pytest.approx([0.1])
    index, weight = h.edge_index_dict[(keys.NONCODING, "to", keys.NONCODING)]
    assert sorted(map(tuple, index.t().tolist())) == [(0, 1), (1, 0)]
    index, _ = h.edge_index_dict[(keys.CODING, "to", keys.CODING)]
    assert index.tolist() == [[1], [0]]  # node 2 -> node 0 are coding locals 1 -> 0


def test_graph_stats_counts(ups_table):
    e = type_edges(edge_frame([0, 9, 1], [9, 0, 0], [1, 1, 1], "go"), ups_table["is_coding"])
    s = graph_stats(e, ups_table)["go"]
    assert s["edges"] == 3
    assert s["relations"]["coding->noncoding"] == 1 and s["relations"]["noncoding->coding"] == 1
    assert s["relations"]["coding->coding"] == 1
    assert s["in_degree"]["max"] == 2
    assert s["isolated"]["total"] == 11 - 3
    assert s["isolated"]["by_biotype"]["unknown"] == 1
    assert s["isolated"]["by_node_type"]["noncoding"] == 1  # NOTAGENE1 (MALAT1 has edges)
    assert s["reciprocal"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------------------
# user priors (train --prior FILE, the API's DataFrame)
# ----------------------------------------------------------------------------------------
GENES = ("HSPA5", "DDIT3", "ATF4", "TP53", "MALAT1")


def _table(rows, columns=("source", "target", "weight")):
    return pd.DataFrame(rows, columns=list(columns))


def test_a_user_prior_maps_symbols_onto_nodes_and_counts_unknown_genes(caplog):
    from grape_core.knowledge.graphs import prior_from_table

    table = _table([("ATF4", "DDIT3", 2.0), ("hspa5", "ATF4", 1.0), ("XBP1", "HSPA5", 1.0),
                    ("TP53", "NOTAGENE", 0.5)])
    edges, report = prior_from_table(table, GENES, name="upr.csv")
    assert set(zip(edges["src"], edges["dst"])) == {(2, 1), (0, 2)}  # case-insensitive match
    assert edges["source"].unique().tolist() == ["upr.csv"]
    assert report["edges"] == 2 and report["dropped_edges"] == 2
    assert report["unknown_genes"] == 2 and report["unknown_examples"] == ["NOTAGENE", "XBP1"]
    assert "2 of 4 edges dropped" in caplog.text and "XBP1" in caplog.text


@pytest.mark.parametrize("table, message", [
    (_table([("ATF4", "DDIT3")], ("from", "to")), "has no column 'source', 'target'"),
    (_table([], ("source", "target")), "has no edges"),
    (_table([("ATF4", "DDIT3", "strong")]), r"1 weight\(s\) are not finite numbers \(row 2: 'strong'\)"),
    (_table([("ATF4", "DDIT3", float("nan"))]), "not finite numbers"),
    (_table([("ATF4", "DDIT3", 0.0)]), r"1 weight\(s\) are 0 \(e.g. row 2\); a weight of 0 is no edge"),
    (_table([("ATF4", "ATF4", 1.0), ("TP53", "TP53", 1.0)]), r"2 self-loop\(s\) \(ATF4->ATF4, TP53->TP53\)"),
    (_table([("ATF4", "DDIT3", 1.0), ("ATF4", "DDIT3", 2.0)]), r"lists 1 edge\(s\) twice \(ATF4->DDIT3\)"),
    (_table([("XBP1", "ERN1", 1.0)]), "none of its 1 edges joins two genes of the model"),
])
def test_a_bad_user_prior_is_one_line_naming_the_prior(table, message):
    from grape_core.errors import GrapeError
    from grape_core.knowledge.graphs import prior_from_table

    with pytest.raises(GrapeError, match=message) as info:
        prior_from_table(table, GENES, name="mine.csv")
    assert "'mine.csv'" in str(info.value) and "\n" not in str(info.value)


def test_prior_files_csv_tsv_parquet_and_bad_files(tmp_path):
    from grape_core.errors import GrapeError
    from grape_core.knowledge.graphs import read_prior_table, resolve_priors

    table = _table([("ATF4", "DDIT3", 1.0), ("HSPA5", "ATF4", 0.5)])
    table.to_csv(tmp_path / "p.csv", index=False)
    table.to_csv(tmp_path / "p.tsv", index=False, sep="\t")
    table.to_parquet(tmp_path / "p.parquet")
    for name in ("p.csv", "p.tsv", "p.parquet"):
        read = read_prior_table(tmp_path / name)
        assert read[["source", "target"]].values.tolist() == table[["source", "target"]].values.tolist()
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "folder.csv").mkdir()
    for bad, message in (("empty.csv", "is empty"), ("folder.csv", "is a folder"),
                         ("missing.csv", "not found")):
        with pytest.raises(GrapeError, match=message):
            read_prior_table(tmp_path / bad)
    builtin = {"go": edge_frame([3], [1], [1.0], "go")}
    merged, sources = resolve_priors(["go", tmp_path / "p.csv", table.assign(weight=2.0)], builtin, GENES)
    assert [s["kind"] for s in sources] == ["builtin", "file", "table"]
    assert len(sources[1]["sha256"]) == 64
    assert set(zip(merged["src"], merged["dst"])) == {(3, 1), (2, 1), (0, 2)}
    assert merged.groupby("dst")["weight"].sum().round(6).eq(1.0).all()  # the union's weights
    with pytest.raises(GrapeError, match="unknown prior 'string'"):
        resolve_priors(["string"], builtin, GENES)


GENES = ("HSPA5", "DDIT3", "ATF4", "TP53", "MALAT1")


def _prior(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def test_weights_are_checked_as_they_are_stored():
    import numpy as np

    from grape_core.knowledge.graphs import prior_from_table

    edges, _ = prior_from_table(_prior([("ATF4", "DDIT3", 1e39), ("HSPA5", "ATF4", 5e38)]), GENES)
    assert np.isfinite(edges["weight"]).all()  # relative confidences: scaled to 1 and 0.5
    assert sorted(edges["weight"].tolist()) == [0.5, 1.0]
    edges, _ = prior_from_table(_prior([("ATF4", "DDIT3", 0.25), ("HSPA5", "ATF4", 1.0)]), GENES)
    assert sorted(edges["weight"].tolist()) == [0.25, 1.0]  # weights up to 1: as given
    for rows, phrase in (([("ATF4", "DDIT3", 1e-50)], "too small to store"),
                         ([("ATF4", "DDIT3", 1e39), ("HSPA5", "ATF4", 1.0)],
                          r"too small to store beside the largest, 1e\+39 \(e.g. row 3: 1;"),
                         ([("ATF4", "DDIT3", float("inf"))], "not finite"),
                         ([("ATF4", "DDIT3", True)], "true/false")):
        with pytest.raises(GrapeError, match=phrase):
            prior_from_table(_prior(rows), GENES, name="mine.csv")


def test_case_only_duplicates_and_self_loops_are_refused():
    from grape_core.knowledge.graphs import prior_from_table

    with pytest.raises(GrapeError, match=r"lists 1 edge\(s\) twice \(ATF4->ddit3\).*row 3, "
                                         r"ATF4->ddit3, repeats row 2"):
        prior_from_table(_prior([("ATF4", "DDIT3", 1.0), ("ATF4", "ddit3", 1.0)]), GENES)
    with pytest.raises(GrapeError, match=r"1 self-loop\(s\) \(ATF4->atf4\)"):
        prior_from_table(_prior([("ATF4", "atf4", 1.0), ("TP53", "ATF4", 1.0)]), GENES)
    with pytest.raises(GrapeError, match="twice"):  # unknown genes fold too
        prior_from_table(_prior([("XBP1", "ERN1", 1.0), ("xbp1", "ern1", 1.0),
                                 ("TP53", "ATF4", 1.0)]), GENES)
    # two genes of the model that differ only in case stay two genes
    edges, report = prior_from_table(_prior([("ATF4", "Ddit3", 1.0), ("ATF4", "DDIT3", 1.0)]),
                                     GENES + ("Ddit3",))
    assert report["edges"] == len(edges) == 2


def test_a_fifo_or_a_device_as_prior_is_refused_at_once(tmp_path):
    from grape_core.knowledge.graphs import read_prior_table

    fifo = tmp_path / "prior.csv"
    os.mkfifo(fifo)
    with pytest.raises(GrapeError, match="is a FIFO"):
        read_prior_table(fifo)  # would block forever
    link = tmp_path / "zero.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(GrapeError, match="is a character device"):
        read_prior_table(link)  # would read forever
    listed = tmp_path / "list.txt"
    os.mkfifo(listed)
    from grape_core.serving.resolve import read_perturbations

    with pytest.raises(GrapeError, match="is a FIFO"):
        read_perturbations(listed)
