"""The batch runner: plan output names, run the unit of work on every core or a Dask cluster,
remember what was done (resume), report progress, write the manifest.

One code path for every scheduler: work goes to a `concurrent.futures.Executor` — none
(`jobs=1`, in-process), a local process pool, or `distributed.Client(...).get_executor()` —
in chunks of a few files, with a bounded number of chunks in flight while discovery streams.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from . import __version__
from .archives import read_member
from .decoding import read_dataset
from .discovery import Found, count_files, discover
from .errors import DcmExportError, UsageError
from .job import FileResult, WorkItem, convert_many, convert_one, convert_series
from .layout import NameRegistry, mirror_base
from .manifest import COLUMNS, write_manifest
from .naming import Layout, input_stem
from .options import ConvertOptions
from .series import SeriesItem, series_items, slice_infos
from .state import RunState, clear_temp_dir, state_dir

T = TypeVar("T")

MANIFEST_NAME = "manifest.csv"
CHUNK_SIZE = 8  # files per task: amortises pickling and scheduling, keeps progress smooth
IN_FLIGHT_PER_WORKER = 4  # chunks queued per worker: workers never idle, memory stays bounded
SERIES_SEQ = 1 << 40  # series videos come after every input in the manifest

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
    output: Path = Path("output")
    manifest: Path = Path("output") / MANIFEST_NAME

    @property
    def found(self) -> int:
        return self.converted + self.up_to_date + self.skipped + self.failed

    @property
    def exit_code(self) -> int:
        """0 all converted or up to date, 1 some failed, 2 nothing to convert (CONTRACT.md)."""
        if self.failed or self.series_failed:
            return 1
        return 0 if self.converted or self.up_to_date else 2

    @property
    def files_per_second(self) -> float:
        return self.found / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, result: FileResult) -> None:
        if result.up_to_date:
            self.up_to_date += 1
        elif result.status == "ok":
            self.converted += 1
            self.images += sum(1 for row in result.rows if row.kind == "image")
            self.videos += sum(1 for row in result.rows if row.kind == "video")
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1


class Reporter(Protocol):
    """Receives progress: the CLI draws a progress bar from it; the library never prints."""

    def start(self, total: int | None) -> None: ...

    def result(self, result: FileResult) -> None: ...


def options_key(options: ConvertOptions) -> str:
    """A digest of everything that decides the outputs: a rerun with another key redoes all."""
    fields = dataclasses.asdict(options)
    fields.pop("overwrite", None)
    text = json.dumps([__version__, COLUMNS, fields], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(
    found: Iterable[Found], registry: NameRegistry | None = None, layout: Layout | None = None
) -> Iterator[WorkItem]:
    """Reserve a unique output base for every input, in discovery order.

    With a `layout` template the base comes from the input's header, read here (without
    pixel data) so that the registry can keep every name unique.
    """
    registry = registry if registry is not None else NameRegistry()
    seen: set[str] = set()
    for seq, f in enumerate(found):
        path = os.path.abspath(f.path)
        key = f"{path}/{f.member}" if f.member else path
        if key in seen:  # the same file named twice (a folder and a file in it): once
            continue
        seen.add(key)
        if f.problem:
            yield WorkItem(f.source, "", "", seq, path, f.member, problem=f.problem)
            continue
        wanted = _layout_base(f, layout, seq) if layout is not None else None
        base, note = registry.claim(wanted or mirror_base(f))
        yield WorkItem(f.source, str(base), note, seq, path, f.member, f.data)


def _layout_base(found: Found, layout: Layout, seq: int) -> PurePosixPath | None:
    """The template's base for one input, or None when its header cannot be read (the
    conversion then reports why)."""
    try:
        if found.data is not None or found.member:
            data = found.data if found.data is not None else read_member(found.path, found.member)
            ds = read_dataset(data, stop_before_pixels=True)
        else:
            ds = read_dataset(found.path, stop_before_pixels=True)
    except DcmExportError:
        return None
    name = PurePosixPath(found.member).name if found.member else found.path.name
    return layout.render(ds, stem=input_stem(name), index=seq + 1)


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def executor(jobs: int, scheduler: str | None) -> Iterator[cf.Executor | None]:
    """The executor for the run: None (in-process), a process pool, or a Dask cluster."""
    if scheduler:
        with _dask_executor(scheduler) as executor:
            yield executor
        return
    if jobs <= 1:
        yield None
        return
    # fork starts workers in milliseconds with dcmexport already imported; spawn elsewhere
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    try:
        yield pool
    except BaseException:  # Ctrl-C or a crash: drop queued chunks instead of finishing them
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _dask_executor(address: str) -> Iterator[cf.Executor]:
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'dcmexport[dask]'") from None
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        yield client.get_executor(pure=False)


def check_run(inputs: Iterable[Path], jobs: int | None) -> int:
    """The number of jobs; `UsageError` for a missing input or a bad count, before any work."""
    for path in inputs:
        if not path.exists():
            raise UsageError(f"input not found: {path}")
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: use 1 or more")
    return jobs


def worker_slots(pool: cf.Executor | None, jobs: int) -> int:
    """How many tasks can run at once: 1 in-process, `jobs` locally, the cluster's threads."""
    if pool is None:
        return 1
    client = getattr(pool, "_client", None)  # distributed's ClientExecutor
    if client is not None:
        return max(sum(client.nthreads().values()), 1)
    return max(jobs, 1)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), drawn lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _run(
    items: Iterator[WorkItem],
    executor: cf.Executor | None,
    options: ConvertOptions,
    out_root: Path,
    max_in_flight: int,
) -> Iterator[FileResult]:
    """Results as they complete; at most `max_in_flight` chunks are queued at a time."""
    if executor is None:  # one file at a time: progress moves with every file
        for item in items:
            yield convert_one(item, options, out_root)
        return
    root = str(out_root.resolve())
    for results in _map_chunks(
        convert_many, items, executor, max_in_flight, CHUNK_SIZE, options, root
    ):
        yield from results


def convert(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str] = "output",
    *,
    options: ConvertOptions | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
    **option_values: Any,
) -> Summary:
    """Convert every DICOM image under `inputs` into `output`, and write its manifest.

    Pass ``options=ConvertOptions(...)`` or its fields as keywords (``format``, ``bits``,
    ``window``, ``raw``, ``frames``, ``quality``, ``overwrite``). `jobs` worker processes
    (default: all cores; 1 = in-process) or a Dask `scheduler` address (``tcp://host:8786``).
    A rerun skips inputs already converted with the same options unless ``overwrite=True``.
    """
    if options is not None and option_values:
        raise UsageError("pass either options=ConvertOptions(...) or keyword options, not both")
    opts = options or ConvertOptions(**option_values)
    out_root = Path(output)
    if out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} exists and is not a folder")
    inputs = [Path(p) for p in inputs]
    jobs = check_run(inputs, jobs)
    started = time.perf_counter()
    summary = Summary(output=out_root, manifest=out_root / MANIFEST_NAME)
    exclude = [out_root]
    with executor(jobs, scheduler) as pool, _exclusive(out_root):
        clear_temp_dir(out_root)
        if reporter is not None:
            reporter.start(count_files(inputs, exclude))
        state = RunState(out_root, options_key(opts))
        try:
            workers = worker_slots(pool, jobs)
            registry = NameRegistry()
            planned = plan(discover(inputs, exclude), registry, opts.layout)
            slices: dict[str, str] = {}  # single-frame images converted: source -> output

            def done(result: FileResult) -> None:
                summary.add(result)
                if reporter is not None:
                    reporter.result(result)
                if opts.series_video:
                    slices.update(_single_frame_output(result))

            todo = _skip_up_to_date(planned, state, opts, done)
            for result in _run(todo, pool, opts, out_root, workers * IN_FLIGHT_PER_WORKER):
                state.record(result.source, result.seq, result.status, result.rows)
                done(result)
            if slices:
                _series_videos(slices, registry, state, pool, opts, out_root, workers, summary)
            write_manifest(summary.manifest, state.rows_of_this_run())
        finally:
            state.close()
    summary.elapsed = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _exclusive(out_root: Path) -> Iterator[None]:
    """One run per output folder at a time: a second would clear the first's temporary files."""
    state_dir(out_root).mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, run unguarded
        yield
        return
    with open(state_dir(out_root) / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{out_root} is in use by another dcmexport run: wait for it or use another -o"
            ) from None
        yield


def _single_frame_output(result: FileResult) -> dict[str, str]:
    """{source: output} if `result` is a single-frame image converted now or earlier."""
    if result.status != "ok":
        return {}
    for row in result.rows:
        if row.kind == "image" and row.frame is None:
            return {result.source: row.output}
    return {}


def _series_videos(
    slices: dict[str, str],
    registry: NameRegistry,
    state: RunState,
    pool: cf.Executor | None,
    options: ConvertOptions,
    out_root: Path,
    workers: int,
    summary: Summary,
) -> None:
    """`--series-video`: read the converted slices' headers (on the executor), group them
    into series, and make one video per series of two or more slices."""
    in_flight = workers * IN_FLIGHT_PER_WORKER
    pairs = [(source, os.path.abspath(source)) for source in slices]
    infos = [
        info
        for chunk in _map_chunks(slice_infos, pairs, pool, in_flight, CHUNK_SIZE * 8)
        for info in chunk
        if info is not None
    ]
    todo = []
    for item, wanted in series_items(infos, slices, first_seq=SERIES_SEQ):
        base, note = registry.claim(wanted)
        item = dataclasses.replace(
            item, base=str(base), note="; ".join(n for n in (note, item.note) if n)
        )
        rows = None
        if not options.overwrite:
            rows = state.up_to_date(item.key, item.seq, item.base, item.fingerprint)
        if rows is None:
            todo.append(item)
        else:
            summary.series_videos += sum(1 for r in rows if r.kind == "series-video")
    by_key = {item.key: item for item in todo}
    for results in _map_chunks(
        convert_series_many, todo, pool, in_flight, 1, options, str(out_root.resolve())
    ):
        for key, result in results:
            item = by_key[key]
            state.record(item.key, item.seq, result.status, result.rows, item.fingerprint)
            if result.status == "ok":
                summary.series_videos += sum(1 for r in result.rows if r.kind == "series-video")
            else:
                summary.series_failed += 1


def convert_series_many(
    items: list[SeriesItem], options: ConvertOptions, out_root: str
) -> list[tuple[str, FileResult]]:
    """Series videos for a chunk of series (one executor task)."""
    return [(item.key, convert_series(item, options, out_root)) for item in items]


def _map_chunks(
    function: Any,
    items: Iterable[Any],
    pool: cf.Executor | None,
    max_in_flight: int,
    size: int,
    *args: Any,
) -> Iterator[Any]:
    """`function(chunk, *args)` over chunks of `items`, in-process or on the executor, with
    at most `max_in_flight` chunks queued; results as they complete."""
    if pool is None:
        for chunk in chunks(items, size):
            yield function(chunk, *args)
        return
    pending: set[cf.Future] = set()
    for chunk in chunks(items, size):
        pending.add(pool.submit(function, chunk, *args))
        if len(pending) >= max_in_flight:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield future.result()
    for future in cf.as_completed(pending):
        yield future.result()


def _skip_up_to_date(
    items: Iterator[WorkItem],
    state: RunState,
    options: ConvertOptions,
    done: Callable[[FileResult], None],
) -> Iterator[WorkItem]:
    """Pass on the items that need work; hand the others to `done` as up to date."""
    for item in items:
        rows = None if options.overwrite else state.up_to_date(item.source, item.seq, item.base)
        if rows is None:
            yield item
            continue
        status = "skipped" if rows and rows[0].status == "skipped" else "ok"
        done(FileResult(item.source, status, rows, seq=item.seq, up_to_date=status == "ok"))
