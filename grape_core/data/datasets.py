"""Known public datasets and their download. The only module that touches the network.

A download goes to ``<data_dir>/<name>/`` (``GRAPE_DATA_DIR``), resumes an interrupted
transfer from its ``.part`` file, unpacks the GEARS zip, checks it and only then renames the
result into place: the final file is either complete and verified, or absent. Checked: the
size and the SHA-256 where the registry records them, and always that the file is an
AnnData ``.h5ad`` with a condition column (and the registry's cells x genes, when given),
so an HTML login page or an error page is never kept. A transfer or an archive member larger
than the registry's size (or ``GRAPE_DOWNLOAD_MAX_GB`` when no size is recorded) is stopped
and discarded. A bad file already in the cache is reported with its path, to delete.

The registry can be overridden (a mirror, a test server) by a JSON file named by
``GRAPE_REGISTRY``: ``{"adamson": {"url": ..., "sha256": ..., "size": ...}}`` replaces those
fields of a known entry, or adds an entry (``url`` required). :func:`registry` applies it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path

from .. import keys
from ..config import Paths
from ..settings import DOWNLOAD_MAX_DEFAULT_GB, GB
from ..errors import Cancelled, DataFormatError, DownloadError, GrapeError
from ..io import file_mode, free_space, human_size, sha256_file
from .read import HDF5_SIGNATURE

log = logging.getLogger(__name__)

H5AD_NAME = keys.GEARS_H5AD
REGISTRY_ENV = "GRAPE_REGISTRY"
"""Names a JSON file that overrides or extends :data:`REGISTRY` (mirrors, tests)."""
BLOCK = 1 << 20
MAX_ENV = "GRAPE_DOWNLOAD_MAX_GB"
"""The most a download (and the file unpacked from it) may be when the registry records no
size, in GB; default :data:`~grape_core.settings.DOWNLOAD_MAX_DEFAULT_GB`."""


@dataclass(frozen=True)
class RegistryEntry:
    """A public GEARS-processed dataset."""

    name: str
    url: str
    description: str
    sha256: str | None = None
    """SHA-256 of the ``.h5ad`` itself (not of the zip that carries it); ``None``: unknown."""
    size: int | None = None
    """Size of the ``.h5ad`` in bytes; ``None``: unknown (then ``GRAPE_DOWNLOAD_MAX_GB``
    caps the download)."""
    cells: int | None = None
    """Cells (obs rows) the file must hold; ``None``: not checked."""
    genes: int | None = None
    """Genes (var rows) the file must hold; ``None``: not checked."""
    citation: str = ""


REGISTRY: dict[str, RegistryEntry] = {
    "adamson": RegistryEntry(
        name="adamson",
        url="https://dataverse.harvard.edu/api/access/datafile/6154417",
        description="Adamson et al. 2016, CRISPRi Perturb-seq in K562 (GEARS processed): "
        "68,603 cells x 5,060 genes, 86 single perturbations",
        sha256="a737244a4e4c7cc20c0265185417523af8295769b23af274ac23be61fed25f91",
        size=606_502_516,
        cells=68_603,
        genes=5_060,
        citation="Adamson et al., Cell 167:1867 (2016); Roohani et al., Nat. Biotechnol. (2023)",
    ),
    "norman": RegistryEntry(
        name="norman",
        url="https://dataverse.harvard.edu/api/access/datafile/6154020",
        description="Norman et al. 2019, CRISPRa singles and pairs in K562 (GEARS processed): "
        "91,205 cells x 5,045 genes, 105 singles + 131 pairs",
        # The unpacked perturb_processed.h5ad, as stated in public work that downloaded it
        # (not measured here: no network): the SHA-256 in the README of the GitHub repository
        # The-MathKing/gcpmamba ("The expected SHA-256 of data/norman/perturb_processed.h5ad
        # is 23ffb0fa..."), the same digest with this size (2,228,610,012 bytes) and shape in
        # other public audits of datafile 6154020.
        sha256="23ffb0fac6a847ff927cf7509d80d85052bfefbfb97610786a2dafaaefa0b6a0",
        size=2_228_610_012,
        cells=91_205,
        genes=5_045,
        citation="Norman et al., Science 365:786 (2019); Roohani et al., Nat. Biotechnol. (2023)",
    ),
}


_WHOLE_FIELDS = ("size", "cells", "genes")


def registry() -> dict[str, RegistryEntry]:
    """:data:`REGISTRY` with the overrides of the file named by ``GRAPE_REGISTRY`` (if set).

    Raises
    ------
    DownloadError
        The override file cannot be read, is not a JSON object of objects, names an unknown
        field or gives a new entry without ``url``.
    """
    found = dict(REGISTRY)
    from ..settings import settings

    path = settings.registry
    if path is None:
        return found
    fix = f"fix it or unset {REGISTRY_ENV}"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DownloadError(f"cannot read the registry override {path} ({exc}); {fix}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DownloadError(f"the registry override {path} must map dataset names to objects; {fix}")
    allowed = {f.name for f in dataclasses.fields(RegistryEntry)} - {"name"}
    for key, fields in data.items():
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise DownloadError(f"the registry override {path} gives unknown field(s) "
                                f"{', '.join(unknown)} for {key!r} (known: {', '.join(sorted(allowed))}); {fix}")
        for field_name, value in fields.items():
            whole = field_name in _WHOLE_FIELDS
            ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0
                  if whole else isinstance(value, str))
            if field_name == "sha256" and isinstance(value, str):
                ok = len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())
            if not ok and not (value is None and field_name in ("sha256", *_WHOLE_FIELDS)):
                wanted = ("a positive whole number" if whole else
                          "a SHA-256 (64 hex digits)" if field_name == "sha256" else "a string")
                raise DownloadError(f"the registry override {path}: {key}.{field_name} must be "
                                    f"{wanted}, not {str(value)[:40]!r}; {fix}")
            if field_name == "sha256" and isinstance(value, str):
                fields = {**fields, "sha256": value.lower()}
        key = str(key).lower()
        if key in found:
            found[key] = dataclasses.replace(found[key], **fields)
        elif "url" in fields:
            found[key] = RegistryEntry(name=key, **{"description": "", **fields})
        else:
            raise DownloadError(f"the registry override {path} adds {key!r} without a url; {fix}")
    return found


def resolve_dataset(source: str | Path, *, data_dir: str | Path | None = None) -> Path:
    """A local ``.h5ad`` path as given, or a registry name downloaded into the cache
    (:func:`download`; what the command line's ``--data adamson`` does before reading).

    Parameters
    ----------
    source
        A ``.h5ad`` file, a GEARS dataset folder, or a registry name.
    data_dir
        The download cache (default ``GRAPE_DATA_DIR``).

    Returns
    -------
    Path
        The ``.h5ad`` file.

    Raises
    ------
    DataFormatError
        The path does not exist and is not a registry name.
    """
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir():
            candidate = path / H5AD_NAME
            if candidate.exists():
                return candidate
            raise DataFormatError(f"{path} is a folder; give the .h5ad file inside it")
        return path
    known = registry()
    if str(source).lower() in known:
        return download(str(source).lower(), data_dir=data_dir)
    raise DataFormatError(
        f"file not found: {source}; give a path to a .h5ad file or a known dataset name "
        f"({', '.join(known)})"
    )


@contextmanager
def cache_hint(source: str | Path, path: Path) -> Iterator[None]:
    """When the file ``path`` read for the registry name ``source`` is bad, say that it is the
    download cache and which file to delete (the next run downloads it again)."""
    try:
        yield
    except DataFormatError as exc:
        name = str(source).lower()
        if Path(source).expanduser().exists() or name not in registry():
            raise
        raise DataFormatError(f"{exc}; this is the download cache of {name!r}: delete {path} "
                              "and run again to download it afresh") from exc


def cached_path(name: str, *, data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir else Path(Paths.from_env().data_dir)
    return root / name / H5AD_NAME


def max_download(entry: RegistryEntry) -> int:
    """The most bytes a download of ``entry`` (and the file unpacked from it) may have: the
    registry's size and 1 % (at least 1 MiB) for a zip's headers, else
    ``GRAPE_DOWNLOAD_MAX_GB`` (default 20 GB).

    Raises
    ------
    DownloadError
        ``GRAPE_DOWNLOAD_MAX_GB`` is not a size.
    """
    if entry.size:
        return entry.size + max(entry.size // 100, 1 << 20)
    from ..settings import settings

    try:
        return int(settings.download_max)
    except GrapeError as exc:
        raise DownloadError(str(exc)) from exc


def download(
    name: str,
    *,
    data_dir: str | Path | None = None,
    entry: RegistryEntry | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    on_progress: Callable[[int, int | None], None] | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Download a registry dataset once and return the path of its verified ``.h5ad``.

    Parameters
    ----------
    name
        Registry name (``adamson``, ``norman``; see :func:`registry`).
    data_dir
        Cache root; default ``GRAPE_DATA_DIR`` or the user cache folder.
    entry
        Use this entry instead of the registry's (other mirrors, tests).
    progress
        A tqdm bar on stderr.
    on_progress
        Called with ``(bytes received, total bytes or None)`` after every block.
    stop
        When set, the transfer stops at the next block; what was received is kept and the
        next call resumes it.

    Raises
    ------
    DownloadError
        Network failure, HTTP error, interrupted transfer (run again: it resumes), full
        disk, wrong size or checksum, not an AnnData file of the expected shape, larger than
        allowed, an archive without an ``.h5ad`` (``reason`` says which); a bad file already
        in the cache (the message names it, to delete).
    Cancelled
        ``stop`` was set.

    Returns
    -------
    Path
        The verified ``<data_dir>/<name>/perturb_processed.h5ad``.
    """
    entry = entry or registry().get(name)
    if entry is None:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(registry())}")
    target = cached_path(entry.name, data_dir=data_dir)
    if target.exists():  # verified when it was written; size and signature catch the rest
        _check_cached(target, entry)
        return target
    limit = max_download(entry)
    part = target.parent / "download.part"
    with _disk_errors(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(entry.url, part, progress=progress, timeout=timeout, on_progress=on_progress,
                  stop=stop, limit=limit, name=entry.name)
    tmp = Path(tempfile.mkstemp(dir=target.parent, suffix=".h5ad.tmp")[1])
    try:
        with _disk_errors(target.parent):
            with open(part, "rb") as fh:
                magic = fh.read(4)
            if magic[:2] == b"PK":
                _extract_h5ad(part, tmp, limit=entry.size or limit, name=entry.name)
            else:
                shutil.copyfile(part, tmp)
        _verify(tmp, entry, delete=True)
        _check_content(tmp, entry)
        os.chmod(tmp, file_mode())  # a data file the lab shares, not mkstemp's 0600
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if not (isinstance(exc, DownloadError) and exc.reason == "disk"):
            part.unlink(missing_ok=True)  # a payload that fails its checks must not be resumed
        raise
    os.replace(tmp, target)
    part.unlink(missing_ok=True)
    log.info("downloaded %s to %s", entry.name, target)
    return target


@contextmanager
def _disk_errors(folder: Path) -> Iterator[None]:
    """Turn "no space left on device" into a :class:`DownloadError` (``reason="disk"``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DownloadError(
            f"the disk is full: cannot write to {folder} ({exc.strerror}); free some space or "
            "set GRAPE_DATA_DIR to a folder on a larger disk, then try again (what was "
            "downloaded is kept and resumed)", reason="disk") from exc


def _write_block(fh, block: bytes) -> None:
    fh.write(block)


def _too_large(url: str, name: str, got: int, limit: int, *, announced: bool) -> DownloadError:
    said = "announces" if announced else "sent"
    return DownloadError(
        f"download of {url}: the server {said} {human_size(got)}{'' if announced else ' or more'}, "
        f"more than the {human_size(limit)} {name!r} may be; the download was stopped and "
        f"discarded (a wrong file or a wrong URL: check the registry entry, or raise "
        f"{MAX_ENV} for a dataset without a recorded size)", reason="checksum")


def _download(url: str, part: Path, *, progress: bool, timeout: float,
              on_progress: Callable[[int, int | None], None] | None = None,
              stop: threading.Event | None = None, limit: int | None = None,
              name: str = "") -> None:
    from tqdm.auto import tqdm

    limit = limit if limit is not None else DOWNLOAD_MAX_DEFAULT_GB * GB
    done = part.stat().st_size if part.exists() else 0
    if done > limit:  # a part left by another registry entry or a runaway transfer
        part.unlink(missing_ok=True)
        done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "grape-explorer"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https URL from the registry)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # the part is already complete
            return
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; the server "
                            "refused the file: try again later, or download it yourself and "
                            "pass its path", reason="http", status=exc.code) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(
            f"download of {url} failed ({exc}); check the network, or download the file "
            "yourself and pass its path", reason="network"
        ) from exc
    with response:
        mode = "ab" if done and response.status == 206 else "wb"
        if mode == "wb":
            done = 0
        length = _content_length(response.headers.get("Content-Length"), url)
        total = done + length if length is not None else None
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise _too_large(url, name, total, limit, announced=True)
        received = done
        bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=part.parent.name,
                   disable=not progress, file=sys.stderr)
        if on_progress is not None:
            on_progress(received, total)
        try:
            with open(part, mode) as fh:
                while True:
                    if stop is not None and stop.is_set():
                        raise Cancelled(f"download of {part.parent.name} cancelled after "
                                        f"{received / 1e6:.1f} MB; they are kept, and the next "
                                        "try resumes from there")
                    try:
                        block = response.read1(BLOCK)  # what has arrived: prompt progress and stop
                    except (IncompleteRead, OSError) as exc:
                        raise DownloadError(
                            f"download of {url} was interrupted after {received} bytes; run "
                            "the same command again to resume", reason="interrupted"
                        ) from exc
                    if not block:
                        break
                    if received + len(block) > limit:  # a stream that does not end
                        fh.close()
                        part.unlink(missing_ok=True)
                        raise _too_large(url, name, received + len(block), limit,
                                         announced=False)
                    _write_block(fh, block)
                    received += len(block)
                    bar.update(len(block))
                    if on_progress is not None:
                        on_progress(received, total)
        finally:
            bar.close()
    if total is not None and received < total:
        raise DownloadError(
            f"download of {url} was interrupted after {received} of {total} bytes; run the "
            "same command again to resume", reason="interrupted"
        )


def _content_length(value: str | None, url: str) -> int | None:
    """The Content-Length header as a number; ``None`` when absent or not a whole number
    >= 0 (then the transfer runs to its end, within the size limit)."""
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        length = -1
    if length < 0:
        log.warning("download of %s: ignoring the invalid Content-Length %r", url, value[:40])
        return None
    return length


def _extract_h5ad(archive: Path, dest: Path, *, limit: int | None = None, name: str = "") -> None:
    """Unpack the archive's ``.h5ad`` to ``dest``: refused before a byte is written when it
    says it is larger than ``limit`` (or than the free disk), and stopped when it grows past
    ``limit`` while unpacking (an archive that lies about its size)."""
    limit = limit if limit is not None else DOWNLOAD_MAX_DEFAULT_GB * GB
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".h5ad")]
            preferred = [m for m in members if m.filename.endswith(H5AD_NAME)]
            if not members:
                raise DownloadError(f"the downloaded archive holds no .h5ad file ({archive})",
                                    reason="archive")
            member = (preferred or members)[0]
            if member.file_size > limit:
                raise DownloadError(
                    f"the downloaded archive's {member.filename} unpacks to "
                    f"{human_size(member.file_size)}, more than the {human_size(limit)} "
                    f"{name!r} may be; it was discarded (a wrong file: check the registry "
                    "entry)", reason="checksum")
            free = free_space(dest.parent)
            if free is not None and member.file_size > free:
                raise DownloadError(
                    f"the disk is full: unpacking {member.filename} needs "
                    f"{human_size(member.file_size)}, {human_size(free)} free in {dest.parent}; "
                    "free some space or set GRAPE_DATA_DIR to a folder on a larger disk, then "
                    "try again", reason="disk")
            written = 0
            with zf.open(member) as src, open(dest, "wb") as out:
                while block := src.read(BLOCK):
                    written += len(block)
                    if written > limit:
                        raise DownloadError(
                            f"the downloaded archive's {member.filename} unpacks to more than "
                            f"{human_size(limit)}, more than {name!r} may be; it was stopped "
                            "and discarded", reason="checksum")
                    out.write(block)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"the downloaded archive is damaged ({exc}); run again",
                            reason="archive") from exc


def _verify(path: Path, entry: RegistryEntry, *, delete: bool, hash_check: bool = True) -> None:
    if entry.size is not None and path.stat().st_size != entry.size:
        got = path.stat().st_size
        if delete:
            path.unlink(missing_ok=True)
        raise DownloadError(
            f"{entry.name}: file has {got} bytes, expected {entry.size}; "
            + ("the download was discarded, run again" if delete else
               f"the cached file is damaged: delete {path} and run again to download it afresh"),
            reason="checksum",
        )
    if entry.sha256 is None or not hash_check:
        return
    digest = sha256_file(path)
    if digest != entry.sha256:
        if delete:
            path.unlink(missing_ok=True)
        raise DownloadError(
            f"{entry.name}: checksum mismatch (sha256 {digest}, expected {entry.sha256}); "
            + ("the download was discarded, run again" if delete else
               f"the cached file is damaged: delete {path} and run again to download it afresh"),
            reason="checksum",
        )


def _what_it_is(head: bytes) -> str:
    """What a file that is not HDF5 looks like, from its first bytes."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text:
        return "an HTML or XML page: a login, error or challenge page from the server?"
    if head[:2] == b"PK":
        return "a zip archive"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file"
    if not head:
        return "an empty file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:200]):
        return "a text file"
    return "unknown bytes"


def _content_problem(path: Path, entry: RegistryEntry) -> str | None:
    """Why ``path`` is not the AnnData ``entry`` describes (``None``: it is): not HDF5, not
    readable as AnnData (obs and var), no condition column, or cells x genes that differ
    from the registry's."""
    from .read import _detect_condition_key, _read_without_x

    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:8] != HDF5_SIGNATURE:
        return f"is not an AnnData .h5ad file (it is {_what_it_is(head)})"
    try:
        adata, _ = _read_without_x(path)
    except (DataFormatError, OSError, ValueError) as exc:
        return f"cannot be read as AnnData ({str(exc).splitlines()[0][:160]})"
    if entry.cells is not None and adata.n_obs != entry.cells or \
            entry.genes is not None and adata.n_vars != entry.genes:
        return (f"holds {adata.n_obs:,} cells x {adata.n_vars:,} genes, not the "
                f"{entry.cells or '?'} x {entry.genes or '?'} of {entry.name!r}")
    try:
        _detect_condition_key(adata, None, path)
    except DataFormatError:
        return (f"has no condition column in obs (columns: "
                f"{', '.join(map(str, adata.obs.columns))[:120] or 'none'})")
    return None


def _check_content(path: Path, entry: RegistryEntry) -> None:
    """A download that no checksum proved is kept only if it is the AnnData the registry
    describes (:func:`_content_problem`)."""
    if entry.sha256 is not None:
        return  # the SHA-256 proved it byte for byte
    problem = _content_problem(path, entry)
    if problem:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{entry.name}: the download {problem}; it was discarded: try again "
                            "later, or download the file yourself and pass its path",
                            reason="checksum")


def _check_cached(path: Path, entry: RegistryEntry) -> None:
    """A file already in the cache: its size (when recorded) and that it is HDF5 (cheap:
    no hashing of gigabytes on every run). A bad one is named, to delete."""
    _verify(path, entry, delete=False, hash_check=False)
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise DownloadError(f"{entry.name}: cannot read the cached file {path} "
                            f"({exc.strerror or exc}); delete it and run again to download it "
                            "afresh", reason="checksum") from exc
    if head[:8] != HDF5_SIGNATURE:
        raise DownloadError(f"{entry.name}: the cached file {path} is not an AnnData .h5ad file "
                            f"(it is {_what_it_is(head)}); delete {path} and run again to "
                            "download it afresh", reason="checksum")
