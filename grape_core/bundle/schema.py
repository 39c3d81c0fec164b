"""The schema of a model folder: its file names, format versions and the typed sections of
its manifest (``manifest.json``), each a frozen dataclass decoded by
:mod:`grape_core.typed`.

Layout (scvi-tools style, without pickle)::

    manifest.json           versions, configs, data sha256, split, metrics, file checksums
    weights.safetensors     every ensemble member's weights (``member{i}.<param>``)
    graph.safetensors       gene views, node types, prior graph, fused embeddings
    pseudobulk.safetensors  measured means per condition, control mean, DE genes
    genes.csv               gene table in node order (symbol, biotype, is_coding, ...)
    split.json              the split the model was trained and evaluated on
    prior_edges.parquet     the prior graph the model started from
    learned_edges.parquet   the learned graph (ensemble mean)
    history.csv             training curve
    metrics.csv             per-condition held-out metrics of the model and the baselines
    singles.safetensors     every member's shift of every single (optional)
    ablations.csv           held-out metrics of retrained variants (optional)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import ArchitectureConfig, TrainConfig
from ..io import FolderKind, json_marker

FORMAT_VERSION = 5
"""Format 5 floors a measured perturbed gene's own change at what its control cells have, in
what it sends to its targets too (``floored_own_change``).
Format 4 added the outflow (``free_outflow``: a perturbed gene's own change and what its
targets feel, sized apart).
Format 3 added ``manifest_sha256``: the SHA-256 of the manifest itself (its canonical JSON
without that key), so an edit of a number in it is caught like an edit of a file; and the
model's data-driven self-effect, pair composition and floor at zero expression."""
READABLE_VERSIONS = (2, 3, 4, 5)
"""Older formats are still read, as what they were: their numbers are checked like every
other's, their model config gets :data:`LEGACY_MODEL` and their members the tensors they
lacked, set so that they predict exactly what they did."""
LEGACY_MODEL = {
    2: {"signed_self_effect": False, "pair_mixing": False, "nonnegative": False,
        "free_outflow": False, "floored_own_change": False},
    3: {"free_outflow": False, "floored_own_change": False},
    4: {"floored_own_change": False},
}
"""Format -> the model config of the models it holds, where the current defaults differ."""
FILES = {
    "manifest": "manifest.json",
    "weights": "weights.safetensors",
    "graph": "graph.safetensors",
    "pseudobulk": "pseudobulk.safetensors",
    "genes": "genes.csv",
    "split": "split.json",
    "prior": "prior_edges.parquet",
    "learned": "learned_edges.parquet",
    "history": "history.csv",
    "metrics": "metrics.csv",
}
OPTIONAL_FILES = {"ablations": "ablations.csv", "singles": "singles.safetensors"}
MODEL_FOLDER = FolderKind(
    name="model folder", marker=FILES["manifest"],
    entries=frozenset({*FILES.values(), *OPTIONAL_FILES.values()}),
    is_ours=json_marker("model_class", "GRAPE"))
"""What ``--overwrite`` may replace: a model folder of ours holding nothing else (or an
empty folder); a folder of the user's is never deleted."""
GRAPH_KEYS = ("text", "dna", "dna_missing", "is_coding", "prior_index", "prior_weight", "measured")
SINGLES_FLOAT16_ABOVE = 16_000_000
"""Stored single predictions with more values than this are written as float16 (a
5,000-gene model: 3 x 5,000 x 5,000 values, 150 MB instead of 300 MB)."""
SINGLES_MAX_VALUES = 100_000_000
"""Above this many values (genome-scale models: 3 x 20,000 x 20,000) single predictions are
not stored; a screen then computes the columns it needs."""




def _nan_for_null(value: Any) -> Any:
    """``None`` -> NaN in nested dicts of numbers (strict JSON writes NaN as ``null``)."""
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    return float("nan") if value is None else value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Section:
    """Dict round trip of a manifest section: fields in order, then unknown keys."""

    OPTIONAL: tuple[str, ...] = ()
    """Fields written only when set (not ``None`` and not empty)."""

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON: fields in order (optional ones only when set), then the keys
        this version does not know.

        Returns
        -------
        dict
        """
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in self.OPTIONAL and (value is None or value == () or value == {}):
                continue
            out[f.name] = _plain(value)
        out.update(getattr(self, "extra", {}))
        return out


@dataclass(frozen=True)
class DatasetInfo(_Section):
    """The screen a model was trained on."""

    name: str = ""
    file: str = ""
    """The file's name (never its path on the training machine)."""
    sha256: str = ""
    subset: tuple[str, ...] = ()
    condition_key: str = ""
    control_label: str = ""
    cells: int = 0
    genes: int = 0
    """Measured genes."""
    conditions: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class SplitInfo(_Section):
    """Which split, and how many conditions each part had."""

    name: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    train: int = 0
    val: int = 0
    test: int = 0
    val_carved_from_train: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ConfigsInfo(_Section):
    """Every config, as written by its ``to_dict()`` (read back with :attr:`model_config`...)."""

    model: dict[str, Any]
    train: dict[str, Any]
    feature: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def model_config(self) -> ArchitectureConfig:
        return ArchitectureConfig.from_dict(self.model)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)


@dataclass(frozen=True)
class MemberInfo(_Section):
    """How one ensemble member was trained, in optimisation steps."""

    OPTIONAL = ("refit_steps",)

    seed: int
    best_step: int
    """Step of the checkpoint kept (the best validation MSE)."""
    steps: int
    """Steps run before early stopping."""
    refit_steps: int | None = None
    """Steps of the final fit on every training condition, when validation conditions were
    carved from training."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TrainingInfo(_Section):
    """Training time, the conditions used, and each member's record."""

    OPTIONAL = ("total_seconds", "singles_seconds", "evaluation_seconds")

    seconds: float
    """The ensemble's training."""
    train_conditions: tuple[str, ...]
    """The conditions the final members were fitted on (the baselines' too)."""
    val_conditions: tuple[str, ...]
    members: tuple[MemberInfo, ...]
    total_seconds: float | None = None
    """Gene knowledge, training and evaluation together."""
    singles_seconds: float | None = None
    """Predicting every single for the stored screens (:attr:`Bundle.singles`)."""
    evaluation_seconds: float | None = None
    """The held-out evaluation (the model and every baseline)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GraphInfo(_Section):
    """The prior the model started from and the graph it learned."""

    prior: tuple[str, ...] = ()
    """Names of the priors (built-in names, or file names)."""
    prior_sources: tuple[dict[str, Any], ...] = ()
    """One record per prior: name, kind (builtin, file, table), edges, and for user priors
    the SHA-256 of the file and the genes it named that the model does not have."""
    prior_edges: int = 0
    learned_edges: int = 0
    learned_in_prior: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class MetricsInfo(_Section):
    """Held-out metrics: ``test[model][metric]``, ``subgroups[model][group][metric]``."""

    test: dict[str, dict[str, int | float | None]] = field(default_factory=dict)
    """Model -> metric -> value (``null`` where a metric is undefined)."""
    subgroups: dict[str, dict[str, dict[str, int | float | None]]] = field(default_factory=dict)
    verdict: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:  # null on disk (strict JSON) is NaN in memory
        object.__setattr__(self, "test", _nan_for_null(self.test))
        object.__setattr__(self, "subgroups", _nan_for_null(self.subgroups))


@dataclass(frozen=True)
class IntervalFit(_Section):
    """One group's interval: half width ``scale * sqrt(spread**2 + (floor * gene_scale)**2)``."""

    scale: float
    """``q``: the conformal quantile of the group's normalised validation errors."""
    floor: float
    """``κ``: the error floor, in units of each gene's training-shift scale."""
    values: int
    """(validation perturbation, gene) values it was fitted on."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CalibrationInfo(_Section):
    """The prediction interval's calibration (:mod:`grape_core.evaluation.calibration`): a
    perturbation's ``top`` largest predicted shifts take ``largest``'s interval, every other
    gene ``rest``'s, each fitted so that a ``level`` share of the validation perturbations'
    measured shifts fell inside."""

    level: float
    top: int
    largest: IntervalFit
    rest: IntervalFit
    conditions: int
    """Perturbations it was fitted on."""
    method: str = "split"
    """``split``: the validation perturbations as the ensemble predicted them; ``cross``:
    also every training perturbation, predicted by a member trained without its genes
    (cross-conformal)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PseudoBulkMeta(_Section):
    """Schema of the manifest's ``pseudobulk`` object (:meth:`PseudoBulk.to_arrays`
    metadata); checked when a manifest is read, kept as a dict on :class:`Manifest`."""

    genes: tuple[str, ...]
    conditions: tuple[str, ...]
    n_control: int
    dataset: str = ""
    sha256: str = ""
    de_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GenesInfo(_Section):
    nodes: tuple[str, ...]
    """Graph nodes in order (measured genes first)."""
    n_nodes: int
    n_measured: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


