"""What is written per input or per series: stills, videos, sidecars, DICOM copies (later
volumes), each an exporter in a registry. Never imports sources, engine or index.

The engine calls `open_instance` and `export_instance` for each input (or `export_object`
when the run writes DICOM copies), `export_series` for each series; the registries below
decide which exporters run, in this order (a sidecar lists what the exporters before it
wrote).
"""

from __future__ import annotations

from ..manifest import ManifestRow
from ..options import ConvertOptions
from ..store import Store
from .base import (
    DicomObject,
    Instance,
    InstanceExporter,
    Level,
    ObjectExporter,
    SeriesExporter,
    SeriesJob,
    Target,
    open_instance,
)
from .dicom_copy import DicomCopyExporter
from .movies import SeriesVideoExporter, VideoExporter
from .sidecar import SidecarExporter
from .stills import StillExporter
from .thumbnails import ThumbnailExporter
from .volume import InstanceVolumeExporter, SeriesVolumeExporter, plan_series_volumes

#: Exporters run for every image input, in order.
INSTANCE_EXPORTERS: tuple[InstanceExporter, ...] = (
    VideoExporter(),
    StillExporter(),
    ThumbnailExporter(),
    InstanceVolumeExporter(),
    SidecarExporter(),
)

#: Exporters run for every DICOM object, image or not (`anonymize`: DICOM copies); when one
#: is wanted, the run writes objects instead of rendering images.
OBJECT_EXPORTERS: tuple[ObjectExporter, ...] = (DicomCopyExporter(),)

#: Exporters run for every series of single-frame slices.
SERIES_EXPORTERS: tuple[SeriesExporter, ...] = (SeriesVideoExporter(), SeriesVolumeExporter())


def export_instance(instance: Instance, options: ConvertOptions, store: Store) -> list[ManifestRow]:
    """Run every wanted instance exporter on one input; its manifest rows."""
    rows: list[ManifestRow] = []
    for exporter in INSTANCE_EXPORTERS:
        if exporter.wanted(instance, options):
            rows += exporter.write(instance, options, store, rows)
    return rows


def objects_wanted(options: ConvertOptions) -> bool:
    """True if this run writes DICOM objects (copies) rather than rendering images."""
    return any(exporter.wanted(options) for exporter in OBJECT_EXPORTERS)


def export_object(obj: DicomObject, options: ConvertOptions, store: Store) -> list[ManifestRow]:
    """Run every wanted object exporter on one input; its manifest rows."""
    rows: list[ManifestRow] = []
    for exporter in OBJECT_EXPORTERS:
        if exporter.wanted(options):
            rows += exporter.write(obj, options, store)
    return rows


def series_wanted(options: ConvertOptions) -> bool:
    """True if any series exporter runs with these options (the engine then groups slices)."""
    return any(exporter.wanted(options) for exporter in SERIES_EXPORTERS)


def export_series(job: SeriesJob, options: ConvertOptions, store: Store) -> list[ManifestRow]:
    """Run every wanted series exporter on one series; its manifest rows."""
    rows: list[ManifestRow] = []
    for exporter in SERIES_EXPORTERS:
        if exporter.wanted(options):
            rows += exporter.write(job, options, store)
    return rows


__all__ = [
    "INSTANCE_EXPORTERS",
    "OBJECT_EXPORTERS",
    "SERIES_EXPORTERS",
    "DicomObject",
    "Instance",
    "InstanceExporter",
    "Level",
    "ObjectExporter",
    "SeriesExporter",
    "SeriesJob",
    "Target",
    "export_instance",
    "export_object",
    "export_series",
    "objects_wanted",
    "open_instance",
    "plan_series_volumes",
    "series_wanted",
]
