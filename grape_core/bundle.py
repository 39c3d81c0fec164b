"""A trained model as a folder: weights, a readable manifest, and everything to use it.

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

:meth:`Bundle.load` checks every file against the manifest's SHA-256 and stops with one
:class:`~grape_core.errors.BundleError` line that names what is missing or wrong.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from . import __version__
from .config import ModelConfig, TrainConfig
from .data.conditions import genes_of
from .data.pseudobulk import PseudoBulk
from .data.splits import Split
from .errors import BundleError, GrapeError
from .io import (FolderKind, check_output_folder, disk_full, ensure_space, folder_mode,
                 json_marker, not_ours, read_safetensors_numpy, remove_stale, sha256_file,
                 temp_prefix, tensor_bytes, write_json, write_safetensors, write_table)

if TYPE_CHECKING:  # torch and the model are imported where used: listing and verifying
    # bundles (the app's first page) must not pay for importing torch
    from .model.grape import GRAPE, GraphInputs

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
"""Format 3 adds ``manifest_sha256``: the SHA-256 of the manifest itself (its canonical JSON
without that key), so an edit of a number in it is caught like an edit of a file; and the
model's data-driven self-effect, pair composition and floor at zero expression."""
READABLE_VERSIONS = (2, 3)
"""Format 2 (no manifest checksum; the model before the data-driven self-effect and pair
composition) is still read, as what it was: its numbers are checked like every other's, its
model config gets :data:`LEGACY_MODEL` and its members the tensors they lacked, set so that
they predict exactly what they did."""
LEGACY_MODEL = {"signed_self_effect": False, "pair_mixing": False, "nonnegative": False}
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


# ----------------------------------------------------------------------------- manifest
def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if not (a is int and float in typing.get_args(tp))]
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "an object"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _checked(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` as type ``tp``, or a one-line :class:`BundleError` naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own message names the key inside it
            return _checked(value, others[0], key, source)
        for arg in others:
            try:
                return _checked(value, arg, key, source)
            except BundleError:
                pass
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            inner = typing.get_args(tp)[0]
            return tuple(_checked(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value))
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            args = typing.get_args(tp)
            if not args or args[1] is Any:
                return dict(value)
            return {k: _checked(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _section(tp, value, key, source)
    raise BundleError(f"{source}: manifest key {key!r} must be {_type_name(tp)}, not "
                      f"{_shown(value)}; restore the model folder or retrain it")


def _shown(value: Any) -> str:
    """A manifest value as JSON, cut to 40 characters."""
    shown = json.dumps(value, default=str)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _section(cls: type, data: dict[str, Any], where: str, source: str):
    """A manifest section dataclass from its JSON object; unknown keys are kept in ``extra``."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    extra = dict(data)
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        key = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BundleError(f"{source}: manifest key {key!r} is missing; restore the model "
                                  "folder or retrain it")
            continue
        kwargs[f.name] = _checked(extra.pop(f.name), hints[f.name], key, source)
    return cls(**kwargs, extra=extra)


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
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

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


@dataclass(frozen=True)
class Manifest(_Section):
    """``manifest.json``, typed and validated when read (:meth:`read`).

    A wrong type or a missing key is one :class:`~grape_core.errors.BundleError` line that
    names the key and the file. Keys this version does not know are kept (``extra``) and
    written back unchanged. Sections written at save time (``genes``, ``pseudobulk``,
    ``versions``, ``files``) are empty on a model that was never saved.
    """

    OPTIONAL = ("metrics", "uncertainty", "calibration", "genes", "created", "manifest_sha256")
    REQUIRED_ON_DISK = ("dataset", "split", "configs", "encoder_args", "model_sizes", "ensemble",
                        "training", "genes", "pseudobulk")
    """Keys every saved manifest has. ``files`` is not among them: a manifest without
    checksums is read, and refused by :func:`verify_bundle` unless loaded unverified."""

    name: str = ""
    command: str = ""
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    split: SplitInfo = field(default_factory=lambda: SplitInfo(name="", seed=-1))
    configs: ConfigsInfo = field(default_factory=lambda: ConfigsInfo(model={}, train={}))
    encoder_args: dict[str, Any] = field(default_factory=dict)
    model_sizes: dict[str, int] = field(default_factory=dict)
    """:class:`~grape_core.model.grape.ModelSizes`: what each member is built from."""
    ensemble: int = 0
    training: TrainingInfo = field(default_factory=lambda: TrainingInfo(0.0, (), (), ()))
    graph: GraphInfo = field(default_factory=GraphInfo)
    metrics: MetricsInfo | None = None
    """Held-out metrics; ``None`` when the split held nothing out."""
    uncertainty: dict[str, int | float | str | None] = field(default_factory=dict)
    """Does the ensemble's spread go with the error (:func:`~grape_core.evaluation.evaluate.uncertainty_check`),
    and how many held-out measured shifts fell inside the interval
    (:func:`~grape_core.evaluation.calibration.interval_check`)."""
    calibration: CalibrationInfo | None = None
    """The prediction interval; ``None`` for a model trained without validation perturbations
    (or before intervals existed): its predictions then carry the spread alone."""
    format_version: int = FORMAT_VERSION
    grape_core_version: str = __version__
    model_class: str = "GRAPE"
    genes: GenesInfo | None = None
    pseudobulk: dict[str, Any] = field(default_factory=dict)
    """:meth:`PseudoBulk.to_arrays` metadata."""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    files: dict[str, str] = field(default_factory=dict)
    """SHA-256 of every file of the folder, by key of :data:`FILES`."""
    manifest_sha256: str | None = None
    """SHA-256 of this manifest's canonical JSON without this key (:func:`manifest_digest`;
    format 3)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:  # null on disk (strict JSON) is NaN in memory
        object.__setattr__(self, "uncertainty", _nan_for_null(self.uncertainty))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest.json") -> "Manifest":
        """Validate and type a manifest dict; ``source`` names the file in errors."""
        if not isinstance(data, dict):
            raise BundleError(f"{source} must hold a JSON object, not {_json_kind(data)}; "
                              "restore the model folder or retrain it")
        _refuse_non_finite(data, "", source)
        manifest = _section(cls, data, "", source)
        manifest._check(source)
        return manifest

    def _check(self, source: str) -> None:
        """What types alone do not say: checksums are SHA-256 digests, sizes agree."""
        fix = "restore the model folder or retrain it"
        for key, digest in self.files.items():
            if not _SHA256.fullmatch(digest):
                raise BundleError(f"{source}: manifest key 'files.{key}' must be a SHA-256 "
                                  f"(64 hex digits), not {_shown(digest)}; {fix}")
        if self.genes is not None:
            nodes = self.genes.nodes
            if self.genes.n_nodes != len(nodes):
                raise BundleError(f"{source}: 'genes.n_nodes' is {self.genes.n_nodes} but "
                                  f"'genes.nodes' lists {len(nodes)} genes; {fix}")
            if not 0 < self.genes.n_measured <= len(nodes):
                raise BundleError(f"{source}: 'genes.n_measured' is {self.genes.n_measured}, "
                                  f"not between 1 and the {len(nodes)} nodes; {fix}")
            if len(set(nodes)) < len(nodes):
                twice = next(g for g in nodes if nodes.count(g) > 1)
                raise BundleError(f"{source}: 'genes.nodes' lists {_shown(twice)} twice; {fix}")
        if self.calibration is not None:
            self._check_calibration(self.calibration, source, fix)
        _check_numbers(self, source, fix)
        if self.pseudobulk:
            meta = _section(PseudoBulkMeta, self.pseudobulk, "pseudobulk", source)
            if meta.n_control < 0:
                raise BundleError(f"{source}: manifest key 'pseudobulk.n_control' must be a "
                                  f"whole number >= 0, not {meta.n_control}; {fix}")
            if self.genes is not None and len(meta.genes) != self.genes.n_measured:
                raise BundleError(f"{source}: 'pseudobulk.genes' lists {len(meta.genes)} genes but "
                                  f"'genes.n_measured' is {self.genes.n_measured}; {fix}")

    @staticmethod
    def _check_calibration(calibration: CalibrationInfo, source: str, fix: str) -> None:
        """Every number of the interval's calibration in its range, or one error naming it."""
        rules = [("level", calibration.level, "between 0 and 1 (excluded)",
                  0 < calibration.level < 1),
                 ("top", calibration.top, "1 or more", calibration.top >= 1),
                 ("conditions", calibration.conditions, "1 or more", calibration.conditions >= 1)]
        for group in ("largest", "rest"):
            fit = getattr(calibration, group)
            rules += [(f"{group}.{key}", getattr(fit, key),
                       f"finite, between 0 and {CALIBRATION_MAX:g}",
                       bool(np.isfinite(getattr(fit, key))
                            and 0 <= getattr(fit, key) <= CALIBRATION_MAX))
                      for key in ("scale", "floor")]
            rules.append((f"{group}.values", fit.values, "1 or more", fit.values >= 1))
        for key, value, wanted, ok in rules:
            if not ok:
                raise BundleError(f"{source}: manifest key 'calibration.{key}' must be {wanted}, "
                                  f"not {_shown(value)}; {fix}")

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        """Read and validate ``manifest.json`` (the file, or a model folder).

        Raises
        ------
        BundleError
            Not a file, unreadable, not JSON, not a JSON object, another format version, a
            key missing or of the wrong type, checksums that are not SHA-256 digests, sizes
            that disagree.
        """
        path = Path(path)
        file = path / FILES["manifest"] if path.is_dir() else path
        fix = "restore the model folder or retrain it"
        if file.is_dir():
            raise BundleError(f"{file} is a folder, not a file; {fix}")
        try:
            data = json.loads(file.read_bytes().decode("utf-8"))
        except FileNotFoundError as exc:
            raise BundleError(f"{file} is missing; {fix}") from exc
        except OSError as exc:
            raise BundleError(f"cannot read {file} ({exc.strerror or exc}); check its "
                              "permissions, or restore the model folder") from exc
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise BundleError(f"{file} is corrupted (not valid JSON: {reason}); {fix}") from exc
        if not isinstance(data, dict):
            raise BundleError(f"{file} must hold a JSON object, not {_json_kind(data)}; {fix}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise BundleError(
                f"{file.parent} uses bundle format {version!r}, this grape_core reads format "
                f"{' and '.join(map(str, READABLE_VERSIONS))}; retrain the model with this "
                "version"
            )
        stated = data.get("manifest_sha256")
        if stated is not None:
            if not isinstance(stated, str) or not _SHA256.fullmatch(stated):
                raise BundleError(f"{file}: manifest key 'manifest_sha256' must be a SHA-256 (64 "
                                  f"hex digits), not {_shown(stated)}; {fix}")
            try:
                digest = manifest_digest(data)
            except ValueError:  # NaN or infinity in it: reported below, key by key
                digest = ""
            if digest and digest != stated:
                raise BundleError(f"{file} was edited: its SHA-256 does not match its "
                                  f"'manifest_sha256'; {fix}")
        if version == 2:
            model = data.get("configs", {}).get("model") if isinstance(data.get("configs"), dict) else None
            if isinstance(model, dict):
                for key, value in LEGACY_MODEL.items():
                    model.setdefault(key, value)
        for key in cls.REQUIRED_ON_DISK:
            if key not in data:
                raise BundleError(f"{file}: manifest key {key!r} is missing; restore the model "
                                  "folder or retrain it")
        return cls.from_dict(data, source=str(file))

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)


_SHA256 = re.compile(r"[0-9a-f]{64}")
CALIBRATION_MAX = 1e4
"""The largest interval scale and floor a manifest may give: far above any fit (about 10
and 2 on the bundled models), low enough that every interval stays finite in float32."""


def manifest_digest(data: dict[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON (keys sorted, no spaces, strict: ``NaN`` as
    ``null``), without its ``manifest_sha256`` key.

    Raises
    ------
    ValueError
        The manifest holds an infinity (a literal ``Infinity`` in the file).
    """
    import hashlib

    from .io import strict

    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    text = json.dumps(strict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _refuse_non_finite(value: Any, key: str, source: str) -> None:
    """A literal ``NaN`` or ``Infinity`` anywhere in a manifest (the project writes undefined
    values as ``null``): one line naming the key."""
    if isinstance(value, float) and not np.isfinite(value):
        raise BundleError(f"{source}: manifest key {key!r} is {value!r}, not a finite number "
                          "(undefined values are written null); restore the model folder or "
                          "retrain it")
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_non_finite(v, f"{key}.{k}" if key else str(k), source)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_non_finite(v, f"{key}[{i}]", source)


_UNCERTAINTY_RANGES = {
    "spearman_std_vs_error": (-1.0, 1.0), "within_2_std": (0.0, 1.0),
    "interval_level": (0.0, 1.0), "within_interval_top": (0.0, 1.0),
    "within_interval_rest": (0.0, 1.0), "within_interval_de": (0.0, 1.0),
    "mean_error_top_decile_std": (0.0, np.inf), "mean_error_bottom_decile_std": (0.0, np.inf),
    "median_interval_half_width_top": (0.0, np.inf), "median_error_top": (0.0, np.inf),
    "n": (0, np.inf),
}
"""What each number of ``manifest.uncertainty`` may be (shares are 0..1: a 7.5 would be
shown as 750 %); NaN (``null``) is allowed: undefined."""


def _metric_range(name: str) -> tuple[float, float]:
    """The range of a held-out metric, by its name (GEARS names)."""
    if name.startswith("n_"):
        return 0.0, np.inf
    if name.startswith(("pearson", "spearman")):
        return -1.0, 1.0
    if name.startswith("frac"):
        return 0.0, 1.0
    if name.startswith(("mse", "rmse", "mae")):
        return 0.0, np.inf
    return -np.inf, np.inf


def _check_numbers(manifest: "Manifest", source: str, fix: str) -> None:
    """Every number of a manifest that the app and the CLI show or compute with, in its
    range (counts >= 0, seconds finite >= 0, shares in 0..1, correlations in -1..1), and the
    records of the priors of the right types; one :class:`BundleError` naming the key."""

    def bad(key: str, value: Any, wanted: str) -> BundleError:
        return BundleError(f"{source}: manifest key {key!r} must be {wanted}, not "
                           f"{_shown(value)}; {fix}")

    def number(key: str, value: Any, low: float, high: float = np.inf, *,
               nan: bool = False, whole: bool = False) -> None:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if whole:
            ok_type = ok_type and isinstance(value, int)
        if ok_type and nan and isinstance(value, float) and np.isnan(value):
            return
        if not ok_type or not np.isfinite(value) or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            span = (f">= {low:g}" if high == np.inf else f"between {low:g} and {high:g}")
            raise bad(key, value, f"{kind} {span}" + (" (or null)" if nan else ""))

    t = manifest.training
    number("training.seconds", t.seconds, 0.0)
    for name in ("total_seconds", "singles_seconds", "evaluation_seconds"):
        if getattr(t, name) is not None:
            number(f"training.{name}", getattr(t, name), 0.0)
    number("ensemble", manifest.ensemble, 1, whole=True)
    if t.members and len(t.members) != manifest.ensemble:
        raise bad("training.members", f"{len(t.members)} members",
                  f"one record per member ({manifest.ensemble})")
    for i, m in enumerate(t.members):
        for name in ("seed", "best_step", "steps"):
            number(f"training.members[{i}].{name}", getattr(m, name), 0, whole=True)
        if m.refit_steps is not None:
            number(f"training.members[{i}].refit_steps", m.refit_steps, 0, whole=True)
        if m.best_step > m.steps:
            raise bad(f"training.members[{i}].best_step", m.best_step,
                      f"at most its steps ({m.steps})")
    for name in ("cells", "genes", "conditions"):
        number(f"dataset.{name}", getattr(manifest.dataset, name), 0, whole=True)
    for name in ("train", "val", "test"):
        number(f"split.{name}", getattr(manifest.split, name), 0, whole=True)
    for name, value in manifest.model_sizes.items():
        number(f"model_sizes.{name}", value, 0, whole=True)
    g = manifest.graph
    for name in ("prior_edges", "learned_edges", "learned_in_prior"):
        number(f"graph.{name}", getattr(g, name), 0, whole=True)
    if g.learned_in_prior > g.learned_edges:
        raise bad("graph.learned_in_prior", g.learned_in_prior,
                  f"at most the learned edges ({g.learned_edges})")
    for i, record in enumerate(g.prior_sources):
        where = f"graph.prior_sources[{i}]"
        if not isinstance(record.get("name"), str) or not isinstance(record.get("kind"), str):
            raise bad(where, record, "an object with a name and a kind (strings)")
        for name in ("edges", "dropped_edges", "unknown_genes"):
            if name in record:
                number(f"{where}.{name}", record[name], 0, whole=True)
        examples = record.get("unknown_examples", [])
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise bad(f"{where}.unknown_examples", examples, "a list of gene names")
        if "sha256" in record and not (isinstance(record["sha256"], str)
                                       and _SHA256.fullmatch(record["sha256"])):
            raise bad(f"{where}.sha256", record["sha256"], "a SHA-256 (64 hex digits)")
    for name, value in manifest.uncertainty.items():
        if name in _UNCERTAINTY_RANGES:
            low, high = _UNCERTAINTY_RANGES[name]
            number(f"uncertainty.{name}", value, low, high, nan=True, whole=name == "n")
        elif not isinstance(value, str):
            number(f"uncertainty.{name}", value, -np.inf, np.inf, nan=True)
    if manifest.metrics is not None:
        for model, values in manifest.metrics.test.items():
            for name, value in values.items():
                low, high = _metric_range(name)
                number(f"metrics.test.{model}.{name}", value, low, high, nan=True)
        for model, groups in manifest.metrics.subgroups.items():
            for group, values in groups.items():
                for name, value in values.items():
                    low, high = _metric_range(name)
                    number(f"metrics.subgroups.{model}.{group}.{name}", value, low, high,
                           nan=True)


def _nan_for_null(value: Any) -> Any:
    """``None`` -> NaN in nested dicts of numbers (strict JSON writes NaN as ``null``)."""
    if isinstance(value, dict):
        return {k: _nan_for_null(v) for k, v in value.items()}
    return float("nan") if value is None else value


def _json_kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true or false"
    if isinstance(data, list):
        return f"a list ({_shown(data)})"
    if isinstance(data, str):
        return f"a string ({_shown(data)})"
    return f"a number ({_shown(data)})"


@dataclass(frozen=True)
class Bundle:
    """A loaded (or freshly trained) GRAPE model with its data summary and graphs.

    Read-only: nothing changes after construction (the app shares one loaded bundle between
    sessions). The caches of using a model live beside it, in
    :class:`grape_core.predict.Model`.
    """

    manifest: Manifest
    members: list[GRAPE]
    graph: GraphInputs
    genes: tuple[str, ...]
    """Node order: measured genes first, then perturbed genes that are not measured."""
    table: pd.DataFrame
    pseudobulk: PseudoBulk
    split: Split
    prior_edges: pd.DataFrame
    learned_edges: pd.DataFrame
    history: pd.DataFrame
    metrics: pd.DataFrame
    fused: np.ndarray
    singles: np.ndarray | None
    """Every member's predicted shift of every single perturbation (each node on its own),
    ``(n_members, n_nodes, n_measured)``: computed once at training time, so a screen is a
    lookup (:func:`grape_core.screen.single_shifts`). ``None`` for genome-scale models
    (more than :data:`SINGLES_MAX_VALUES` values)."""
    ablations: pd.DataFrame | None = None
    """Held-out metrics of retrained variants (see :data:`grape_core.train.ABLATIONS`)."""
    path: Path | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def name(self) -> str:
        return str(self.manifest.name or (self.path.name if self.path else "model"))

    @property
    def model_config(self) -> ModelConfig:
        return self.manifest.configs.model_config

    @property
    def train_config(self) -> TrainConfig:
        return self.manifest.configs.train_config

    @property
    def measured(self) -> tuple[str, ...]:
        return self.pseudobulk.genes

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}

    @cached_property
    def trained_genes(self) -> frozenset[str]:
        """Genes perturbed in at least one training condition."""
        return frozenset(g for c in self.split.train for g in genes_of(c))

    def check_genes(self, measured: tuple[str, ...] | list[str], *, source: str = "the data") -> None:
        """Refuse data whose measured genes differ from the model's.

        Raises
        ------
        BundleError
            With counts and examples of genes missing on either side.
        """
        mine, theirs = list(self.measured), list(measured)
        if mine == theirs:
            return
        only_model = [g for g in mine if g not in set(theirs)]
        only_data = [g for g in theirs if g not in set(mine)]
        if not only_model and not only_data:
            raise BundleError(
                f"model {self.name!r} and {source} measure the same {len(mine)} genes in a "
                "different order; reorder the data's genes (adata[:, model_genes])"
            )
        raise BundleError(
            f"model {self.name!r} was trained on other genes than {source}: "
            f"{len(only_model)} of its {len(mine)} genes are missing there "
            f"(e.g. {', '.join(only_model[:3]) or '-'}) and {len(only_data)} genes there are "
            f"unknown to it (e.g. {', '.join(only_data[:3]) or '-'}); train a model on this "
            "data with `python -m grape_core train`"
        )

    def replace(self, **changes: Any) -> "Bundle":
        """A copy with some fields changed (the bundle itself never changes)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the bundle folder atomically: a temporary folder beside ``path``, renamed
        into place.

        Safe when several processes save to the same ``path`` at once (the last one wins;
        none fails half-way), and what a killed save left beside ``path`` is removed by the
        next one.

        Raises
        ------
        BundleError
            ``path`` exists and ``overwrite`` is False.
        GrapeError
            ``path`` cannot be written (a parent is a file, a read-only folder).
        """
        path = Path(path)
        fix = "choose another folder"
        try:
            check_output_folder(path, kind=MODEL_FOLDER, overwrite=overwrite,
                                what="model folder", hint=fix)
        except GrapeError as exc:
            raise BundleError(str(exc)) from exc
        needed = self._bytes()
        ensure_space(path, needed, what="model folder", hint=f"free some space or {fix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        with disk_full(path, needed, hint=f"free some space or {fix}"):
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp"))
        try:
            os.chmod(tmp, folder_mode())  # a model folder, not a private one
            with disk_full(path, needed, hint=f"free some space or {fix}"):
                self._write(tmp)
            _install(tmp, path, overwrite=overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _bytes(self) -> int:
        """About how many bytes the folder takes (its tensors; tables are small)."""
        total = sum(tensor_bytes(v) for m in self.members for v in m.state_dict().values())
        total += sum(tensor_bytes(getattr(self.graph, k)) for k in GRAPH_KEYS)
        total += tensor_bytes(np.asarray(self.fused))
        total += tensor_bytes(np.asarray(self.pseudobulk.means)) * 2
        if self.singles is not None:
            size = int(np.asarray(self.singles).size)
            total += size * (2 if size > SINGLES_FLOAT16_ABOVE else 4)
        return total

    def _write(self, folder: Path) -> None:
        import torch

        weights = {f"member{i}.{k}": v for i, m in enumerate(self.members)
                   for k, v in m.state_dict().items()}
        write_safetensors(folder / FILES["weights"], weights)
        graph = {k: getattr(self.graph, k) for k in GRAPH_KEYS}
        graph["fused"] = torch.as_tensor(self.fused)
        write_safetensors(folder / FILES["graph"], graph)
        arrays, meta = self.pseudobulk.to_arrays()
        write_safetensors(folder / FILES["pseudobulk"], arrays)
        write_table(folder / FILES["genes"], self.table.reset_index(drop=True))
        self.split.save(folder / FILES["split"])
        write_table(folder / FILES["prior"], self.prior_edges)
        write_table(folder / FILES["learned"], self.learned_edges)
        write_table(folder / FILES["history"], self.history)
        write_table(folder / FILES["metrics"], self.metrics)
        if self.singles is not None:
            singles = np.asarray(self.singles)
            dtype = np.float16 if singles.size > SINGLES_FLOAT16_ABOVE else np.float32
            write_safetensors(folder / OPTIONAL_FILES["singles"],
                              {"shift": singles.astype(dtype, copy=False)})
        if self.ablations is not None:
            write_table(folder / OPTIONAL_FILES["ablations"], self.ablations.reset_index(names="variant"))
        written = {**FILES, **OPTIONAL_FILES}
        files = {key: sha256_file(folder / name) for key, name in written.items()
                 if key != "manifest" and (folder / name).exists()}
        manifest = self.manifest.replace(
            format_version=FORMAT_VERSION,
            grape_core_version=__version__,
            model_class="GRAPE",
            genes=GenesInfo(nodes=tuple(self.genes), n_nodes=len(self.genes),
                            n_measured=len(self.measured)),
            pseudobulk=meta,
            versions={"torch": torch.__version__, "python": platform.python_version(),
                      **_optional_versions()},
            created=self.manifest.created
            or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            files=files,
            manifest_sha256=None,
        )
        data = manifest.to_dict()
        data["manifest_sha256"] = manifest_digest(data)
        write_json(folder / FILES["manifest"], data)

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: str | Path, *, unverified: bool = False) -> "Bundle":
        """Load and verify a bundle folder.

        Every file is checked against the manifest's SHA-256, and every tensor against the
        model the manifest describes (shapes, dtypes, index ranges, finite values): nothing
        is resized to fit.

        Parameters
        ----------
        unverified
            Also load a folder whose manifest has no checksums (``files`` missing or
            empty, or files without one). Checksums that are there are still checked, and
            so is every tensor.

        Raises
        ------
        BundleError
            Not a folder, a missing file, a checksum mismatch (corrupted or edited file),
            no checksums (unless ``unverified``), another format version, or tensors that
            do not fit the manifest.
        """
        path = Path(path)
        manifest = verify_bundle(path, unverified=unverified)
        try:
            return cls._read(path, manifest)
        except GrapeError:
            raise
        except Exception as exc:  # safetensors/parquet raise various types on bad content
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise BundleError(f"model {path.name!r} cannot be read ({type(exc).__name__}: "
                              f"{reason}); restore the model folder or retrain it") from exc

    @classmethod
    def _read(cls, path: Path, manifest: Manifest) -> "Bundle":
        from .model.grape import GraphInputs

        check = _Checker(path.name)
        if manifest.genes is None:
            raise BundleError(f"model {path.name!r}: the manifest lists no genes; retrain the model")
        genes = manifest.genes.nodes
        table = pd.read_csv(path / FILES["genes"], keep_default_na=False, dtype={"symbol": str})
        missing = [c for c in ("symbol", "biotype", "is_coding") if c not in table]
        if missing:
            raise BundleError(f"model {path.name!r}: {FILES['genes']} has no {missing[0]!r} "
                              "column; restore the model folder or retrain it")
        table.index = pd.Index(table["symbol"].astype(str))
        if tuple(table.index) != genes:
            raise BundleError(f"model {path.name!r}: {FILES['genes']} does not list the "
                              "manifest's genes in order; restore the model folder or retrain it")
        pb = check.pseudobulk(read_safetensors_numpy(path / FILES["pseudobulk"]), manifest)
        graph_t = check.graph(_load_torch(path / FILES["graph"]), manifest)
        graph = GraphInputs(**{k: graph_t[k] for k in GRAPH_KEYS})
        if tuple(genes[i] for i in graph.measured.tolist()) != pb.genes:
            raise BundleError(f"model {path.name!r}: the measured genes of {FILES['graph']} and "
                              f"{FILES['pseudobulk']} differ; restore the model folder or "
                              "retrain it")
        members = check.members(_load_torch(path / FILES["weights"]), manifest, graph, pb)
        stored = path / OPTIONAL_FILES["singles"]
        singles = (check.singles(read_safetensors_numpy(stored), manifest) if stored.is_file()
                   else None)
        ablations = path / OPTIONAL_FILES["ablations"]
        nodes = set(genes)
        prior = check.edges(pd.read_parquet(path / FILES["prior"]), FILES["prior"], nodes)
        learned = check.edges(pd.read_parquet(path / FILES["learned"]), FILES["learned"], nodes,
                              extra={"in_prior": "bool"})
        history = check.numbers(pd.read_csv(path / FILES["history"]), FILES["history"])
        # round_trip: the stored replicate rows stand in for a fresh evaluation, bit for bit
        metrics = check.numbers(pd.read_csv(path / FILES["metrics"], dtype={"condition": str},
                                            float_precision="round_trip"), FILES["metrics"])
        return cls(
            manifest=manifest, members=members, graph=graph, genes=genes, table=table,
            pseudobulk=pb, split=Split.load(path / FILES["split"]),
            prior_edges=prior, learned_edges=learned, history=history, metrics=metrics,
            fused=graph_t["fused"].numpy(), singles=singles, path=path,
            ablations=(check.numbers(pd.read_csv(ablations, index_col="variant"),
                                     OPTIONAL_FILES["ablations"])
                       if ablations.is_file() else None),
        )


_TAKEN = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)


def _install(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename the written folder ``tmp`` onto ``path``. With ``overwrite``, whatever is at
    ``path`` is moved aside first (to a temporary name) and removed; when another save puts
    its folder there in between, that one is moved aside in turn: the last save wins and no
    save fails with "Directory not empty"."""
    for _ in range(50):
        try:
            os.rename(tmp, path)
            return
        except OSError as exc:
            if exc.errno not in _TAKEN:
                raise
        if not overwrite:
            raise BundleError(f"{path} already exists (written meanwhile by another run); pass "
                              "overwrite=True (--overwrite) to replace it")
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            raise BundleError(f"{path} became a link or a file while the model was written; it "
                              "is left as it is: choose another folder")
        reason = not_ours(path, MODEL_FOLDER) if os.path.isdir(path) else None
        if reason:
            raise BundleError(f"{path} {reason} (it changed while the model was written); "
                              "refusing to replace it: move your files out, or choose another "
                              "folder")
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path), suffix=".old"))
        try:
            os.rename(path, aside / path.name)
        except FileNotFoundError:
            pass  # another save moved it first
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    raise BundleError(f"could not replace {path}: other runs keep writing it; try again")


def _load_torch(file: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(file))


class _Checker:
    """Every tensor of a model folder against what the manifest and the model class say it
    must be; one :class:`BundleError` line naming the file, the tensor, the expected and the
    found shape (or range)."""

    FIX = "restore the model folder or retrain it"

    def __init__(self, model: str) -> None:
        self.model = model

    def fail(self, text: str) -> None:
        raise BundleError(f"model {self.model!r}: {text}; {self.FIX}")

    @staticmethod
    def dtype_name(dtype: Any) -> str:
        text = str(dtype)
        return text.removeprefix("torch.") if text.startswith("torch.") else str(np.dtype(dtype))

    def describe(self, shape: tuple, dtype: Any) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        return f"({dims}{',' if len(shape) == 1 else ''}) {self.dtype_name(dtype)}"

    def tensors(self, file: str, found: dict[str, Any], expected: dict[str, tuple[tuple, Any]],
                *, prefix: str = "") -> None:
        """Shapes (``None``: any size) and dtypes; floating tensors must be finite."""
        for name, (shape, dtype) in expected.items():
            if name not in found:
                self.fail(f"{file} has no tensor {prefix + name!r}")
            t = found[name]
            got_shape = tuple(t.shape)
            fits = len(got_shape) == len(shape) and all(
                e is None or e == g for e, g in zip(shape, got_shape))
            if not fits or self.dtype_name(t.dtype) != self.dtype_name(dtype):
                found_as = self.describe(got_shape, t.dtype)
                self.fail(f"{file}: tensor {prefix + name!r} is {found_as}; the manifest says "
                          f"{self.describe(shape, dtype)}")
            if _is_float(t) and not bool(_finite(t)):
                self.fail(f"{file}: tensor {prefix + name!r} holds non-finite values (NaN or "
                          "infinite)")

    def indices(self, file: str, values: Any, name: str, bound: int, *, low: int = 0,
                prefix: str = "") -> None:
        """Integer values in ``low .. bound - 1``."""
        if (values.size if isinstance(values, np.ndarray) else values.numel()) == 0:
            return
        lo, hi = int(values.min()), int(values.max())
        if lo < low or hi >= bound:
            bad = lo if lo < low else hi
            self.fail(f"{file}: tensor {prefix + name!r} holds index {bad}, outside "
                      f"{low}..{bound - 1}")

    # -------------------------------------------------------------- tables
    def edges(self, frame: pd.DataFrame, file: str, genes: set[str], *,
              extra: dict[str, str] | None = None) -> pd.DataFrame:
        """An edge table: ``source``, ``target`` (genes of the model), a finite numeric
        ``weight``, a ``relation`` (and ``extra`` columns of the given kind)."""
        columns = {"source": "gene", "target": "gene", "weight": "number",
                   "relation": "text", **(extra or {})}
        for name, kind in columns.items():
            if name not in frame.columns:
                self.fail(f"{file} has no {name!r} column")
            values = frame[name]
            if kind == "gene":
                unknown = ~values.isin(genes)
                if unknown.any():
                    self.fail(f"{file}: {name} {_shown(values[unknown].iloc[0])} (row "
                              f"{int(np.flatnonzero(unknown.to_numpy())[0])}) is not a gene of "
                              "the model")
            elif kind == "number":
                if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                    self.fail(f"{file}: column {name!r} is not numeric ({values.dtype})")
                bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
                if bad.any():
                    self.fail(f"{file}: column {name!r} holds {int(bad.sum())} non-finite "
                              "value(s) (NaN or infinite)")
            elif kind == "bool":
                if not pd.api.types.is_bool_dtype(values):
                    self.fail(f"{file}: column {name!r} is not true/false ({values.dtype})")
            elif not all(isinstance(v, str) for v in values.tolist()):
                self.fail(f"{file}: column {name!r} holds values that are not text")
        return frame

    def numbers(self, frame: pd.DataFrame, file: str) -> pd.DataFrame:
        """A table of results: its numeric columns hold no infinity (NaN: undefined)."""
        for name in frame.columns:
            values = frame[name]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                if np.isinf(values.to_numpy(dtype=np.float64)).any():
                    self.fail(f"{file}: column {name!r} holds an infinite value")
        return frame

    # -------------------------------------------------------------- the three tensor files
    def pseudobulk(self, arrays: dict[str, np.ndarray], manifest: Manifest) -> PseudoBulk:
        meta = manifest.pseudobulk
        n_genes, n_conds = len(meta["genes"]), len(meta["conditions"])
        file = FILES["pseudobulk"]
        de = arrays.get("de_idx")
        self.tensors(file, arrays, {
            "means": ((n_conds, n_genes), np.float32),
            "control_mean": ((n_genes,), np.float32),
            "n_cells": ((n_conds,), np.int64),
            "de_idx": ((n_conds, None), np.int64),
        })
        self.indices(file, de, "de_idx", n_genes)
        return PseudoBulk.from_arrays(arrays, meta)

    def graph(self, tensors: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
        import torch

        assert manifest.genes is not None
        n_nodes, n_measured = manifest.genes.n_nodes, manifest.genes.n_measured
        enc = manifest.encoder_args
        width = {k: enc.get(k) if isinstance(enc.get(k), int) else None
                 for k in ("text_dim", "dna_dim", "out_dim")}
        index = tensors.get("prior_index")
        n_edges = int(index.shape[1]) if index is not None and index.dim() == 2 else None
        expected = {
            "text": ((n_nodes, width["text_dim"]), torch.float32),
            "dna": ((n_nodes, width["dna_dim"]), torch.float32),
            "dna_missing": ((n_nodes,), torch.bool),
            "is_coding": ((n_nodes,), torch.bool),
            "prior_index": ((2, None), torch.int64),
            "prior_weight": ((n_edges,), torch.float32),
            "measured": ((n_measured,), torch.int64),
            "fused": ((n_nodes, width["out_dim"]), torch.float32),
        }
        file = FILES["graph"]
        for key in GRAPH_KEYS:
            if key not in tensors:
                self.fail(f"{file} has no tensor {key!r}")
        self.tensors(file, tensors, expected)
        self.indices(file, tensors["prior_index"], "prior_index", n_nodes)
        measured = tensors["measured"]
        self.indices(file, measured, "measured", n_nodes)
        if torch.unique(measured).numel() != measured.numel():
            self.fail(f"{file}: tensor 'measured' lists a node twice")
        return tensors

    def singles(self, arrays: dict[str, np.ndarray], manifest: Manifest) -> np.ndarray:
        """The stored single predictions: ``(ensemble, n_nodes, n_measured)``, float16 or
        float32, finite."""
        assert manifest.genes is not None
        file = OPTIONAL_FILES["singles"]
        shape = (manifest.ensemble, manifest.genes.n_nodes, manifest.genes.n_measured)
        shift = arrays.get("shift")
        if shift is None:
            self.fail(f"{file} has no tensor 'shift'")
        dtype = np.float16 if shift.dtype == np.float16 else np.float32
        self.tensors(file, arrays, {"shift": (shape, dtype)})
        return shift

    def members(self, weights: dict[str, Any], manifest: Manifest, graph: GraphInputs,
                pb: PseudoBulk) -> list[GRAPE]:
        """One model per ensemble member, each a fresh model built from the manifest (and
        prepared as training prepares it) whose every tensor the stored one must match."""
        file = FILES["weights"]
        n = manifest.ensemble
        if n < 1:
            self.fail(f"the manifest's ensemble is {n}, not a number of members")
        states: dict[int, dict[str, Any]] = {}
        for key, value in weights.items():
            head, dot, rest = key.partition(".")
            number = head.removeprefix("member")
            if not head.startswith("member") or not number.isdigit() or not dot:
                self.fail(f"{file} holds tensor {key!r}, not one of a member (member<i>.<name>)")
            states.setdefault(int(number), {})[rest] = value
        extra = sorted(set(states) - set(range(n)))
        if extra:
            self.fail(f"{file} holds member {extra[0]}, but the manifest's ensemble has {n} "
                      f"member(s)")
        members = []
        for i in range(n):
            model = _fresh_member(self, manifest, graph, pb)
            state = states.get(i, {})
            expected = model.state_dict()
            if manifest.format_version == 2:
                state = _legacy_state(state, expected)
            unknown = sorted(set(state) - set(expected))
            if unknown:
                self.fail(f"{file} holds tensor 'member{i}.{unknown[0]}', which the manifest's "
                          "model does not have")
            self.tensors(file, state, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()},
                         prefix=f"member{i}.")
            for name, bound in model.index_tensors().items():
                self.indices(file, state[name], name, bound, low=-1, prefix=f"member{i}.")
            model.load_state_dict(state, strict=True)
            model.eval()
            members.append(model)
        return members


def _legacy_state(state: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """A format-2 member's tensors, with those format 3 added set to what the member computed:
    its own self-effect whatever its sign (``self_known``, ``self_scale`` 1), and a pair as
    the sum of its measured singles plus the predicted interaction (``pair_mix`` 1, 1, 1, 0;
    every measured single holding one single's dose of the shared response). Shapes come
    from the fresh model (``expected``), never from the file."""
    import torch

    if "shared_amplitude" not in state:
        return state  # the checks that follow name what is missing
    state = dict(state)
    dose = float(torch.as_tensor(state["shared_amplitude"]).reshape(-1)[0])
    fill = {"self_scale": 1.0, "self_known": True, "known_dose": dose, "pair_fitted": False}
    for name, value in fill.items():
        if name not in state and name in expected:
            state[name] = torch.full_like(expected[name], value)
    if "pair_mix" not in state and "pair_mix" in expected:
        state["pair_mix"] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    return state


def _is_float(t: Any) -> bool:
    return t.is_floating_point() if hasattr(t, "is_floating_point") else \
        np.issubdtype(np.asarray(t).dtype, np.floating)


def _finite(t: Any) -> bool:
    if hasattr(t, "is_floating_point"):
        import torch

        return bool(torch.isfinite(t).all())
    return bool(np.isfinite(t).all())


def _fresh_member(check: _Checker, manifest: Manifest, graph: GraphInputs, pb: PseudoBulk) -> GRAPE:
    """A new, untrained member built from the manifest's config and sizes: the tensors a
    stored member must match exactly. The sizes must agree with the genes and the graph."""
    from .model.grape import GRAPE, ModelSizes

    assert manifest.genes is not None
    try:
        sizes = ModelSizes(**manifest.model_sizes)
    except TypeError as exc:
        check.fail(f"manifest key 'model_sizes' is not a set of model sizes ({exc})")
    expected = {"n_nodes": manifest.genes.n_nodes, "n_measured": manifest.genes.n_measured,
                "n_prior_edges": int(graph.prior_index.shape[1])}
    for key, value in expected.items():
        if getattr(sizes, key) != value:
            check.fail(f"manifest key 'model_sizes.{key}' is {getattr(sizes, key)}, but the model "
                       f"has {value}")
    if not 0 <= sizes.n_known <= len(manifest.training.train_conditions):
        check.fail(f"manifest key 'model_sizes.n_known' is {sizes.n_known}, more than the "
                   "training conditions")
    try:
        return GRAPE(manifest.configs.model_config, sizes, encoder_args=manifest.encoder_args)
    except Exception as exc:  # noqa: BLE001 - a config this version cannot build
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        check.fail(f"the manifest's 'configs.model' and 'encoder_args' do not describe a model "
                   f"this grape_core can build ({reason})")


def verify_bundle(path: str | Path, *, unverified: bool = False) -> Manifest:
    """Check a model folder without loading it (no torch): manifest (validated, see
    :meth:`Manifest.read`), format, every file's SHA-256. Returns the manifest.

    Parameters
    ----------
    unverified
        Accept files that have no checksum in the manifest (``files`` missing or empty);
        without it such a folder is refused.

    Raises
    ------
    BundleError
        Not a folder, no or unreadable manifest, another format version, a manifest key
        missing or of the wrong type, a missing file, a folder where a file should be, no
        checksums (unless ``unverified``) or a checksum mismatch (corrupted or edited file).
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model folder not found: {path}")
    if not os.path.lexists(path / FILES["manifest"]):
        raise BundleError(f"{path} is not a GRAPE model: {FILES['manifest']} is missing")
    manifest = Manifest.read(path)
    if manifest.grape_core_version != __version__:
        log.warning("%s was written by grape_core %s (this is %s)", path,
                    manifest.grape_core_version, __version__)
    fix = "restore the model folder or retrain it"
    files = manifest.files
    unchecked = []
    if manifest.format_version >= 3 and not manifest.manifest_sha256:
        unchecked.append(FILES["manifest"])  # format 3 states its own checksum
    for key, name in {**FILES, **OPTIONAL_FILES}.items():
        if key == "manifest":
            continue
        file = path / name
        if not os.path.lexists(file):
            if key in OPTIONAL_FILES and key not in files:
                continue
            raise BundleError(f"model {path.name!r} is missing {name}; copy the whole folder or retrain")
        if file.is_dir():
            raise BundleError(f"model {path.name!r}: {name} is a folder, not a file; {fix}")
        if not file.is_file():
            raise BundleError(f"model {path.name!r}: {name} is not a regular file (a broken "
                              f"link?); {fix}")
        if not files.get(key):
            unchecked.append(name)
            continue
        try:
            digest = sha256_file(file)
        except OSError as exc:
            raise BundleError(f"model {path.name!r}: cannot read {name} ({exc.strerror or exc}); "
                              "check its permissions, or restore the model folder") from exc
        if digest != files[key]:
            raise BundleError(
                f"model {path.name!r}: {name} is corrupted (its SHA-256 does not match the "
                "manifest); restore the folder or retrain"
            )
    if unchecked and not unverified:
        what = ("has no checksums (manifest key 'files' is missing or empty)" if not files else
                f"has no checksum for {', '.join(unchecked)} in its manifest")
        if unchecked == [FILES["manifest"]]:
            what = "has no checksum of its manifest (manifest key 'manifest_sha256')"
        raise BundleError(f"model {path.name!r} {what}, so its files cannot be verified; "
                          f"{fix}, or load it unverified (--unverified; Python: "
                          "load(..., unverified=True))")
    if unchecked:
        log.warning("model %r loaded unverified: no checksum for %s", path.name,
                    ", ".join(unchecked))
    return manifest


def _optional_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch_geometric", "numpy", "anndata"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def list_bundles(*folders: str | Path) -> dict[str, Path]:
    """Model folders (those holding a manifest) found directly under ``folders``."""
    found: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            try:
                is_model = os.path.lexists(sub / FILES["manifest"])
            except OSError:  # a folder this user cannot read: not listed
                continue
            if is_model and not sub.name.startswith("."):
                found.setdefault(sub.name, sub)
    return found
