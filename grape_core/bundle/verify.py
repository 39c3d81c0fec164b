"""A model folder checked without loading it (no torch): its manifest and the SHA-256 of
every file (:func:`verify_bundle`); and the model folders of a models folder
(:func:`list_bundles`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .._version import __version__
from ..errors import BundleError
from ..io import file_problem
from .manifest import Manifest
from .schema import FILES, OPTIONAL_FILES

log = logging.getLogger(__name__)


def verify_bundle(path: str | Path, *, unverified: bool = False) -> Manifest:
    """Check a model folder without loading it (no torch): manifest (validated, see
    :meth:`Manifest.read`), format, every file's SHA-256.

    Parameters
    ----------
    path
        The model folder.
    unverified
        Accept files that have no checksum in the manifest (``files`` missing or empty);
        without it such a folder is refused.

    Returns
    -------
    Manifest
        The folder's manifest, validated.

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
        problem = file_problem(path, name, files.get(key) or None)
        kind = problem[0] if problem else None
        if kind == "missing":
            if key in OPTIONAL_FILES and key not in files:
                continue
            raise BundleError(f"model {path.name!r} is missing {name}; copy the whole folder or retrain")
        if kind == "folder":
            raise BundleError(f"model {path.name!r}: {name} is a folder, not a file; {fix}")
        if kind == "special":
            raise BundleError(f"model {path.name!r}: {name} is not a regular file (a broken "
                              f"link?); {fix}")
        if kind == "unreadable":
            raise BundleError(f"model {path.name!r}: cannot read {name} ({problem[1]}); "
                              "check its permissions, or restore the model folder")
        if kind == "mismatch":
            raise BundleError(
                f"model {path.name!r}: {name} is corrupted (its SHA-256 does not match the "
                "manifest); restore the folder or retrain"
            )
        if not files.get(key):
            unchecked.append(name)

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


def list_bundles(*folders: str | Path) -> dict[str, Path]:
    """Model folders (those holding a manifest) found directly under ``folders``.

    Parameters
    ----------
    *folders
        Folders to look in (one that does not exist is skipped).

    Returns
    -------
    dict
        Folder name -> path, the first folder's first (a name found twice keeps the first).
    """
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

