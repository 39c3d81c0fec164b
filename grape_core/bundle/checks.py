"""What a manifest's types alone do not say: checksums are SHA-256 digests, sizes agree, every
number the app and the command line show is in its range; the manifest's own SHA-256
(:func:`manifest_digest`); and the one decoder of manifest sections (:func:`decode_section`),
whose errors name the key and the file in one line."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

from ..errors import BundleError
from ..io import strict
from ..typed import decode, shown, type_name
from .schema import CalibrationInfo, PseudoBulkMeta

FIX = "restore the model folder or retrain it"


def decode_section(cls: type, data: dict[str, Any], source: str, *, where: str = "") -> Any:
    """A manifest section (a dataclass of :mod:`.schema`) from its JSON object
    (:func:`grape_core.typed.decode`); keys this version does not know are kept in its
    ``extra``.

    Parameters
    ----------
    cls
        The section's dataclass.
    data
        Its JSON object.
    source
        The file (named in errors).
    where
        The section's key in the manifest (``training``); ``""`` for the manifest itself.

    Returns
    -------
    An instance of ``cls``.

    Raises
    ------
    BundleError
        A key missing or of the wrong type, in one line naming it and the file.
    """
    def fail(key: str, value: Any, tp: Any) -> BundleError:
        return BundleError(f"{source}: manifest key {key!r} must be {type_name(tp)}, not "
                           f"{shown(value)}; {FIX}")

    def missing(key: str) -> BundleError:
        return BundleError(f"{source}: manifest key {key!r} is missing; {FIX}")

    return decode(cls, data, where=where, fail=fail, missing=missing)


def check_manifest(manifest: Any, source: str) -> None:
    """What types alone do not say: checksums are SHA-256 digests, sizes agree, every
    number in its range.

    Parameters
    ----------
    manifest
        A manifest just decoded.
    source
        The file it came from (named in the error).

    Raises
    ------
    BundleError
        One line naming the key and the file.
    """
    fix = "restore the model folder or retrain it"
    for key, digest in manifest.files.items():
        if not SHA256.fullmatch(digest):
            raise BundleError(f"{source}: manifest key 'files.{key}' must be a SHA-256 "
                              f"(64 hex digits), not {shown(digest)}; {fix}")
    if manifest.genes is not None:
        nodes = manifest.genes.nodes
        if manifest.genes.n_nodes != len(nodes):
            raise BundleError(f"{source}: 'genes.n_nodes' is {manifest.genes.n_nodes} but "
                              f"'genes.nodes' lists {len(nodes)} genes; {fix}")
        if not 0 < manifest.genes.n_measured <= len(nodes):
            raise BundleError(f"{source}: 'genes.n_measured' is {manifest.genes.n_measured}, "
                              f"not between 1 and the {len(nodes)} nodes; {fix}")
        if len(set(nodes)) < len(nodes):
            twice = next(g for g in nodes if nodes.count(g) > 1)
            raise BundleError(f"{source}: 'genes.nodes' lists {shown(twice)} twice; {fix}")
    if manifest.calibration is not None:
        _check_calibration(manifest.calibration, source, fix)
    _check_numbers(manifest, source, fix)
    if manifest.pseudobulk:
        meta = decode_section(PseudoBulkMeta, manifest.pseudobulk, source, where="pseudobulk")
        if meta.n_control < 0:
            raise BundleError(f"{source}: manifest key 'pseudobulk.n_control' must be a "
                              f"whole number >= 0, not {meta.n_control}; {fix}")
        if manifest.genes is not None and len(meta.genes) != manifest.genes.n_measured:
            raise BundleError(f"{source}: 'pseudobulk.genes' lists {len(meta.genes)} genes but "
                              f"'genes.n_measured' is {manifest.genes.n_measured}; {fix}")



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
                              f"not {shown(value)}; {fix}")



SHA256 = re.compile(r"[0-9a-f]{64}")
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

    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    text = json.dumps(strict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def refuse_non_finite(value: Any, key: str, source: str) -> None:
    """A literal ``NaN`` or ``Infinity`` anywhere in a manifest (the project writes undefined
    values as ``null``): one line naming the key."""
    if isinstance(value, float) and not np.isfinite(value):
        raise BundleError(f"{source}: manifest key {key!r} is {value!r}, not a finite number "
                          "(undefined values are written null); restore the model folder or "
                          "retrain it")
    if isinstance(value, dict):
        for k, v in value.items():
            refuse_non_finite(v, f"{key}.{k}" if key else str(k), source)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            refuse_non_finite(v, f"{key}[{i}]", source)


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


def _check_numbers(manifest: Any, source: str, fix: str) -> None:
    """Every number of a manifest that the app and the CLI show or compute with, in its
    range (counts >= 0, seconds finite >= 0, shares in 0..1, correlations in -1..1), and the
    records of the priors of the right types; one :class:`BundleError` naming the key."""

    def bad(key: str, value: Any, wanted: str) -> BundleError:
        return BundleError(f"{source}: manifest key {key!r} must be {wanted}, not "
                           f"{shown(value)}; {fix}")

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
                                       and SHA256.fullmatch(record["sha256"])):
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


def json_kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true or false"
    if isinstance(data, list):
        return f"a list ({shown(data)})"
    if isinstance(data, str):
        return f"a string ({shown(data)})"
    return f"a number ({shown(data)})"


