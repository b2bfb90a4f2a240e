"""Planning: every output name of a run is claimed here, from the one `NameRegistry`.

An input's base (mirror or layout template), the bases of the stills a ``{frame}`` template
names, and each series' base are all claimed in discovery order, so no two outputs ever share
a name and a rerun over the same inputs lands on the same names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from .. import sources
from ..dicom import decoding, faults
from ..dicom.series import SeriesGrouping, SliceInfo, order_slices
from ..errors import DcmExportError
from ..exporters import SeriesJob
from ..naming import Layout, NameRegistry, input_stem, mirror_base
from ..options import ConvertOptions
from ..sources import InputRef
from .work import WorkItem

if TYPE_CHECKING:  # planned volumes: the geometry loads with the first volume
    from ..dicom.geometry import SeriesVolumes

#: a slice's outputs share a folder; the series video goes there under this name
SERIES_VIDEO_STEM = "series"


def plan(
    found: Iterable[InputRef],
    registry: NameRegistry | None = None,
    options: ConvertOptions | None = None,
    first_time: Callable[[str], bool] | None = None,
) -> Iterator[WorkItem]:
    """Claim a unique output base for every input, in discovery order.

    With a layout template the base comes from the input's header, read here (without
    pixel data) so that the registry can keep every name unique — including, for a
    ``{frame}`` template, the name of every still. `first_time(key)` remembers the inputs
    planned (default: in a set; a batch keeps them in its `scratch` database).
    """
    registry = registry if registry is not None else NameRegistry()
    options = options or ConvertOptions()
    first_time = first_time or first_time_in_memory()
    layout = options.layout
    for seq, found_ref in enumerate(found):
        ref = found_ref.absolute()  # workers read absolute paths (a Dask worker's cwd differs)
        key = ref.key  # a path, archive/member (and which copy of it), or server instance URL
        if not first_time(key):  # the same file named twice (a folder and a file in it): once
            continue
        state_key = key if ref.copy > 1 else ""  # a later copy of a repeated archive member
        if ref.problem:
            yield WorkItem(found_ref.source, ref, "", "", seq, state_key=state_key)
            continue
        frame_wanted: list[tuple[int, PurePosixPath]] = []
        wanted = None
        if layout is not None:
            wanted, frame_wanted = _layout_bases(ref, layout, options, seq)
        if wanted is None:
            # foreign names (archive members, object keys) are made safe; local ones kept
            wanted = _member_base(ref) if ref.member_parts else mirror_base(found_ref.trusted_parts)
        base, note, frame_bases = claim_names(registry, wanted, frame_wanted)
        if ref.copy > 1:
            repeated = f"copy {ref.copy} of a member name the archive repeats"
            note = "; ".join(n for n in (repeated, note) if n)
        yield WorkItem(found_ref.source, ref, base, note, seq, frame_bases, state_key)


def first_time_in_memory() -> Callable[[str], bool]:
    """A `first_time` keeping the keys in a set."""
    seen: set[str] = set()

    def first_time(key: str) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    return first_time


def claim_names(
    registry: NameRegistry,
    wanted: PurePosixPath,
    frame_wanted: list[tuple[int, PurePosixPath]],
) -> tuple[str, str, tuple[tuple[int, str], ...]]:
    """Claim an input's base and its ``{frame}`` stills' bases: (base, manifest note, frame
    bases). Every planner (plain or de-identified) claims through here."""
    base, note = registry.claim(wanted)
    frame_bases = []
    for number, frame_base in frame_wanted:
        claimed, frame_note = registry.claim(frame_base)
        frame_bases.append((number, str(claimed)))
        if frame_note:
            note = "; ".join(n for n in (note, frame_note) if n)
    return str(base), note, tuple(frame_bases)


def _member_base(ref: InputRef) -> PurePosixPath:
    """An archive member mirrors under its archive's folder and stem; its own name parts are
    foreign and made safe."""
    member = mirror_base(ref.member_parts, foreign=True)
    return PurePosixPath(*ref.prefix, *member.parts)


def _layout_bases(
    ref: InputRef, layout: Layout, options: ConvertOptions, seq: int
) -> tuple[PurePosixPath | None, list[tuple[int, PurePosixPath]]]:
    """The template's base for one input and, for a ``{frame}`` template, each selected
    still's; (None, []) when the header cannot be read (the conversion then reports why)."""
    try:
        return _layout_names(ref, layout, options, seq)
    except faults.PASS_THROUGH:
        raise
    except BaseException:  # a hostile header: the conversion reports why
        return None, []


def _layout_names(
    ref: InputRef, layout: Layout, options: ConvertOptions, seq: int
) -> tuple[PurePosixPath | None, list[tuple[int, PurePosixPath]]]:
    try:
        with sources.open_header(ref) as header:  # an object: a few KB, not the whole
            ds = decoding.read_dataset(header, stop_before_pixels=True)
    except DcmExportError:
        return None, []
    stem = input_stem(ref.name)
    base = layout.render(ds, stem=stem, index=seq + 1)
    frames: list[tuple[int, PurePosixPath]] = []
    n_frames = decoding.number_of_frames(ds)
    if (
        layout.uses_frame
        and 1 < n_frames <= options.limits.max_frames
        and options.frames is not None
    ):
        try:
            numbers = options.frames.frame_numbers(n_frames)
        except DcmExportError:  # selects no frame: the conversion reports it
            numbers = []
        frames = [(n, layout.render(ds, stem=stem, index=seq + 1, frame=n)) for n in numbers]
    return base, frames


def series_jobs(
    infos: Iterable[SliceInfo], bases: dict[str, str], registry: NameRegistry, first_seq: int
) -> list[SeriesJob]:
    """Series of two or more slices as jobs with claimed bases, in Series Instance UID order.

    A series' wanted base is ``<folder of the first slice's output>/series_<number>``. The
    fingerprint changes whenever a slice is added, removed, reordered or modified, so that a
    rerun remakes exactly the stale series outputs.
    """
    grouping: SeriesGrouping[SliceInfo] = SeriesGrouping()
    for info in infos:
        grouping.add(info, info.series_uid, info.instance_uid)
    jobs = []
    groups = sorted(grouping.groups.items())
    for seq, (uid, group) in enumerate(groups, first_seq):
        if len(group.members) < 2:
            continue
        ordered, how = order_slices(group.members)
        (rows, columns), count = Counter((s.rows, s.columns) for s in ordered).most_common(1)[0]
        digest = hashlib.sha256()
        for s in ordered:
            digest.update(f"{s.path}\0{s.size}\0{s.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        fingerprint = (len(ordered), int.from_bytes(digest.digest()[:7], "big"))
        number = ordered[0].series_number or hashlib.sha1(uid.encode()).hexdigest()[:8]
        folder = PurePosixPath(bases[ordered[0].source]).parent
        base, claim_note = registry.claim(folder / f"{SERIES_VIDEO_STEM}_{_safe(number)}")
        names = [s.source for s in ordered]
        common = os.path.commonpath(names) if len(set(names)) > 1 else names[0]
        note = f"series video of {len(ordered)} slices ordered by {how}"
        if count < len(ordered):
            note += f"; {len(ordered) - count} slice(s) not {columns}x{rows} left out"
        if group.copies:
            note += f"; {group.copies} copies of the same instances left out"
        jobs.append(
            SeriesJob(
                key=f"series:{uid}",
                source=common,
                base=str(base),
                paths=tuple(os.path.abspath(s.path) for s in ordered),
                rows=rows,
                columns=columns,
                fingerprint=fingerprint,
                note="; ".join(n for n in (claim_note, note) if n),
                seq=seq,
            )
        )
    return jobs


def claim_volume_bases(job: SeriesJob, volumes: SeriesVolumes, registry: NameRegistry) -> SeriesJob:
    """The job with its planned volumes and their claimed bases: the series' own base for one
    volume, ``<base>_part<k>`` claimed for each volume of a split series."""
    count = len(volumes.volumes)
    if count == 1:
        first = job.note.split("; ")[0]
        bases: tuple[tuple[str, str], ...] = (
            (job.base, first if first.startswith("name collision") else ""),
        )
    else:
        claimed = [
            registry.claim(PurePosixPath(f"{job.base}_part{k}")) for k in range(1, count + 1)
        ]
        bases = tuple((str(base), note) for base, note in claimed)
    return dataclasses.replace(job, volumes=volumes, volume_bases=bases)


def _safe(text: str) -> str:
    """A Series Number as a file name part: digits and letters only."""
    cleaned = "".join(c if c.isalnum() or c in "-." else "_" for c in text).strip("._")
    return cleaned[:32] or "x"
