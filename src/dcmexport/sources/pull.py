"""`dcmexport pull`: matching instances from a server into ``DIR`` as Part-10 files.

Names are PHI-free and come only from validated UIDs:
``DIR/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. A file already there is
not fetched again (writes are atomic, so a file under its final name is complete). Every
received file is checked before it is written: a Part-10 file whose SOP Instance UID (and
study and series) are those asked for. ``DIR/manifest.csv`` lists every instance.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import ServerError
from ..manifest import MANIFEST_NAME, Kind, ManifestRow, Status, manifest_bytes
from ..store import LocalStore
from . import query
from .servers import InstanceRef, QueryFilters, Server, ServerKind

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InstanceResult:
    """What happened to one instance (duck-types the CLI reporter's file result)."""

    source: str
    status: Status
    output: str = ""
    reason: str = ""
    up_to_date: bool = False
    detail: str = ""

    def row(self) -> ManifestRow:
        return ManifestRow(
            source=self.source,
            output=self.output,
            status=self.status,
            error=self.reason,
            kind=Kind.DICOM if self.output else "",
            note="already present" if self.up_to_date else "",
        )


@dataclasses.dataclass
class PullSummary:
    """The outcome of `pull`: counts, time and where the manifest is."""

    out_dir: Path
    found: int = 0
    fetched: int = 0
    present: int = 0
    failed: int = 0
    elapsed: float = 0.0

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def exit_code(self) -> int:
        """0 all there, 1 some failed, 2 nothing matched (as `convert`)."""
        if self.found == 0:
            return 2
        return 1 if self.failed else 0

    @property
    def files_per_second(self) -> float:
        return self.fetched / self.elapsed if self.elapsed > 0 else 0.0


def verify_instance(data: bytes, ref: InstanceRef) -> None:
    """Raise `ServerError` unless `data` is a Part-10 file of exactly the instance `ref`."""
    if data[128:132] != b"DICM":
        raise ServerError("the server sent something that is not a DICOM Part-10 file")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise ServerError(f"the server sent an unreadable DICOM file ({exc})") from None
    for keyword, expected in (
        ("SOPInstanceUID", ref.sop_instance_uid),
        ("SeriesInstanceUID", ref.series_uid),
        ("StudyInstanceUID", ref.study_uid),
    ):
        if str(ds.get(keyword, "")) != expected:
            raise ServerError(f"the received file's {keyword} is not the one asked for")


def store_instance(out_dir: Path, ref: InstanceRef, data: bytes) -> str:
    """Verify `data` and write it atomically under its UID name; returns the relative path."""
    verify_instance(data, ref)
    return LocalStore(out_dir).put(ref.relative_path, data)


def _fetch_one(server: Server, ref: InstanceRef, out_dir: Path) -> list[InstanceResult]:
    """WADO-RS one instance into `out_dir`; a per-instance problem is an error result."""
    source = ref.source(server)
    try:
        output = store_instance(out_dir, ref, query.fetch_instance(server, ref))
    except ConnectionError:
        raise  # the server went away: the whole pull stops
    except Exception as exc:
        return [InstanceResult(source, Status.ERROR, reason=str(exc) or type(exc).__name__)]
    return [InstanceResult(source, Status.OK, output)]


def _fetch_series(
    server: Server, refs: Sequence[InstanceRef], out_dir: Path
) -> list[InstanceResult]:
    """C-GET one series' missing instances into `out_dir`."""
    done: dict[str, str] = {}

    def sink(ref: InstanceRef, data: bytes) -> None:
        done[ref.sop_instance_uid] = store_instance(out_dir, ref, data)

    failures = query.fetch_series(server, refs, sink)
    return [
        InstanceResult(ref.source(server), Status.OK, done[ref.sop_instance_uid])
        if ref.sop_instance_uid in done
        else InstanceResult(
            ref.source(server),
            Status.ERROR,
            reason=failures.get(ref.sop_instance_uid, "not received"),
        )
        for ref in refs
    ]


def pull(
    server: Server,
    filters: QueryFilters,
    out_dir: str | Path,
    *,
    jobs: int = 4,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[InstanceResult], None] | None = None,
) -> PullSummary:
    """Fetch every instance matching `filters` into `out_dir`; write ``manifest.csv``.

    `jobs` connections work at once (WADO-RS instances, or C-GET series). Raises
    `ServerUnreachableError`/`ServerError` when the server cannot be used at all; one instance
    that fails is one `error` row.
    """
    started = time.monotonic()
    out = Path(out_dir)
    summary = PullSummary(out)
    query.check_connection(server)
    refs = query.list_instances(server, filters)
    summary.found = len(refs)
    if on_start is not None:
        on_start(len(refs))
    results: list[InstanceResult] = []

    def record(result: InstanceResult) -> None:
        results.append(result)
        if result.status == Status.ERROR:
            summary.failed += 1
        elif result.up_to_date:
            summary.present += 1
        else:
            summary.fetched += 1
        if on_result is not None:
            on_result(result)

    todo: list[InstanceRef] = []
    for ref in refs:
        if not ref.valid:
            reason = "refused: a UID from the server is not digits and dots"
            record(InstanceResult(ref.source(server), Status.ERROR, reason=reason))
        elif (out / ref.relative_path).is_file():
            record(
                InstanceResult(
                    ref.source(server), Status.OK, ref.relative_path.as_posix(), up_to_date=True
                )
            )
        else:
            todo.append(ref)
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        _run(server, todo, out, max(1, jobs), record)
    if summary.found:
        rows = [r.row() for r in sorted(results, key=lambda r: r.source)]
        LocalStore(out).put(MANIFEST_NAME, manifest_bytes(rows))
    summary.elapsed = time.monotonic() - started
    return summary


def _run(
    server: Server,
    todo: Sequence[InstanceRef],
    out: Path,
    jobs: int,
    record: Callable[[InstanceResult], None],
) -> None:
    """Fetch `todo` with `jobs` threads (network-bound work: threads, not processes)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        if server.kind is ServerKind.DICOMWEB:
            futures = [pool.submit(_fetch_one, server, ref, out) for ref in todo]
        else:
            by_series: dict[str, list[InstanceRef]] = {}
            for ref in todo:
                by_series.setdefault(ref.series_uid, []).append(ref)
            futures = [pool.submit(_fetch_series, server, refs, out) for refs in by_series.values()]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()  # type: ignore[misc]
                value = future.result()
                for result in value:
                    record(result)
