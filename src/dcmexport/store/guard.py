"""Checks on the output side before any work: OUT can be written, dcmexport's own folder is
really inside OUT (not a link to elsewhere), and only temporary files it made are removed.

A run into an unwritable OUT, or one whose ``OUT/.dcmexport`` is a symbolic link, is refused
with one line (`UsageError`, exit 2) before an input is read: a link would make the lock, the
state database and the clearing of temporary files happen outside OUT.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from .local import STATE_DIR, atomic_path

#: Files dcmexport keeps in its state folder; each must be a plain file if it exists.
_STATE_FILES = ("lock",)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _not_a_link(path: Path, what: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"cannot use {path} ({_reason(exc)})") from None
    if stat.S_ISLNK(mode):
        raise UsageError(
            f"{path} is a symbolic link: dcmexport keeps its {what} inside OUT and will not "
            "write or delete through a link; remove it"
        )


def check_output(root: Path) -> Path:
    """Make OUT and its state folder and prove they can be written; the state folder.

    `UsageError` for a read-only or unwritable OUT and for a symlinked ``.dcmexport`` (or
    lock) inside it, before any work.
    """
    state = root / STATE_DIR
    _not_a_link(state, "state folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        state.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to the output folder {root} ({_reason(exc)})") from None
    if not state.is_dir() or state.is_symlink():
        raise UsageError(f"{state} is not a folder: remove it")
    for name in _STATE_FILES:
        _not_a_link(state / name, name)
    probe(state, f"the output folder {root}")
    return state


def probe(folder: Path, what: str) -> None:
    """Create and remove a file in `folder`; `UsageError` if that cannot be done."""
    try:
        fd, name = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "the disk is full" if full else _reason(exc)
        raise UsageError(f"cannot write to {what} ({hint})") from None


def clear_own_temp(temp_dir: Path) -> None:
    """Remove the temporary files a killed run left in `temp_dir` (``.tmp-*`` files only,
    never through a link, never a folder); create `temp_dir` if needed."""
    _not_a_link(temp_dir, "temporary files")
    temp_dir.mkdir(parents=True, exist_ok=True)
    with os.scandir(temp_dir) as it:
        for entry in it:
            if entry.name.startswith(".tmp-") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _table_prefix(target: Path) -> str:
    return f".tmp-{target.name}-"


def check_table_target(target: Path) -> None:
    """An index table's folder can be written (exit 2 before reading any input otherwise);
    and the temporary tables a killed `index` left for the same name are removed."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the table to {folder} ({_reason(exc)})") from None
    probe(folder, f"the table's folder {folder}")
    clean_stale_tables(target)


def clean_stale_tables(target: Path) -> int:
    """Remove ``.tmp-<table name>-*`` files nobody holds a lock on (a killed `index`'s)."""
    import fcntl

    removed = 0
    prefix = _table_prefix(target)
    with os.scandir(target.parent) as it:
        for entry in it:
            if not (entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False)):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a running index is writing it
                continue
            finally:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


@contextlib.contextmanager
def locked_table_path(target: Path) -> Iterator[Path]:
    """`atomic_path` for an index table, named after it and locked while written, so that a
    later run can tell a killed run's leftover from a running one's."""
    import fcntl

    with atomic_path(target, prefix=_table_prefix(target)) as tmp:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield tmp
        finally:
            os.close(fd)
