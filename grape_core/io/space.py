"""The space a write needs: free disk, full disks in one line, temporary names and the
permissions of what the project writes (:mod:`grape_core.io`)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import GrapeError


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



def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path.cwd()


