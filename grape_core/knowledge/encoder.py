r"""Gene encoder: per-view projection heads, fusion MLP and the InfoNCE loss.

.. math::
    h_t = \mathrm{MLP}_t(\mathrm{LN}(x_t)), \qquad
    h_d = (1 - m)\,\mathrm{MLP}_d(\mathrm{LN}(x_d)) + m\,e_\varnothing, \qquad
    z = \mathrm{MLP}_f\big([\,h_t \,\|\, h_d \,\|\, m\,]\big)

with :math:`x_t` the text view, :math:`x_d` the DNA view, :math:`m \in \{0, 1\}` the
missing-sequence indicator and :math:`e_\varnothing` a learned "no sequence" vector.
Tensors in, tensors out: no files, no optimiser, no device choice.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def info_nce(z1: Tensor, z2: Tensor, *, temperature: float = 0.1,
             mask: Tensor | None = None) -> Tensor:
    r"""Symmetric InfoNCE between two views; row :math:`i` of both is the positive pair.

    .. math::
        \mathcal{L} = -\frac{1}{2n}\sum_i \Big[\log
        \frac{e^{s_{ii}/\tau}}{\sum_j e^{s_{ij}/\tau}} + \log
        \frac{e^{s_{ii}/\tau}}{\sum_j e^{s_{ji}/\tau}}\Big], \qquad
        s_{ij} = \frac{z_{1,i}^\top z_{2,j}}{\lVert z_{1,i}\rVert\,\lVert z_{2,j}\rVert}

    Shapes:
        - **z1, z2**: :math:`(n, d)`
        - **mask**: :math:`(n,)` bool, rows kept (as anchors and as negatives)
        - **output**: scalar; ``0`` (with a gradient path) when fewer than 2 rows remain
    """
    if z1.shape != z2.shape:
        raise ValueError(f"z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must have one shape")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0")
    if mask is not None:
        mask = mask.to(torch.bool)
        z1, z2 = z1[mask], z2[mask]
    if z1.size(0) < 2:
        return (z1.sum() + z2.sum()) * 0.0
    a = F.normalize(z1, dim=-1)
    b = F.normalize(z2, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.size(0), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_out))


class GeneEncoder(nn.Module):
    r"""Fuses a gene's text and DNA views into one embedding (GRAPE's gene encoder).

    .. math::
        z = \mathrm{MLP}_f\big([\,h_t \,\|\, h_d \,\|\, m\,]\big), \quad
        h_t = \mathrm{MLP}_t(\mathrm{LN}(x_t)), \quad
        h_d = (1 - m)\,\mathrm{MLP}_d(\mathrm{LN}(x_d)) + m\,e_\varnothing

    A dropped view (``use_text=False`` / ``use_dna=False``, in the constructor or per call)
    contributes zeros (for DNA also the missing indicator and :math:`e_\varnothing`), so one
    set of weights serves every ablation. ``fused_head`` maps :math:`z` to the view space
    for the fused-vs-view contrastive terms of pre-training.

    Args:
        text_dim (int): width of the text view (384 for MiniLM, 768 for BERT-base).
        dna_dim (int): width of the DNA view (k-mer features or a DNA model's hidden size).
        out_dim (int): fused embedding width (paper: 256).
        hidden (int): width of the projection heads and the fusion MLP.
        dropout (float): dropout inside the MLPs.
        use_text, use_dna (bool): default view switches.

    Shapes:
        - **text**: :math:`(n, \text{text\_dim})`
        - **dna**: :math:`(n, \text{dna\_dim})`
        - **dna_missing**: :math:`(n,)` bool (True: no sequence), optional
        - **output**: :math:`(n, \text{out\_dim})`
    """

    def __init__(self, text_dim: int, dna_dim: int, out_dim: int = 256, hidden: int = 256, *,
                 dropout: float = 0.1, use_text: bool = True, use_dna: bool = True):
        super().__init__()
        for name, value in (("text_dim", text_dim), ("dna_dim", dna_dim), ("out_dim", out_dim),
                            ("hidden", hidden)):
            if int(value) < 1:
                raise ValueError(f"{name}={value}: must be >= 1")
        self.text_dim, self.dna_dim = int(text_dim), int(dna_dim)
        self.out_dim, self.hidden = int(out_dim), int(hidden)
        self.dropout = float(dropout)
        self.use_text, self.use_dna = bool(use_text), bool(use_dna)
        self.text_norm = nn.LayerNorm(self.text_dim)
        self.dna_norm = nn.LayerNorm(self.dna_dim)
        self.text_proj = _mlp(self.text_dim, self.hidden, self.hidden, self.dropout)
        self.dna_proj = _mlp(self.dna_dim, self.hidden, self.hidden, self.dropout)
        self.no_dna = nn.Parameter(torch.zeros(self.hidden))
        self.fusion = _mlp(2 * self.hidden + 1, self.hidden, self.out_dim, self.dropout)
        self.fused_head = nn.Linear(self.out_dim, self.hidden)

    def init_args(self) -> dict[str, Any]:
        """Constructor arguments: ``GeneEncoder(**enc.init_args())`` rebuilds the module."""
        return {"text_dim": self.text_dim, "dna_dim": self.dna_dim, "out_dim": self.out_dim,
                "hidden": self.hidden, "dropout": self.dropout, "use_text": self.use_text,
                "use_dna": self.use_dna}

    def views(self, text: Tensor, dna: Tensor) -> tuple[Tensor, Tensor]:
        """Projected views ``(z_text, z_dna)``, each ``(n, hidden)`` (no missing handling:
        mask genes without sequence in the loss)."""
        return self.text_proj(self.text_norm(text)), self.dna_proj(self.dna_norm(dna))

    def forward(self, text: Tensor, dna: Tensor, dna_missing: Tensor | None = None, *,
                use_text: bool | None = None, use_dna: bool | None = None) -> Tensor:
        """Fused embedding ``(n, out_dim)``; see the class docstring."""
        use_text = self.use_text if use_text is None else use_text
        use_dna = self.use_dna if use_dna is None else use_dna
        n = text.size(0)
        if dna.size(0) != n:
            raise ValueError(f"text has {n} rows but dna {dna.size(0)}")
        z_text, z_dna = self.views(text, dna)
        if dna_missing is None:
            missing = text.new_zeros(n, 1)
        else:
            missing = dna_missing.to(text.dtype).reshape(n, 1)
        z_dna = (1.0 - missing) * z_dna + missing * self.no_dna
        if not use_text:
            z_text = torch.zeros_like(z_text)
        if not use_dna:
            z_dna = torch.zeros_like(z_dna)
            missing = torch.zeros_like(missing)
        return self.fusion(torch.cat([z_text, z_dna, missing], dim=-1))

    def extra_repr(self) -> str:
        return (f"text_dim={self.text_dim}, dna_dim={self.dna_dim}, out_dim={self.out_dim}, "
                f"hidden={self.hidden}, use_text={self.use_text}, use_dna={self.use_dna}")
