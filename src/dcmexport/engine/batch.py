"""The batch run: discover inputs, claim their names, convert them on every core or a Dask
cluster, remember what was done (resume), report progress, write the manifest."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import sources
from .._version import __version__
from ..dicom import limits
from ..dicom.series import slice_infos
from ..errors import UsageError
from ..exporters import SeriesJob, plan_series_volumes, series_wanted
from ..manifest import (
    COLUMNS,
    MANIFEST_NAME,
    Kind,
    ManifestRow,
    Status,
    count_burned_in,
    manifest_bytes,
    write_manifest_file,
)
from ..naming import NameRegistry
from ..options import (
    BurnedInPolicy,
    ConvertOptions,
    MetadataPhi,
    Product,
    VideoFormat,
    VolumeFormat,
)
from ..store import LocalStore, Store, is_url, store_for, write_atomic
from ..store.guard import check_output
from .executor import IN_FLIGHT_PER_WORKER, bounded_map, check_run, executor, worker_slots
from .faults import store_fault
from .plan import claim_volume_bases, plan, series_jobs
from .pool import DEFAULT_TIMEOUT
from .scratch import Scratch
from .state import RunState
from .work import (
    FileResult,
    WorkItem,
    convert_many,
    convert_one,
    convert_series_many,
    failed_result,
    failed_series_result,
)

if TYPE_CHECKING:  # de-identification loads with the first run that asks for it
    from ..dicom.deid import DeidOptions

log = logging.getLogger(__name__)

CHUNK_SIZE = 32  # files per task: amortises pickling, scheduling and result glue
SERIES_SEQ = 1 << 40  # series outputs come after every input in the manifest

__all__ = [
    "MANIFEST_NAME",
    "FileResult",
    "Reporter",
    "Summary",
    "WorkItem",
    "anonymize",
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
    #: `--volume`: volumes made (or up to date), and volume parts refused with an error
    volumes: int = 0
    volumes_failed: int = 0
    #: de-identified DICOM copies written (`anonymize`)
    copies: int = 0
    #: de-identified runs: inputs noted as possibly carrying burned-in text
    burned_in: int = 0
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
        if self.failed or self.series_failed or self.volumes_failed:
            return 1
        return 0 if self.converted or self.up_to_date else 2

    @property
    def files_per_second(self) -> float:
        return self.found / self.elapsed if self.elapsed > 0 else 0.0

    def count_volumes(self, rows: list[ManifestRow]) -> None:
        """Volumes written (now or earlier) and volume parts refused with an error."""
        for row in rows:
            if row.kind == Kind.VOLUME:
                if row.status == Status.OK:
                    self.volumes += 1
                elif row.status == Status.ERROR:
                    self.volumes_failed += 1

    def add(self, result: FileResult) -> None:
        self.count_volumes(result.rows)
        if result.status == Status.OK and count_burned_in(result.rows):
            self.burned_in += 1
        if result.up_to_date:
            self.up_to_date += 1
        elif result.status == Status.OK:
            self.converted += 1
            self.images += sum(1 for row in result.rows if row.kind == Kind.IMAGE)
            self.videos += sum(1 for row in result.rows if row.kind == Kind.VIDEO)
            self.copies += sum(1 for row in result.rows if row.kind == Kind.DICOM)
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


def options_key(options: ConvertOptions, deid: DeidOptions | None = None) -> str:
    """A digest of everything that decides the outputs: a rerun with another key redoes all.

    De-identification settings enter keyed (HMAC with the run's key), so the state in OUT
    holds nothing from which the key could be guessed."""
    fields = dataclasses.asdict(options)
    fields.pop("overwrite", None)
    fields.pop("limits", None)  # raising a limit redoes only what it refused (errors are redone)
    fields.pop("thumbnails", None)  # report assets, not outputs: adding --html redoes nothing
    text = json.dumps([__version__, COLUMNS, fields], sort_keys=True, default=str)
    if deid is not None:
        settings = json.dumps([sorted(k.value for k in deid.keep), deid.overrides])
        text += hmac.new(deid.key, settings.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write the manifest atomically (a reader never sees half of it)."""
    write_atomic(path, manifest_bytes(rows))


def convert(
    inputs: Iterable[str | os.PathLike[str] | sources.ServerInput],
    output: str | os.PathLike[str] = "output",
    *,
    options: ConvertOptions | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
    deid: DeidOptions | None = None,
    map_path: str | os.PathLike[str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    storage_options: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    isolate: bool = False,
    **option_values: Any,
) -> Summary:
    """Convert every DICOM image under `inputs` into `output`, and write its manifest.

    Pass ``options=ConvertOptions(...)`` or its fields as keywords (``format``, ``bits``,
    ``window``, ``raw``, ``frames``, ``quality``, ``overwrite``). `jobs` worker processes
    (default: all cores; 1 = in-process, or with `isolate` one worker process, so that
    `timeout` and a crashing decoder cost one input) or a Dask `scheduler` address
    (``tcp://host:8786``). A rerun skips inputs already converted with the same options
    unless ``overwrite=True``.

    ``anonymize=True`` de-identifies every input (PS3.15 Annex E) with `deid` (its key,
    ``--keep``, ``--set``; a random key when None) before anything is written, names outputs
    by the new UIDs and the manifest's sources by the new SOP Instance UID; `map_path` (never
    inside `output`) then receives the original → pseudonym map.

    Inputs and `output` may be object-store URLs (``s3://bucket/prefix/``), read and written
    with fsspec `storage_options`; the resume state then lives in `state_dir` (default: a
    cache folder named after the URL), which also moves a local OUT's state.
    """
    if options is not None and option_values:
        raise UsageError("pass either options=ConvertOptions(...) or keyword options, not both")
    opts = options or ConvertOptions(**option_values)
    store = store_for(output, storage_options, state_dir)
    out_root = store.root if isinstance(store, LocalStore) else None
    if out_root is not None and out_root.exists() and not out_root.is_dir():
        raise UsageError(f"output {out_root} exists and is not a folder")
    items = [_input(p) for p in inputs]
    paths = [p for p in items if isinstance(p, (str, Path))]  # local and URLs, not servers
    if opts.series_video and len(paths) < len(items):
        raise UsageError("--series-video reads the slices from disk: pull SERVER first")
    _check_object_storage(opts, paths, out_root)
    n_jobs = check_run(paths, jobs)
    deid = _run_deid(opts, deid, map_path)
    deid_map = None
    if map_path is not None:
        from .deid_plan import DeidMap, check_map_path

        map_file, deid_map = check_map_path(map_path, out_root), DeidMap()
    started = time.perf_counter()
    if out_root is not None:
        summary = Summary(output=out_root, manifest=out_root / MANIFEST_NAME)
    else:
        summary = Summary(output=store.location, manifest=store.location + MANIFEST_NAME)
    exclude: list[str | Path] = [out_root if out_root is not None else str(output)]
    with (
        executor(n_jobs, scheduler, timeout, isolate=isolate) as pool,
        _exclusive(store),
        limits.applied(opts.limits),
        Scratch() as scratch,
    ):
        store.clear_temp()
        if reporter is not None:
            reporter.start(sources.count_files(items, exclude, storage_options))
        state = RunState(store, options_key(opts, deid))
        try:
            workers = worker_slots(pool, n_jobs)
            registry = NameRegistry(scratch.claims())
            first_time = scratch.seen().first_time
            found = sources.discover(items, exclude, storage_options)
            if opts.anonymize:
                assert deid is not None
                from .deid_plan import plan_deidentified

                planned = plan_deidentified(found, registry, opts, deid, deid_map, first_time)
            else:
                planned = plan(found, registry, opts, first_time)
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
                deid,
                failed=failed_result,
            ):
                state.record_many(
                    [
                        (
                            item.key,
                            result.seq,
                            result.status,
                            result.rows,
                            result.fingerprint
                            if result.written is not None  # taken in the worker
                            else sources.fingerprint(item.ref),
                        )
                        for item, result in zip(chunk, results, strict=True)
                    ],
                    [result.written for result in results],
                )
                for result in results:
                    done(result)
            if slices:
                _series(slices, registry, state, pool, opts, run_store, workers, summary)
            _put_manifest(store, state)
            if deid_map is not None:
                deid_map.write(map_file)
        except BaseException as exc:  # a stop (Ctrl-C, SIGTERM, disk full): keep what was done
            _manifest_after_stop(store, state)
            if (fault := store_fault(exc)) is not None and fault is not exc:
                raise fault from None
            raise
        finally:
            with contextlib.suppress(Exception):  # the disk may be full: the WAL keeps the rows
                state.close()
    summary.elapsed = time.perf_counter() - started
    return summary


def _input(item: str | os.PathLike[str] | sources.ServerInput) -> Path | str | sources.ServerInput:
    """An input as the sources take it: a server, an object-store URL (kept as text) or a path."""
    server = sources.as_server_input(item)
    if server is not None:
        return server
    assert isinstance(item, (str, os.PathLike))
    return str(item) if is_url(item) else Path(item)


def _check_object_storage(
    options: ConvertOptions, paths: Iterable[str | Path], out_root: Path | None
) -> None:
    """Refuse, before any work, what object-store inputs or OUT cannot do yet (docs/cli.md):
    series outputs read the converted slices from local disk, and volumes are streamed to
    local files."""
    url_inputs = any(is_url(p) for p in paths)
    if options.series_video and url_inputs:
        raise UsageError("--series-video does not read URL inputs yet: copy them locally first")
    if options.volume is not VolumeFormat.NONE and (url_inputs or out_root is None):
        raise UsageError(
            "--volume reads and writes local files only: not with s3:// (URL) inputs or -o yet"
        )


def _run_deid(
    options: ConvertOptions,
    deid: DeidOptions | None,
    map_path: str | os.PathLike[str] | None,
) -> DeidOptions | None:
    """The run's de-identification settings: given, or a random key per run when needed."""
    needed = options.anonymize or options.metadata_phi is MetadataPhi.NONE
    if deid is not None and not needed:
        raise UsageError("--key, --keep and --set need --anonymize (or --metadata-phi none)")
    if map_path is not None and not options.anonymize:
        raise UsageError("--map needs --anonymize")
    if needed and deid is None:
        from ..dicom.deid import DeidOptions, random_key

        deid = DeidOptions(key=random_key())
    return deid


def anonymize(
    inputs: Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    deid: DeidOptions | None = None,
    burned_in: BurnedInPolicy = BurnedInPolicy.WARN,
    map_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    jobs: int | None = None,
    scheduler: str | None = None,
    reporter: Reporter | None = None,
    storage_options: dict[str, Any] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    isolate: bool = False,
) -> Summary:
    """De-identified DICOM copies of every input under `output` (``dcmexport anonymize``):
    the batch of `convert` (workers, Dask, progress, resume, manifest) writing one
    ``<new Study UID>/<new Series UID>/<new SOP UID>.dcm`` per DICOM input."""
    options = ConvertOptions(
        product=Product.DICOM,
        anonymize=True,
        burned_in=burned_in,
        video=VideoFormat.NONE,
        overwrite=overwrite,
    )
    return convert(
        inputs,
        output,
        options=options,
        jobs=jobs,
        scheduler=scheduler,
        reporter=reporter,
        deid=deid,
        map_path=map_path,
        storage_options=storage_options,
        state_dir=state_dir,
        isolate=isolate,
    )


@contextlib.contextmanager
def _exclusive(store: Store) -> Iterator[None]:
    """One run per output folder at a time: a second would clear the first's temporary files.

    The lock is local (in the state folder): for an object-store OUT it keeps two runs on
    this machine apart, not two machines writing one prefix.
    """
    if isinstance(store, LocalStore):
        check_output(store.root)  # writable, and .dcmexport is no link to elsewhere: else exit 2
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
        for _, chunk in bounded_map(
            slice_infos, pairs, pool, in_flight, CHUNK_SIZE * 8, failed=_no_slice_info
        )
        for info in chunk
        if info is not None
    ]
    jobs = series_jobs(infos, slices, registry, first_seq=SERIES_SEQ)
    if options.volume is not VolumeFormat.NONE:
        jobs = _plan_volumes(jobs, registry, pool, in_flight)
    todo: list[SeriesJob] = []
    for job in jobs:
        rows = None
        if not options.overwrite:
            rows = state.up_to_date(job.key, job.seq, job.bases, job.fingerprint)
        if rows is None:
            todo.append(job)
        else:
            summary.series_videos += sum(1 for r in rows if r.kind == Kind.SERIES_VIDEO)
            summary.count_volumes(rows)
    by_key = {job.key: job for job in todo}
    for _, results in bounded_map(
        convert_series_many, todo, pool, in_flight, 1, options, store, failed=failed_series_result
    ):
        for key, result in results:
            job = by_key[key]
            state.record(job.key, job.seq, result.status, result.rows, job.fingerprint)
            summary.count_volumes(result.rows)
            if result.status == Status.OK or _volume_refused(result.rows):
                summary.series_videos += sum(1 for r in result.rows if r.kind == Kind.SERIES_VIDEO)
            else:
                summary.series_failed += 1


def _volume_refused(rows: list[ManifestRow]) -> bool:
    """True if a series' error comes from a volume part (counted as such, not as a failed
    series task)."""
    return any(r.kind == Kind.VOLUME and r.status == Status.ERROR for r in rows)


def _plan_volumes(
    jobs: list[SeriesJob], registry: NameRegistry, pool: cf.Executor | None, in_flight: int
) -> list[SeriesJob]:
    """Plan each series' volumes from its headers (on the executor), then claim their names
    in series order, so that a split series' parts never take another output's name."""
    planned = {
        job.key: volumes
        for chunk, results in bounded_map(plan_series_volumes, jobs, pool, in_flight, 1)
        for job, volumes in zip(chunk, results, strict=True)
    }
    return [claim_volume_bases(job, planned[job.key], registry) for job in jobs]


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
            rows = state.up_to_date(item.key, item.seq, item.base, sources.fingerprint(item.ref))
        if rows is None:
            yield item
            continue
        status = Status.SKIPPED if rows and rows[0].status == Status.SKIPPED else Status.OK
        done(FileResult(item.source, status, rows, seq=item.seq, up_to_date=status == Status.OK))


def _no_slice_info(pair: tuple[str, str], reason: str) -> None:
    """A slice whose header read killed or hung its worker is left out of the series."""
    return None


def _manifest_after_stop(store: Store, state: RunState) -> None:
    """The manifest of the inputs finished before a stop (best effort: the disk may be full)."""
    try:
        _put_manifest(store, state)
    except Exception:  # the run is stopping anyway; the rerun writes it
        log.debug("could not write the manifest after the stop", exc_info=True)


def _put_manifest(store: Store, state: RunState) -> None:
    """The manifest of this run's inputs, streamed from the state into a temporary file and
    put in place at once (one PUT for an object store): never whole in memory."""
    with store.open_atomic(MANIFEST_NAME) as tmp:
        write_manifest_file(tmp, state.rows_of_this_run())
