"""The learned network out of the app (GraphML, CSV, CX2) with member agreement, what
changed against the prior, and "why does X move Y" (the exact path decomposition)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import grape_core as gc
from grape_core.cli import main
from grape_core.serving.network import EDGE_COLUMNS, PriorChange, learned_network

ROOT = Path(__file__).resolve().parents[2]
NORMAN = ROOT / "assets" / "models" / "norman"
ADAMSON = ROOT / "assets" / "models" / "adamson"
NS = "{http://graphml.graphdrawing.org/xmlns}"


@pytest.fixture(scope="module")
def norman():
    return gc.load(NORMAN)


@pytest.fixture(scope="module")
def adamson():
    return gc.load(ADAMSON)


@pytest.fixture(scope="module")
def network(norman):
    return learned_network(norman)


# ----------------------------------------------------------------------------- the table
def test_network_matches_the_members_and_the_model_folder(norman, network):
    e = network.edges
    members = network.member_columns
    assert list(e.columns) == [*EDGE_COLUMNS, *members] and len(members) == len(norman.bundle.members)
    assert not e.isna().any().any()
    # the learned edges are those the model folder stores
    assert int(e["learned"].sum()) == norman.bundle.manifest.graph.learned_edges
    stored = norman.bundle.learned_edges.set_index(["source", "target"])["weight"]
    mine = e[e["learned"]].set_index(["source", "target"])["weight"]
    assert np.allclose(mine.reindex(stored.index), stored, atol=1e-6)
    # every prior edge is there, dropped or kept
    assert int(e["in_prior"].sum()) == len(norman.bundle.prior_edges.drop_duplicates(["source", "target"]))
    assert set(e["status"]) <= {"both", "learned only", "prior only"}
    assert (e.loc[e["status"] == "prior only", "learned"] == False).all()  # noqa: E712
    # the mean, agreement and spread are the members' own, computed here by hand
    w = e[members].to_numpy()
    assert np.allclose(e["weight"], w.mean(1))
    assert np.allclose(e["spread"], w.std(1, ddof=1))
    agree = np.maximum((w > 0).sum(1), (w < 0).sum(1)) / w.shape[1]
    assert np.allclose(e["sign_agreement"], agree)
    same = (np.sign(w) == np.sign(w.mean(1))[:, None]).sum(1)
    assert (e["members_same_sign"] == same).all()
    assert (e["stable"] == ((same == w.shape[1]) & (e["spread"] < e["weight"].abs()))).all()
    assert (e["sign"] == np.where(e["weight"] < 0, "-", "+")).all()
    # the members' own weights, read from the members' graphs
    members_t, graph = norman.members_and_graph()
    with torch.no_grad():
        _, edges = members_t[0].graph(graph)
    genes = np.asarray(norman.bundle.genes, dtype=object)
    first = dict(zip(zip(genes[edges.src.numpy()], genes[edges.dst.numpy()]),
                     edges.weight.numpy().astype(float)))
    row = e.iloc[len(e) // 2]
    assert row["weight_member_1"] == pytest.approx(first[(row["source"], row["target"])], abs=1e-7)


def test_prior_change_is_each_members_fit_of_the_rescaled_prior(network):
    """A member's share is what a least-squares factor per relation explains of its
    learned weights; the rescaled prior of an edge is the members' mean rescaling."""
    e = network.edges
    learned = e["learned"].to_numpy()
    fit = (e["learned"] & e["in_prior"]).to_numpy()
    p = e["prior_weight"].to_numpy()
    rescaled = np.zeros(len(e))
    for i, col in enumerate(network.member_columns):
        w = e[col].to_numpy()
        r = np.zeros(len(e))
        for rel in e["relation"].unique():
            rows = (e["relation"] == rel).to_numpy()
            s = (w[rows & fit] * p[rows & fit]).sum() / (p[rows & fit] ** 2).sum()
            r[rows] = s * p[rows]
        rescaled += r / len(network.member_columns)
        share = 1 - ((w - r)[learned] ** 2).sum() / (w[learned] ** 2).sum()
        assert network.change.member_rescaled_share[i] == pytest.approx(share)
    assert np.allclose(e["rescaled_prior"], rescaled)
    assert np.allclose(e["beyond_prior"], e["weight"] - rescaled)
    top = network.changed_most(5)
    assert (top["learned"]).all()
    assert top["beyond_prior"].abs().is_monotonic_decreasing


def test_prior_change_says_plainly_when_nothing_beyond_the_prior_was_learned():
    common = dict(prior_edges=100, kept=90, dropped=10, negative_share=0.98,
                  scales={"coding → coding": -0.9}, members_disagree=0, n_members=3)
    nothing = PriorChange(added=0, member_rescaled_share=(1.0, 1.0, 0.9995), **common)
    assert nothing.nothing_beyond_prior
    assert nothing.sentences()[0].startswith("Nothing beyond the prior was learned")
    little = PriorChange(added=0, member_rescaled_share=(0.98, 0.96, 0.999), **common)
    assert little.sentences()[0].startswith("Little beyond the prior was learned")
    some = PriorChange(added=4, member_rescaled_share=(1.0, 1.0, 0.6), **common)
    assert not some.nothing_beyond_prior
    text = " ".join(some.sentences())
    assert "added 4 new" in text and "Members 1 and 2 learned nothing beyond the prior" in text
    assert "98 % of the learned edges repress" in text
    assert "every prior edge started positive" in text
    signed = PriorChange(added=0, member_rescaled_share=(0.5, 0.5, 0.5), **common,
                         prior_negative_share=0.3, flipped=12)
    assert ("the prior called 30 % of its edges repressions, and 12 of the kept ones now have "
            "the other sign") in " ".join(signed.sentences())
    split = PriorChange(added=0, member_rescaled_share=(0.5,), **{**common, "n_members": 1,
                                                                   "members_disagree": 0})
    assert "one member" in " ".join(split.sentences())


def test_agreement_of_a_mean_held_by_one_member():
    """The issue's HBZ -> HBG2: -0.0076, -0.0076, +0.253. The majority sign is negative
    (2 of 3), the mean positive and held by one member: the page says 1 of 3."""
    from grape_core.nn.inputs import member_spread, same_sign_as_mean, sign_agreement

    w = np.array([[-0.0076, -0.0076, 0.253], [0.1, 0.2, 0.3], [0.0, 0.0, 0.5]])
    assert np.allclose(sign_agreement(w), [2 / 3, 1.0, 1 / 3])
    assert same_sign_as_mean(w).tolist() == [1, 3, 1]
    assert member_spread(w)[0] == pytest.approx(np.std(w[0], ddof=1))
    assert member_spread(w[:, :1]).tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- files
def test_graphml_loads_in_networkx_with_typed_attributes(network, tmp_path):
    import networkx as nx

    from grape_core.serving.network_export import write_network

    path = write_network(network, tmp_path / "net.graphml")
    root = ET.parse(path).getroot()
    keys = {k.get("id"): (k.get("for"), k.get("attr.name"), k.get("attr.type"))
            for k in root.iter(f"{NS}key")}
    # Cytoscape's reader types its columns from these: every one declared, as one of three
    assert {t for _, _, t in keys.values()} <= {"double", "string", "boolean"}
    edge_keys = {name: t for f, name, t in keys.values() if f == "edge"}
    assert set(edge_keys) == set(network.edges.columns) - {"source", "target"}
    assert edge_keys["in_prior"] == edge_keys["learned"] == edge_keys["stable"] == "boolean"
    assert edge_keys["weight"] == edge_keys["sign_agreement"] == edge_keys["spread"] == "double"
    assert edge_keys["status"] == edge_keys["relation"] == "string"
    edge_key_ids = {i for i, (f, _, _) in keys.items() if f == "edge"}
    bool_ids = {i for i, (_, _, t) in keys.items() if t == "boolean"}
    for element in list(root.iter(f"{NS}edge"))[:200]:  # no value left out, booleans per schema
        data = {d.get("key"): d.text for d in element.iter(f"{NS}data")}
        assert set(data) == edge_key_ids
        assert all(data[i] in ("true", "false") for i in bool_ids & set(data))
    graph = nx.read_graphml(path)
    assert graph.is_directed() and graph.number_of_edges() == len(network.edges)
    row = network.edges.iloc[7]
    attrs = graph.edges[row["source"], row["target"]]
    assert attrs["weight"] == pytest.approx(row["weight"]) and attrs["status"] == row["status"]
    assert isinstance(attrs["in_prior"], bool) and attrs["in_prior"] == bool(row["in_prior"])
    assert attrs["sign_agreement"] == pytest.approx(row["sign_agreement"])
    assert attrs["source_biotype"] == row["source_biotype"]
    node = graph.nodes[row["source"]]
    assert node["biotype"] == row["source_biotype"] and isinstance(node["coding"], bool)
    assert graph.graph["n_members"] == network.n_members


def test_csv_and_cx2_hold_the_same_edges(network, tmp_path):
    from ndex2.cx2 import RawCX2NetworkFactory

    from grape_core.serving.network_export import write_network

    table = pd.read_csv(write_network(network, tmp_path / "net.csv"), keep_default_na=False)
    assert list(table.columns) == list(network.edges.columns) and len(table) == len(network.edges)
    assert np.allclose(table["weight"], network.edges["weight"])
    cx = RawCX2NetworkFactory().get_cx2network(str(write_network(network, tmp_path / "net.cx2")))
    assert len(cx.get_edges()) == len(network.edges)
    declared = cx.get_attribute_declarations()["edges"]
    assert declared["in_prior"]["d"] == "boolean" and declared["weight"]["d"] == "double"
    names = {n["v"]["name"] for n in cx.get_nodes().values()}
    assert set(network.edges["source"]) <= names


def test_network_command(tmp_path, capsys):
    out = tmp_path / "adamson.graphml"
    assert main(["network", "--model", str(ADAMSON), "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "prior" in printed and "member" in printed and out.is_file()
    assert main(["network", "--model", str(ADAMSON), "--out", str(tmp_path / "net.txt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot tell the network format")
    assert main(["network", "--model", str(ADAMSON), "--out", str(tmp_path / "n.dat"),
                 "--format", "csv"]) == 0


# ----------------------------------------------------------------------------- why
def _held_out(model) -> list[str]:
    from grape_core.serving.predict import example_condition

    return [example_condition(model)]


@pytest.mark.parametrize("which", ["norman", "adamson"])
def test_why_parts_add_up_to_the_models_own_prediction(which, request):
    """For a held-out perturbation: the parts add up to the ensemble's prediction (and per
    member to each member's), which is the prediction the app shows, and with every path
    listed the paths alone add up to the propagated part (nothing left over)."""
    from grape_core.nn.inputs import perturbation_tensor, predict_shifts
    from grape_core.serving.explain import explain

    model = request.getfixturevalue(which)
    condition = _held_out(model)[0]
    pred = gc.predict(model, condition, baselines=False)
    genes = list(pred.genes)
    chosen = [genes[i] for i in np.argsort(-np.abs(pred.shift))[:2]]
    chosen += [g for g in pred.perturbed if g in genes]
    perts = perturbation_tensor([condition], model.bundle.node_index)
    member_pred = [predict_shifts(m, model.bundle.graph, perts)[0].numpy() for m in model.bundle.members]
    for gene in chosen:
        y = genes.index(gene)
        why = explain(model, condition, gene, top=5)
        assert why.parts["value"].sum() == pytest.approx(why.shift, abs=1e-10)
        assert why.shift == pytest.approx(float(pred.shift[y]), abs=2e-5)
        for i, m in enumerate(member_pred):
            col = f"value_member_{i + 1}"
            assert why.parts[col].sum() == pytest.approx(why.member_shift[i], abs=1e-10)
            assert why.member_shift[i] == pytest.approx(float(m[y]), abs=2e-5)
        listed = why.paths[why.member_columns].to_numpy().sum(0)
        assert np.allclose(why.parts.set_index("part").loc["listed", [f"value_member_{i + 1}" for i in
                                                                      range(why.n_members)]], listed)
        assert ("own" in set(why.parts["part"])) == (gene in pred.perturbed)
        if len(pred.perturbed) == 1:  # a single composes nothing: a floor is called a floor
            assert "composition" not in set(why.parts["part"])
        assert len(why.paths) == min(5, why.n_walks)
        assert why.paths["contribution"].abs().is_monotonic_decreasing
        assert all(p[0] in pred.perturbed and p[-1] == gene for p in why.paths["genes"])
        assert (why.paths["length"] <= why.steps).all()
        # every path listed: the paths alone carry the propagated part, nothing left over
        every = explain(model, condition, gene, top=10 ** 6)
        assert len(every.paths) == every.n_walks
        other = every.parts.set_index("part")["value"]
        assert abs(other.get("other", 0.0)) < 1e-10
        assert every.paths["contribution"].sum() == pytest.approx(other["listed"], abs=1e-12)
        # every edge of a listed path is an edge of the learned network, with its agreement
        pairs = {(a, b) for g in why.paths["genes"] for a, b in zip(g[:-1], g[1:])}
        assert pairs == set(zip(why.edges["source"], why.edges["target"]))
        assert {"weight", "status", "sign_agreement", "spread"} <= set(why.edges.columns)
        assert why.sentences()[0].startswith(f"Perturbing {pred.label}")


def test_walks_are_the_step_by_step_propagation():
    """The walk sum with step-dependent gains equals the propagation it unrolls, on a small
    random graph (a loop, two destination types, two perturbed genes)."""
    from grape_core.nn.gsl import Edges
    from grape_core.serving.explain import _walks

    rng = np.random.default_rng(0)
    n, steps, types = 7, 4, 2
    src, dst = np.nonzero(rng.random((n, n)) < 0.45)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    node_type = rng.integers(0, types, n)
    weight = rng.normal(0, 0.6, len(src))
    edges = Edges(torch.as_tensor(src), torch.as_tensor(dst),
                  torch.as_tensor(node_type[src] * types + node_type[dst]),
                  torch.as_tensor(weight), len(src), torch.as_tensor(node_type), types,
                  torch.zeros(()))
    gains = [rng.uniform(0.5, 1.5, (n, types)) for _ in range(steps)]
    x0 = np.zeros(n)
    x0[[1, 4]] = [-1.0, 0.7]
    state = x0.copy()
    for step in range(steps):
        nxt = x0.copy()
        for a, b, w in zip(src, dst, weight):
            nxt[b] += w * gains[step][a, node_type[b]] * state[a]
        state = nxt
    for target in range(n):
        walks, total, truncated = _walks(edges, gains, x0, target, steps)
        assert not truncated
        assert total == pytest.approx(state[target] - x0[target], abs=1e-12)
        assert sum(walks.values()) == pytest.approx(total, abs=1e-12)
        assert all(w[0] in (1, 4) and w[-1] == target and len(w) - 1 <= steps for w in walks)


def test_why_calls_a_floor_a_floor(adamson):
    """IER3IP1's knock-down, held out in Adamson, takes away all the gene has (its own change
    and the shared response together would go below zero): the floor at zero expression is
    its own part, never called a pair's composition, and the parts still add up."""
    from grape_core.serving.explain import explain

    why = explain(adamson, "IER3IP1", "IER3IP1")
    parts = why.parts.set_index("part")["value"]
    control = float(adamson.bundle.pseudobulk.control_mean[
        list(adamson.bundle.pseudobulk.genes).index("IER3IP1")])
    assert why.shift == pytest.approx(-control, abs=1e-6)
    assert parts["floor"] > 0.01 and "composition" not in parts
    assert parts.sum() == pytest.approx(why.shift, abs=1e-10)


def test_why_command_and_errors(tmp_path, capsys):
    out = tmp_path / "why.json"
    assert main(["why", "--model", str(ADAMSON), "--perturbation", "IER3IP1", "--gene", "IER3IP1",
                 "--top", "3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["paths"]) == 3 and data["paths"][0]["genes"][0] == "IER3IP1"
    assert sum(p["value"] for p in data["parts"]) == pytest.approx(data["shift"], abs=1e-10)
    capsys.readouterr()
    assert main(["why", "--model", str(ADAMSON), "--perturbation", "IER3IP1", "--gene", "HSPA5"]) == 0
    assert "Perturbing IER3IP1 is predicted to shift HSPA5" in capsys.readouterr().out
    assert main(["why", "--model", str(ADAMSON), "--perturbation", "IER3IP1", "--gene", "NOTAGENE"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown gene")


def test_a_cut_enumeration_reports_what_it_left_out(adamson, monkeypatch):
    """With too many walks to enumerate, the paths not reached are a part of their own:
    the parts still add up to the prediction, nothing is hidden."""
    import grape_core.serving.explain as ex

    full = ex.explain(adamson, "IER3IP1", "HSPA5")
    monkeypatch.setattr(ex, "MAX_WALKS", 10)
    cut = ex.explain(adamson, "IER3IP1", "HSPA5")
    parts = cut.parts.set_index("part")["value"]
    assert "unenumerated" in parts.index and cut.n_walks < full.n_walks
    assert parts.sum() == pytest.approx(full.shift, abs=1e-10)
    network = full.part("listed") + full.part("other")
    assert parts["listed"] + parts.get("other", 0.0) + parts["unenumerated"] == pytest.approx(network, abs=1e-10)
