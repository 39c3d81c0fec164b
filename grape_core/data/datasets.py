"""Known public datasets and their download. The only module that touches the network.

A download goes to ``<data_dir>/<name>/`` (``GRAPE_DATA_DIR``), resumes an interrupted
transfer from its ``.part`` file, unpacks the GEARS zip, checks the SHA-256 and only then
renames the result into place: the final file is either complete and verified, or absent.

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
from ..errors import Cancelled, DataFormatError, DownloadError
from ..io import sha256_file
from .read import read_perturbseq

log = logging.getLogger(__name__)

H5AD_NAME = keys.GEARS_H5AD
REGISTRY_ENV = "GRAPE_REGISTRY"
"""Names a JSON file that overrides or extends :data:`REGISTRY` (mirrors, tests)."""
BLOCK = 1 << 20


@dataclass(frozen=True)
class RegistryEntry:
    """A public GEARS-processed dataset."""

    name: str
    url: str
    description: str
    sha256: str | None = None
    """SHA-256 of the ``.h5ad`` itself (not of the zip that carries it); ``None``: unknown."""
    size: int | None = None
    citation: str = ""


REGISTRY: dict[str, RegistryEntry] = {
    "adamson": RegistryEntry(
        name="adamson",
        url="https://dataverse.harvard.edu/api/access/datafile/6154417",
        description="Adamson et al. 2016, CRISPRi Perturb-seq in K562 (GEARS processed): "
        "68,603 cells x 5,060 genes, 86 single perturbations",
        sha256="a737244a4e4c7cc20c0265185417523af8295769b23af274ac23be61fed25f91",
        size=606_502_516,
        citation="Adamson et al., Cell 167:1867 (2016); Roohani et al., Nat. Biotechnol. (2023)",
    ),
    "norman": RegistryEntry(
        name="norman",
        url="https://dataverse.harvard.edu/api/access/datafile/6154020",
        description="Norman et al. 2019, CRISPRa singles and pairs in K562 (GEARS processed): "
        "91,205 cells x 5,045 genes, 105 singles + 131 pairs",
        citation="Norman et al., Science 365:786 (2019); Roohani et al., Nat. Biotechnol. (2023)",
    ),
}


def registry() -> dict[str, RegistryEntry]:
    """:data:`REGISTRY` with the overrides of the file named by ``GRAPE_REGISTRY`` (if set).

    Raises
    ------
    DownloadError
        The override file cannot be read, is not a JSON object of objects, names an unknown
        field or gives a new entry without ``url``.
    """
    found = dict(REGISTRY)
    name = os.environ.get(REGISTRY_ENV, "").strip()
    if not name:
        return found
    path = Path(name).expanduser()
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
            ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0
                  if field_name == "size" else isinstance(value, str))
            if not ok and not (value is None and field_name in ("sha256", "size")):
                raise DownloadError(f"the registry override {path}: {key}.{field_name} must be "
                                    f"{'a positive whole number' if field_name == 'size' else 'a string'}, "
                                    f"not {value!r}; {fix}")
        key = str(key).lower()
        if key in found:
            found[key] = dataclasses.replace(found[key], **fields)
        elif "url" in fields:
            found[key] = RegistryEntry(name=key, **{"description": "", **fields})
        else:
            raise DownloadError(f"the registry override {path} adds {key!r} without a url; {fix}")
    return found


def resolve_dataset(source: str | Path, *, data_dir: str | Path | None = None) -> Path:
    """A local ``.h5ad`` path as given, or a registry name downloaded into the cache.

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
        return fetch(str(source).lower(), data_dir=data_dir)
    raise DataFormatError(
        f"file not found: {source}; give a path to a .h5ad file or a known dataset name "
        f"({', '.join(known)})"
    )


def read(source: str | Path, *, data_dir: str | Path | None = None, **kwargs):
    """Read a screen given as a local ``.h5ad`` (or GEARS folder) or as a registry name
    (``adamson``, ``norman``; downloaded once into the data cache).

    Keyword arguments go to :func:`~grape_core.data.read.read_perturbseq`; returns its
    AnnData ``n_cells × n_genes``.

    Examples
    --------
    >>> import grape_core as gc
    >>> adata = gc.read("adamson")  # doctest: +SKIP
    """
    return read_perturbseq(resolve_dataset(source, data_dir=data_dir), **kwargs)


def cached_path(name: str, *, data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir else Path(Paths.from_env().data_dir)
    return root / name / H5AD_NAME


def fetch(
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
        disk, wrong checksum, an archive without an ``.h5ad`` (``reason`` says which).
    Cancelled
        ``stop`` was set.
    """
    entry = entry or registry().get(name)
    if entry is None:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(registry())}")
    target = cached_path(entry.name, data_dir=data_dir)
    if target.exists():  # verified when it was written; a size check catches truncation
        _verify(target, entry, delete=False, hash_check=False)
        return target
    part = target.parent / "download.part"
    with _disk_errors(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(entry.url, part, progress=progress, timeout=timeout, on_progress=on_progress,
                  stop=stop)
    tmp = Path(tempfile.mkstemp(dir=target.parent, suffix=".h5ad.tmp")[1])
    try:
        with _disk_errors(target.parent):
            with open(part, "rb") as fh:
                magic = fh.read(4)
            if magic[:2] == b"PK":
                _extract_h5ad(part, tmp)
            else:
                shutil.copyfile(part, tmp)
        _verify(tmp, entry, delete=True)
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


def _download(url: str, part: Path, *, progress: bool, timeout: float,
              on_progress: Callable[[int, int | None], None] | None = None,
              stop: threading.Event | None = None) -> None:
    from tqdm.auto import tqdm

    done = part.stat().st_size if part.exists() else 0
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
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"download of {url} failed ({exc}); check the network, or download the file "
            "yourself and pass its path", reason="network"
        ) from exc
    with response:
        mode = "ab" if done and response.status == 206 else "wb"
        if mode == "wb":
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
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


def _extract_h5ad(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if m.endswith(".h5ad")]
            preferred = [m for m in members if m.endswith(H5AD_NAME)]
            if not members:
                raise DownloadError(f"the downloaded archive holds no .h5ad file ({archive})",
                                    reason="archive")
            with zf.open((preferred or members)[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
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
            + ("the download was discarded, run again" if delete else f"delete {path} and run again"),
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
            + ("the download was discarded, run again" if delete else f"delete {path} and run again"),
            reason="checksum",
        )
