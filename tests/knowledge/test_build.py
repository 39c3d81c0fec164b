"""Gene encoder, InfoNCE, pre-training, the knowledge builder with its cache, save/load
and the ``genes`` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ADAMSON

from grape_core.config import FeatureConfig, GraphConfig, Paths
from grape_core.knowledge.encoder import GeneEncoder, info_nce

FAST = FeatureConfig(pretrain_epochs=3, n_go_terms=2)


# ----------------------------------------------------------------------------------------
# encoder and loss
# ----------------------------------------------------------------------------------------
def test_encoder_shapes_and_dropped_views():
    torch.manual_seed(0)
    enc = GeneEncoder(12, 7, out_dim=5, hidden=8).eval()
    text, dna = torch.randn(4, 12), torch.randn(4, 7)
    missing = torch.tensor([False, True, False, True])
    out = enc(text, dna, missing)
    assert out.shape == (4, 5)
    zt, zd = enc.views(text, dna)
    assert zt.shape == zd.shape == (4, 8)
    # a gene without sequence ignores its DNA row
    dna2 = dna.clone()
    dna2[1] += 10
    torch.testing.assert_close(enc(text, dna2, missing)[1], out[1])
    assert not torch.allclose(enc(text, torch.randn(4, 7), missing)[0], out[0])  # one with DNA
    # a dropped view contributes nothing
    no_text = enc(text, dna, missing, use_text=False)
    torch.testing.assert_close(no_text, enc(torch.randn(4, 12), dna, missing, use_text=False))
    no_dna = GeneEncoder(12, 7, out_dim=5, hidden=8, use_dna=False).eval()
    no_dna.load_state_dict(enc.state_dict())
    torch.testing.assert_close(no_dna(text, dna, missing), no_dna(text, torch.randn(4, 7), ~missing))
    rebuilt = GeneEncoder(**enc.init_args())
    rebuilt.load_state_dict(enc.state_dict(), strict=True)


def test_info_nce_values():
    z = torch.eye(4)
    low = info_nce(z, z, temperature=0.05)
    assert float(low) < 1e-6  # perfect, well separated pairs
    uniform = info_nce(torch.ones(4, 3), torch.ones(4, 3), temperature=0.1)
    assert float(uniform) == pytest.approx(np.log(4), rel=1e-5)  # no information: log n
    shuffled = info_nce(z, z[[1, 0, 3, 2]], temperature=0.05)
    assert float(shuffled) > 10
    mask = torch.tensor([True, True, False, False])
    assert float(info_nce(z, z[[0, 1, 3, 2]], temperature=0.05, mask=mask)) < 1e-6
    assert float(info_nce(z, z, temperature=0.1, mask=torch.tensor([True, False, False, False]))) == 0.0


def test_pretrain_is_seeded_and_learns():
    from grape_core.knowledge.pretrain import encode_genes, pretrain_encoder

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(300, 6))
    text = (latent @ rng.normal(size=(6, 20)) + 0.1 * rng.normal(size=(300, 20))).astype(np.float32)
    dna = (latent @ rng.normal(size=(6, 10)) + 0.1 * rng.normal(size=(300, 10))).astype(np.float32)
    missing = rng.random(300) < 0.2
    cfg = FeatureConfig(pretrain_epochs=15, hidden=32, out_dim=16, pretrain_batch_size=128)
    enc1, losses1 = pretrain_encoder(text, dna, missing, config=cfg, progress=False)
    enc2, losses2 = pretrain_encoder(text, dna, missing, config=cfg, progress=False)
    assert losses1 == losses2
    for (k, a), (_, b) in zip(enc1.state_dict().items(), enc2.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert len(losses1) == 15 and losses1[-1] < 0.5 * losses1[0]
    fused = encode_genes(enc1, text, dna, missing)
    assert fused.shape == (300, 16) and fused.dtype == np.float32
    # the views of one gene now find each other
    zt, zd = enc1.views(torch.as_tensor(text), torch.as_tensor(dna))
    sim = torch.nn.functional.normalize(zt, dim=1) @ torch.nn.functional.normalize(zd, dim=1).T
    keep = torch.as_tensor(~missing)
    top1 = (sim[keep][:, keep].argmax(1) == torch.arange(int(keep.sum()))).float().mean()
    assert float(top1) > 0.5


# ----------------------------------------------------------------------------------------
# builder, cache, save / load
# ----------------------------------------------------------------------------------------
GENES = ["TP53", "MDM2", "CDKN1A", "HSPA5", "HSP90B1", "DDIT3", "ATF4", "MALAT1", "NEAT1",
         "HIST1H1C", "GAPDH", "CEDORA"]


@pytest.fixture(scope="module")
def small_knowledge(tmp_path_factory):
    from grape_core.knowledge.build import build_gene_knowledge

    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    measured = GENES[:6]
    X = np.stack([a + 0.2 * rng.normal(size=200), a + 0.2 * rng.normal(size=200),
                  -a + 0.2 * rng.normal(size=200)] + [rng.normal(size=200) for _ in range(3)], 1)
    X = np.clip(X + 3, 0, None).astype(np.float32)
    paths = Paths.from_env().replace(cache_dir=str(tmp_path_factory.mktemp("kcache")))
    know = build_gene_knowledge(GENES, control_X=X, measured=measured, feature_config=FAST,
                                paths=paths, progress=False)
    return know, X, measured, paths


def test_build_small_knowledge(small_knowledge):
    from grape_core.knowledge.folder import GeneKnowledge

    know, X, measured, _ = small_knowledge
    assert isinstance(know, GeneKnowledge)
    assert know.genes == tuple(GENES) and list(know.table.index) == GENES
    assert know.text.shape == (12, 384) and know.fused.shape == (12, 256)
    assert know.dna.shape[0] == 12 and know.dna_missing.dtype == bool
    assert know.table.loc["MALAT1", "node_type"] == "noncoding"
    assert know.table.loc["TP53", "node_type"] == "coding"
    assert know.table.loc["HIST1H1C", "resolved_symbol"] == "H1-2"
    assert set(know.priors) == {"similarity", "go", "coexpression", "union"}
    for name, e in know.priors.items():
        assert list(e.columns) == ["src", "dst", "weight", "source", "relation"]
        assert not (e["src"] == e["dst"]).any(), name
        assert e["relation"].isin(["coding->coding", "coding->noncoding", "noncoding->coding",
                                   "noncoding->noncoding"]).all()
    co = know.priors["coexpression"]
    assert set(zip(co["src"], co["dst"])) >= {(0, 1), (1, 0), (0, 2), (2, 0)}
    assert co["src"].max() < 6  # only measured genes
    cov = know.stats["coverage"]
    assert cov["unresolved"] == ["CEDORA"] and cov["biotypes"]["lncRNA"]["genes"] == 2
    assert know.stats["graphs"]["union"]["edges"] == len(know.priors["union"])
    assert know.measured == tuple(measured)
    enc = know.encoder()
    with torch.no_grad():
        again = enc(torch.as_tensor(know.text), torch.as_tensor(know.dna),
                    torch.as_tensor(know.dna_missing))
    np.testing.assert_allclose(again.numpy(), know.fused, atol=1e-5)
    h = know.edge_index_dict("union")
    n_edges = sum(v[0].shape[1] for v in h.edge_index_dict.values())
    assert n_edges == len(know.priors["union"])


def test_second_build_uses_the_cache(small_knowledge, monkeypatch):
    import grape_core.knowledge.features as F
    from grape_core.knowledge.build import build_gene_knowledge

    know, X, measured, paths = small_knowledge

    def boom(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(F, "text_features", boom)
    again = build_gene_knowledge(GENES, control_X=X, measured=measured, feature_config=FAST,
                                 paths=paths, progress=False)
    np.testing.assert_array_equal(again.fused, know.fused)
    pd.testing.assert_frame_equal(again.priors["union"], know.priors["union"])
    with pytest.raises(AssertionError, match="rebuilt"):  # other settings: another key
        build_gene_knowledge(GENES, control_X=X, measured=measured,
                             feature_config=FAST.replace(seed=1), paths=paths, progress=False)


def test_build_is_deterministic(small_knowledge):
    from grape_core.knowledge.build import build_gene_knowledge

    know, X, measured, paths = small_knowledge
    fresh = build_gene_knowledge(GENES, control_X=X, measured=measured, feature_config=FAST,
                                 paths=paths, progress=False, cache=False)
    np.testing.assert_allclose(fresh.fused, know.fused, atol=1e-6)
    for name in know.priors:
        pd.testing.assert_frame_equal(fresh.priors[name], know.priors[name], atol=1e-6)


def test_save_load_round_trip(small_knowledge, tmp_path):
    from grape_core.errors import BundleError, GrapeError
    from grape_core.knowledge.folder import GeneKnowledge

    know = small_knowledge[0]
    folder = know.save(tmp_path / "k")
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == ["encoder.safetensors", "features.safetensors", "genes.csv", "knowledge.json",
                     "priors/coexpression.parquet", "priors/go.parquet",
                     "priors/similarity.parquet", "priors/union.parquet", "sequences.fa.gz"]
    loaded = GeneKnowledge.load(folder)
    assert loaded.genes == know.genes and loaded.feature_config == know.feature_config
    np.testing.assert_array_equal(loaded.text, know.text)
    np.testing.assert_array_equal(loaded.dna_missing, know.dna_missing)
    assert loaded.table.loc["TP53", "sequence"] == know.table.loc["TP53", "sequence"] != ""
    assert loaded.table["is_coding"].tolist() == know.table["is_coding"].tolist()
    for k, v in know.encoder_state.items():
        torch.testing.assert_close(loaded.encoder_state[k], v)
    pd.testing.assert_frame_equal(loaded.priors["go"], know.priors["go"])
    with pytest.raises(GrapeError, match="overwrite"):
        know.save(folder)
    (folder / "genes.csv").write_text("damaged\n")
    with pytest.raises(BundleError, match="checksum"):
        GeneKnowledge.load(folder)
    with pytest.raises(BundleError, match="knowledge.json"):
        GeneKnowledge.load(tmp_path / "nothing")


def test_bad_inputs():
    from grape_core.knowledge.build import build_gene_knowledge

    with pytest.raises(ValueError, match="duplicated"):
        build_gene_knowledge(["TP53", "TP53"], feature_config=FAST)
    with pytest.raises(ValueError, match="columns"):
        build_gene_knowledge(["TP53", "MDM2"], control_X=np.ones((5, 3)),
                             measured=["TP53", "MDM2"], feature_config=FAST)
    with pytest.raises(ValueError, match="priors"):
        build_gene_knowledge(["TP53"], graph_config=GraphConfig(priors=("string_db",)))


# ----------------------------------------------------------------------------------------
# a real screen through the command line
# ----------------------------------------------------------------------------------------
def test_genes_command_on_adamson(tmp_path, capsys):
    from grape_core.cli import main

    out = tmp_path / "adamson_genes"
    code = main(["--quiet", "genes", "--data", str(ADAMSON), "--out", str(out), "--epochs", "3",
                 "--go-terms", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    table = pd.read_csv(out / "genes.csv", keep_default_na=False)
    for column in ("symbol", "ensembl_id", "biotype", "is_coding", "full_name", "has_sequence"):
        assert column in table.columns
    assert len(table) == 160 and table["symbol"].is_unique
    row = table.set_index("symbol").loc["TARS"]
    assert row["resolved_symbol"] == "TARS1" and row["full_name"] == "threonyl-tRNA synthetase 1"
    assert row["ensembl_id"] == "ENSG00000113407"
    assert "match unresolved" in printed.out and "coexpression" in printed.out
    assert (out / "priors" / "union.parquet").is_file()
    assert main(["--quiet", "genes", "--data", str(ADAMSON), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--quiet", "genes", "--data", str(ADAMSON), "--out", str(out),
                 "--kmer-max", "9"]) == 1


def test_knowledge_for_adamson_node_order(adamson):
    from grape_core.knowledge.build import knowledge_for_adata

    know = knowledge_for_adata(adamson, feature_config=FeatureConfig(pretrain_epochs=3, n_go_terms=2),
                               progress=False)  # read from the cache the CLI test filled
    assert know.genes == tuple(adamson.var_names) == know.measured
    assert know.stats["control_cells"] == int((adamson.obs["condition"] == "ctrl").sum())
    assert len(know.priors["coexpression"]) > 0
