"""Files written atomically, with the permissions a plain write would give them.

A write goes to a temporary file in the target's folder (``.NAME.XXXXXXXX.tmp``), is flushed to disk, then
renamed over the target: a process killed at any moment (Ctrl-C, ``kill -9``, a crash) leaves either the old
file or the new one, never a torn one. The temporary file is created like any new file (``0o666`` less the
umask, and whatever default ACL the folder has), so a run written by one user can be read by another exactly
when a plain ``open(path, "w")`` would have allowed it. A kill can still leave a temporary file behind;
:func:`clean_leftovers` removes them.

This module depends on nothing else in attnkit, so every layer (data, train, reports) can write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
#: Suffix of a folder renamed aside to be deleted (:func:`remove_tree`): never read, removed when found.
REMOVING_SUFFIX = ".removing"


def _new_temp_file(path: Path) -> Path:
    """Create an empty, new temporary file next to ``path`` with the mode a plain new file would get."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            # 0o666 & ~umask, applied by the kernel (mkstemp would give 0o600 whatever the umask).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file next to {path}")


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, then atomically move ``tmp_path`` to ``path`` (folders are created).

    The file ends with the mode a plain write of a new file would give it (``0o666`` less the umask), even if
    ``write`` replaced the temporary file with one of its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    try:
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        write(tmp)
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    write_text(path, json.dumps(payload, indent=2))


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a file with ``source``'s content, atomically: a hard link where the file system allows
    one (no copy, no extra disk), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT file systems)
        atomic_write(target, lambda out: shutil.copyfile(source, out))
        return
    try:
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(target.parent)


def remove_tree(path: Path) -> None:
    """Remove a folder so that no half-deleted copy of it is ever seen under its name.

    It is first renamed to ``.NAME.removing`` (one atomic step), then deleted; a kill during the deletion leaves
    that hidden folder, which :func:`clean_leftovers` removes.
    """
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}{REMOVING_SUFFIX}")
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(path, aside)
    fsync_dir(path.parent)
    shutil.rmtree(aside, ignore_errors=True)


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is a temporary file or a folder being removed that an interrupted write left."""
    name = path.name
    return name.startswith(".") and (name.endswith(TMP_SUFFIX) or name.endswith(REMOVING_SUFFIX))


def clean_leftovers(folder: Path) -> int:
    """Delete what interrupted writes left directly in ``folder``; returns how many entries were removed.

    Only call this while no other process writes into ``folder`` (a live write's temporary file looks the same).
    """
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in list(folder.iterdir()):
            if not is_leftover(entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed
