"""The local output folder: atomic writes, dcmexport's own folders, and the OUT boundary.

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written file under its final name. Imports nothing of ours but `errors`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..errors import OutsideOutputError

#: dcmexport's own folder inside OUT (resume state, lock, temporary files)
STATE_DIR = ".dcmexport"


def _default_file_mode() -> int:
    """What a plain `open(..., "w")` would give: 0o666 less the umask (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


@contextlib.contextmanager
def atomic_path(path: Path, tmp_dir: Path | None = None, prefix: str = ".tmp-") -> Iterator[Path]:
    """A temporary file to fill; renamed onto `path` when the block succeeds, else removed.

    The temporary file goes in `tmp_dir` (on the same file system; a batch uses a folder it
    can clear after a crash) or beside `path`. Readers never see a half-written `path`, and
    the file gets the usual permissions (mkstemp's are owner-only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=tmp_dir or path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.EXDEV or tmp_dir is None:
                raise
            # OUT spans file systems: copy beside `path`, then rename there
            with atomic_path(path) as beside:
                shutil.copyfile(tmp, beside)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write `data` to `path` through `atomic_path`: `path` is never partial."""
    with atomic_path(path, tmp_dir) as tmp:
        tmp.write_bytes(data)


def inside_output(out_root: Path, rel: PurePosixPath | str) -> Path:
    """`out_root / rel`, refusing any path that resolves outside `out_root` (links included)."""
    root = out_root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise OutsideOutputError(f"refusing to write outside the output folder: {rel}")
    return target


def relative_to_output(out_root: Path, path: Path) -> str:
    """A written path as the manifest records it: relative to OUT, with forward slashes."""
    return Path(os.path.relpath(path, out_root.resolve())).as_posix()


#: Temporary names are unique per process (pid) and per write (a counter shared by threads).
_TEMP_COUNTER = itertools.count()
#: Output folders remembered as checked; past this many the memory is cleared (bounded).
_MAX_CHECKED_FOLDERS = 4096


class LocalStore:
    """An output folder on a local (or mounted) file system.

    Picklable (it travels as its root alone), so the same store goes to every worker. Paths
    handed in are relative to OUT; each output folder is made and checked to resolve inside
    OUT once, then every file written into it costs what the file system costs: one create,
    one write, one rename (no per-file path resolution, `mkdir` or `chmod`). A file name is
    a single component, and `os.replace` replaces a link at the name rather than following
    it, so nothing is ever written outside OUT.
    """

    def __init__(
        self, root: str | os.PathLike[str], state_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.root = Path(root)
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._resolved_root: Path | None = None
        self._folders: dict[str, Path] = {}
        self._relative: dict[str, str] = {}  # checked folder -> its manifest prefix
        self._temp: Path | None = None

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Path]) -> None:
        self.root = state["root"]
        self._state_dir = None
        self._resolved_root = None
        self._folders = {}
        self._relative = {}
        self._temp = None

    @property
    def location(self) -> str:
        """OUT as messages name it."""
        return str(self.root)

    @property
    def state_dir(self) -> Path:
        """Where dcmexport keeps its own files (state, lock): inside OUT unless the run
        names another folder (`--state-dir`)."""
        return self._state_dir if self._state_dir is not None else self.root / STATE_DIR

    @property
    def temp_dir(self) -> Path:
        """Temporary files are written here and renamed into place (same file system as OUT)."""
        return self.root / STATE_DIR / "tmp"

    def for_workers(self) -> LocalStore:
        """The same OUT by absolute path (a Dask worker's working folder is not ours)."""
        return LocalStore(self.root.resolve())

    def output_name(self, rel: PurePosixPath | str) -> str:
        """The manifest's name for `rel` (relative to OUT), refused if it would leave OUT."""
        return self.relative(self.path(rel))

    def clear_temp(self) -> None:
        """Remove what a killed run left half-written (its own ``.tmp-*`` files only, never
        through a link); outputs themselves are never partial."""
        from .guard import clear_own_temp

        clear_own_temp(self.temp_dir)

    def _tmp(self) -> Path | None:
        if self._temp is None:  # looked up until found: the run makes it once, at its start
            self._temp = self.temp_dir if self.temp_dir.is_dir() else None
        return self._temp

    def path(self, rel: PurePosixPath | str) -> Path:
        """The local path of `rel`, refused if it would resolve outside OUT."""
        return inside_output(self.root, rel)

    def relative(self, path: Path) -> str:
        """A written path as the manifest records it: relative to OUT, forward slashes."""
        return relative_to_output(self.root, path)

    def _root(self) -> Path:
        if self._resolved_root is None:
            self._resolved_root = self.root.resolve()
        return self._resolved_root

    def _folder(self, rel_folder: str) -> Path:
        """The resolved folder for `rel_folder` (relative to OUT), made and checked once."""
        known = self._folders.get(rel_folder)
        if known is not None:
            return known
        root = self._root()
        folder = root / rel_folder
        folder.mkdir(parents=True, exist_ok=True)
        resolved = folder.resolve()
        if resolved != root and root not in resolved.parents:
            raise OutsideOutputError(f"refusing to write outside the output folder: {rel_folder}")
        if len(self._folders) >= _MAX_CHECKED_FOLDERS:
            self._folders.clear()
            self._relative.clear()
        self._folders[rel_folder] = resolved
        prefix = os.path.relpath(resolved, root).replace(os.sep, "/")
        self._relative[rel_folder] = "" if prefix == "." else prefix + "/"
        return resolved

    def put(self, rel: PurePosixPath | str, data: bytes) -> str:
        """Write one output atomically; its path relative to OUT, for the manifest."""
        rel = PurePosixPath(rel)
        if rel.is_absolute() or rel.name in ("", ".", ".."):
            raise OutsideOutputError(f"refusing to write outside the output folder: {rel}")
        folder = self._folder(str(rel.parent))
        target = folder / rel.name
        tmp_dir = self._tmp() or folder
        while True:
            tmp = tmp_dir / f".tmp-{os.getpid()}-{next(_TEMP_COUNTER)}{rel.suffix}"
            try:  # 0o666 less the umask, as a plain open() would give
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                break
            except FileExistsError:  # left by a killed run whose pid came round again
                continue
        try:
            try:  # os.write, not a file object: no fstat, isatty or seek per output
                view = memoryview(data).cast("B")  # bytes, whatever the buffer's items
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            try:
                os.replace(tmp, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                write_atomic(target, data)  # OUT spans file systems: write beside the target
                tmp.unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return self._relative[str(rel.parent)] + rel.name  # as os.path.relpath(target, root)

    @contextlib.contextmanager
    def open_atomic(self, rel: PurePosixPath | str) -> Iterator[Path]:
        """A temporary local file to stream an output into (video); in place when done."""
        with atomic_path(self.path(rel), self._tmp()) as tmp:
            yield tmp

    def stat(self, rel: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of an output, or None if it does not exist."""
        try:
            st = os.stat(self.root / rel)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def remove(self, rel: str) -> None:
        """Delete an output (an orphan of an earlier run); missing is fine."""
        with contextlib.suppress(OSError):
            (self.root / rel).unlink()
