"""Writing files so that nothing good is ever lost: a temporary file, then a rename.

Every file the package writes (checkpoints, a run's ``config.json``, sample grids) goes
through :func:`atomic_write`. The data are written to a temporary file in the same folder,
flushed to disk, then renamed over the target in one step (``os.replace``). A full disk, a
file-size limit (``ulimit -f``), a kill or a crash therefore leave either the previous file
or the new one, never a half-written file, and never a stray temporary. The new file gets
the permissions an ordinary ``open(path, "w")`` would give it under the user's umask
(``mkstemp`` alone would make it private, 0600).
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, IO

from ..errors import ArgumentError, VAETutorialError


class FileWriteError(VAETutorialError, OSError):
    """A file could not be written (disk full, file-size limit, no permission); the previous
    version of the file, if any, is untouched."""


_NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is larger than the file-size limit "
            "(ulimit -f) allows", errno.EDQUOT: "the disk quota is exhausted"}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], what: str = "file") -> Path:
    """Call ``write(f)`` on a temporary binary file next to ``path``, then rename it to ``path``.

    Raises :class:`FileWriteError` (an ``OSError``) naming ``path`` and the cause when the
    file cannot be written; ``path`` then still holds what it held before. ``what`` names the
    file in the message ("checkpoint", "config.json", ...).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as e:  # a folder on the way is a file, no permission, a full disk
        raise FileWriteError(f"could not write the {what} {path}: {_where(path) or _cause(e)}; the previous "
                             f"{path.name}, if any, is unchanged. Choose another path.") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = _cause(e)
        if cause is not None:
            raise FileWriteError(f"could not write the {what} {path}: {cause}; the previous {path.name}, if "
                                 "any, is unchanged. Free some space or choose another folder.") from e
        raise
    return path


def check_writable(path: str | os.PathLike, name: str) -> Path:
    """Refuse, before any work, a path that :func:`atomic_write` could not write.

    For ``fit(..., checkpoint=path)`` and the command line to call before the first epoch,
    so that a path whose folder is a file (``afile/ck.pt``), a path that is a folder, or a
    read-only folder is named at once, not after an epoch of training. Raises :class:`ArgumentError` naming
    the argument ``name``; returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    why = _where(path)
    if why is None:
        folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == p.parent)
        if not os.access(folder, os.W_OK | os.X_OK):
            why = f"the folder {folder} is not writable"
    if why is not None:
        raise ArgumentError(f"{name}={str(path)!r} cannot be written: {why}; choose another path")
    return path


def _where(path: Path) -> str | None:
    """What in ``path``'s way makes it unwritable as a file (a folder that is a file, ...), or None."""
    if path.is_dir():
        return f"{path} is a folder, not a file"
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            return None if folder.is_dir() else f"{folder} is a file, not a folder"
    return None


def _cause(e: BaseException) -> str | None:
    """Why a write failed, in words, when the failure is the file system's (else None)."""
    while e is not None:
        if isinstance(e, OSError) and not isinstance(e, VAETutorialError):
            return _NO_ROOM.get(e.errno, e.strerror or str(e))
        # torch.save reports ENOSPC and EFBIG as a RuntimeError from its zip writer
        if isinstance(e, RuntimeError) and ("inline_container" in str(e) or "PytorchStreamWriter" in str(e)):
            return "the disk is full or a file-size limit (ulimit -f) was reached"
        e = e.__cause__ or e.__context__
    return None
