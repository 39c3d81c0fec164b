"""``manifest.json``: the typed, validated description of a model folder
(:class:`Manifest`), read with one error line per problem."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import BundleError
from ..typed import shown
from .checks import (SHA256, check_manifest, decode_section, json_kind, manifest_digest,
                     refuse_non_finite)
from .schema import (FILES, FORMAT_VERSION, LEGACY_MODEL, READABLE_VERSIONS, CalibrationInfo,
                     ConfigsInfo, DatasetInfo, GenesInfo, GraphInfo, MetricsInfo, SplitInfo,
                     TrainingInfo, _nan_for_null, _Section)


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
    """:class:`~grape_core.nn.grape.ModelSizes`: what each member is built from."""
    ensemble: int = 0
    training: TrainingInfo = field(default_factory=lambda: TrainingInfo(0.0, (), (), ()))
    graph: GraphInfo = field(default_factory=GraphInfo)
    metrics: MetricsInfo | None = None
    """Held-out metrics; ``None`` when the split held nothing out."""
    uncertainty: dict[str, int | float | str | None] = field(default_factory=dict)
    """Does the ensemble's spread go with the error (:func:`~grape_core.evaluation.benchmark.uncertainty_check`),
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
        """Validate and type a manifest dict.

        Parameters
        ----------
        data
            The manifest's JSON object.
        source
            The file it came from (named in errors).

        Returns
        -------
        Manifest

        Raises
        ------
        BundleError
            Not an object, a key missing or of the wrong type, a number out of range.
        """
        if not isinstance(data, dict):
            raise BundleError(f"{source} must hold a JSON object, not {json_kind(data)}; "
                              "restore the model folder or retrain it")
        refuse_non_finite(data, "", source)
        manifest = decode_section(cls, data, source)
        check_manifest(manifest, source)
        return manifest

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
            raise BundleError(f"{file} must hold a JSON object, not {json_kind(data)}; {fix}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise BundleError(
                f"{file.parent} uses bundle format {version!r}, this grape_core reads format "
                f"{' and '.join(map(str, READABLE_VERSIONS))}; retrain the model with this "
                "version"
            )
        stated = data.get("manifest_sha256")
        if stated is not None:
            if not isinstance(stated, str) or not SHA256.fullmatch(stated):
                raise BundleError(f"{file}: manifest key 'manifest_sha256' must be a SHA-256 (64 "
                                  f"hex digits), not {shown(stated)}; {fix}")
            try:
                digest = manifest_digest(data)
            except ValueError:  # NaN or infinity in it: reported below, key by key
                digest = ""
            if digest and digest != stated:
                raise BundleError(f"{file} was edited: its SHA-256 does not match its "
                                  f"'manifest_sha256'; {fix}")
        if version in LEGACY_MODEL:
            model = data.get("configs", {}).get("model") if isinstance(data.get("configs"), dict) else None
            if isinstance(model, dict):
                for key, value in LEGACY_MODEL[version].items():
                    model.setdefault(key, value)
        for key in cls.REQUIRED_ON_DISK:
            if key not in data:
                raise BundleError(f"{file}: manifest key {key!r} is missing; restore the model "
                                  "folder or retrain it")
        return cls.from_dict(data, source=str(file))

    def replace(self, **changes: Any) -> "Manifest":
        """A copy with ``changes`` (the manifest itself never changes).

        Parameters
        ----------
        **changes
            Fields and their new values.

        Returns
        -------
        Manifest
        """
        return dataclasses.replace(self, **changes)

