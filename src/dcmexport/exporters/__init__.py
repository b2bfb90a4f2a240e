"""What is written per input or per series: stills, videos, sidecars (later DICOM copies and
volumes), each an exporter in a registry. Never imports sources, engine or index.

The engine calls `open_instance` and `export_instance` for each input, `export_series` for
each series; the registries below decide which exporters run, in this order (a sidecar
lists what the exporters before it wrote).
"""

from __future__ import annotations

from ..manifest import ManifestRow
from ..options import ConvertOptions
from ..store import Store
from .base import (
    Instance,
    InstanceExporter,
    Level,
    SeriesExporter,
    SeriesJob,
    Target,
    open_instance,
)
from .movies import SeriesVideoExporter, VideoExporter
from .sidecar import SidecarExporter
from .stills import StillExporter

#: Exporters run for every image input, in order.
INSTANCE_EXPORTERS: tuple[InstanceExporter, ...] = (
    VideoExporter(),
    StillExporter(),
    SidecarExporter(),
)

#: Exporters run for every series of single-frame slices.
SERIES_EXPORTERS: tuple[SeriesExporter, ...] = (SeriesVideoExporter(),)


def export_instance(instance: Instance, options: ConvertOptions, store: Store) -> list[ManifestRow]:
    """Run every wanted instance exporter on one input; its manifest rows."""
    rows: list[ManifestRow] = []
    for exporter in INSTANCE_EXPORTERS:
        if exporter.wanted(instance, options):
            rows += exporter.write(instance, options, store, rows)
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
    "SERIES_EXPORTERS",
    "Instance",
    "InstanceExporter",
    "Level",
    "SeriesExporter",
    "SeriesJob",
    "Target",
    "export_instance",
    "export_series",
    "open_instance",
    "series_wanted",
]
