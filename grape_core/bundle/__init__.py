"""A trained model as a folder (the saved model): ``schema`` (files, versions, manifest
sections), ``manifest`` (:class:`Manifest`, read and checked by ``checks``), ``folder``
(:class:`Bundle`: save and load), ``verify`` (checksums, no torch), ``tensors`` (every
tensor against the manifest)."""

from .checks import manifest_digest
from .folder import Bundle
from .manifest import Manifest
from .schema import (FILES, FORMAT_VERSION, GRAPH_KEYS, LEGACY_MODEL, MODEL_FOLDER, OPTIONAL_FILES,
                     READABLE_VERSIONS, SINGLES_FLOAT16_ABOVE, SINGLES_MAX_VALUES, CalibrationInfo,
                     ConfigsInfo, DatasetInfo, GenesInfo, GraphInfo, IntervalFit, MemberInfo,
                     MetricsInfo, PseudoBulkMeta, SplitInfo, TrainingInfo)
from .verify import list_bundles, verify_bundle

__all__ = [
    "Bundle", "Manifest", "verify_bundle", "list_bundles", "manifest_digest", "FILES",
    "OPTIONAL_FILES", "FORMAT_VERSION", "READABLE_VERSIONS", "LEGACY_MODEL", "MODEL_FOLDER",
    "GRAPH_KEYS", "SINGLES_FLOAT16_ABOVE", "SINGLES_MAX_VALUES", "CalibrationInfo",
    "ConfigsInfo", "DatasetInfo", "GenesInfo", "GraphInfo", "IntervalFit", "MemberInfo",
    "MetricsInfo", "PseudoBulkMeta", "SplitInfo", "TrainingInfo",
]
