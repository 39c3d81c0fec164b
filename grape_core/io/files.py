"""Reading the files a user gives, and writing every file atomically
(:mod:`grape_core.io`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import GrapeError
from .space import _kind_of, disk_full, file_mode, human_size, remove_stale, temp_prefix


# ----------------------------------------------------------------------------- reading
MAX_TEXT_BYTES = 64 * 1000**2
"""A list of perturbations, a signature or a settings file larger than this is a mistake
(a data file given by error): refused before it is read."""


def check_input_file(path: str | Path, *, what: str, fix: str,
                     max_bytes: int | None = None) -> Path:
    """A file the user gives, checked before it is opened: it exists and is a regular file
    (a link to one is followed; a FIFO, which would block the read forever, or a device,
    which never ends, is refused), of at most ``max_bytes``.

    Returns
    -------
    The path, expanded.

    Raises
    ------
    GrapeError
        Naming ``what`` and the path, and saying ``fix``.
    """
    path = Path(path).expanduser()
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise GrapeError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise GrapeError(f"cannot read {what} {path} ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise GrapeError(f"{what} {path} is a folder; {fix}")
    if not stat.S_ISREG(info.st_mode):
        raise GrapeError(f"{what} {path} is {_kind_of(info.st_mode)}, not a regular file; {fix}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise GrapeError(f"{what} {path} is {human_size(info.st_size)}, more than the "
                         f"{human_size(max_bytes)} such a file may be; {fix}")
    return path


def read_text_file(path: str | Path, *, what: str, fix: str,
                   max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small text file the user gives (a signature, a list of perturbations, settings).

    Raises
    ------
    GrapeError
        Naming ``what`` and the path, and saying ``fix``: not found, a folder, not a
        regular file (a FIFO, a device), larger than ``max_bytes``, unreadable, or not text
        (not UTF-8, or NUL bytes: a binary or spreadsheet file).
    """
    path = check_input_file(path, what=what, fix=fix, max_bytes=max_bytes)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may have grown since it was checked
    except OSError as exc:
        raise GrapeError(f"cannot read {what} {path} ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise GrapeError(f"{what} {path} is more than the {human_size(max_bytes)} such a file "
                         f"may be; {fix}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GrapeError(f"{what} {path} is not text (byte {exc.start} is not UTF-8; "
                         f"a binary or spreadsheet file?); {fix}") from exc
    if "\x00" in text:
        raise GrapeError(f"{what} {path} is not text (it holds NUL bytes); {fix}")
    return text


# ----------------------------------------------------------------------------- writing
def refuse_special(path: str | Path, *, what: str = "the output", hint: str = "") -> None:
    """Refuse to replace ``path`` when it is a symbolic link, a folder, a device, a FIFO or
    a socket: renaming a file over it would turn a link, a pipe or a device (``/dev/null``)
    into a plain file, and lose a folder. Nothing there, or a regular file: no error."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        return
    fix = hint or "give the path of a new or regular file"
    if stat.S_ISLNK(info.st_mode):
        try:
            points = f" (to {os.readlink(path)})"
        except OSError:
            points = ""
        raise GrapeError(f"{what} {path} is a symbolic link{points}; it is left as it is "
                         f"(writing would replace the link, not the file it points to); {fix}")
    if stat.S_ISDIR(info.st_mode):
        raise GrapeError(f"{what} {path} is a folder; give a file name inside it, or {fix}")
    raise GrapeError(f"{what} {path} is {_kind_of(info.st_mode)}, not a regular file; it is "
                     f"left as it is; {fix}")


@contextmanager
def atomic_path(path: str | Path, *, needed: int | None = None,
                what: str = "the output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The one place every file is written: a symbolic link, a folder or a special file at
    ``path`` is refused (before and after the work), the file gets the user's usual
    permissions (:func:`file_mode`), and a full disk is one line naming ``path`` and
    ``needed`` bytes (:func:`disk_full`); the previous file is kept in every case.
    """
    path = Path(path)
    refuse_special(path, what=what)
    with disk_full(path, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        os.close(fd)
    tmp_path = Path(tmp)

    def written() -> int | None:
        return tmp_path.stat().st_size if tmp_path.exists() else None

    try:
        with disk_full(path, needed, written=written):
            yield tmp_path
            os.chmod(tmp_path, file_mode())
        refuse_special(path, what=what)  # something put there while the file was written
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, *, what: str = "the output") -> None:
    with atomic_path(path, needed=len(data), what=what) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, *, what: str = "the output") -> None:
    write_bytes(path, text.encode("utf-8"), what=what)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def strict(data: Any) -> Any:
    """``data`` with every NaN and infinity (also in numpy scalars and arrays) replaced by
    ``None``, so that it is strict JSON."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [strict(v) for v in data]
    if isinstance(data, np.ndarray):
        return strict(data.tolist())
    if isinstance(data, np.generic):
        return strict(data.item())
    return data


def to_json(data: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text (RFC 8259: ``NaN`` and infinities are written as ``null``)."""
    return json.dumps(strict(data), indent=indent, default=_default, allow_nan=False) + \
        ("\n" if indent is not None else "")


def write_json(path: str | Path, data: Any, *, what: str = "the output") -> None:
    write_text(path, to_json(data), what=what)


def write_table(path: str | Path, frame) -> None:
    """A DataFrame as CSV or Parquet (by suffix), written atomically."""
    path = Path(path)
    writer: Callable[[Path], None]
    if path.suffix == ".parquet":
        writer = lambda p: frame.to_parquet(p, index=False)  # noqa: E731
    else:
        writer = lambda p: frame.to_csv(p, index=False)  # noqa: E731
    try:
        needed = int(frame.memory_usage(index=False, deep=True).sum())
    except Exception:  # noqa: BLE001 - an estimate for a message only
        needed = None
    with atomic_path(path, needed=needed) as tmp:
        writer(tmp)


def write_safetensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Tensors (torch or numpy) to a safetensors file, atomically."""
    needed = sum(tensor_bytes(v) for v in tensors.values())
    with atomic_path(path, needed=needed) as tmp:
        first = next(iter(tensors.values()), None)
        if first is not None and type(first).__module__.startswith("torch"):
            from safetensors.torch import save_file
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        else:
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)


def tensor_bytes(value: Any) -> int:
    """Bytes of a torch tensor, a numpy array or a scipy sparse matrix (0 for anything
    else)."""
    if hasattr(value, "indices") and hasattr(value, "data") and hasattr(value, "indptr"):
        return int(value.data.nbytes + value.indices.nbytes + value.indptr.nbytes)
    if hasattr(value, "nbytes") and not callable(value.nbytes):
        return int(value.nbytes)
    if hasattr(value, "element_size") and hasattr(value, "numel"):
        return int(value.element_size() * value.numel())
    return 0


def read_safetensors_numpy(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


