"""What an exporter is: the protocol, the input it is handed, and the two levels of work.

An instance exporter writes what one input yields (stills, its video, a sidecar); a series
exporter writes what a whole series yields (a series video; later a volume). Every output
path an exporter writes lies under a base the engine claimed from the one `NameRegistry`
(`naming`): the input's base, a ``{frame}`` still's base, or a series' base.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from pydicom.dataset import Dataset

from ..dicom import decoding
from ..manifest import ManifestRow
from ..options import ConvertOptions
from ..render.frame import check_renderable
from ..render.pipeline import PixelDescription
from ..store import Store

if TYPE_CHECKING:  # planned volumes: the geometry loads with the first volume
    from ..dicom.geometry import SeriesVolumes


class Level(str, enum.Enum):
    """What an exporter's unit of work is."""

    INSTANCE = "instance"
    SERIES = "series"
    #: any DICOM object, image or not (a DICOM copy)
    OBJECT = "object"


@dataclasses.dataclass(frozen=True)
class Target:
    """One output an exporter will write: its path relative to OUT, and for a still the
    1-based frame number it shows and the manifest's frame column (None: single-frame)."""

    rel: str
    number: int = 1
    frame: int | None = None


@dataclasses.dataclass(frozen=True)
class Instance:
    """One image input, read: what every instance exporter is handed."""

    ds: Dataset
    desc: PixelDescription
    n_frames: int
    source: str
    base: str
    note: str = ""
    #: claimed bases of the stills a ``{frame}`` template names, by frame number
    frame_bases: dict[int, str] = dataclasses.field(default_factory=dict)
    #: the local path to stream large pixel data from (None when the input is in memory)
    pixel_path: str | None = None
    #: the header sidecars describe, when it is not `ds` (`--metadata-phi none`: de-identified)
    metadata_ds: Dataset | None = None
    #: what exporters after the still exporter reuse of its renderings, by output (the
    #: thumbnails' pixels with `options.thumbnails`): no frame is decoded twice
    renderings: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def open_instance(
    ds: Dataset,
    *,
    source: str,
    base: str,
    note: str = "",
    frame_bases: dict[int, str] | None = None,
    pixel_path: str | None = None,
    metadata_ds: Dataset | None = None,
) -> Instance:
    """An `Instance` for `ds`; `NoPixelDataError` for objects without an image (SR, RT)."""
    desc = check_renderable(ds)
    decoding.check_pixel_header(ds)
    return Instance(
        ds,
        desc,
        decoding.frames_present(ds),
        source,
        base,
        note,
        frame_bases or {},
        pixel_path,
        metadata_ds,
    )


@dataclasses.dataclass(frozen=True)
class DicomObject:
    """One input read as a dataset, whatever it holds: what an object exporter is handed."""

    ds: Dataset
    source: str
    base: str
    note: str = ""


@dataclasses.dataclass(frozen=True)
class SeriesJob:
    """One series' series-level outputs to make: its slices in order and its claimed base."""

    key: str
    source: str
    base: str
    paths: tuple[str, ...]
    rows: int
    columns: int
    fingerprint: tuple[int, int]
    note: str
    seq: int
    #: `--volume`: the series' volumes as planned from its headers, and each one's claimed
    #: base with its naming note (`engine.plan.claim_volume_bases`)
    volumes: SeriesVolumes | None = None
    volume_bases: tuple[tuple[str, str], ...] = ()

    @property
    def bases(self) -> tuple[str, ...]:
        """Every base this series' outputs are written under."""
        return (self.base, *(base for base, _ in self.volume_bases))


class InstanceExporter(Protocol):
    """Writes what one input yields; `rows` are the rows earlier exporters wrote for it."""

    level: ClassVar[Level]

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool: ...

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]: ...

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]: ...


class ObjectExporter(Protocol):
    """Writes what one DICOM object yields, whether or not it is an image (a DICOM copy)."""

    level: ClassVar[Level]

    def wanted(self, options: ConvertOptions) -> bool: ...

    def write(
        self, obj: DicomObject, options: ConvertOptions, store: Store
    ) -> list[ManifestRow]: ...


class SeriesExporter(Protocol):
    """Writes what one series yields."""

    level: ClassVar[Level]

    def wanted(self, options: ConvertOptions) -> bool: ...

    def write(self, job: SeriesJob, options: ConvertOptions, store: Store) -> list[ManifestRow]: ...
