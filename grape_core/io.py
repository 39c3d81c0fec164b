"""Every file the project writes goes through here.

A file is written to a temporary file in the same folder and renamed into place, so an
interrupted run leaves the previous good file (:func:`atomic_path` and the ``write_*``
helpers); it gets the permissions a plain ``open()`` would give under the user's umask
(:func:`file_mode`), not the private 0600 of a temporary file.

Before the work, :func:`check_output` (a file) and :func:`check_output_folder` (a folder
the command replaces) refuse, with one line, a target that is a symbolic link, a device, a
FIFO or a socket, a folder where a file is expected, an input of the same command (the model
being read, the data) or another output of the run, or a folder that is not one of ours
(:class:`FolderKind`); :func:`atomic_path` refuses the special files again at write time.
A full disk is one line that names the file and the space needed (:func:`disk_full`).

Also here: strict JSON (``NaN`` and infinities become ``null``), a lock file that reserves
an output folder for one run (:func:`reserve`), the clean-up of temporary files that a
killed run left behind (:func:`remove_stale`), and the reading of a file the user gives
(:func:`check_input_file`, :func:`read_text_file`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import GrapeError


# ----------------------------------------------------------------------------- sizes
def human_size(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (powers of 1000, as disks are sold)."""
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def _kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


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


# ----------------------------------------------------------------------------- permissions
_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the system tells it
    (``/proc/self/status``): the app writes from several threads at once."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions a plain ``open()`` gives a new file: 0666 less the umask (no file the
    project writes is a secret; a lab shares its models and reports)."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The permissions ``mkdir`` gives a new folder: 0777 less the umask."""
    return 0o777 & ~umask()


# ----------------------------------------------------------------------------- full disks
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os error 28",
                   "StorageFull", "errno = 28")


def is_disk_full(exc: BaseException | None) -> bool:
    """``exc`` (or an error it was raised from) says the disk or the quota is full: an
    ``OSError`` ENOSPC / EDQUOT, or the same as text (safetensors, h5py)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if any(t in text for t in _DISK_FULL_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def free_space(path: str | Path) -> int | None:
    """Bytes free on the disk that holds ``path`` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(_first_existing(Path(path).expanduser())).free
    except OSError:
        return None


def disk_full_message(path: str | Path, needed: int | None = None, *,
                      written: int | None = None, hint: str = "") -> str:
    """"the disk is full: cannot write PATH (it needs N; M free there); ...": which file, how
    much space it needed (or how much was written when the disk filled) and what is free."""
    free = free_space(Path(path).parent)
    if free is not None and written:
        free += written  # the partial file is removed: its space is free again
    if needed:
        need = f"it needs about {human_size(needed)}"
    elif written:
        need = f"it needs more than the {human_size(written)} written when the disk filled"
    else:
        need = "it needs more space than there was"
    where = f"; {human_size(free)} free there" if free is not None else ""
    return (f"the disk is full: cannot write {path} ({need}{where}); "
            f"{hint or 'free some space or write it to another disk'}; nothing was replaced")


@contextmanager
def disk_full(path: str | Path, needed: int | None = None, *,
              written: Callable[[], int | None] | None = None, hint: str = "") -> Iterator[None]:
    """Turn a full disk inside the block (any writer: ``open``, safetensors, h5py) into one
    :class:`GrapeError` line from :func:`disk_full_message`."""
    try:
        yield
    except GrapeError as exc:
        # a file inside a folder being written said so first: name the folder instead (its
        # file is a temporary one), with what the whole folder needs
        if getattr(exc, "disk_full", False) and not getattr(exc, "final", False):
            error = GrapeError(disk_full_message(path, needed, hint=hint))
            error.disk_full, error.final = True, True  # type: ignore[attr-defined]
            raise error from exc.__cause__
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        got = None
        if written is not None:
            try:
                got = written()
            except OSError:
                got = None
        error = GrapeError(disk_full_message(path, needed, written=got, hint=hint))
        error.disk_full = True  # type: ignore[attr-defined]
        raise error from exc


def ensure_space(path: str | Path, needed: int, *, what: str, hint: str = "") -> None:
    """Refuse, before the work, to write about ``needed`` bytes at ``path`` when the disk
    that holds it has less free (with 5 % to spare)."""
    free = free_space(path)
    if free is not None and needed > 0 and free < needed * 1.05:
        raise GrapeError(f"not enough disk space for {what} {path}: it needs about "
                         f"{human_size(needed)}, {human_size(free)} free there; "
                         f"{hint or 'free some space or write it to another disk'}")


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


def _resolved(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def same_or_inside(path: str | Path, other: str | Path) -> bool:
    """``path`` is ``other`` (after links; a hard link too), or lies inside the folder
    ``other``."""
    rp, ro = _resolved(path), _resolved(other)
    if rp == ro or rp.startswith(ro.rstrip(os.sep) + os.sep):
        return True
    try:
        return os.path.samefile(path, other)
    except (OSError, ValueError):
        return False


Named = tuple[str, "str | Path | None"]
"""``(what, path)``: an input or output of a command and how the messages name it, e.g.
``("--model", "models/a")``; a ``None`` path is skipped."""


def check_output(path: str | Path, *, what: str = "the output", hint: str = "",
                 inputs: "list[Named] | tuple[Named, ...]" = (),
                 others: "list[Named] | tuple[Named, ...]" = ()) -> Path:
    """Check, before the work, that the file ``path`` may be written: it is not a symbolic
    link, a folder, a device, a FIFO or a socket (:func:`refuse_special`), not one of the
    command's ``inputs`` nor inside one (the model folder being read), not another output of
    the run (``others``), and its folder can be written (:func:`check_writable`).

    Nothing is created. Returns ``path`` (expanded).

    Raises
    ------
    GrapeError
        One line naming ``what``, ``path`` and the reason.
    """
    path = Path(path).expanduser()
    hint = hint or f"choose another {what}"
    refuse_special(path, what=what, hint=hint)
    for label, other in inputs:
        if other is None or not os.path.lexists(Path(other).expanduser()):
            continue
        if same_or_inside(path, other):
            where = "is" if _resolved(path) == _resolved(other) else "lies inside"
            raise GrapeError(f"{what} {path} {where} {label} {other}, which this command reads; "
                             f"writing there would destroy it: {hint}")
    for label, other in others:
        if other is None:
            continue
        if same_or_inside(path, other) or same_or_inside(other, path):
            raise GrapeError(f"{what} {path} is also {label}; give each output its own file "
                             "(one would overwrite the other)")
    check_writable(path, what=what, hint=hint)
    return path


@dataclass(frozen=True)
class FolderKind:
    """A folder the project writes whole and may replace with ``--overwrite``: a model, a
    planted screen, gene knowledge. Only a folder of this kind (its ``marker`` file, of
    ours by ``is_ours``, and nothing but ``entries``) or an empty folder is replaced."""

    name: str
    """How messages call it (``model folder``)."""
    marker: str
    """The file that says what the folder is (``manifest.json``)."""
    entries: frozenset[str]
    """Every name such a folder may hold at its top level (the marker included)."""
    is_ours: Callable[[Path], bool] | None = None
    """Reads the marker: is it one of ours (not another tool's ``manifest.json``)?"""


_SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Files a file browser leaves in any folder: no reason to refuse a replacement."""


def json_marker(key: str, value: Any) -> Callable[[Path], bool]:
    """An :attr:`FolderKind.is_ours` test: the marker is a JSON object whose ``key`` is
    ``value``."""

    def test(marker: Path) -> bool:
        try:
            with open(marker, "rb") as fh:
                data = json.loads(fh.read(64 * 1000**2).decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and data.get(key) == value

    return test


def not_ours(path: str | Path, kind: FolderKind) -> str | None:
    """Why the existing folder ``path`` may not be replaced (``None``: it may: empty, or a
    :class:`FolderKind` folder of ours holding nothing else).

    A folder that another save replaced while it was looked at (its inode changed) is looked
    at again."""
    path = Path(path)
    reason = None
    for _ in range(5):
        try:
            before = os.lstat(path).st_ino
        except OSError:
            return None  # gone: nothing to replace
        reason = _not_ours(path, kind)
        try:
            after = os.lstat(path).st_ino
        except OSError:
            return None
        if reason is None or before == after:
            return reason
    return reason


def _not_ours(path: Path, kind: FolderKind) -> str | None:
    try:
        names = sorted(n for n in os.listdir(path) if n not in _SYSTEM_FILES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not names:
        return None
    marker = path / kind.marker
    if kind.marker not in names or not marker.is_file() or marker.is_symlink() or (
            kind.is_ours is not None and not kind.is_ours(marker)):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"is not a {kind.name} (it holds {shown})"
    stray = [n for n in names if n not in kind.entries]
    if stray:
        shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
        return f"holds {shown}, which {'is' if len(stray) == 1 else 'are'} not part of a {kind.name}"
    return None


def check_output_folder(path: str | Path, *, kind: FolderKind, overwrite: bool,
                        what: str = "--out", hint: str = "",
                        inputs: "list[Named] | tuple[Named, ...]" = ()) -> Path:
    """Check, before the work, that the folder ``path`` may be written (or replaced).

    Refused: a symbolic link, a file or a special file there; an existing folder without
    ``overwrite``; with ``overwrite``, a folder that is not empty and not a ``kind`` folder
    of ours holding nothing else (:func:`not_ours`: a folder of the user's is never
    deleted); a folder that holds an input of the command or lies inside one; a parent that
    cannot be written.

    Raises
    ------
    GrapeError
        One line naming ``path``, the reason and what to do.
    """
    path = Path(path).expanduser()
    hint = hint or f"choose another {what}"
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a parent that is a file: see below
        info = None
    except OSError as exc:
        raise GrapeError(f"cannot use {what} {path} ({exc.strerror or exc}); {hint}") from exc
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise GrapeError(f"{what} {path} is a symbolic link; it is left as it is (a "
                             f"{kind.name} is written as a real folder): {hint}")
        if not stat.S_ISDIR(info.st_mode):
            raise GrapeError(f"{what} {path} is {_kind_of(info.st_mode) if not stat.S_ISREG(info.st_mode) else 'a file'}, "
                             f"not a folder; it is left as it is: {hint}")
        reason = not_ours(path, kind)
        if reason:
            raise GrapeError(f"{path} already exists and {reason}; refusing to replace it "
                             f"(--overwrite replaces only a {kind.name} or an empty folder): "
                             f"move your files out, or {hint}")
        if not overwrite:
            raise GrapeError(f"{path} already exists; pass --overwrite (overwrite=True) to "
                             f"replace it, or {hint}")
    for label, other in inputs:
        if other is None or not os.path.lexists(Path(other).expanduser()):
            continue
        if same_or_inside(other, path) or same_or_inside(path, other):
            raise GrapeError(f"{what} {path} would replace {label} {other}, which this command "
                             f"reads; {hint}")
    check_writable(path, what=kind.name, hint=hint)
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
