"""What the report shows: the export grouped Patient → Study → Series, and what went wrong.

Grouping uses the inputs' own tags (Patient ID and Name, Study and Series Instance UIDs);
an input whose file is gone (moved, or an archive member) goes under one "unknown" patient
and study, in a series per input folder. Series videos (their manifest `source` is a folder)
join the series whose stills sit in the video's folder, matched by Series Number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import PurePosixPath

from ..manifest import Kind, Status
from .export import UNKNOWN, Header, Row

UNKNOWN_KEY = "unknown"
_SERIES_VIDEO = re.compile(r"^series_(.+)$")


@dataclasses.dataclass
class Still:
    """One still image (a single-frame input, or one frame of a multi-frame input)."""

    output: str
    source: str
    frame: int | None
    instance_number: str
    raw: bool = False  # `--raw` stored values: previews stretch them
    thumb: str = ""
    full: str = ""
    width: int = 0
    height: int = 0
    missing: bool = False


@dataclasses.dataclass
class Cine:
    """The video of a multi-frame input or of a whole series: its MP4 and/or GIF."""

    base: str
    mp4: str = ""
    gif: str = ""
    poster: str = ""
    series_video: bool = False
    note: str = ""


@dataclasses.dataclass(eq=False)  # identity: a series is a place things are added to
class Series:
    key: str
    number: str = ""
    description: str = ""
    modality: str = ""
    stills: list[Still] = dataclasses.field(default_factory=list)
    cines: list[Cine] = dataclasses.field(default_factory=list)
    sources: set[str] = dataclasses.field(default_factory=set)
    frames: int = 0
    sizes: Counter[str] = dataclasses.field(default_factory=Counter)
    windows: Counter[str] = dataclasses.field(default_factory=Counter)
    notes: Counter[str] = dataclasses.field(default_factory=Counter)
    contact_sheet: str = ""

    @property
    def anchor(self) -> str:
        return "s" + _digest(self.key)[:12]

    @property
    def size(self) -> str:
        return self.sizes.most_common(1)[0][0] if self.sizes else ""


@dataclasses.dataclass
class Study:
    key: str
    date: str = ""
    description: str = ""
    series: dict[str, Series] = dataclasses.field(default_factory=dict)

    @property
    def page(self) -> str:
        """The study page's path relative to OUT (PHI-free)."""
        return f"report_assets/studies/{_digest(self.key)[:20]}.html"

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series.values() if s.modality})

    @property
    def n_images(self) -> int:
        return sum(len(s.stills) for s in self.series.values())

    @property
    def n_cines(self) -> int:
        return sum(len(s.cines) for s in self.series.values())


@dataclasses.dataclass
class Patient:
    key: str
    patient_id: str = ""
    name: str = ""
    studies: dict[str, Study] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Problem:
    """Inputs that failed or were skipped for one reason."""

    status: Status
    reason: str
    sources: list[str]


@dataclasses.dataclass
class Export:
    patients: list[Patient]
    problems: list[Problem]
    counts: dict[str, int]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _number_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def display_name(patient_name: str) -> str:
    """A DICOM PN value as people read it: components separated by spaces, not carets."""
    groups = patient_name.split("=")[0]
    return " ".join(part for part in groups.split("^") if part)


def _window(row: Row) -> str:
    if not row.window_center and not row.window_width:
        return "none (colour or raw)" if row.kind is Kind.IMAGE else ""
    label = f" ({row.voi})" if row.voi else ""
    return f"C {row.window_center} / W {row.window_width}{label}"


class _Grouper:
    def __init__(self, headers: dict[str, Header]) -> None:
        self.headers = headers
        self.patients: dict[str, Patient] = {}
        self.by_folder: dict[str, list[Series]] = defaultdict(list)

    def series_for(self, source: str) -> Series:
        header = self.headers.get(source, UNKNOWN)
        if header.known:
            pkey = f"{header.patient_id}\0{header.patient_name}"
            skey = header.study_uid or f"no-study\0{pkey}"
            rkey = header.series_uid or f"no-series\0{source}"
        else:
            header = UNKNOWN
            pkey = skey = UNKNOWN_KEY
            rkey = f"{UNKNOWN_KEY}\0{PurePosixPath(source).parent}"
        patient = self.patients.setdefault(
            pkey, Patient(pkey, header.patient_id, display_name(header.patient_name))
        )
        study = patient.studies.setdefault(
            skey, Study(skey, header.study_date, header.study_description)
        )
        series = study.series.get(rkey)
        if series is None:
            series = study.series[rkey] = Series(
                rkey, header.series_number, header.series_description, header.modality
            )
        if source not in series.sources:
            series.sources.add(source)
            series.frames += int(header.frames) if header.frames.isdigit() else 1
            if header.rows and header.columns:
                series.sizes[f"{header.columns} × {header.rows}"] += 1
        return series

    def add(self, row: Row, cines: dict[tuple[str, str], Cine]) -> None:
        series = self.series_for(row.source)
        if window := _window(row):
            series.windows[window] += 1
        if row.note:
            series.notes[row.note] += 1
        if row.kind is Kind.IMAGE:
            header = self.headers.get(row.source, UNKNOWN)
            series.stills.append(
                Still(row.output, row.source, row.frame, header.instance_number, row.raw)
            )
            self.by_folder[str(PurePosixPath(row.output).parent)].append(series)
        else:
            self._add_cine(series, row, cines)

    @staticmethod
    def _add_cine(series: Series, row: Row, cines: dict[tuple[str, str], Cine]) -> None:
        path = PurePosixPath(row.output)
        base = str(path.with_suffix(""))
        cine = cines.get((series.key, base))
        if cine is None:
            cine = cines[(series.key, base)] = Cine(base, series_video=False)
            series.cines.append(cine)
        if path.suffix.lower() == ".mp4":
            cine.mp4 = row.output
        elif path.suffix.lower() == ".gif":
            cine.gif = row.output

    def add_series_video(self, row: Row, cines: dict[tuple[str, str], Cine]) -> None:
        path = PurePosixPath(row.output)
        match = _SERIES_VIDEO.match(path.stem)
        candidates = list(dict.fromkeys(self.by_folder.get(str(path.parent), [])))
        numbered = [s for s in candidates if match and s.number == match.group(1)]
        if numbered or candidates:
            series = (numbered or candidates)[0]
        else:
            series = self.series_for(f"{path.parent}/{path.name}")
        self._add_cine(series, row, cines)
        cine = cines[(series.key, str(path.with_suffix("")))]
        cine.series_video, cine.note = True, row.note  # shown with the video, not in Notes


def group(rows: Iterable[Row], headers: dict[str, Header]) -> Export:
    """Group manifest rows into patients, studies and series, sorted for reading."""
    grouper = _Grouper(headers)
    cines: dict[tuple[str, str], Cine] = {}
    series_videos: list[Row] = []
    problems: dict[tuple[Status, str], list[str]] = defaultdict(list)
    counts: Counter[str] = Counter()
    sources: dict[str, Status] = {}
    for row in rows:
        if row.status is not Status.OK:
            problems[(row.status, row.error or "no reason given")].append(row.source)
            sources.setdefault(row.source, row.status)
            counts[row.status.value] += 1
            continue
        counts[row.kind.value if row.kind is not None else "other"] += 1
        if row.kind is Kind.SERIES_VIDEO:
            series_videos.append(row)
        elif row.kind in (Kind.IMAGE, Kind.VIDEO):
            sources.setdefault(row.source, row.status)
            grouper.add(row, cines)
    for row in series_videos:
        grouper.add_series_video(row, cines)
    counts["inputs"] = len(sources)
    counts["converted"] = sum(1 for s in sources.values() if s is Status.OK)
    return Export(_sorted(grouper.patients), _sorted_problems(problems), dict(counts))


def _sorted(patients: dict[str, Patient]) -> list[Patient]:
    for patient in patients.values():
        for study in patient.studies.values():
            for series in study.series.values():
                series.stills.sort(
                    key=lambda s: (_number_key(s.instance_number), s.frame or 0, s.output)
                )
                series.cines.sort(key=lambda c: (c.series_video, c.base))
            study.series = dict(
                sorted(
                    study.series.items(),
                    key=lambda kv: (_number_key(kv[1].number), kv[1].description, kv[0]),
                )
            )
        patient.studies = dict(
            sorted(patient.studies.items(), key=lambda kv: (kv[1].date, kv[1].description, kv[0]))
        )
    return sorted(
        patients.values(), key=lambda p: (p.key == UNKNOWN_KEY, p.name, p.patient_id, p.key)
    )


def _sorted_problems(problems: dict[tuple[Status, str], list[str]]) -> list[Problem]:
    ordered = sorted(problems.items(), key=lambda kv: (kv[0][0].value, -len(kv[1]), kv[0][1]))
    return [Problem(status, reason, sorted(sources)) for (status, reason), sources in ordered]
