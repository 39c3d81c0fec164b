"""Planted-truth Perturb-seq screens: a known gene network over real symbols, and the
screen it produces.

A screen made from a known directed network lets one check what a model learned against
the truth (which edges, which effects), something no real screen allows. Every random
choice is seeded; the same :class:`SimulationConfig` gives the same screen.

Model (all vectors over the screen's genes, ``W[target, source]``)::

    linear        s_P = (I - W)^-1 u_P
    saturating    s_P = W phi(s_P) + u_P,   phi(x) = c tanh(x / c)
    u_P           -eff_k e_k for each perturbed gene k (knock-down; + for activation)
    shift_P       u_P + G_P(D_P) + a_P r,   D_P = s_P - u_P (the propagated part)
    cell          max(0, mu + shift_P + eps),   eps ~ N(0, sigma^2) [+ (I - W)^-1 eta]

``G_P`` is the identity except on pairs with a planted genetic interaction (see
:func:`simulate`). ``r`` is a fixed screen-wide response, ``a_P ~ N(1, 0.2)``.

Shapes: ``W`` ``(n_genes, n_genes)`` sparse; truth ``shifts`` ``(n_conditions, n_genes)``;
``adata`` ``(n_cells, n_genes)``. Gene order is alphabetical, the same in every file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import keys
from .data.conditions import format_condition
from .config import Config, Paths
from .errors import GrapeError
from .io import FolderKind, check_output_folder, disk_full, json_marker, sha256_file

log = logging.getLogger(__name__)

RELATIONS = tuple(f"{s}->{t}" for s in keys.NODE_TYPES for t in keys.NODE_TYPES)
"""Biotype pairs of an edge, ``source->target``: coding->coding, coding->noncoding,
noncoding->coding, noncoding->noncoding. Per-relation settings are 4-tuples in this order."""

INTERACTION_TYPES = ("synergy", "suppression", "epistasis", "neomorphic")
ADDITIVE = "additive"
"""Type of a pair without a planted interaction."""

FORMAT = "grape-planted-screen"
FORMAT_VERSION = 1
FILES = ("screen.h5ad", "true_edges.csv", "prior_informative.csv", "prior_random.csv",
         "genes.csv", "interactions.csv", "truth.safetensors")
"""Files of a screen folder besides ``simulation.json`` (which holds their SHA-256)."""
SCREEN_FOLDER = FolderKind(name="planted-screen folder", marker="simulation.json",
                           entries=frozenset({*FILES, "simulation.json"}),
                           is_ours=json_marker("format", FORMAT))
"""What ``--overwrite`` may replace: a previous screen holding nothing else, or an empty
folder (:func:`grape_core.io.check_output_folder`)."""

_GO_ROOTS = frozenset({"GO:0008150", "GO:0003674", "GO:0005575"})  # "no data" annotations
_SYMBOL_OK = r"^[A-Za-z0-9][A-Za-z0-9.\-]*$"  # no '+', '_', spaces: safe in condition labels
_CELL_BLOCK = 1 << 22  # values per chunk of generated cells (16 MiB of float32)
_SOLVE_BLOCK = 256  # conditions per steady-state block
_MAX_ITERATIONS = 20_000

_FLAGS = {
    "n_genes": "--genes", "noncoding_fraction": "--noncoding", "n_singles": "--singles",
    "n_pairs": "--pairs", "cells_per_condition": "--cells", "n_control_cells": "--control-cells",
    "propagation": "--propagation", "mode": "--mode", "spectral_radius": "--spectral-radius",
    "regulator_fraction": "--regulators", "prior_true_fraction": "--prior-true-fraction",
    "prior_false_edges": "--prior-false-edges", "go_bias": "--go-bias",
    "interaction_fraction": "--interaction-fraction", "cell_noise": "--noise",
    "network_noise": "--network-noise", "shared_std": "--shared-std",
    "saturation": "--saturation", "targets": "--targets",
    "relation_propensity": "--propensity", "relation_activating": "--activating",
    "relation_strength": "--strength", "efficiency": "--efficiency", "seed": "--seed",
}


_BOUNDS = {
    "weight_range": 1e3, "efficiency": 1.0, "control_mean_range": 100.0,
    "synergy_scale": 100.0, "suppression_scale": 100.0, "epistasis_strength": 100.0,
    "neomorphic_effect": 100.0, "relation_propensity": 1e6, "relation_strength": 1e3,
    "go_bias": 1e6, "shared_std": 100.0, "shared_scale_sd": 100.0, "cell_noise": 100.0,
    "network_noise": 100.0, "saturation": 1e6,
}
"""Upper bounds of the settings (log-expression units where they are sizes): far beyond
any screen, and low enough that no value overflows float32 cells."""
MEMORY_ENV = "GRAPE_SIMULATE_MEMORY_GB"
"""The most memory a simulation may need (GB; :meth:`SimulationConfig.memory_bytes`);
default: 80 % of the memory available when it starts."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_memory(config: "SimulationConfig") -> None:
    """Refuse, before any allocation, a screen that needs more memory than
    ``GRAPE_SIMULATE_MEMORY_GB`` allows (default 80 % of the memory available).

    Raises
    ------
    GrapeError
        Naming the estimate, the limit and the settings that size it.
    """
    from .config import GB, gigabytes_setting

    limit = gigabytes_setting(MEMORY_ENV, example="8 (the most memory a simulation may use)")
    if limit is None:
        import psutil

        limit = 0.8 * psutil.virtual_memory().available
    needed = config.memory_bytes()
    if needed > limit:
        raise GrapeError(
            f"this screen needs about {needed / GB:,.1f} GB of memory ({config.n_cells:,} cells "
            f"x {config.n_genes:,} genes), more than the {limit / GB:,.1f} GB allowed "
            f"({MEMORY_ENV}; default 80 % of the memory available); lower --cells, "
            f"--control-cells, --genes, --singles or --pairs, or raise {MEMORY_ENV}")


# ----------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimulationConfig(Config):
    """Everything that defines a planted screen. Invalid values raise :class:`GrapeError`
    when the config is built.

    The defaults follow the recipe of the reference screen ``planted_seed0`` (300 genes,
    25 % lncRNA, 45 % regulators with 2-7 targets, about 80 % activating edges, spectral
    radius 0.8, 100 singles, control means U(1.5, 3.5), cell noise N(0, 0.25), 500 control
    and 50 cells per condition), plus what it lacked: 50 pairs, knock-down efficiencies,
    biotype-dependent regulation and a GO bias.

    Per-relation settings are 4-tuples in the order of :data:`RELATIONS`
    (coding->coding, coding->noncoding, noncoding->coding, noncoding->noncoding).
    """

    seed: int = 0
    # --- genes ---------------------------------------------------------------------------
    n_genes: int = 300
    noncoding_fraction: float = 0.25
    """Share of lncRNA genes (the rest protein-coding), rounded up to a whole count."""
    prefer_go: bool = True
    """Draw genes with GO annotation (beyond the root terms) before genes without, so the
    knowledge layer has terms to embed. lncRNAs with GO are few (about 150): the rest of the
    lncRNAs come from those without."""
    # --- network -------------------------------------------------------------------------
    regulator_fraction: float = 0.45
    targets: tuple[int, int] = (2, 7)
    """Out-degree of each regulator, uniform on this inclusive range."""
    weight_range: tuple[float, float] = (0.3, 0.7)
    """|weight| ~ U(range) times the relation's strength, before scaling W."""
    spectral_radius: float = 0.8
    """W is scaled to this spectral radius (must be < 1 for a steady state to exist)."""
    relation_propensity: tuple[float, float, float, float] = (1.0, 0.8, 1.0, 0.6)
    """Relative odds that a regulator picks a target of the relation's target biotype."""
    relation_activating: tuple[float, float, float, float] = (0.9, 0.85, 0.3, 0.7)
    """Probability that an edge activates (else it represses). noncoding->coding is mostly
    repressive (lncRNA-mediated silencing); overall about 80 % of edges activate."""
    relation_strength: tuple[float, float, float, float] = (1.0, 0.8, 1.3, 0.6)
    """Multiplier of |weight| per relation."""
    go_bias: float = 5.0
    """A target sharing a specific GO term with its regulator gets (1 + go_bias) times the
    odds; 0 turns the bias off."""
    go_max_term_genes: int = 1000
    """GO terms annotated to more human genes than this are too general to count as shared."""
    # --- perturbations -------------------------------------------------------------------
    n_singles: int = 100
    n_pairs: int = 50
    """Pairs of genes drawn among the singles' genes."""
    perturbed_regulator_fraction: float = 0.9
    """Share of the perturbed genes drawn among the regulators."""
    mode: Literal["knockdown", "activation"] = "knockdown"
    """CRISPRi (u = -eff) or CRISPRa (u = +eff)."""
    efficiency: tuple[float, float] = (0.6, 1.0)
    """Per perturbed gene, eff ~ U(range): the size of its direct change."""
    propagation: Literal["linear", "saturating"] = "linear"
    saturation: float = 1.0
    """c of phi(x) = c tanh(x / c) in the saturating steady state (same units as s): a
    change of 1 passes on as 0.76, a change of 0.3 nearly unchanged."""
    shared_std: float = 0.11
    """Std over genes of the screen-wide response r, r_g ~ N(0, shared_std^2)."""
    shared_scale_sd: float = 0.2
    """a_P ~ N(1, shared_scale_sd^2): how strongly perturbation P shows the shared response."""
    # --- pairs ---------------------------------------------------------------------------
    interaction_fraction: float = 0.3
    """Share of pairs with a planted genetic interaction (types in equal numbers)."""
    interaction_types: tuple[str, ...] = INTERACTION_TYPES
    synergy_scale: tuple[float, float] = (1.5, 2.5)
    suppression_scale: tuple[float, float] = (0.1, 0.5)
    epistasis_strength: tuple[float, float] = (0.8, 1.0)
    neomorphic_effect: tuple[float, float] = (0.5, 1.0)
    neomorphic_genes: int = 10
    # --- cells ---------------------------------------------------------------------------
    control_mean_range: tuple[float, float] = (1.5, 3.5)
    cell_noise: float = 0.25
    """Std of the independent per-cell, per-gene noise."""
    network_noise: float = 0.0
    """Std of per-cell noise that passes through (I - W)^-1, so that control cells'
    co-expression carries edge information (0: off, as in planted_seed0)."""
    n_control_cells: int = 500
    cells_per_condition: int = 50
    cell_type: str = "synthetic"
    # --- priors --------------------------------------------------------------------------
    prior_true_fraction: float = 0.5
    """Share of the true edges in ``prior_informative.csv``."""
    prior_false_edges: int | None = None
    """False edges in ``prior_informative.csv`` (None: as many as its true edges)."""

    def __post_init__(self) -> None:
        self._validate()

    # one message per problem: what, the setting (and its CLI flag), what to do
    def _bad(self, name: str, text: str) -> GrapeError:
        flag = f", {_FLAGS[name]}" if name in _FLAGS else ""
        return GrapeError(f"{name} ({getattr(self, name)!r}{flag}) {text}")

    def _validate(self) -> None:
        def fraction(name: str) -> None:
            v = getattr(self, name)
            if not _is_number(v) or not (0 <= v <= 1):
                raise self._bad(name, "must be a fraction between 0 and 1")

        def count(name: str, low: int = 0) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise self._bad(name, f"must be a whole number >= {low}")

        # every number is bounded as well as finite: values that pass end in float32 cells
        # and a network whose steady state exists, never in infinities (see _BOUNDS)
        def span(name: str, low: float = 0.0) -> None:
            v = getattr(self, name)
            high = _BOUNDS.get(name, 1e6)
            if (not isinstance(v, tuple) or len(v) != 2
                    or not all(_is_number(x) and math.isfinite(x) for x in v)
                    or not (low <= v[0] <= v[1] <= high)):
                raise self._bad(name, f"must be two numbers (low, high) with {low:g} <= low <= "
                                      f"high <= {high:g}")

        def per_relation(name: str, *, upper: float | None = None) -> None:
            v = getattr(self, name)
            upper = upper if upper is not None else _BOUNDS.get(name, 1e6)
            if (not isinstance(v, tuple) or len(v) != 4
                    or not all(_is_number(x) and math.isfinite(x) for x in v)
                    or any(x < 0 or x > upper for x in v)):
                raise self._bad(name, f"must be 4 numbers in [0, {upper:g}], one per relation "
                                      f"({', '.join(RELATIONS)})")

        count("seed")
        count("n_genes", 2)
        for name in ("noncoding_fraction", "regulator_fraction", "perturbed_regulator_fraction",
                     "interaction_fraction", "prior_true_fraction"):
            fraction(name)
        count("n_singles", 1)
        count("n_pairs")
        count("n_control_cells", 2)
        count("cells_per_condition", 1)
        count("neomorphic_genes")
        count("go_max_term_genes", 1)
        for name in ("weight_range", "efficiency", "control_mean_range", "synergy_scale",
                     "suppression_scale", "epistasis_strength", "neomorphic_effect"):
            span(name)
        if not (isinstance(self.targets, tuple) and len(self.targets) == 2
                and all(isinstance(x, int) for x in self.targets) and 1 <= self.targets[0] <= self.targets[1]):
            raise self._bad("targets", "must be two whole numbers (low, high) with 1 <= low <= high")
        per_relation("relation_propensity")
        per_relation("relation_activating", upper=1.0)
        per_relation("relation_strength")
        if sum(self.relation_propensity) <= 0:
            raise self._bad("relation_propensity", "must have at least one positive value")
        if not (_is_number(self.spectral_radius) and 0 < self.spectral_radius < 1):
            raise self._bad("spectral_radius", "must be in (0, 1): with 1 or more the network "
                                               "has no steady state")
        for name in ("go_bias", "shared_std", "shared_scale_sd", "cell_noise", "network_noise"):
            v = getattr(self, name)
            high = _BOUNDS[name]
            if not _is_number(v) or not math.isfinite(v) or not 0 <= v <= high:
                raise self._bad(name, f"must be a number between 0 and {high:g}")
        if not (_is_number(self.saturation) and math.isfinite(self.saturation)
                and 0 < self.saturation <= _BOUNDS["saturation"]):
            raise self._bad("saturation", f"must be a number > 0 and at most "
                                          f"{_BOUNDS['saturation']:g}")
        if self.mode not in ("knockdown", "activation"):
            raise self._bad("mode", "must be 'knockdown' or 'activation'")
        if self.propagation not in ("linear", "saturating"):
            raise self._bad("propagation", "must be 'linear' or 'saturating'")
        unknown = [t for t in self.interaction_types if t not in INTERACTION_TYPES]
        if unknown or not self.interaction_types:
            raise self._bad("interaction_types", f"must name some of {', '.join(INTERACTION_TYPES)}")
        if self.prior_false_edges is not None:
            count("prior_false_edges")
        if not isinstance(self.cell_type, str) or not self.cell_type:
            raise self._bad("cell_type", "must be a non-empty string")

        # sizes that must fit together
        if self.n_singles > self.n_genes:
            raise self._bad("n_singles", f"is more than the {self.n_genes} genes; perturb fewer "
                                         "genes or simulate more")
        possible = self.n_singles * (self.n_singles - 1) // 2
        if self.n_pairs > possible:
            raise self._bad("n_pairs", f"is more than the {possible} pairs possible among "
                                       f"{self.n_singles} perturbed genes; ask for fewer pairs "
                                       "or more singles")
        if self.n_regulators < 1:
            raise self._bad("regulator_fraction", f"gives no regulator among {self.n_genes} genes")
        if self.targets[1] > self.n_genes - 1:
            raise self._bad("targets", f"asks for more targets than the {self.n_genes - 1} other genes")
        need = round(self.perturbed_regulator_fraction * self.n_singles)
        if need > self.n_regulators:
            raise self._bad("perturbed_regulator_fraction",
                            f"needs {need} perturbed regulators but the network has "
                            f"{self.n_regulators}; raise --regulators or lower the share")
        if self.n_singles - need > self.n_genes - self.n_regulators:
            raise self._bad("perturbed_regulator_fraction",
                            f"needs {self.n_singles - need} perturbed non-regulators but there are "
                            f"{self.n_genes - self.n_regulators}; raise the share")
        if self.neomorphic_genes > self.n_genes - 2:
            raise self._bad("neomorphic_genes", f"is more than the {self.n_genes - 2} genes "
                                                "outside a pair")

    @property
    def n_noncoding(self) -> int:
        """lncRNA genes: at least ``noncoding_fraction`` of the genes (rounded up)."""
        return int(math.ceil(self.noncoding_fraction * self.n_genes - 1e-9))

    @property
    def n_regulators(self) -> int:
        return int(round(self.regulator_fraction * self.n_genes))

    @property
    def n_cells(self) -> int:
        """Cells of the screen: control cells and each condition's."""
        return self.n_control_cells + (self.n_singles + self.n_pairs) * self.cells_per_condition

    def memory_bytes(self) -> int:
        """About the memory a run needs at its peak, in bytes: the cells (float32, and a
        sparse copy while X is converted), the per-condition truth arrays, obs, and the rest.
        Measured peaks are below it (a 20,000-gene screen of 7,000 cells: 1.4 GB measured,
        1.6 GB estimated)."""
        values = self.n_cells * self.n_genes
        conditions = (self.n_singles + self.n_pairs) * self.n_genes
        return 2 * 4 * values + 8 * conditions + 200 * self.n_cells + 64 * 2**20

    def disk_bytes(self) -> int:
        """About the size of the screen folder, in bytes (the cells and the truth)."""
        return 4 * self.n_cells * self.n_genes + 8 * (self.n_singles + self.n_pairs) * self.n_genes


# ----------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlantedScreen:
    """A simulated screen and its truth (read-only).

    Attributes
    ----------
    config
        The settings that made it.
    adata
        AnnData ``(n_cells, n_genes)`` in the GEARS layout: ``X`` float32 (CSR when more than
        half the values are 0), ``obs['condition']`` (``ctrl``, ``A+ctrl``, ``A+B``),
        ``obs['cell_type']``, ``var['gene_name']`` (index = symbols).
    genes
        ``(n_genes, 9)``: gene, biotype (``protein_coding`` / ``lncRNA``), is_coding,
        has_go, regulator, perturbed, efficiency (NaN when not perturbed), control_mean,
        shared_response (r).
    edges
        True network ``(n_edges, 4)``: source, target, weight (= ``W[target, source]``),
        relation (see :data:`RELATIONS`).
    W
        CSR ``(n_genes, n_genes)`` float64, ``W[target, source]``, rows and columns in gene
        order.
    priors
        ``{"informative": ..., "random": ...}``, each ``(n_prior_edges, 3)``: source, target,
        weight (1.0).
    interactions
        One row per pair ``(n_pairs, 6)``: pair, type (``additive`` or one of
        :data:`INTERACTION_TYPES`), strength (NaN for additive), dominant (epistasis: the
        gene whose effect wins), genes and signs (neomorphic: the extra genes and the sign
        of their change, ``;``-joined).
    conditions
        Perturbed conditions, ``(n_conditions,)``: singles then pairs, row order of the truth.
    shifts
        Noiseless mean shift from control per condition, ``(n_conditions, n_genes)`` float32.
    network_shifts
        The same without the shared response, ``(n_conditions, n_genes)`` float32.
    shared_scale
        a_P per condition, ``(n_conditions,)``.
    summary
        Counts written to ``simulation.json`` (by relation, interaction, prior...).
    """

    config: SimulationConfig
    adata: Any
    genes: pd.DataFrame
    edges: pd.DataFrame
    W: sp.csr_matrix
    priors: dict[str, pd.DataFrame]
    interactions: pd.DataFrame
    conditions: tuple[str, ...]
    shifts: np.ndarray
    network_shifts: np.ndarray
    shared_scale: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: str | Path, *, overwrite: bool = False) -> dict[str, str]:
        """Write the screen folder atomically (a temporary folder renamed into place).

        Parameters
        ----------
        folder
            Output folder; it must not exist unless ``overwrite`` (then it must be empty or
            hold a previous screen, i.e. a ``simulation.json``).
        overwrite
            Replace an existing screen folder.

        Returns
        -------
        ``{file name: SHA-256}`` of every file written (also in ``simulation.json``).

        Raises
        ------
        GrapeError
            The folder exists (without ``overwrite``), or is not a screen folder.
        """
        folder = Path(folder)
        check_output_folder(folder, kind=SCREEN_FOLDER, overwrite=overwrite,
                            what="the screen folder", hint="choose another output folder")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fresh_dir(folder.parent, f".{folder.name}.tmp-")
        X = self.adata.X
        needed = int(getattr(X, "nbytes", 0) or getattr(getattr(X, "data", None), "nbytes", 0)
                     or 0) + 2 * int(self.shifts.nbytes)
        def written() -> int:  # what the temporary folder held when the disk filled
            return sum(f.stat().st_size for f in tmp.iterdir() if f.is_file())

        try:
            with disk_full(folder, needed, written=written,
                           hint="free some space or choose another output folder"):
                self._write_files(tmp)
            mode = 0o666 & ~_umask()  # as a plain open() would (some writers use 0o600)
            for name in FILES:
                os.chmod(tmp / name, mode)
            digests = {name: sha256_file(tmp / name) for name in FILES}
            record = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "grape_core_version": _version(),
                "seed": self.config.seed,
                "config": self.config.to_dict(),
                "summary": self.summary,
                "files": digests,
            }
            from .io import to_json

            with disk_full(folder, needed, hint="free some space or choose another output folder"):
                (tmp / "simulation.json").write_text(to_json(record), encoding="utf-8")
            if folder.exists():
                old = _fresh_dir(folder.parent, f".{folder.name}.old-")
                os.replace(folder, old / folder.name)
                try:
                    os.replace(tmp, folder)
                except OSError:  # put the previous screen back
                    os.replace(old / folder.name, folder)
                    shutil.rmtree(old, ignore_errors=True)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("wrote planted screen %s", folder)
        return digests

    def _write_files(self, root: Path) -> None:
        from safetensors.numpy import save_file

        self.adata.write_h5ad(root / "screen.h5ad")
        for name, frame in (("true_edges.csv", self.edges),
                            ("prior_informative.csv", self.priors["informative"]),
                            ("prior_random.csv", self.priors["random"]),
                            ("genes.csv", self.genes),
                            ("interactions.csv", self.interactions)):
            frame.to_csv(root / name, index=False, lineterminator="\n")
        genes = self.genes
        save_file(
            {
                "shifts": np.ascontiguousarray(self.shifts, dtype=np.float32),
                "network_shifts": np.ascontiguousarray(self.network_shifts, dtype=np.float32),
                "shared_response": genes["shared_response"].to_numpy(np.float32),
                "shared_scale": np.ascontiguousarray(self.shared_scale, dtype=np.float32),
                "control_mean": genes["control_mean"].to_numpy(np.float32),
            },
            str(root / "truth.safetensors"),
            # one metadata key: safetensors writes several keys in a random order, and the
            # file's bytes (and SHA-256) must not depend on the process
            metadata={"index": json.dumps({"format": FORMAT, "genes": genes["gene"].tolist(),
                                           "conditions": list(self.conditions)},
                                          allow_nan=False)},
        )


def read_truth(folder: str | Path) -> dict[str, Any]:
    """The arrays of ``truth.safetensors`` plus its gene and condition lists.

    Returns
    -------
    dict with ``shifts`` and ``network_shifts`` ``(n_conditions, n_genes)``,
    ``shared_response`` and ``control_mean`` ``(n_genes,)``, ``shared_scale``
    ``(n_conditions,)`` (float32), ``genes`` and ``conditions`` (lists).
    """
    from safetensors import safe_open

    path = Path(folder) / "truth.safetensors"
    if not path.is_file():
        raise GrapeError(f"{path} not found; give a folder written by 'simulate'")
    with safe_open(str(path), framework="numpy") as fh:
        out: dict[str, Any] = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata() or {}
    index = json.loads(meta.get("index", "{}"))
    out["genes"] = list(index.get("genes", []))
    out["conditions"] = list(index.get("conditions", []))
    return out


# ----------------------------------------------------------------------------------------
# simulation
# ----------------------------------------------------------------------------------------
def simulate(config: SimulationConfig | None = None, *, paths: Paths | None = None,
             progress: bool = False) -> PlantedScreen:
    """Simulate a planted-truth screen.

    Steps, each with its own random stream spawned from ``config.seed`` (so changing, say,
    the number of cells leaves the network unchanged):

    1. **Genes**: real symbols from the shipped annotation, resolved by
       :func:`grape_core.genes.gene_table` as protein-coding or lncRNA (GENCODE biotype when
       ``paths.gene_sources`` holds it, else NCBI), GO-annotated genes first
       (``prefer_go``); sorted alphabetically.
    2. **Network**: ``round(regulator_fraction * n)`` random regulators, each with
       ``U{targets}`` targets drawn without replacement with odds
       ``propensity[rel] * (1 + go_bias * shares_go)``; weight ``sign * U(weight_range) *
       strength[rel]`` with sign + at probability ``activating[rel]``; W scaled to
       ``spectral_radius`` (a network without cycles keeps its weights).
    3. **Perturbations**: ``n_singles`` genes (``perturbed_regulator_fraction`` of them
       regulators), efficiency ``U(efficiency)``; ``n_pairs`` random pairs of them.
    4. **Steady state** per condition (see the module docstring); ``D = s - u`` is the part
       that went through the network.
    5. **Interactions** on ``round(interaction_fraction * n_pairs)`` pairs, types in equal
       numbers, strength ``g`` drawn from the type's range; ``D_AB`` is the pair's
       propagated part, ``D_X`` that of gene X alone:

       - synergy:     ``D' = g D_AB``, g in ``synergy_scale`` (> 1)
       - suppression: ``D' = g D_AB``, g in ``suppression_scale`` (< 1)
       - epistasis:   ``D' = D_X + (1 - g)(D_AB - D_X)``, X one gene of the pair (recorded
         as ``dominant``), g in ``epistasis_strength``
       - neomorphic:  ``D' = D_AB + g z``, z = +-1 on ``neomorphic_genes`` random genes
         outside the pair (recorded), g in ``neomorphic_effect``

       The direct change of the perturbed genes (u) is never altered.
    6. **Shared response**: ``shift_P = u_P + D'_P + a_P r``.
    7. **Cells**: control means ``mu ~ U(control_mean_range)``; each cell
       ``max(0, mu + shift_P + eps)``, eps ~ N(0, cell_noise^2), plus
       ``(I - W)^-1 eta``, eta ~ N(0, network_noise^2) when ``network_noise > 0``.
    8. **Priors**: ``prior_true_fraction`` of the true edges plus ``prior_false_edges``
       (default: as many) uniform random non-edges, shuffled; the random prior has as many
       edges, all false.

    Parameters
    ----------
    config
        Settings (default: :class:`SimulationConfig` ()).
    paths
        :class:`grape_core.config.Paths` for the GENCODE biotype table (default: from the
        environment).
    progress
        tqdm bars on stderr.

    Returns
    -------
    :class:`PlantedScreen`.

    Raises
    ------
    GrapeError
        The annotation holds too few suitable genes for the request, or the screen needs
        more memory than ``GRAPE_SIMULATE_MEMORY_GB`` allows (:func:`check_memory`).

    Examples
    --------
    >>> screen = simulate(SimulationConfig(n_genes=60, n_singles=10, n_pairs=3, seed=1))
    >>> screen.adata.shape[1], len(screen.conditions)
    (60, 13)
    """
    config = config or SimulationConfig()
    check_memory(config)  # before any allocation
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(8)]
    rng_genes, rng_net, rng_pert, rng_inter, rng_shared, rng_cells, rng_prior, _ = streams

    genes, go_sets, biotype_sources = _draw_genes(config, rng_genes, paths)
    n = len(genes)
    is_coding = genes["is_coding"].to_numpy(bool)
    W, edges, net_summary = _draw_network(config, is_coding, go_sets, rng_net)
    edges.insert(0, "target", genes["gene"].to_numpy(object)[edges.pop("target_idx")])
    edges.insert(0, "source", genes["gene"].to_numpy(object)[edges.pop("source_idx")])
    edges = edges.sort_values(["source", "target"], kind="stable").reset_index(drop=True)

    # perturbations
    regulator = np.zeros(n, bool)
    regulator[np.unique(np.asarray(W.tocoo().col))] = True
    n_reg_pert = int(round(config.perturbed_regulator_fraction * config.n_singles))
    if n_reg_pert > regulator.sum():  # possible only when some propensities are 0
        raise GrapeError(f"the network has {int(regulator.sum())} regulators with targets, "
                         f"fewer than the {n_reg_pert} perturbed regulators asked; raise "
                         "--regulators or the relation propensities")
    chosen = np.concatenate([
        rng_pert.choice(np.flatnonzero(regulator), n_reg_pert, replace=False),
        rng_pert.choice(np.flatnonzero(~regulator), config.n_singles - n_reg_pert, replace=False),
    ])
    singles = np.sort(chosen)
    efficiency = np.full(n, np.nan)
    efficiency[singles] = rng_pert.uniform(*config.efficiency, size=len(singles))
    pair_idx = _draw_pairs(config.n_pairs, singles, rng_pert)
    names = genes["gene"].to_numpy(object)
    conditions = tuple([format_condition([names[k]]) for k in singles]
                       + [format_condition([names[a], names[b]]) for a, b in pair_idx])
    members = [(int(k),) for k in singles] + [(int(a), int(b)) for a, b in pair_idx]

    # steady state; D = s - u is the part that went through the network
    sign = -1.0 if config.mode == "knockdown" else 1.0
    n_cond = len(members)
    cols = np.repeat(np.arange(n_cond), [len(m) for m in members])
    rows = np.concatenate([np.asarray(m) for m in members])
    U = sp.csc_matrix((sign * efficiency[rows], (rows, cols)), shape=(n, n_cond))
    network, iterations = _steady_state(W, U, config, progress=progress)  # (n_cond, n)
    _add_columns(network, U, -1.0)  # now D
    interactions = _plant_interactions(config, singles, pair_idx, network, names, rng_inter)
    _add_columns(network, U, 1.0)  # s' = u + D'
    network_shifts = network

    r = rng_shared.normal(0.0, config.shared_std, size=n)
    a = rng_shared.normal(1.0, config.shared_scale_sd, size=n_cond)
    shifts = (network_shifts + (a[:, None] * r[None, :])).astype(np.float32)
    mu = rng_shared.uniform(*config.control_mean_range, size=n)

    genes = genes.assign(
        regulator=regulator,
        perturbed=~np.isnan(efficiency),
        efficiency=efficiency,
        control_mean=mu,
        shared_response=r,
    )[["gene", "biotype", "is_coding", "has_go", "regulator", "perturbed", "efficiency",
       "control_mean", "shared_response"]]
    genes = genes.reset_index(drop=True)

    adata, sparse_x = _cells(config, W, mu, shifts, conditions, names, rng_cells,
                             progress=progress)
    priors, prior_summary = _priors(config, W, names, rng_prior)

    summary = {
        "genes": {
            "total": n,
            "coding": int(is_coding.sum()),
            "noncoding": int((~is_coding).sum()),
            "with_go": int(genes["has_go"].sum()),
            "regulators": int(regulator.sum()),
            "perturbed": int(len(singles)),
            "perturbed_regulators": int(regulator[singles].sum()),
            "perturbed_noncoding": int((~is_coding[singles]).sum()),
            "biotype_source": biotype_sources,
        },
        "network": net_summary,
        "conditions": {
            "singles": int(len(singles)),
            "pairs": int(len(pair_idx)),
            "interactions": {t: int((interactions["type"] == t).sum())
                             for t in (ADDITIVE, *INTERACTION_TYPES)},
            "steady_state_iterations": iterations,
        },
        "cells": {
            "control": config.n_control_cells,
            "per_condition": config.cells_per_condition,
            "total": int(adata.n_obs),
            "x_format": "csr" if sparse_x else "dense",
        },
        "priors": prior_summary,
    }
    return PlantedScreen(config=config, adata=adata, genes=genes, edges=edges, W=W,
                         priors=priors, interactions=interactions, conditions=conditions,
                         shifts=shifts, network_shifts=network_shifts,
                         shared_scale=a, summary=summary)


# ----------------------------------------------------------------------------------------
# genes
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _gene_pool(gene_sources: str) -> pd.DataFrame:
    """Symbols the project's gene table resolves exactly, as protein-coding or lncRNA.

    Read-only, cached per process. Columns: gene, biotype, is_coding, biotype_source,
    go (direct GO ids without the root terms, ``;``), has_go. Order: the annotation's.
    """
    from .knowledge.genes import gene_table, load_annotation

    ann = load_annotation()
    symbols = ann.genes["symbol"].astype(str)
    controls = {c.lower() for c in keys.CONTROL_CANDIDATES}
    ok = (symbols.str.match(_SYMBOL_OK) & ~symbols.duplicated(keep=False)
          & ann.genes["gene_type"].isin(["protein-coding", "ncRNA"])
          & ~symbols.str.lower().isin(controls))
    table = gene_table(symbols[ok].tolist(), paths=Paths(gene_sources=gene_sources),
                       sequences="none")
    keep = ((table["match"] == "symbol") & (table["note"] == "")
            & table["biotype"].isin(["protein_coding", "lncRNA"])).to_numpy()
    table = table[keep]
    go = [";".join(t for col in (bp, mf, cc) for t in (col.split(";") if col else [])
                   if t not in _GO_ROOTS)
          for bp, mf, cc in zip(table["go_bp"], table["go_mf"], table["go_cc"])]
    return pd.DataFrame({
        "gene": table["symbol"].to_numpy(object),
        "biotype": table["biotype"].to_numpy(object),
        "is_coding": table["is_coding"].to_numpy(bool),
        "biotype_source": table["biotype_source"].to_numpy(object),
        "go": go,
        "has_go": np.array([bool(g) for g in go]),
    })


def _draw_genes(config: SimulationConfig, rng: np.random.Generator, paths: Paths | None):
    """Genes sorted by symbol, and their gene x specific-GO-term incidence (CSR, 0/1)."""
    from .knowledge.genes import load_annotation

    paths = paths or Paths.from_env()
    pool = _gene_pool(str(paths.gene_sources or ""))
    picks = []
    for coding, wanted in ((True, config.n_genes - config.n_noncoding), (False, config.n_noncoding)):
        sub = pool[pool["is_coding"] == coding]
        if wanted > len(sub):
            kind = "protein-coding" if coding else "lncRNA"
            raise GrapeError(f"{wanted} {kind} genes asked but the annotation resolves "
                             f"{len(sub)}; lower --genes or change --noncoding")
        order = rng.permutation(len(sub))
        if config.prefer_go:  # GO-annotated first, each group in random order
            order = order[np.argsort(~sub["has_go"].to_numpy()[order], kind="stable")]
        picks.append(sub.iloc[order[:wanted]])
    genes = pd.concat(picks).sort_values("gene", kind="stable").reset_index(drop=True)
    sources = genes["biotype_source"].value_counts()
    biotype_sources = {str(k): int(v) for k, v in sorted(sources.items())}

    # shared GO terms: specific ones only (general terms such as "nucleus" link everything)
    terms = load_annotation().terms
    specific = set(terms.index[terms["n_genes"] <= config.go_max_term_genes])
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for text in genes["go"]:
        ids = sorted({vocab.setdefault(t, len(vocab)) for t in (text.split(";") if text else [])
                      if t in specific})
        indices.extend(ids)
        indptr.append(len(indices))
    go_matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                              shape=(len(genes), max(len(vocab), 1)))
    return genes, go_matrix, biotype_sources


# ----------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------
def _draw_network(config: SimulationConfig, is_coding: np.ndarray, go_matrix: sp.csr_matrix,
                  rng: np.random.Generator):
    """Regulators, their targets and weights; W scaled to the spectral radius.

    Returns
    -------
    W (CSR ``(n_genes, n_genes)``, ``W[target, source]``), an edge frame with
    source_idx, target_idx, weight, relation, and a summary dict.
    """
    n = len(is_coding)
    node = np.where(is_coding, 0, 1)  # 0 coding, 1 noncoding: index of RELATIONS = 2*src + tgt
    propensity = np.asarray(config.relation_propensity, float).reshape(2, 2)
    regulators = np.sort(rng.choice(n, config.n_regulators, replace=False))
    degree = rng.integers(config.targets[0], config.targets[1] + 1, size=len(regulators))
    go_t = go_matrix.T.tocsr()
    sources, targets = [], []
    shared_pairs = 0
    for start in range(0, len(regulators), 512):
        block = regulators[start:start + 512]
        share = (go_matrix[block] @ go_t).tocsr()  # (block, n) counts of shared terms
        for row, i in enumerate(block):
            odds = propensity[node[i]][node].astype(float)
            hit = share.indices[share.indptr[row]:share.indptr[row + 1]]
            hit = hit[hit != i]
            shared_pairs += len(hit)
            odds[hit] *= 1.0 + config.go_bias
            odds[i] = 0.0
            k = int(min(degree[start + row], np.count_nonzero(odds)))
            if k == 0:
                continue
            # weighted sampling without replacement (Efraimidis-Spirakis): top-k of log(u)/w
            with np.errstate(divide="ignore"):
                score = np.log(rng.random(n)) / odds
            chosen = np.sort(np.argpartition(-score, k - 1)[:k])
            sources.append(np.full(k, i))
            targets.append(chosen)
    src = np.concatenate(sources) if sources else np.zeros(0, int)
    tgt = np.concatenate(targets) if targets else np.zeros(0, int)
    rel = 2 * node[src] + node[tgt]
    strength = np.asarray(config.relation_strength, float)[rel]
    activating = rng.random(len(src)) < np.asarray(config.relation_activating, float)[rel]
    magnitude = rng.uniform(*config.weight_range, size=len(src)) * strength
    weight = np.where(activating, 1.0, -1.0) * magnitude
    W = sp.csr_matrix((weight, (tgt, src)), shape=(n, n))
    W.sort_indices()
    raw = _spectral_radius(W)
    # a network without cycles has spectral radius 0: nothing to scale, it is already stable
    scale = config.spectral_radius / raw if raw > 1e-9 else 1.0
    W = (W * scale).tocsr()
    coo = W.tocoo()
    edges = pd.DataFrame({"source_idx": coo.col, "target_idx": coo.row, "weight": coo.data})
    rel_all = 2 * node[coo.col] + node[coo.row]
    edges["relation"] = np.asarray(RELATIONS, dtype=object)[rel_all]

    edge_shares = 0
    if len(edges):
        s = go_matrix[coo.col].multiply(go_matrix[coo.row])
        edge_shares = int(np.count_nonzero(np.asarray(s.sum(axis=1)).ravel()))
    background = shared_pairs / max(len(regulators) * (n - 1), 1)
    relations = {}
    for r, name in enumerate(RELATIONS):
        mask = rel_all == r
        w = coo.data[mask]
        relations[name] = {
            "edges": int(mask.sum()),
            "activating": round(float((w > 0).mean()), 4) if len(w) else None,
            "mean_abs_weight": round(float(np.abs(w).mean()), 4) if len(w) else None,
        }
    summary = {
        "edges": int(len(edges)),
        "activating_fraction": round(float((coo.data > 0).mean()), 4) if len(edges) else None,
        "spectral_radius_raw": round(float(raw), 6),
        "scale": round(float(scale), 6),
        "spectral_radius": round(float(raw * scale), 6),
        "relations": relations,
        "go_shared_fraction_edges": round(edge_shares / max(len(edges), 1), 4),
        "go_shared_fraction_background": round(float(background), 4),
    }
    return W, edges, summary


def _spectral_radius(W: sp.csr_matrix) -> float:
    """Largest |eigenvalue| of a sparse matrix: computed per strongly connected component
    (a node on no cycle adds only a zero eigenvalue), dense when small, ARPACK when large."""
    from scipy.sparse.csgraph import connected_components

    if W.nnz == 0:
        return 0.0
    n_comp, label = connected_components(W, directed=True, connection="strong")
    sizes = np.bincount(label, minlength=n_comp)
    radius = 0.0
    for comp in np.flatnonzero(sizes > 1):
        idx = np.flatnonzero(label == comp)
        sub = W[idx][:, idx]
        if len(idx) <= 1500:
            value = np.abs(np.linalg.eigvals(sub.toarray())).max()
        else:
            from scipy.sparse.linalg import ArpackNoConvergence, eigs

            try:
                vals = eigs(sub.astype(np.float64), k=1, which="LM", v0=np.ones(len(idx)),
                            ncv=min(len(idx) - 1, 64), maxiter=len(idx) * 20, tol=1e-10,
                            return_eigenvectors=False)
            except ArpackNoConvergence as exc:
                raise GrapeError("the spectral radius of the network did not converge; try "
                                 "another --seed") from exc
            value = np.abs(vals).max()
        radius = max(radius, float(value))
    return radius


# ----------------------------------------------------------------------------------------
# perturbations, steady state, interactions
# ----------------------------------------------------------------------------------------
def _draw_pairs(n_pairs: int, singles: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n_pairs`` distinct unordered pairs of the singles' genes, sorted (gene index a < b)."""
    m = len(singles)
    possible = m * (m - 1) // 2
    if n_pairs == 0:
        return []
    if n_pairs * 4 > possible:  # dense request: enumerate every pair
        ii, jj = np.triu_indices(m, k=1)
        pick = rng.choice(possible, n_pairs, replace=False)
        chosen = set(zip(ii[pick].tolist(), jj[pick].tolist()))
    else:
        chosen = set()
        while len(chosen) < n_pairs:
            a, b = rng.choice(m, 2, replace=False)
            chosen.add((int(min(a, b)), int(max(a, b))))
    return sorted((int(singles[a]), int(singles[b])) for a, b in chosen)


class _Propagator:
    """Steady states ``s = W phi(s) + u`` of one network, for blocks of columns u.

    ``phi`` is the identity (linear: ``s = (I - W)^-1 u``) or ``c tanh(x / c)``
    (saturating). Only regulators have out-edges, so the system is solved on the
    regulators R alone, ``s_R = W_RR phi(s_R) + u_R``, by fixed-point iteration with the
    sparse W (it converges because the spectral radius is below 1; no dense inverse and no
    LU fill-in, which on a 20,000-gene network is slower than iterating), and then
    ``s = u + W[:, R] phi(s_R)`` for every gene. Iteration stops when no value changes by
    more than 1e-12 (times the largest |s|) in one step.
    """

    def __init__(self, W: sp.csr_matrix, *, saturation: float | None = None):
        self.regulators = np.flatnonzero(np.diff(W.tocsc().indptr) > 0)
        self.W_rr = W[self.regulators][:, self.regulators].tocsr()  # (n_reg, n_reg)
        self.W_r = W[:, self.regulators].tocsr()  # (n_genes, n_reg)
        self.saturation = saturation
        self.iterations = 0
        """The most iterations one block needed so far."""

    def phi(self, x: np.ndarray) -> np.ndarray:
        if self.saturation is None:
            return x
        return self.saturation * np.tanh(x / self.saturation)

    def solve(self, u: np.ndarray) -> np.ndarray:
        """``(n_genes, n_cols)`` float64 -> steady states of the same shape."""
        u_r = u[self.regulators]
        s_r = u_r.copy()
        for it in range(1, _MAX_ITERATIONS + 1):
            new = self.W_rr @ self.phi(s_r)
            new += u_r
            # the change is checked every 8th step only: it costs as much as a step
            if it % 8 == 0 or it == _MAX_ITERATIONS:
                np.subtract(new, s_r, out=s_r)
                delta = float(np.abs(s_r).max()) if new.size else 0.0
                s_r = new
                if delta <= 1e-12 * max(1.0, float(np.abs(new).max()) if new.size else 0.0):
                    break
            s_r = new
        else:
            raise GrapeError(f"the steady state did not converge in {_MAX_ITERATIONS:,} "
                             "iterations; lower --spectral-radius")
        self.iterations = max(self.iterations, it)
        return u + self.W_r @ self.phi(s_r)


def _steady_state(W: sp.csr_matrix, U: sp.csc_matrix, config: SimulationConfig, *,
                  progress: bool = False) -> tuple[np.ndarray, int]:
    """Steady state of every condition (a column of U, ``(n_genes, n_conditions)``).

    Returns
    -------
    ``(n_conditions, n_genes)`` float32, and the most fixed-point iterations a block needed.
    """
    from tqdm.auto import tqdm

    n, n_cond = U.shape
    solver = _Propagator(W, saturation=config.saturation
                         if config.propagation == "saturating" else None)
    out = np.empty((n_cond, n), dtype=np.float32)
    for start in tqdm(range(0, n_cond, _SOLVE_BLOCK), desc=f"steady state ({config.propagation})",
                      unit="block", disable=not progress, leave=False):
        out[start:start + _SOLVE_BLOCK] = solver.solve(U[:, start:start + _SOLVE_BLOCK].toarray()).T
    return out, solver.iterations


def _add_columns(values: np.ndarray, U: sp.spmatrix, sign: float) -> None:
    """``values[p, g] += sign * U[g, p]`` for the non-zeros of U, in place."""
    coo = U.tocoo()
    np.add.at(values, (coo.col, coo.row), (sign * coo.data).astype(values.dtype))


def _plant_interactions(config: SimulationConfig, singles: np.ndarray,
                        pairs: list[tuple[int, int]], propagated: np.ndarray, names: np.ndarray,
                        rng: np.random.Generator) -> pd.DataFrame:
    """Choose the interacting pairs and apply their rule to ``propagated`` (rows after the
    singles are the pairs) in place. Returns the interactions table, one row per pair."""
    n_single, n_pair = len(singles), len(pairs)
    k = int(round(config.interaction_fraction * n_pair))
    kinds = [config.interaction_types[i % len(config.interaction_types)] for i in range(k)]
    kinds = list(rng.permutation(np.asarray(kinds, dtype=object))) if k else []
    planted = dict(zip(sorted(rng.choice(n_pair, k, replace=False).tolist()), kinds))
    row_of = {int(g): r for r, g in enumerate(singles)}
    n = propagated.shape[1]
    records = []
    for p, (a, b) in enumerate(pairs):
        kind = planted.get(p, ADDITIVE)
        row = n_single + p
        strength, dominant, genes, signs = float("nan"), "", "", ""
        if kind == "synergy":
            strength = float(rng.uniform(*config.synergy_scale))
            propagated[row] *= strength
        elif kind == "suppression":
            strength = float(rng.uniform(*config.suppression_scale))
            propagated[row] *= strength
        elif kind == "epistasis":
            strength = float(rng.uniform(*config.epistasis_strength))
            x = (a, b)[int(rng.integers(2))]
            dominant = str(names[x])
            single = propagated[row_of[x]]
            propagated[row] = single + (1.0 - strength) * (propagated[row] - single)
        elif kind == "neomorphic":
            strength = float(rng.uniform(*config.neomorphic_effect))
            others = np.setdiff1d(np.arange(n), [a, b])
            idx = np.sort(rng.choice(others, config.neomorphic_genes, replace=False))
            z = rng.choice([-1.0, 1.0], size=len(idx))
            propagated[row, idx] += (strength * z).astype(propagated.dtype)
            genes = ";".join(str(names[i]) for i in idx)
            signs = ";".join("+" if v > 0 else "-" for v in z)
        records.append({"pair": format_condition([names[a], names[b]]), "type": kind,
                        "strength": strength, "dominant": dominant, "genes": genes,
                        "signs": signs})
    return pd.DataFrame(records, columns=["pair", "type", "strength", "dominant", "genes", "signs"])


# ----------------------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------------------
def _cells(config: SimulationConfig, W: sp.csr_matrix, mu: np.ndarray, shifts: np.ndarray,
           conditions: tuple[str, ...], names: np.ndarray, rng: np.random.Generator, *,
           progress: bool = False):
    """AnnData ``(n_cells, n_genes)``: control cells, then each condition's cells.

    Generated in chunks of about 4 M values; X is dense float32, or CSR when more than half
    the values are 0 (clipped)."""
    import anndata
    from tqdm.auto import tqdm

    n = len(mu)
    counts = np.array([config.n_control_cells] + [config.cells_per_condition] * len(conditions))
    group = np.repeat(np.arange(len(counts)), counts)  # 0 = control, p + 1 = condition p
    total = int(counts.sum())
    X = np.empty((total, n), dtype=np.float32)
    spread = _Propagator(W) if config.network_noise > 0 else None
    mu32 = mu.astype(np.float32)
    step = max(1, _CELL_BLOCK // n)
    zeros = 0
    for start in tqdm(range(0, total, step), desc="cells", unit="chunk", disable=not progress,
                      leave=False):
        g = group[start:start + step]
        block = rng.standard_normal((len(g), n), dtype=np.float32)
        block *= np.float32(config.cell_noise)
        block += mu32
        perturbed = g > 0
        block[perturbed] += shifts[g[perturbed] - 1]
        if spread is not None:  # cell-to-cell variation that spreads through the network
            eta = rng.standard_normal((len(g), n)) * config.network_noise
            block += spread.solve(eta.T).T.astype(np.float32)
        np.maximum(block, 0.0, out=block)
        zeros += int(total and np.count_nonzero(block == 0))
        X[start:start + step] = block
    sparse_x = zeros > 0.5 * X.size
    matrix = sp.csr_matrix(X) if sparse_x else X
    labels = np.asarray([keys.CTRL, *conditions], dtype=object)[group]
    obs = pd.DataFrame({
        keys.CONDITION: pd.Categorical(labels, categories=[keys.CTRL, *conditions]),
        keys.CELL_TYPE: pd.Categorical([config.cell_type] * total),
    }, index=pd.Index([f"cell{i}" for i in range(total)]))
    var = pd.DataFrame({keys.GENE_NAME: names.astype(str)}, index=pd.Index(names.astype(str)))
    return anndata.AnnData(X=matrix, obs=obs, var=var), bool(sparse_x)


# ----------------------------------------------------------------------------------------
# priors
# ----------------------------------------------------------------------------------------
def _false_edges(n: int, true_codes: np.ndarray, count: int, rng: np.random.Generator,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """``count`` distinct ordered pairs ``source * n + target`` (no self-loop, not in
    ``true_codes``), uniform, in draw order."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    possible = n * (n - 1) - len(true_codes)
    if count * 4 > possible and n <= 5000:  # dense request: enumerate the non-edges
        codes = np.arange(n * n, dtype=np.int64)
        codes = codes[(codes // n != codes % n) & ~np.isin(codes, true_codes)]
        return rng.choice(codes, count, replace=False)
    have = np.zeros(0, dtype=np.int64)
    while len(have) < count:
        draw = rng.integers(0, n * n, size=2 * (count - len(have)) + 16, dtype=np.int64)
        draw = draw[(draw // n != draw % n) & ~np.isin(draw, true_codes) & ~np.isin(draw, have)]
        _, first = np.unique(draw, return_index=True)
        draw = draw[np.sort(first)]
        have = np.concatenate([have, draw[:count - len(have)]])
    return have


def _priors(config: SimulationConfig, W: sp.csr_matrix, names: np.ndarray,
            rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    n = W.shape[0]
    coo = W.tocoo()
    true_codes = np.sort(coo.col.astype(np.int64) * n + coo.row)  # source * n + target
    m = len(true_codes)
    k = int(round(config.prior_true_fraction * m))
    n_false = k if config.prior_false_edges is None else int(config.prior_false_edges)
    possible = n * (n - 1) - m
    if n_false > possible or k + n_false > possible:
        raise GrapeError(f"the priors ask for {max(n_false, k + n_false)} false edges but only "
                         f"{possible} non-edges exist among {n} genes; lower "
                         "--prior-false-edges")
    true_pick = true_codes[np.sort(rng.choice(m, k, replace=False))]
    informative = np.concatenate([true_pick, _false_edges(n, true_codes, n_false, rng)])
    informative = informative[rng.permutation(len(informative))]  # order says nothing
    random = _false_edges(n, true_codes, len(informative), rng)

    def frame(codes: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"source": names[codes // n].astype(object),
                             "target": names[codes % n].astype(object),
                             "weight": np.ones(len(codes))})

    summary = {
        "informative": {"edges": int(len(informative)), "true": k, "false": n_false,
                        "precision": round(k / max(len(informative), 1), 4),
                        "recall": round(k / max(m, 1), 4)},
        "random": {"edges": int(len(random)), "true": 0, "false": int(len(random))},
    }
    return {"informative": frame(informative), "random": frame(random)}, summary


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent/prefix<random>``, with the user's usual permissions
    (``tempfile.mkdtemp`` would make it private)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _version() -> str:
    from . import __version__

    return __version__


def format_summary(screen: PlantedScreen) -> str:
    """A few lines describing a screen (what ``python -m grape_core simulate`` prints)."""
    s = screen.summary
    g, net, c, pr = s["genes"], s["network"], s["conditions"], s["priors"]
    rel = ", ".join(f"{name.replace('coding', 'c').replace('non', 'n')} {v['edges']}"
                    for name, v in net["relations"].items())
    inter = ", ".join(f"{k} {v}" for k, v in c["interactions"].items() if v and k != ADDITIVE)
    lines = [
        f"genes        {g['total']:,} ({g['coding']:,} protein-coding, {g['noncoding']:,} lncRNA; "
        f"{g['with_go']:,} with GO)",
        f"network      {net['edges']:,} edges from {g['regulators']:,} regulators "
        f"({100 * (net['activating_fraction'] or 0):.0f}% activating; {rel}); spectral "
        f"radius {net['spectral_radius']:.2f}",
        f"GO bias      {100 * net['go_shared_fraction_edges']:.1f}% of edges share a GO term "
        f"(background {100 * net['go_shared_fraction_background']:.1f}%)",
        f"conditions   {c['singles']} singles ({g['perturbed_regulators']} regulators), "
        f"{c['pairs']} pairs ({inter or 'no planted interactions'}); "
        f"{screen.config.mode}, {screen.config.propagation}",
        f"cells        {s['cells']['total']:,} ({s['cells']['control']} control, "
        f"{s['cells']['per_condition']} per condition)",
        f"priors       informative {pr['informative']['edges']:,} edges "
        f"({pr['informative']['true']:,} true), random {pr['random']['edges']:,} (0 true)",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# a quick generated screen for scale and device checks (no cells, no gene annotation)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratedKnowledge:
    """What :func:`grape_core.train.train_bundle` reads from gene knowledge, generated: random
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
        """The few AnnData fields training reads (no cells are generated)."""
        from types import SimpleNamespace

        return SimpleNamespace(uns={}, n_obs=self.n_cells, n_vars=len(self.pseudobulk.genes))


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
    from .data.pseudobulk import PseudoBulk
    from .data.splits import simulation_split

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
