"""Settings of a planted screen (:class:`SimulationConfig`), checked when built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal


from .. import keys
from ..config import SETTING_WORDS, Config
from ..errors import GrapeError
from ..typed import type_name

RELATIONS = tuple(f"{s}->{t}" for s in keys.NODE_TYPES for t in keys.NODE_TYPES)
"""Biotype pairs of an edge, ``source->target``: coding->coding, coding->noncoding,
noncoding->coding, noncoding->noncoding. Per-relation settings are 4-tuples in this order."""

INTERACTION_TYPES = ("synergy", "suppression", "epistasis", "neomorphic")
ADDITIVE = "additive"

_FLAGS = {
    "n_genes": "--genes", "noncoding_fraction": "--noncoding", "n_singles": "--singles",
    "n_pairs": "--pairs", "cells_per_condition": "--cells", "n_control_cells": "--control-cells",
    "propagation": "--propagation", "mode": "--mode", "spectral_radius": "--spectral-radius",
    "regulator_fraction": "--regulators", "prior_true_fraction": "--prior-true-fraction",
    "prior_false_edges": "--prior-false-edges", "go_bias": "--go-bias",
    "prior_signed": "--prior-signed", "prior_wrong_signs": "--prior-wrong-signs",
    "interaction_fraction": "--interaction-fraction", "cell_noise": "--noise",
    "network_noise": "--network-noise", "shared_std": "--shared-std",
    "saturation": "--saturation", "targets": "--targets",
    "relation_propensity": "--propensity", "relation_activating": "--activating",
    "relation_strength": "--strength", "efficiency": "--efficiency", "seed": "--seed",
    "hill_coefficient": "--hill-coefficient",
    "cell_model": "--cell-model", "library_size": "--library-size",
    "dispersion": "--dispersion",
    "guides_per_gene": "--guides", "escape_fraction": "--escape",
    "simulator": "--simulator",
}
"""Settings with a command-line flag; the others are set in a ``--config`` file."""

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


def check_memory(config: "SimulationConfig") -> None:
    """Refuse, before any allocation, a screen that needs more memory than
    ``GRAPE_SIMULATE_MEMORY_GB`` allows (default 80 % of the memory available).

    Raises
    ------
    GrapeError
        Naming the estimate, the limit and the settings that size it.
    """
    from ..settings import GB, settings

    limit = settings.simulate_memory
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
    simulator: Literal["steady_state", "harissa"] = "steady_state"
    """``steady_state``: the project's own (network steady states, :attr:`propagation`,
    plus a shared response and cell noise). ``harissa``: cells simulated by harissa's
    bursting gene-network model (:mod:`~grape_core.simulation.harissa`), on the same genes,
    network, perturbations and priors; knock-down only, no shared response, no planted
    interactions, one guide per gene."""
    harissa_interaction: float = 6.0
    """harissa: the strongest edge's interaction (others in proportion to the planted W)."""
    harissa_basal_range: tuple[float, float] = (-1.0, 1.0)
    """harissa: each gene's basal level, U(range)."""
    harissa_hours: float = 150.0
    """harissa: hours each cell is simulated from an empty state."""
    knockdown_strength: float = 4.0
    """harissa: a knock-down of efficiency e lowers its gene's basal level by this times e."""
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
    """Per perturbed gene (per guide with ``guides_per_gene`` > 1), eff ~ U(range): the size
    of its direct change."""
    guides_per_gene: int = 1
    """Guides per perturbed gene, each with its own efficiency; a condition's cells are
    split evenly among its guides (a pair's among every combination of its genes' guides),
    so its mean shift averages responses that, with non-linear dynamics, do not average
    linearly."""
    escape_fraction: float = 0.0
    """Share of a perturbed condition's cells in which the perturbation fails (no direct
    change, no propagation; the shared response stays)."""
    propagation: Literal["linear", "saturating", "bounded", "hill"] = "linear"
    """Steady-state dynamics: ``linear`` s = W s + u; ``saturating`` s = W phi(s) + u;
    ``bounded`` s = c tanh((W s + u) / c); ``hill`` s = W g(s) + u with g a Hill function of
    each regulator's level (see :class:`~grape_core.simulation.dynamics._Propagator`)."""
    saturation: float = 1.0
    """c of c tanh(x / c) in the ``saturating`` and ``bounded`` steady states (same units as
    s): a change of 1 passes on as 0.76, a change of 0.3 nearly unchanged."""
    hill_coefficient: float = 2.0
    """n of the Hill functions of ``hill`` dynamics."""
    hill_level_range: tuple[float, float] = (0.25, 0.75)
    """How saturated each regulator's Hill function is in control cells, h ~ U(range):
    near 0 a knock-down passes on little, near 1 an activation passes on little."""
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
    cell_model: Literal["gaussian", "counts"] = "gaussian"
    """``gaussian``: each cell is ``max(0, mu + shift + eps)`` on the log scale. ``counts``:
    each cell's expected expression ``exp(mu + shift + eps)`` is drawn as UMI counts
    (library size, Poisson or negative binomial), then normalised to the control cells'
    total and log1p'd, the way GEARS files are made."""
    library_size: float = 2000.0
    """``counts``: median UMIs per cell."""
    library_size_sd: float = 0.3
    """``counts``: sd of log library size across cells."""
    dispersion: float = 0.0
    """``counts``: negative binomial shape theta (variance mu + mu^2 / theta); 0: Poisson."""
    # --- priors --------------------------------------------------------------------------
    prior_true_fraction: float = 0.5
    """Share of the true edges in ``prior_informative.csv``."""
    prior_false_edges: int | None = None
    """False edges in ``prior_informative.csv`` (None: as many as its true edges)."""
    prior_signed: bool = False
    """The priors carry signs (``weight`` +1 or -1, as TRRUST or CollecTRI do): a true edge
    its true sign (see ``prior_wrong_signs``), a false edge a fair coin's. False: every
    weight 1, the sign left to the model."""
    prior_wrong_signs: float = 0.0
    """``prior_signed``: share of ``prior_informative.csv``'s true edges given the other
    sign."""

    def __post_init__(self) -> None:
        super().__post_init__()  # types (grape_core.typed), then ranges
        self._validate()

    @classmethod
    def _type_error(cls, key: str, value: Any, tp: Any) -> GrapeError:
        """A setting of the wrong type, named with its CLI flag like every other problem."""
        if value is dataclasses.MISSING:
            return GrapeError(f"SimulationConfig setting {key!r} is missing")
        name = key.split("[")[0]
        flag = f", {_FLAGS[name]}" if name in _FLAGS else ""
        return GrapeError(f"{key} ({value!r}{flag}) must be {type_name(tp, SETTING_WORDS)}")

    # one message per problem: what, the setting (and its CLI flag), what to do
    def _bad(self, name: str, text: str) -> GrapeError:
        flag = f", {_FLAGS[name]}" if name in _FLAGS else ""
        return GrapeError(f"{name} ({getattr(self, name)!r}{flag}) {text}")

    def _validate(self) -> None:
        """Ranges and sizes that must fit together (every type is the decoder's,
        :mod:`grape_core.typed`, before this runs)."""
        def fraction(name: str) -> None:
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise self._bad(name, "must be a fraction between 0 and 1")

        def count(name: str, low: int = 0) -> None:
            v = getattr(self, name)
            if v < low:
                raise self._bad(name, f"must be a whole number >= {low}")

        # every number is bounded as well as finite: values that pass end in float32 cells
        # and a network whose steady state exists, never in infinities (see _BOUNDS)
        def span(name: str, low: float = 0.0) -> None:
            v = getattr(self, name)
            high = _BOUNDS.get(name, 1e6)
            if (not all(math.isfinite(x) for x in v)
                    or not (low <= v[0] <= v[1] <= high)):
                raise self._bad(name, f"must be two numbers (low, high) with {low:g} <= low <= "
                                      f"high <= {high:g}")

        def per_relation(name: str, *, upper: float | None = None) -> None:
            v = getattr(self, name)
            upper = upper if upper is not None else _BOUNDS.get(name, 1e6)
            if (not all(math.isfinite(x) for x in v)
                    or any(x < 0 or x > upper for x in v)):
                raise self._bad(name, f"must be 4 numbers in [0, {upper:g}], one per relation "
                                      f"({', '.join(RELATIONS)})")

        count("seed")
        count("n_genes", 2)
        for name in ("noncoding_fraction", "regulator_fraction", "perturbed_regulator_fraction",
                     "interaction_fraction", "prior_true_fraction", "prior_wrong_signs"):
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
        if not 1 <= self.targets[0] <= self.targets[1]:
            raise self._bad("targets", "must be two whole numbers (low, high) with 1 <= low <= high")
        per_relation("relation_propensity")
        per_relation("relation_activating", upper=1.0)
        per_relation("relation_strength")
        if sum(self.relation_propensity) <= 0:
            raise self._bad("relation_propensity", "must have at least one positive value")
        if not 0 < self.spectral_radius < 1:
            raise self._bad("spectral_radius", "must be in (0, 1): with 1 or more the network "
                                               "has no steady state")
        for name in ("go_bias", "shared_std", "shared_scale_sd", "cell_noise", "network_noise"):
            v = getattr(self, name)
            high = _BOUNDS[name]
            if not math.isfinite(v) or not 0 <= v <= high:
                raise self._bad(name, f"must be a number between 0 and {high:g}")
        if not (math.isfinite(self.saturation)
                and 0 < self.saturation <= _BOUNDS["saturation"]):
            raise self._bad("saturation", f"must be a number > 0 and at most "
                                          f"{_BOUNDS['saturation']:g}")
        if self.simulator == "harissa":
            for name, ok, text in (
                    ("mode", self.mode == "knockdown", "must be 'knockdown' with harissa"),
                    ("guides_per_gene", self.guides_per_gene == 1, "must be 1 with harissa"),
                    ("interaction_fraction", self.interaction_fraction == 0 or not self.n_pairs,
                     "must be 0 with harissa (its pairs interact through its dynamics)"),
                    ("escape_fraction", self.escape_fraction == 0, "must be 0 with harissa"),
                    ("n_genes", self.n_genes <= 400,
                     "must be at most 400 with harissa (each cell is a stochastic simulation)")):
                if not ok:
                    raise self._bad(name, text)
            for name, low, high in (("harissa_interaction", 0.0, 50.0),
                                    ("harissa_hours", 2.0, 5000.0),
                                    ("knockdown_strength", 0.0, 50.0)):
                v = getattr(self, name)
                if not low <= v <= high:
                    raise self._bad(name, f"must be a number in [{low:g}, {high:g}]")
            span("harissa_basal_range", -20.0)
        fraction("escape_fraction")
        if self.escape_fraction >= 1:
            raise self._bad("escape_fraction", "must be below 1: some cells must be perturbed")
        count("guides_per_gene", 1)
        if self.guides_per_gene > 8:
            raise self._bad("guides_per_gene", "must be at most 8")
        if not 0.5 <= self.hill_coefficient <= 8:
            raise self._bad("hill_coefficient", "must be a number in [0.5, 8]")
        span("hill_level_range", 0.05)
        if self.hill_level_range[1] > 0.95:
            raise self._bad("hill_level_range", "must lie in [0.05, 0.95]")
        if not 10 <= self.library_size <= 1e7:
            raise self._bad("library_size", "must be a number of UMIs in [10, 1e7]")
        for name in ("library_size_sd", "dispersion"):
            v = getattr(self, name)
            if not math.isfinite(v) or not 0 <= v <= 1e6:
                raise self._bad(name, "must be a number in [0, 1e6]")
        if self.guides_per_gene > 1 and self.interaction_fraction > 0 and self.n_pairs:
            raise self._bad("interaction_fraction", "must be 0 with several guides per gene: "
                                                    "pairs then interact through the dynamics "
                                                    "only")
        unknown = [t for t in self.interaction_types if t not in INTERACTION_TYPES]
        if unknown or not self.interaction_types:
            raise self._bad("interaction_types", f"must name some of {', '.join(INTERACTION_TYPES)}")
        if self.prior_false_edges is not None:
            count("prior_false_edges")
        if self.prior_wrong_signs and not self.prior_signed:
            raise self._bad("prior_wrong_signs", "needs prior_signed: an unsigned prior has no "
                                                 "sign to get wrong")
        if not self.cell_type:
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
        1.6 GB estimated).

        Returns
        -------
        int
        """
        values = self.n_cells * self.n_genes
        conditions = (self.n_singles + self.n_pairs) * self.n_genes
        units = conditions * self.guides_per_gene ** 2  # a pair's guide combinations
        return 2 * 4 * values + 8 * units + 200 * self.n_cells + 64 * 2**20

    def disk_bytes(self) -> int:
        """About the size of the screen folder, in bytes (the cells and the truth).

        Returns
        -------
        int
        """
        return 4 * self.n_cells * self.n_genes + 8 * (self.n_singles + self.n_pairs) * self.n_genes


FAMILY: dict[str, dict[str, object]] = {
    "linear": {},
    "saturating": {"propagation": "saturating", "cell_model": "counts", "n_pairs": 60,
                   "interaction_fraction": 0.0},
    "bounded": {"propagation": "bounded", "guides_per_gene": 2, "cell_model": "counts",
                "n_pairs": 60, "interaction_fraction": 0.0},
    "hill": {"propagation": "hill", "guides_per_gene": 3, "n_pairs": 60,
             "interaction_fraction": 0.0},
    "activation": {"propagation": "hill", "mode": "activation", "cell_model": "counts",
                   "dispersion": 5.0, "n_pairs": 60, "interaction_fraction": 0.0},
    "weak_prior": {"prior_true_fraction": 0.25, "cell_noise": 0.5, "cells_per_condition": 30},
    "sparse_prior": {"propagation": "bounded", "cell_model": "counts", "escape_fraction": 0.1,
                     "prior_true_fraction": 0.1, "n_pairs": 60, "interaction_fraction": 0.0},
    "rich_prior": {"propagation": "saturating", "cell_model": "counts", "dispersion": 10.0,
                   "prior_true_fraction": 0.75, "n_pairs": 60, "interaction_fraction": 0.0},
    "wrong_signs": {"propagation": "saturating", "cell_model": "counts", "n_pairs": 60,
                    "interaction_fraction": 0.0, "prior_signed": True,
                    "prior_wrong_signs": 0.25},
    "harissa": {"simulator": "harissa", "n_genes": 100, "n_singles": 40, "n_pairs": 30,
                "interaction_fraction": 0.0, "cells_per_condition": 60, "n_control_cells": 300},
}
"""The simulator family GRAPE is judged on, by name (changes to :class:`SimulationConfig`):

- ``linear``: the model's own form (linear steady state, additive pairs with planted
  interactions, Gaussian cells): the screen GRAPE was built from;
- ``saturating``: what a regulator passes on saturates; UMI counts; pairs interact through
  the dynamics alone;
- ``bounded``: every gene's change saturates, two guides per gene of different
  efficiency, UMI counts;
- ``hill``: each regulator acts through a Hill function of its level; three guides;
- ``activation``: a CRISPRa screen on Hill dynamics, negative binomial counts;
- ``weak_prior``: a quarter of the true edges in the prior, noisy cells, 30 per condition;
- ``sparse_prior``: a tenth of the true edges, saturating dynamics, counts, and 10 % of
  cells in which the perturbation failed;
- ``rich_prior``: three quarters of the true edges, saturating messages, counts;
- ``wrong_signs``: ``saturating``'s screen (the same cells, seed for seed) with a signed
  prior, a quarter of whose true edges have the wrong sign;
- ``harissa``: a simulator the project did not write (harissa's bursting model,
  :mod:`~grape_core.simulation.harissa`), 100 genes, 40 singles and 30 pairs.
"""
