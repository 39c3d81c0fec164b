"""The one folder store: every folder the project writes whole (a model, gene knowledge, a
planted screen) is written the same way.

1. checked before the work (:func:`~grape_core.io.outputs.check_output_folder`: only an
   empty folder or one of the same :class:`~grape_core.io.outputs.FolderKind` is replaced)
   and against the free space;
2. written into a temporary folder beside its place (``.<name>~<pid>~*.tmp``, removed by
   the next write if the process was killed);
3. the SHA-256 of every file recorded in the manifest (the kind's marker file, written
   last);
4. renamed into place; what was there is moved aside first, and put back if the rename
   fails. When several runs save the same folder at once, the last one wins and none fails
   half-way.

Each kind keeps its own manifest (:meth:`write_folder`'s ``manifest`` callback): the
folder formats do not change, only who writes them.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import GrapeError
from .files import sha256_file, write_json
from .outputs import FolderKind, check_output_folder, not_ours
from .space import disk_full, ensure_space, file_mode, folder_mode, remove_stale, temp_prefix

_TAKEN = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)


def files_of(folder: str | Path) -> list[str]:
    """Every regular file under ``folder``, as sorted paths relative to it (``priors/go.parquet``).

    Parameters
    ----------
    folder
        A folder.

    Returns
    -------
    list of str
    """
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def write_folder(path: str | Path, *, kind: FolderKind, write: Callable[[Path], None],
                 manifest: Callable[[dict[str, str]], Any], overwrite: bool = False,
                 needed: int = 0, what: str = "", hint: str = "choose another folder",
                 error: type[GrapeError] = GrapeError) -> dict[str, str]:
    """Write a folder atomically, with the SHA-256 of every file in its manifest.

    Parameters
    ----------
    path
        The folder to write.
    kind
        What it is: its marker file (the manifest) and what an existing folder may hold to
        be replaced.
    write
        ``write(tmp)`` writes every file but the manifest into the temporary folder ``tmp``.
    manifest
        ``manifest(digests)`` returns the manifest's JSON object, given ``{file: SHA-256}``
        of every file written (paths relative to the folder).
    overwrite
        Replace an existing folder of the same kind (or an empty one).
    needed
        About the bytes the folder takes: refused before the work when the disk has less.
    what, hint
        How messages name the folder's option (``--out``), and what to do.
    error
        The error raised when the folder may not be written or replaced.

    Returns
    -------
    dict
        ``{file: SHA-256}`` of every file written besides the manifest.

    Raises
    ------
    GrapeError
        (``error``) The folder exists without ``overwrite``, is not one of ``kind``, is a
        link or a file; the disk is full (one line naming the folder and the space needed).
    """
    path = Path(path).expanduser()
    try:
        check_output_folder(path, kind=kind, overwrite=overwrite, what=what or kind.name,
                            hint=hint)
    except GrapeError as exc:
        raise error(str(exc)) from exc
    advice = f"free some space or {hint}"
    ensure_space(path, needed, what=kind.name, hint=advice)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    with disk_full(path, needed, hint=advice):
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp"))

    def written() -> int:  # what the temporary folder held when the disk filled
        return sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())

    try:
        os.chmod(tmp, folder_mode())  # a folder to share, not a private one
        with disk_full(path, needed, written=written, hint=advice):
            write(tmp)
            names = files_of(tmp)
            for name in names:  # as a plain open() would (some writers use 0600)
                os.chmod(tmp / name, file_mode())
            for sub in {(tmp / n).parent for n in names} - {tmp}:
                os.chmod(sub, folder_mode())
            digests = {name: sha256_file(tmp / name) for name in names}
            write_json(tmp / kind.marker, manifest(digests))
        install(tmp, path, kind=kind, overwrite=overwrite, error=error)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return digests


def install(tmp: Path, path: Path, *, kind: FolderKind, overwrite: bool,
            error: type[GrapeError] = GrapeError) -> None:
    """Rename the written folder ``tmp`` onto ``path``.

    With ``overwrite``, whatever is at ``path`` is moved aside first and removed once the new
    folder is in place (put back if the rename fails for another reason); when another save
    puts its folder there in between, that one is moved aside in turn.

    Parameters
    ----------
    tmp
        The complete folder, beside ``path``.
    path
        Its place.
    kind
        What may be replaced there (:func:`~grape_core.io.outputs.not_ours`).
    overwrite
        Replace what is there.
    error
        The error raised when ``path`` may not be replaced.

    Raises
    ------
    GrapeError
        (``error``) ``path`` appeared meanwhile without ``overwrite``, became a link, a file
        or a folder of the user's, or other runs keep writing it.
    """
    for _ in range(50):
        try:
            os.rename(tmp, path)
            return
        except OSError as exc:
            if exc.errno not in _TAKEN:
                raise
        if not overwrite:
            raise error(f"{path} already exists (written meanwhile by another run); pass "
                        "overwrite=True (--overwrite) to replace it")
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            raise error(f"{path} became a link or a file while the {kind.name} was written; "
                        "it is left as it is: choose another folder")
        reason = not_ours(path, kind) if os.path.isdir(path) else None
        if reason:
            raise error(f"{path} {reason} (it changed while the {kind.name} was written); "
                        "refusing to replace it: move your files out, or choose another folder")
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(path), suffix=".old"))
        keep = False  # the previous folder could not be put back: never delete it
        try:
            try:
                os.rename(path, aside / path.name)
            except FileNotFoundError:
                continue  # another save moved it first
            try:
                os.rename(tmp, path)
                return
            except OSError as exc:
                if exc.errno in _TAKEN:
                    continue  # another save put its folder there meanwhile: again
                try:  # put the previous folder back
                    os.rename(aside / path.name, path)
                except OSError:
                    keep = True
                raise
        finally:
            if not keep:
                shutil.rmtree(aside, ignore_errors=True)
    raise error(f"could not replace {path}: other runs keep writing it; try again")


def file_problem(folder: str | Path, name: str, digest: str | None) -> tuple[str, str] | None:
    """What is wrong with the file ``name`` of a stored folder against the SHA-256 its
    manifest records (``digest``; ``None``: the size and kind only).

    Parameters
    ----------
    folder
        The folder.
    name
        The file, relative to it.
    digest
        Its recorded SHA-256, or ``None``.

    Returns
    -------
    tuple or None
        ``None`` when it is fine, else ``(problem, detail)``: ``missing``, ``folder``
        (a folder where the file should be), ``special`` (a broken link, a device...),
        ``unreadable`` (``detail``: why) or ``mismatch`` (corrupted or edited).
    """
    file = Path(folder) / name
    if not os.path.lexists(file):
        return "missing", ""
    if file.is_dir():
        return "folder", ""
    if not file.is_file():
        return "special", ""
    if digest is None:
        return None
    try:
        found = sha256_file(file)
    except OSError as exc:
        return "unreadable", str(exc.strerror or exc)
    return None if found == digest else ("mismatch", "")
