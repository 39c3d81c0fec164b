"""Text and DNA views: descriptions, MiniLM embeddings and their cache, k-mers, and a DNA
language model pooled over all tokens (built tiny and random inside the test)."""

from __future__ import annotations

import numpy as np
import pytest

from grape_core.config import FeatureConfig, Paths

NUC = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "A": 5, "C": 6, "G": 7,
       "T": 8, "N": 9}


def _char_tokenizer(folder, *, bert: bool):
    """A character-level DNA tokenizer built with `tokenizers`, saved with transformers."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(NUC, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    _char_tokenizer(folder, bert=True)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(NUC), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=128)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2Model

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    _char_tokenizer(folder, bert=False)
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(NUC), n_embd=16, n_layer=2, n_head=2, n_positions=128,
                         bos_token_id=2, eos_token_id=3)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def table():
    from grape_core.knowledge.genes import gene_table

    return gene_table(["HSPA5", "TP53", "MALAT1", "NOTAGENE1"])


# ----------------------------------------------------------------------------------------
# descriptions
# ----------------------------------------------------------------------------------------
def test_description_styles(table):
    from grape_core.knowledge.features import describe_genes

    name = describe_genes(table, FeatureConfig(description="name"))
    assert name[1] == "tumor protein p53"  # the paper's text: the HGNC full name
    full = describe_genes(table, FeatureConfig(description="name_biotype_go", n_go_terms=3))
    assert full[0].startswith("HSPA5: heat shock protein family A (Hsp70) member 5. "
                              "Biotype: protein coding. GO: ")
    assert full[0].count(";") == 2  # three GO terms
    assert full[2].startswith("MALAT1: metastasis associated lung adenocarcinoma transcript 1")
    assert "Biotype: lncRNA" in full[2]
    assert full[3] == "NOTAGENE1: uncharacterised gene. Biotype: unknown."
    short = describe_genes(table, FeatureConfig(description="name_biotype"))
    assert short[1] == "TP53: tumor protein p53. Biotype: protein coding."


def test_most_specific_go_terms_are_the_rarest(table):
    from grape_core.knowledge.features import most_specific_go
    from grape_core.knowledge.genes import load_annotation

    terms = load_annotation().terms
    hspa5 = [t for c in ("go_bp", "go_mf", "go_cc") for t in table.loc["HSPA5", c].split(";") if t]
    chosen = most_specific_go(hspa5, 4)
    counts = terms.loc[chosen, "n_genes"].tolist()
    assert counts == sorted(counts)
    assert counts[-1] <= terms.loc[[t for t in hspa5 if t not in chosen], "n_genes"].min()
    # the ER chaperone complex is annotated to few genes, the nucleus to thousands
    assert terms.loc["GO:0034663", "n_genes"] < 50 < terms.loc["GO:0005634", "n_genes"]
    assert most_specific_go(["GO:0005634", "GO:0034663", "GO:0008150"], 5) == ["GO:0034663", "GO:0005634"]


# ----------------------------------------------------------------------------------------
# text view
# ----------------------------------------------------------------------------------------
def test_text_features_minilm_and_cache(tmp_path, monkeypatch):
    import grape_core.knowledge.features as F

    paths = Paths(cache_dir=str(tmp_path))
    texts = ["heat shock protein family A (Hsp70) member 5",
             "heat shock protein family A (Hsp70) member 8",
             "long intergenic non-protein coding RNA 1705"]
    emb = F.text_features(texts, config=FeatureConfig(), paths=paths, progress=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.2  # meaning, not noise
    assert len(list((tmp_path / "text").glob("*.safetensors"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(F, "embed_texts", boom)
    again = F.text_features(texts, config=FeatureConfig(), paths=paths, progress=False)
    np.testing.assert_array_equal(emb, again)
    with pytest.raises(AssertionError, match="cache"):  # other pooling: another cache entry
        F.text_features(texts, config=FeatureConfig(text_pooling="cls"), paths=paths)


def test_text_pooling_cls_differs_from_mean(tmp_path):
    from grape_core.knowledge.features import text_features

    paths = Paths(cache_dir="")
    mean = text_features(["tumor protein p53"], config=FeatureConfig(), paths=paths, progress=False)
    cls = text_features(["tumor protein p53"], config=FeatureConfig(text_pooling="cls"),
                        paths=paths, progress=False)
    assert mean.shape == cls.shape == (1, 384)
    assert not np.allclose(mean, cls)


def test_missing_text_model_folder(tmp_path):
    from grape_core.errors import GrapeError
    from grape_core.knowledge.features import text_features

    with pytest.raises(GrapeError, match="config.json"):
        text_features(["x"], paths=Paths(text_model=str(tmp_path), cache_dir=""))


# ----------------------------------------------------------------------------------------
# k-mers
# ----------------------------------------------------------------------------------------
def test_kmer_features_hand_computed():
    from grape_core.knowledge.features import kmer_dim, kmer_features

    x = kmer_features(["ACGT", "AAAA", "", "ACNGT", "acgt"], k=(1, 2))
    assert x.shape == (5, kmer_dim((1, 2))) == (5, 4 + 16 + 2)
    np.testing.assert_allclose(x[0, :4], [1, 1, 1, 1])  # each base 1/4, times 4
    two = x[0, 4:20].reshape(4, 4)  # AC, CG, GT: 1/3 each, times 16
    assert two[0, 1] == two[1, 2] == two[2, 3] == pytest.approx(16 / 3)
    assert two.sum() == pytest.approx(16)
    assert x[0, 20] == pytest.approx(0.5)  # GC
    assert x[0, 21] == pytest.approx(np.log10(5) / 4)  # length
    assert x[1, 0] == pytest.approx(4) and x[1, 4] == pytest.approx(16) and x[1, 20] == 0
    assert not x[2].any()  # no sequence: zeros
    # N breaks k-mers: ACNGT has the 2-mers AC and GT only
    assert x[3, 4 + 1] == pytest.approx(8) and x[3, 4 + 11] == pytest.approx(8)
    np.testing.assert_array_equal(x[0], x[4])  # case ignored
    with pytest.raises(ValueError, match="1..6"):
        kmer_features(["ACGT"], k=7)


def test_dna_features_kmer_view(table):
    from grape_core.knowledge.features import dna_features, kmer_dim

    x, missing = dna_features(table, config=FeatureConfig(kmer_sizes=(1, 2, 3)),
                              paths=Paths(cache_dir=""))
    assert x.shape == (4, kmer_dim((1, 2, 3)))
    assert missing.tolist() == (~table["has_sequence"]).tolist() == [False, False, True, True]
    assert not x[2].any() and x[0].any()
    assert x[0, -1] == pytest.approx(np.log10(61) / 4)  # 60 bp EPD promoter


# ----------------------------------------------------------------------------------------
# DNA language model: pooling over all tokens
# ----------------------------------------------------------------------------------------
def _gene_frame(seqs):
    import pandas as pd

    return pd.DataFrame({"sequence": seqs, "has_sequence": [bool(s) for s in seqs]})


def test_mean_pooling_sees_the_last_nucleotide(tiny_bert, tmp_path):
    from grape_core.knowledge.features import dna_features

    seq = "ACGTTGCAACGTAGCTAGCTAGGATCCA"
    changed = seq[:-1] + "G"
    paths = Paths(dna_model=str(tiny_bert), cache_dir=str(tmp_path))
    x, missing = dna_features(_gene_frame([seq, changed, ""]),
                              config=FeatureConfig(dna_view="lm"), paths=paths, progress=False)
    assert x.shape == (3, 16) and missing.tolist() == [False, False, True]
    assert not np.allclose(x[0], x[1], atol=1e-6)
    assert not x[2].any()
    # cached: the same call gives the same numbers
    again, _ = dna_features(_gene_frame([seq, changed, ""]),
                            config=FeatureConfig(dna_view="lm"), paths=paths, progress=False)
    np.testing.assert_array_equal(x, again)


def test_mean_pooling_equals_manual_average(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from grape_core.knowledge.features import embed_dna

    seqs = ["ACGTAC", "GGGTTTAACC"]
    ours = embed_dna(seqs, tiny_bert, pooling="mean", progress=False)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    for i, s in enumerate(seqs):
        with torch.no_grad():
            h = model(**tok([s], return_tensors="pt")).last_hidden_state[0]
        assert h.shape[0] == len(s) + 2  # [CLS] + one token per base + [SEP]
        np.testing.assert_allclose(ours[i], h.mean(0).numpy(), atol=1e-5)


def test_windows_are_pooled_over_all_tokens(tiny_bert):
    from grape_core.knowledge.features import embed_dna

    seq = "ACGTTGCAACGTAGCTAGCTAGGATCCAAC"
    changed = seq[:-1] + "T"
    x = embed_dna([seq, changed], tiny_bert, pooling="mean", window=8, max_windows=16,
                  progress=False)
    assert not np.allclose(x[0], x[1], atol=1e-6)  # the last window counts


def test_first_token_pooling_of_a_causal_model_is_blind(tiny_gpt2):
    """The published GRAPE code's pooling: a causal model's first token sees only the first
    nucleotide, so two genes that differ anywhere else get the same DNA vector."""
    from grape_core.knowledge.features import embed_dna

    seq = "ACGTTGCAACGTAGCTAGCTAGGATCCA"
    other = "A" + "T" * (len(seq) - 1)
    first = embed_dna([seq, seq[:-1] + "G", other], tiny_gpt2, pooling="first", progress=False)
    np.testing.assert_allclose(first[0], first[1], atol=1e-6)
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)
    mean = embed_dna([seq, seq[:-1] + "G"], tiny_gpt2, pooling="mean", progress=False)
    assert not np.allclose(mean[0], mean[1], atol=1e-6)


def test_lm_view_without_a_model_is_an_error(table):
    from grape_core.errors import GrapeError
    from grape_core.knowledge.features import dna_features

    with pytest.raises(GrapeError, match="GRAPE_DNA_MODEL"):
        dna_features(table, config=FeatureConfig(dna_view="lm"), paths=Paths(dna_model=""))


def test_feature_config_checks():
    from grape_core.knowledge.features import check_feature_config

    with pytest.raises(ValueError, match="kmer_sizes"):
        check_feature_config(FeatureConfig(kmer_sizes=(2, 8)))
    with pytest.raises(ValueError, match="temperature"):
        check_feature_config(FeatureConfig(temperature=0))
    FeatureConfig.from_dict(FeatureConfig(kmer_sizes=(1, 2, 3, 4, 5, 6)).to_dict())
