"""Atomic file writes: every file the project writes goes to a temporary file in the same
folder and is renamed into place, so an interrupted run leaves the previous good file.

Also here: strict JSON (``NaN`` and infinities become ``null``), the check that an output
can be written before the work starts (:func:`check_writable`), a lock file that reserves an
output folder for one run (:func:`reserve`), the clean-up of temporary files that a killed
run left behind (:func:`remove_stale`), and the reading of a small text file the user gives
(:func:`read_text_file`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import GrapeError


# ----------------------------------------------------------------------------- reading
def read_text_file(path: str | Path, *, what: str, fix: str) -> str:
    """A small text file the user gives (a signature, a list of perturbations).

    Raises
    ------
    GrapeError
        Naming ``what`` and the path, and saying ``fix``: not found, a folder, unreadable,
        or not text (not UTF-8, or NUL bytes: a binary or spreadsheet file).
    """
    path = Path(path)
    if path.is_dir():
        raise GrapeError(f"{what} {path} is a folder; {fix}")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise GrapeError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise GrapeError(f"cannot read {what} {path} ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GrapeError(f"{what} {path} is not text (byte {exc.start} is not UTF-8; "
                         f"a binary or spreadsheet file?); {fix}") from exc
    if "\x00" in text:
        raise GrapeError(f"{what} {path} is not text (it holds NUL bytes); {fix}")
    return text


# ----------------------------------------------------------------------------- temporaries
def temp_prefix(path: str | Path) -> str:
    """Name prefix of the temporary files and folders of a write to ``path``:
    ``.<name>~<pid>~``, so that a later write can tell a dead writer's leftovers from the
    work of a live one."""
    return f".{Path(path).name}~{os.getpid()}~"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale(path: str | Path) -> list[Path]:
    """Remove what killed writes to ``path`` left beside it (``.<name>~<pid>~*.tmp`` and
    ``.<name>~<pid>~*.old`` of processes that no longer run); returns what was removed."""
    path = Path(path)
    removed = []
    try:
        siblings = list(path.parent.glob(f".{glob_escape(path.name)}~*"))
    except OSError:
        return removed
    for item in siblings:
        rest = item.name[len(path.name) + 2:]
        pid, _, tail = rest.partition("~")
        if not pid.isdigit() or not tail.endswith((".tmp", ".old")) or _alive(int(pid)):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        removed.append(item)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters quoted."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


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


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, to_json(data))


def write_table(path: str | Path, frame) -> None:
    """A DataFrame as CSV or Parquet (by suffix), written atomically."""
    path = Path(path)
    writer: Callable[[Path], None]
    if path.suffix == ".parquet":
        writer = lambda p: frame.to_parquet(p, index=False)  # noqa: E731
    else:
        writer = lambda p: frame.to_csv(p, index=False)  # noqa: E731
    with atomic_path(path) as tmp:
        writer(tmp)


def write_safetensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Tensors (torch or numpy) to a safetensors file, atomically."""
    with atomic_path(path) as tmp:
        first = next(iter(tensors.values()), None)
        if first is not None and type(first).__module__.startswith("torch"):
            from safetensors.torch import save_file
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        else:
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)


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


# ----------------------------------------------------------------------------- outputs
def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path.cwd()


def check_writable(path: str | Path, *, what: str = "the output", hint: str = "choose another "
                   "folder") -> Path:
    """Fail before the work when ``path`` (a file or folder to be written) cannot be: a
    parent is a file, or the folder that would hold it is read-only.

    Nothing is created. Returns ``path``.

    Raises
    ------
    GrapeError
        One line naming ``path`` (as ``what``), the reason and ``hint``.
    """
    path = Path(path).expanduser()
    existing = _first_existing(path.parent)
    if not existing.is_dir():
        raise GrapeError(f"cannot write {what} {path}: {existing} is a file, not a folder; {hint}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GrapeError(f"cannot write {what} {path}: the folder {existing} is read-only; {hint}")
    try:  # access() does not see every case (read-only mounts seen from a container, ACLs)
        fd, probe = tempfile.mkstemp(dir=existing, prefix=temp_prefix(path), suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = "is read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) \
            else f"cannot be written ({exc.strerror or exc})"
        raise GrapeError(f"cannot write {what} {path}: the folder {existing} {reason}; "
                         f"{hint}") from exc
    return path


def lock_path(path: str | Path) -> Path:
    """The lock file that reserves ``path``: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _owner(lock: Path) -> tuple[int, str]:
    try:
        data = json.loads(lock.read_text())
        return int(data.get("pid", -1)), str(data.get("host", ""))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1, ""


@contextmanager
def reserve(path: str | Path, *, what: str = "the output", hint: str = "wait for it to "
            "finish or choose another folder") -> Iterator[Path]:
    """Hold ``.<name>.lock`` beside ``path`` for the block: a second run that reserves the
    same path fails at once instead of after its work. A lock whose process is gone (on this
    machine) is taken over.

    Raises
    ------
    GrapeError
        Another live process holds the lock.
    """
    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _owner(lock)
            if pid == os.getpid() and host == me["host"]:
                raise GrapeError(f"{what} {path} is already being written by this process; {hint}")
            if pid < 0 or (host == me["host"] and not _alive(pid)):
                lock.unlink(missing_ok=True)  # left by a killed run
                continue
            where = f"process {pid}" + (f" on {host}" if host != me["host"] else "")
            raise GrapeError(f"{what} {path} is being written by another run ({where}; lock file "
                             f"{lock.name}); {hint}")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        break
    else:
        raise GrapeError(f"cannot lock {what} {path} ({lock.name} keeps reappearing); {hint}")
    try:
        yield lock
    finally:
        if _owner(lock) == (me["pid"], me["host"]):
            lock.unlink(missing_ok=True)
