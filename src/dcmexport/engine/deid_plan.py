"""Planning de-identified runs (`anonymize`, `convert --anonymize`): PHI-free names, the
manifest's pseudonymous sources, keyed resume keys and the ``--map`` file.

Why the planner reads the header: output names must be claimed from the one `NameRegistry`
in the parent, in discovery order, and a de-identified name is made of the *new* UIDs, which
only the header gives. The read stops before the pixel data (as layout templates already do),
and the names need no full de-identification: `instance_uid` gives the UIDs `deidentify` will
give. A full header de-identification runs here only for a layout template (its values must
be the de-identified ones) or when ``--map`` is asked (the map needs the pseudonyms).

What never leaves the parent in clear: the input's path. The manifest's `source` is the
pseudonymous id (the new SOP Instance UID; ``input-<keyed hash>`` for an input without one),
the resume state is keyed by a keyed hash of the path, and only ``--map`` (outside OUT)
relinks the two.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from pydicom.dataset import Dataset

from .. import sources
from ..dicom import decoding
from ..dicom.deid import DeidOptions, deidentify, instance_uid
from ..dicom.pseudonyms import keyed_token
from ..errors import DcmExportError, UsageError
from ..naming import Layout, NameRegistry, sanitize_component
from ..options import ConvertOptions
from ..sources import InputRef
from ..store import atomic_path, write_atomic
from .plan import claim_names, first_time_in_memory
from .work import WorkItem

#: The ``--map`` row kind that relinks an input's path to its pseudonymous id.
SOURCE_PATH = "SourcePath"
MAP_COLUMNS = ("kind", "original", "pseudonym")
_NAME_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


class DeidMap:
    """The ``--map`` rows of a run (original → pseudonym): collected in the parent, written
    once at the end, only ever to a file the user named outside OUT."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], None] = {}

    def add(self, kind: str, original: str, pseudonym: str) -> None:
        self._rows[(kind, original, pseudonym)] = None

    def text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(MAP_COLUMNS)
        writer.writerows(sorted(self._rows))
        return buffer.getvalue()

    def write(self, path: Path) -> None:
        write_atomic(path, self.text().encode("utf-8", "surrogateescape"))


def check_map_path(map_path: str | os.PathLike[str], out_root: Path | None) -> Path:
    """The ``--map`` path, refused inside OUT (OUT is what gets shared; the map is PHI).
    An object-store OUT (`out_root` None) never holds a local file."""
    path = Path(map_path)
    resolved = path.resolve()
    root = out_root.resolve() if out_root is not None else None
    if root is not None and (resolved == root or root in resolved.parents):
        raise UsageError(f"--map {map_path}: must not be inside the output folder {out_root}")
    if path.is_dir():
        raise UsageError(f"--map {map_path}: is a folder; give a file name")
    with atomic_path(path):  # fails now, not after the run, if the folder is not writable
        pass
    return path


def _uid_part(ds: Dataset, keyword: str, options: DeidOptions) -> str:
    return sanitize_component(instance_uid(ds, keyword, options) or "unknown")


def plan_deidentified(
    found: Iterable[InputRef],
    registry: NameRegistry,
    options: ConvertOptions,
    deid: DeidOptions,
    deid_map: DeidMap | None = None,
    first_time: Callable[[str], bool] | None = None,
) -> Iterator[WorkItem]:
    """`plan` for de-identified runs: PHI-free bases, pseudonymous sources, keyed state keys.

    Without a layout template the base is ``<new Study UID>/<new Series UID>/<new SOP UID>``
    (a series stays one folder); with one, the template renders from the de-identified
    header and ``{stem}`` is the new SOP Instance UID. Names are claimed in discovery order.
    """
    layout = options.layout
    first_time = first_time or first_time_in_memory()
    for seq, found_ref in enumerate(found):
        ref = found_ref.absolute()
        key = f"{ref.path}/{ref.member}" if ref.member else str(ref.path)
        key += f"\x00{ref.copy}" if ref.copy > 1 else ""  # a later copy of a repeated member
        if not first_time(key):
            continue
        handle = keyed_token(deid.key, "input", key)
        state_key = f"input:{handle}"
        header = None
        if not ref.problem:
            try:
                with sources.open_header(ref) as data:  # an object: a few KB, not the whole
                    header = decoding.read_dataset(data, stop_before_pixels=True)
            except DcmExportError:
                header = None
        sop = instance_uid(header, "SOPInstanceUID", deid) if header is not None else ""
        source = sop or f"input-{handle}"
        if deid_map is not None:
            deid_map.add(SOURCE_PATH, found_ref.source, source)
        if header is None or not sop:  # the conversion reports why; nothing is written
            base, note = registry.claim(PurePosixPath(sanitize_component(source)))
            yield WorkItem(source, ref, str(base), note, seq, state_key=state_key)
            continue
        clean = None
        if layout is not None or deid_map is not None:
            result = deidentify(header, deid)
            clean = result.dataset
            if deid_map is not None:
                for entry in result.map_entries:
                    deid_map.add(*entry.as_row())
        frame_wanted: list[tuple[int, PurePosixPath]] = []
        if layout is not None and clean is not None:
            wanted, frame_wanted = _layout_bases(clean, layout, options, seq, sop)
        else:
            wanted = PurePosixPath(*(_uid_part(header, k, deid) for k in _NAME_UIDS))
        claimed, note, frame_bases = claim_names(registry, wanted, frame_wanted)
        yield WorkItem(source, ref, claimed, note, seq, frame_bases, state_key)


def _layout_bases(
    ds: Dataset, layout: Layout, options: ConvertOptions, seq: int, stem: str
) -> tuple[PurePosixPath, list[tuple[int, PurePosixPath]]]:
    base = layout.render(ds, stem=stem, index=seq + 1)
    frames: list[tuple[int, PurePosixPath]] = []
    n_frames = decoding.number_of_frames(ds)
    if layout.uses_frame and n_frames > 1 and options.frames is not None:
        try:
            numbers = options.frames.frame_numbers(n_frames)
        except DcmExportError:
            numbers = []
        frames = [(n, layout.render(ds, stem=stem, index=seq + 1, frame=n)) for n in numbers]
    return base, frames
