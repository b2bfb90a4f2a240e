"""Video exporters: a multi-frame input's MP4/GIF, and a series of slices as one video.

Video is always the displayed image (8-bit, windowed, one VOI per clip); `--raw` applies to
stills only.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pydicom.dataset import Dataset

from ..dicom import decoding
from ..errors import VideoError
from ..manifest import Kind, ManifestRow, Status
from ..options import ConvertOptions, VideoFormat
from ..store import Store
from .base import Instance, Level, SeriesJob, Target
from .cine import Clip, MultiFrameClip, SliceClip, export_clip
from .remux import remux_to_mp4
from .video import check_h264_size, clip_timing


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
    rows = []
    if "mp4" in targets:
        try:
            check_h264_size(clip.rows, clip.columns)
        except VideoError as exc:  # the GIF and the stills are still written
            del targets["mp4"]
            rows.append(ManifestRow(source, status=Status.ERROR, error=str(exc), kind=kind))
    if not targets:
        return rows
    result = export_clip(clip, options.window, timing, targets, store, options.overlays)
    center, width, label = result.window
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
        out: list[ManifestRow] = []
        if decoding.is_video_syntax(instance.ds):
            out, options = self._copy_stream(instance, options, store)
            if not options.video.kinds:
                return out
        clip = MultiFrameClip(instance.ds, instance.desc, instance.pixel_path)
        return out + write_videos(
            clip,
            instance.ds,
            source=instance.source,
            base=instance.base,
            note=instance.note,
            kind=Kind.VIDEO,
            options=options,
            store=store,
        )

    def _copy_stream(
        self, instance: Instance, options: ConvertOptions, store: Store
    ) -> tuple[list[ManifestRow], ConvertOptions]:
        """Encapsulated video: its stream copied into MP4 as it is (no re-encoding); the
        options left for what still needs decoded frames (a GIF)."""
        if VideoFormat.MP4.value not in options.video.kinds:
            return [], options
        ds = instance.ds
        ts = decoding.transfer_syntax(ds)
        timing = clip_timing(ds, instance.n_frames, options.fps)
        rel = f"{instance.base}.mp4"
        with store.open_atomic(rel) as tmp:
            frames = remux_to_mp4(decoding.video_elementary_stream(ds), str(ts), timing.fps, tmp)
        note = f"{ts.name} stream copied into MP4 without re-encoding ({frames} frames)"
        if options.raw:
            note += "; --raw applies to stills"
        row = ManifestRow(
            source=instance.source,
            output=store.output_name(rel),
            voi="colour",
            kind=Kind.VIDEO,
            note="; ".join(n for n in (instance.note, note) if n),
        )
        rest = VideoFormat.GIF if VideoFormat.GIF.value in options.video.kinds else VideoFormat.NONE
        return [row], dataclasses.replace(options, video=rest)


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
