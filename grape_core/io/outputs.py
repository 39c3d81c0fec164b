"""Outputs checked before the work: files and folders a command may write or replace, and
the lock that reserves one for a run (:mod:`grape_core.io`)."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import GrapeError
from .files import refuse_special
from .space import _alive, _first_existing, _kind_of, temp_prefix


# ----------------------------------------------------------------------------- outputs
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


def is_empty_folder(path: str | Path) -> bool:
    """``path`` is a real folder (not a link) holding nothing: one made for an output, used
    as it is without ``--overwrite``."""
    path = Path(path)
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


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

