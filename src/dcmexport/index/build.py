"""Running an index: discovery, header reads on the engine's executor, the table, a summary."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import sources
from ..dicom import limits as dicom_limits
from ..engine.batch import Reporter
from ..engine.executor import IN_FLIGHT_PER_WORKER, bounded_map, check_run, executor, worker_slots
from ..engine.pool import DEFAULT_TIMEOUT
from ..errors import UsageError
from ..manifest import Status
from ..naming import display_path
from ..options import Limits
from ..sources import InputRef, UrlRef
from ..store import is_url
from .columns import (
    _SERIES_INPUTS,
    DEFAULT_COLUMNS,
    IndexLevel,
    Row,
    instance_columns,
    series_columns,
)
from .read import read_header, read_headers
from .series import series_rows
from .table import _check_table, write_table
from .values import forget_cells

log = logging.getLogger(__name__)

#: Files per worker task: a header read takes about 1 ms, so 64 amortise pickling and
#: scheduling (a Dask task costs about as much as a read) and still spread small inputs.
CHUNK_SIZE = 64


def _rows_in_order(
    found: Iterable[InputRef], pool: Any, columns: tuple[str, ...], jobs: int
) -> Iterator[Row]:
    """Rows in discovery order, whichever chunk finishes first: one table from any scheduler.

    Through the engine's one bounded map: discovery streams and memory stays bounded.
    Workers read absolute paths (Dask); rows keep the paths as found.
    """
    if pool is None:
        for ref in found:
            yield read_header(ref if _by_reference(ref) else str(ref.path), columns)
        return
    pairs = (_pair(ref) for ref in found)
    in_flight = jobs * IN_FLIGHT_PER_WORKER
    failed = functools.partial(_failed_row, columns)
    for _, rows in bounded_map(
        _read,
        pairs,
        pool,
        in_flight,
        CHUNK_SIZE,
        columns,
        dicom_limits.current(),
        ordered=True,
        failed=failed,
    ):
        yield from rows


def _failed_row(columns: tuple[str, ...], pair: tuple[str, str | InputRef], reason: str) -> Row:
    """The row of a file whose worker process died or hung reading it."""
    row: Row = dict.fromkeys(columns)
    row.update(path=pair[0], status="error", error=reason)
    return row


def _by_reference(ref: InputRef) -> bool:
    """True if the worker reads `ref` through its source (an archive member, an object, a
    reference the source refused), as `convert` does; a plain file travels as its path."""
    return isinstance(ref, UrlRef) or bool(ref.member or ref.problem)


def _pair(ref: InputRef) -> tuple[str, str | InputRef]:
    """(the input as rows name it, what the worker reads: an absolute path or a reference)."""
    if _by_reference(ref):
        return display_path(ref.source), ref.absolute()
    return display_path(ref.path), os.path.abspath(ref.path)


def _read(
    pairs: list[tuple[str, str | InputRef]],
    columns: tuple[str, ...],
    limit_values: dicom_limits.LimitValues | None = None,
) -> list[Row]:
    """Rows of a chunk of (path as found, what to read): one executor task."""
    rows = read_headers([absolute for _, absolute in pairs], columns, limit_values)
    for (shown, _), row in zip(pairs, rows, strict=True):
        row["path"] = shown
    return rows


def _index(
    inputs: list[str | Path],
    columns: tuple[str, ...],
    jobs: int,
    scheduler: str | None,
    exclude: Iterable[Path] = (),
    table: Path | None = None,
    storage_options: dict[str, Any] | None = None,
    limit_values: Limits | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    isolate: bool = False,
) -> Iterator[Row]:
    """The rows, made within the executor's lifetime (closing the generator ends both).

    `limit_values` hold in discovery (tar members are checked there) and in the workers."""
    forget_cells()
    with (
        executor(jobs, scheduler, timeout, isolate=isolate) as pool,
        dicom_limits.applied(limit_values or Limits()),
    ):
        found: Iterable[InputRef] = sources.discover(inputs, exclude, storage_options)
        if table is not None:
            found = _not_the_table(found, table)
        yield from _rows_in_order(found, pool, columns, worker_slots(pool, jobs))


def _not_the_table(found: Iterable[InputRef], table: Path) -> Iterator[InputRef]:
    """Leave out the table being written (and its temporary file) if it lies under an input."""
    folder, name, suffix = table.parent.resolve(), table.name, table.suffix
    for f in found:
        temporary = f.path.name.startswith(".tmp-") and f.path.name.endswith(suffix)
        named_so = f.path.name == name or temporary  # `writers.atomic_path` names
        if not (named_so and f.path.parent.resolve() == folder):  # resolves only if named so
            yield f


def index_rows(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    columns: Iterable[str] = DEFAULT_COLUMNS,
    jobs: int | None = None,
    scheduler: str | None = None,
    exclude: Iterable[Path] = (),
    storage_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    isolate: bool = False,
) -> Iterator[Row]:
    """One row per file under `inputs`, in discovery order, from header-only reads.

    Rows have the keys `instance_columns(columns)`. `jobs` worker processes (default: all
    cores; 1 = in-process, or one worker process with `isolate`) or a Dask `scheduler`
    address (``tcp://host:8786``); `exclude` folders are not searched. A missing input or an
    unknown column raises `UsageError` now, before any file is read; a problem with one file
    becomes that file's row. Archive members are rows of their own, read as `convert` reads
    them (`limits`: ``--max-inflate``). Inputs may be object-store URLs (read with fsspec
    `storage_options`, headers by range requests). In worker processes, a file taking more
    than `timeout` seconds is failed.
    """
    paths = _inputs(inputs)
    names = instance_columns(columns)
    jobs = check_run(paths, jobs)
    return _index(
        paths,
        names,
        jobs,
        scheduler,
        list(exclude),
        storage_options=storage_options,
        limit_values=limits,
        timeout=timeout,
        isolate=isolate,
    )


def _inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[str | Path]:
    """Local inputs as paths, object-store URLs as they are."""
    return [str(p) if is_url(p) else Path(p) for p in inputs]


@dataclasses.dataclass(frozen=True)
class RowOutcome:
    """What the progress display hears about one indexed file."""

    source: str
    status: Status | str
    reason: str = ""
    detail: str = ""
    up_to_date: bool = False


@dataclasses.dataclass
class IndexSummary:
    """The outcome of `build_index`: what was found, what was written, how fast."""

    table: Path
    level: IndexLevel = IndexLevel.INSTANCE
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    rows: int = 0
    elapsed: float = 0.0

    @property
    def files(self) -> int:
        return self.ok + self.skipped + self.failed

    @property
    def files_per_second(self) -> float:
        return self.files / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 every DICOM file indexed, 1 some could not be read, 2 no DICOM file found."""
        if self.failed:
            return 1
        return 0 if self.ok else 2

    def count(self, row: Row) -> None:
        if row["status"] == "ok":
            self.ok += 1
        elif row["status"] == "skipped":
            self.skipped += 1
        else:
            self.failed += 1


def _counted(
    rows: Iterable[Row], summary: IndexSummary, reporter: Reporter | None
) -> Iterator[Row]:
    """Pass rows on, counting them and telling `reporter` (the CLI's progress bar)."""
    for row in rows:
        summary.count(row)
        if reporter is not None:
            reporter.result(RowOutcome(row["path"], row["status"], row["error"] or ""))
        yield row


def _level(level: IndexLevel | str) -> IndexLevel:
    try:
        return IndexLevel(level)
    except ValueError:
        choices = " or ".join(v.value for v in IndexLevel)
        raise UsageError(f"--level {level}: use {choices}") from None


def build_index(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    columns: Iterable[str] = DEFAULT_COLUMNS,
    level: IndexLevel | str = IndexLevel.INSTANCE,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
    storage_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    isolate: bool = False,
) -> IndexSummary:
    """Index every file under `inputs` into the table `output` (``.csv`` or ``.parquet``).

    All of ``dcmexport index`` in one call: checks every argument before reading a file,
    reads headers on `jobs` processes or a Dask `scheduler`, groups by series for
    ``level="series"``, writes the table atomically. `reporter` (as for `batch.convert`)
    gets the number of files, then a `RowOutcome` per file. `limits`, `timeout` and
    `isolate` as for `index_rows`.
    """
    started = time.perf_counter()
    table, level = Path(output), _level(level)
    _check_table(table)
    paths = _inputs(inputs)
    wanted = instance_columns(columns)
    n_jobs = check_run(paths, jobs)
    if level is IndexLevel.SERIES:
        read, out_columns = instance_columns([*wanted, *_SERIES_INPUTS]), series_columns(wanted)
    else:
        read = out_columns = wanted
    if reporter is not None:  # a second walk of the folders: cheap beside reading files
        found = sources.discover(paths, storage_options=storage_options)
        reporter.start(sum(1 for _ in _not_the_table(found, table)))
    summary = IndexSummary(table, level)
    rows = _counted(
        _index(
            paths,
            read,
            n_jobs,
            scheduler,
            table=table,
            storage_options=storage_options,
            limit_values=limits,
            timeout=timeout,
            isolate=isolate,
        ),
        summary,
        reporter,
    )
    if level is IndexLevel.SERIES:
        rows = iter(series_rows(rows, out_columns))
    summary.rows = write_table(rows, table, out_columns)
    summary.elapsed = time.perf_counter() - started
    log.info("indexed %d file(s) into %s: %d row(s)", summary.files, table, summary.rows)
    return summary
