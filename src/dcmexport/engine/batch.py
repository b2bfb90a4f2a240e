"""The batch run: discover inputs, claim their names, convert them on every core or a Dask
cluster, remember what was done (resume), report progress, write the manifest."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from .. import sources
from .._version import __version__
from ..dicom.series import slice_infos
from ..errors import UsageError
from ..exporters import SeriesJob, series_wanted
from ..manifest import COLUMNS, MANIFEST_NAME, Kind, ManifestRow, Status, manifest_bytes
from ..naming import NameRegistry
from ..options import ConvertOptions
from ..store import LocalStore, Store, is_url, store_for, write_atomic
from .executor import IN_FLIGHT_PER_WORKER, bounded_map, check_run, executor, worker_slots
from .plan import plan, series_jobs
from .state import RunState
from .work import FileResult, WorkItem, convert_many, convert_one, convert_series_many

CHUNK_SIZE = 8  # files per task: amortises pickling and scheduling, keeps progress smooth
SERIES_SEQ = 1 << 40  # series outputs come after every input in the manifest

__all__ = [
    "MANIFEST_NAME",
    "FileResult",
    "Reporter",
    "Summary",
    "WorkItem",
    "convert",
    "convert_one",
]


@dataclasses.dataclass
class Summary:
    """The outcome of a `convert` run."""

    converted: int = 0
    up_to_date: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0
    videos: int = 0
    #: `--series-video`: videos made (or up to date) and series that failed
    series_videos: int = 0
    series_failed: int = 0
    elapsed: float = 0.0
    #: OUT and its manifest: paths, or URLs for an object-store OUT
    output: Path | str = Path("output")
    manifest: Path | str = Path("output") / MANIFEST_NAME

    @property
    def found(self) -> int:
        return self.converted + self.up_to_date + self.skipped + self.failed

    @property
    def exit_code(self) -> int:
        """0 all converted or up to date, 1 some failed, 2 nothing to convert (docs/cli.md)."""
        if self.failed or self.series_failed:
            return 1
        return 0 if self.converted or self.up_to_date else 2

    @property
    def files_per_second(self) -> float:
        return self.found / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, result: FileResult) -> None:
        if result.up_to_date:
            self.up_to_date += 1
        elif result.status == Status.OK:
            self.converted += 1
            self.images += sum(1 for row in result.rows if row.kind == Kind.IMAGE)
            self.videos += sum(1 for row in result.rows if row.kind == Kind.VIDEO)
        elif result.status == Status.SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1


class Reporter(Protocol):
    """Receives progress: the CLI draws a progress bar from it; the library never prints.

    `result` gets one outcome per input: anything with ``source``, ``status``, ``reason``,
    ``detail`` and ``up_to_date`` (a `FileResult`, or an index row's outcome).
    """

    def start(self, total: int | None) -> None: ...

    def result(self, result: Any) -> None: ...


def options_key(options: ConvertOptions) -> str:
    """A digest of everything that decides the outputs: a rerun with another key redoes all."""
    fields = dataclasses.asdict(options)
    fields.pop("overwrite", None)
    text = json.dumps([__version__, COLUMNS, fields], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write the manifest atomically (a reader never sees half of it)."""
    write_atomic(path, manifest_bytes(rows))


def convert(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str] = "output",
    *,
    options: ConvertOptions | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
    storage_options: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    **option_values: Any,
) -> Summary:
    """Convert every DICOM image under `inputs` into `output`, and write its manifest.

    Pass ``options=ConvertOptions(...)`` or its fields as keywords (``format``, ``bits``,
    ``window``, ``raw``, ``frames``, ``quality``, ``overwrite``). `jobs` worker processes
    (default: all cores; 1 = in-process) or a Dask `scheduler` address (``tcp://host:8786``).
    A rerun skips inputs already converted with the same options unless ``overwrite=True``.
    Inputs and `output` may be object-store URLs (``s3://bucket/prefix/``), read and written
    with fsspec `storage_options`; the resume state then lives in `state_dir` (default: a
    cache folder named after the URL), which also moves a local OUT's state.
    """
    if options is not None and option_values:
        raise UsageError("pass either options=ConvertOptions(...) or keyword options, not both")
    opts = options or ConvertOptions(**option_values)
    store = store_for(output, storage_options, state_dir)
    out_root = Path(output) if isinstance(store, LocalStore) else None
    if out_root is not None and out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} exists and is not a folder")
    paths: list[str | Path] = [str(p) if is_url(p) else Path(p) for p in inputs]
    if opts.series_video and any(is_url(p) for p in paths):
        raise UsageError("--series-video does not read URL inputs yet: copy them locally first")
    n_jobs = check_run(paths, jobs)
    started = time.perf_counter()
    if out_root is not None:
        summary = Summary(output=out_root, manifest=out_root / MANIFEST_NAME)
    else:
        summary = Summary(output=store.location, manifest=store.location + MANIFEST_NAME)
    exclude: list[str | Path] = [out_root if out_root is not None else str(output)]
    with executor(n_jobs, scheduler) as pool, _exclusive(store):
        store.clear_temp()
        if reporter is not None:
            reporter.start(sources.count_files(paths, exclude, storage_options))
        state = RunState(store, options_key(opts))
        try:
            workers = worker_slots(pool, n_jobs)
            registry = NameRegistry()
            planned = plan(sources.discover(paths, exclude, storage_options), registry, opts)
            slices: dict[str, str] = {}  # single-frame images converted: source -> output
            want_series = series_wanted(opts)

            def done(result: FileResult) -> None:
                summary.add(result)
                if reporter is not None:
                    reporter.result(result)
                if want_series:
                    slices.update(_single_frame_output(result))

            todo = _skip_up_to_date(planned, state, opts, done)
            run_store = store.for_workers()
            in_flight = workers * IN_FLIGHT_PER_WORKER
            for chunk, results in bounded_map(
                convert_many,
                todo,
                pool,
                in_flight,
                1 if pool is None else CHUNK_SIZE,
                opts,
                run_store,
            ):
                for item, result in zip(chunk, results, strict=True):
                    state.record(
                        result.source,
                        result.seq,
                        result.status,
                        result.rows,
                        sources.fingerprint(item.ref),
                    )
                    done(result)
            if slices:
                _series(slices, registry, state, pool, opts, run_store, workers, summary)
            store.put(MANIFEST_NAME, manifest_bytes(state.rows_of_this_run()))  # one PUT
        finally:
            state.close()
    summary.elapsed = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _exclusive(store: Store) -> Iterator[None]:
    """One run per output folder at a time: a second would clear the first's temporary files.

    The lock is local (in the state folder): for an object-store OUT it keeps two runs on
    this machine apart, not two machines writing one prefix.
    """
    store.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, run unguarded
        yield
        return
    with open(store.state_dir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{store.location} is in use by another dcmexport run: wait for it or use "
                "another -o"
            ) from None
        yield


def _single_frame_output(result: FileResult) -> dict[str, str]:
    """{source: output} if `result` is a single-frame image converted now or earlier."""
    if result.status != Status.OK:
        return {}
    for row in result.rows:
        if row.kind == Kind.IMAGE and row.frame is None:
            return {result.source: row.output}
    return {}


def _series(
    slices: dict[str, str],
    registry: NameRegistry,
    state: RunState,
    pool: cf.Executor | None,
    options: ConvertOptions,
    store: Store,
    workers: int,
    summary: Summary,
) -> None:
    """Series-level outputs: read the converted slices' headers (on the executor), group
    them into series, claim each series' name, and run the series exporters."""
    in_flight = workers * IN_FLIGHT_PER_WORKER
    pairs = [(source, os.path.abspath(source)) for source in slices]
    infos = [
        info
        for _, chunk in bounded_map(slice_infos, pairs, pool, in_flight, CHUNK_SIZE * 8)
        for info in chunk
        if info is not None
    ]
    todo: list[SeriesJob] = []
    for job in series_jobs(infos, slices, registry, first_seq=SERIES_SEQ):
        rows = None
        if not options.overwrite:
            rows = state.up_to_date(job.key, job.seq, job.base, job.fingerprint)
        if rows is None:
            todo.append(job)
        else:
            summary.series_videos += sum(1 for r in rows if r.kind == Kind.SERIES_VIDEO)
    by_key = {job.key: job for job in todo}
    for _, results in bounded_map(convert_series_many, todo, pool, in_flight, 1, options, store):
        for key, result in results:
            job = by_key[key]
            state.record(job.key, job.seq, result.status, result.rows, job.fingerprint)
            if result.status == Status.OK:
                summary.series_videos += sum(1 for r in result.rows if r.kind == Kind.SERIES_VIDEO)
            else:
                summary.series_failed += 1


def _skip_up_to_date(
    items: Iterator[WorkItem],
    state: RunState,
    options: ConvertOptions,
    done: Callable[[FileResult], None],
) -> Iterator[WorkItem]:
    """Pass on the items that need work; hand the others to `done` as up to date."""
    for item in items:
        rows = None
        if state.has_history and not options.overwrite:  # a fresh OUT: no stat, no lookup
            rows = state.up_to_date(item.source, item.seq, item.base, sources.fingerprint(item.ref))
        if rows is None:
            yield item
            continue
        status = Status.SKIPPED if rows and rows[0].status == Status.SKIPPED else Status.OK
        done(FileResult(item.source, status, rows, seq=item.seq, up_to_date=status == Status.OK))
