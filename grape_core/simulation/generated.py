"""A quick generated screen for scale and device checks (no cells, no gene annotation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.conditions import format_condition


@dataclass(frozen=True)
class GeneratedKnowledge:
    """What :func:`grape_core.training.recipe.train_bundle` reads from gene knowledge, generated: random
    view features of the real widths, random biotypes, and one random prior."""

    genes: tuple[str, ...]
    table: pd.DataFrame
    text: np.ndarray
    dna: np.ndarray
    dna_missing: np.ndarray
    priors: dict[str, pd.DataFrame]
    encoder_state: dict[str, Any] | None = None
    configs: dict[str, dict[str, Any]] = field(default_factory=lambda: {"feature": {}, "graph": {}})

    @property
    def encoder_args(self) -> dict[str, Any]:
        return {"text_dim": int(self.text.shape[1]), "dna_dim": int(self.dna.shape[1])}


@dataclass(frozen=True)
class GeneratedScreen:
    """A pseudo-bulk screen made for timing (see :func:`generated_screen`)."""

    pseudobulk: Any
    knowledge: GeneratedKnowledge
    split: Any
    n_cells: int

    @property
    def adata(self) -> Any:
        """The few AnnData fields training reads; no cells are generated (``obs`` None: no
        replicate and no cell-level metrics)."""
        from types import SimpleNamespace

        return SimpleNamespace(uns={}, obs=None, n_obs=self.n_cells,
                               n_vars=len(self.pseudobulk.genes))


def generated_screen(n_genes: int, n_singles: int, n_pairs: int = 0, *, seed: int = 0,
                     noncoding: float = 0.25, in_degree: int = 20,
                     text_dim: int = 384, dna_dim: int = 342) -> GeneratedScreen:
    """A screen of the given size for scale and device checks: shifts are a shared response
    plus low-rank perturbation effects and noise, gene knowledge is random, the prior has
    ``in_degree`` random sources per gene. GENERATED data: only timings and memory mean
    anything here (the planted screens of :func:`simulate` are the ones with a truth).

    Returns
    -------
    GeneratedScreen
        Its ``pseudobulk`` (``n_singles + n_pairs`` conditions x ``n_genes``), ``knowledge``,
        ``split`` (GEARS simulation split, seed 1) and an ``adata`` stand-in.
    """
    from ..data.pseudobulk import PseudoBulk
    from ..data.splits import simulation_split

    rng = np.random.default_rng(seed)
    names = [f"G{i:05d}" for i in range(n_genes)]
    perturbed = rng.choice(n_genes, n_singles, replace=False)
    conds = [format_condition((names[g],)) for g in perturbed]
    if n_pairs:
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < n_pairs:
            a, b = sorted(rng.choice(perturbed, 2, replace=False).tolist())
            chosen.add((a, b))
        conds += [format_condition((names[a], names[b])) for a, b in sorted(chosen)]
    rank = 8
    gene_factors = rng.normal(0, 0.1, (n_genes, rank)).astype(np.float32)
    pert_factors = rng.normal(0, 1, (n_genes, rank)).astype(np.float32)
    shared = rng.normal(0, 0.05, n_genes).astype(np.float32)
    control = rng.gamma(2.0, 0.5, n_genes).astype(np.float32)
    index = {g: i for i, g in enumerate(names)}
    conds = sorted(conds)
    shifts = np.empty((len(conds), n_genes), dtype=np.float32)
    for row, c in enumerate(conds):
        genes = [index[g] for g in c.split("+") if g != "ctrl"]
        shifts[row] = shared + gene_factors @ pert_factors[genes].sum(0)
    shifts += rng.normal(0, 0.02, shifts.shape).astype(np.float32)
    pb = PseudoBulk(genes=tuple(names), conditions=tuple(conds), means=control + shifts,
                    control_mean=control, n_cells=np.full(len(conds), 100),
                    n_control=5000, de_idx=np.argsort(-np.abs(shifts), 1)[:, :20],
                    dataset=f"generated-{n_genes}")
    src = rng.integers(0, n_genes, n_genes * in_degree)
    dst = np.repeat(np.arange(n_genes), in_degree)
    keep = src != dst
    edges = pd.DataFrame({"src": src[keep], "dst": dst[keep],
                          "weight": rng.random(int(keep.sum())).astype(np.float32)})
    edges = edges.drop_duplicates(["src", "dst"]).reset_index(drop=True)
    coding = rng.random(n_genes) >= noncoding
    table = pd.DataFrame({"symbol": names, "is_coding": coding,
                          "biotype": np.where(coding, "protein_coding", "lncRNA")}, index=names)
    knowledge = GeneratedKnowledge(
        genes=tuple(names), table=table,
        text=rng.normal(size=(n_genes, text_dim)).astype(np.float32),
        dna=rng.random((n_genes, dna_dim)).astype(np.float32),
        dna_missing=rng.random(n_genes) < 0.3, priors={"union": edges})
    return GeneratedScreen(pseudobulk=pb, knowledge=knowledge,
                           split=simulation_split(pb.conditions, seed=1),
                           n_cells=5000 + 100 * len(conds))
