"""Contrastive pre-training of the gene encoder (the "training plan" of
:class:`~grape_core.knowledge.encoder.GeneEncoder`).

Loss per mini-batch, with :func:`~grape_core.knowledge.encoder.info_nce`:

.. math::
    \\mathcal{L} = \\mathrm{NCE}(h_t, h_d)_{\\text{seq}} + \\frac{\\alpha}{2}\\big[
    \\mathrm{NCE}(g(z), h_t) + \\mathrm{NCE}(g(z), h_d)_{\\text{seq}}\\big]

The two views of the same gene are positives, other genes of the batch negatives; terms
marked *seq* use only genes with a sequence. The fused terms (weight
``FeatureConfig.fusion_weight`` = :math:`\\alpha`) train the fusion MLP, so the fused
embedding :math:`z` carries what both views agree on. Seeded: the same inputs and config
give the same weights.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..config import FeatureConfig
from .encoder import GeneEncoder, info_nce

log = logging.getLogger(__name__)


def _tensor(x, dtype=torch.float32) -> torch.Tensor:
    return x.to(dtype) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def encoder_for(text_dim: int, dna_dim: int, config: FeatureConfig) -> GeneEncoder:
    """A fresh encoder with the sizes of ``config`` (weights from the current torch seed)."""
    return GeneEncoder(text_dim, dna_dim, out_dim=config.out_dim, hidden=config.hidden,
                       dropout=config.dropout, use_text=config.use_text, use_dna=config.use_dna)


def pretrain_encoder(
    text,
    dna,
    dna_missing,
    *,
    config: FeatureConfig | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[GeneEncoder, list[float]]:
    """Pre-train a :class:`GeneEncoder` with InfoNCE between the views.

    Parameters
    ----------
    text
        Text view ``(n_genes, d_text)`` (numpy or torch).
    dna
        DNA view ``(n_genes, d_dna)``.
    dna_missing
        ``(n_genes,)`` bool: genes without sequence are left out of the DNA terms.
    config
        ``hidden``, ``out_dim``, ``dropout``, ``temperature``, ``pretrain_epochs``,
        ``pretrain_batch_size``, ``pretrain_lr``, ``pretrain_weight_decay``,
        ``fusion_weight``, ``seed``, ``use_text``, ``use_dna``.
    progress
        Show a tqdm bar (stderr) with the running loss.
    device
        Torch device for training; the returned encoder is on the CPU, in eval mode.
        ``config.pretrain_threads`` sets torch's CPU threads for the duration (restored).

    Returns
    -------
    encoder
        The trained :class:`GeneEncoder` (``eval()`` mode, CPU).
    losses
        Mean loss per epoch, ``(pretrain_epochs,)``.
    """
    from .features import check_feature_config

    config = config or FeatureConfig()
    check_feature_config(config)
    x_text, x_dna = _tensor(text), _tensor(dna)
    missing = _tensor(dna_missing, torch.bool)
    n = x_text.size(0)
    if x_dna.size(0) != n or missing.numel() != n:
        raise ValueError(f"text ({n} rows), dna ({x_dna.size(0)}) and dna_missing "
                         f"({missing.numel()}) must have one row per gene")
    previous_threads = torch.get_num_threads()
    if config.pretrain_threads > 0:
        torch.set_num_threads(config.pretrain_threads)
    try:
        return _train(x_text, x_dna, missing, config, progress=progress, device=device)
    finally:
        torch.set_num_threads(previous_threads)


def _train(x_text, x_dna, missing, config: FeatureConfig, *, progress: bool,
           device: str) -> tuple[GeneEncoder, list[float]]:
    from tqdm.auto import tqdm

    n = x_text.size(0)
    torch.manual_seed(config.seed)  # weights and dropout: the same config gives the same encoder
    encoder = encoder_for(x_text.size(1), x_dna.size(1), config).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(encoder.parameters(), lr=config.pretrain_lr,
                                  weight_decay=config.pretrain_weight_decay)
    has_seq = ~missing
    use_dna = config.use_dna and int(has_seq.sum()) >= 2
    if config.use_dna and not use_dna:
        log.warning("fewer than 2 genes have a sequence: pre-training uses the text view only")
    alpha, tau = config.fusion_weight, config.temperature
    losses: list[float] = []
    encoder.train()
    bar = tqdm(range(config.pretrain_epochs), desc="encoder pre-training", unit="epoch",
               disable=not progress)
    for _ in bar:
        order = torch.randperm(n, generator=generator)
        total, batches = 0.0, 0
        for start in range(0, n, config.pretrain_batch_size):
            idx = order[start:start + config.pretrain_batch_size]
            if idx.numel() < 2:
                continue
            t, d, m = x_text[idx].to(device), x_dna[idx].to(device), missing[idx].to(device)
            seq = ~m
            h_t, h_d = encoder.views(t, d)
            fused = encoder.fused_head(encoder(t, d, m, use_dna=use_dna))
            loss = alpha / 2 * info_nce(fused, h_t, temperature=tau) if config.use_text \
                else fused.new_zeros(())
            if use_dna:
                loss = loss + alpha / 2 * info_nce(fused, h_d, temperature=tau, mask=seq)
                if config.use_text:
                    loss = loss + info_nce(h_t, h_d, temperature=tau, mask=seq)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    encoder.eval()
    return encoder.cpu(), losses


@torch.no_grad()
def encode_genes(encoder: GeneEncoder, text, dna, dna_missing, *, batch_size: int = 4096) -> np.ndarray:
    """Fused embeddings ``(n_genes, out_dim)`` float32 from an encoder in eval mode."""
    encoder = encoder.eval()
    x_text, x_dna, m = _tensor(text), _tensor(dna), _tensor(dna_missing, torch.bool)
    parts = [encoder(x_text[i:i + batch_size], x_dna[i:i + batch_size], m[i:i + batch_size])
             for i in range(0, x_text.size(0), batch_size)]
    return torch.cat(parts).numpy().astype(np.float32) if parts else \
        np.zeros((0, encoder.out_dim), dtype=np.float32)
