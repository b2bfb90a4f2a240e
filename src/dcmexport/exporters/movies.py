"""Video exporters: a multi-frame input's MP4/GIF, and a series of slices as one video.

Video is always the displayed image (8-bit, windowed, one VOI per clip); `--raw` applies to
stills only.
"""

from __future__ import annotations

from typing import ClassVar

from pydicom.dataset import Dataset

from ..dicom import decoding
from ..manifest import Kind, ManifestRow
from ..options import ConvertOptions
from ..store import Store
from .base import Instance, Level, SeriesJob, Target
from .cine import Clip, MultiFrameClip, SliceClip, export_clip
from .video import clip_timing


def write_videos(
    clip: Clip,
    ds: Dataset,
    *,
    source: str,
    base: str,
    note: str,
    kind: Kind,
    options: ConvertOptions,
    store: Store,
) -> list[ManifestRow]:
    """`OUT/<base>.mp4` and/or `.gif` for a clip, with one manifest row each."""
    timing = clip_timing(ds, clip.n_frames, options.fps)
    targets = {video: f"{base}.{video}" for video in options.video.kinds}
    result = export_clip(clip, options.window, timing, targets, store, options.overlays)
    center, width, label = result.window
    rows = []
    for video, rel in targets.items():
        text = "; ".join(n for n in (note, result.notes[video]) if n)
        if options.raw:
            text += "; video shows the display rendering (--raw applies to stills)"
        rows.append(
            ManifestRow(
                source=source,
                output=store.output_name(rel),
                window_center=center,
                window_width=width,
                voi=label,
                kind=kind,
                note=text,
            )
        )
    return rows


class VideoExporter:
    """MP4 and/or GIF of a multi-frame input (`--video`)."""

    level: ClassVar[Level] = Level.INSTANCE

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool:
        return instance.n_frames > 1 and bool(options.video.kinds)

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]:
        return [Target(f"{instance.base}.{video}") for video in options.video.kinds]

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]:
        clip = MultiFrameClip(instance.ds, instance.desc, instance.pixel_path)
        return write_videos(
            clip,
            instance.ds,
            source=instance.source,
            base=instance.base,
            note=instance.note,
            kind=Kind.VIDEO,
            options=options,
            store=store,
        )


class SeriesVideoExporter:
    """One video per series of single-frame slices (`--series-video`)."""

    level: ClassVar[Level] = Level.SERIES

    def wanted(self, options: ConvertOptions) -> bool:
        return options.series_video

    def write(self, job: SeriesJob, options: ConvertOptions, store: Store) -> list[ManifestRow]:
        clip = SliceClip(job.paths, job.rows, job.columns)
        first = decoding.read_dataset(job.paths[0], stop_before_pixels=True)
        return write_videos(
            clip,
            first,
            source=job.source,
            base=job.base,
            note=job.note,
            kind=Kind.SERIES_VIDEO,
            options=options,
            store=store,
        )
