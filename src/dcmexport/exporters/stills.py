"""Stills: one PNG/JPEG/TIFF per single-frame input, or per selected frame of a multi-frame one.

Stills of a multi-frame input go in a folder named after its base (``x/0001.png``), unless
the layout template places them itself with ``{frame}``: those bases were claimed one by one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydicom.dataset import Dataset

from ..dicom import decoding
from ..errors import NoPixelDataError, UsageError
from ..manifest import Kind, ManifestRow
from ..options import ConvertOptions, FrameKind, FrameSelection, StillFormat
from ..render import fastpath
from ..render.frame import render_decoded
from ..render.overlays import describe_overlays
from ..render.pipeline import PixelDescription, Rendered
from ..store import Store
from .base import Instance, Level, Target
from .encoders import encode_still
from .thumbnails import keep_for_thumbnail
from .volume import instance_volume_wanted


class StillExporter:
    """The still images of an input (docs/cli.md, `--format`, `--bits`, `--frames`)."""

    level: ClassVar[Level] = Level.INSTANCE

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool:
        return True

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]:
        ext = options.format.extension
        n_frames = instance.n_frames
        if n_frames == 1:
            return [Target(f"{instance.base}{ext}")]
        if options.frames is None:
            if options.video.kinds or instance_volume_wanted(instance, options):
                return []
            raise NoPixelDataError(
                f"multi-frame ({n_frames} frames) with --video none: choose stills with "
                "--frames (all, first, middle, N, A-B) or a video with --video mp4, gif or both"
            )
        width = max(4, len(str(n_frames)))
        targets = []
        missing = _frames_beyond(options.frames, n_frames)
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            decoding.add_note(
                instance.ds, f"--frames: frame {shown} does not exist (the file has {n_frames})"
            )
            if len(missing) == len(_requested(options.frames)) and options.video.kinds:
                return []  # only the video: the file has none of the frames asked for
        for n in options.frames.frame_numbers(n_frames):
            claimed = instance.frame_bases.get(n)
            base = claimed if claimed is not None else f"{instance.base}/{n:0{width}d}"
            targets.append(Target(f"{base}{ext}", n, n))
        return targets

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]:
        out = []
        for target in self.targets(instance, options):
            index = target.number - 1
            decoded = decoding.decode_frame(instance.ds, index, instance.pixel_path)
            rendered = render_still(decoded, instance.ds, instance.desc, index, options)
            if rendered.image.dtype.kind == "f" and options.format is not StillFormat.TIFF:
                raise UsageError("--raw on floating-point pixels needs --format tiff (float32)")
            if rendered.image.dtype.itemsize > 1 and options.format is StillFormat.JPEG:
                raise UsageError("--raw on data over 8 bits needs --format png or tiff")
            data = encode_still(rendered.image, options.format, options.quality)
            output = store.put(target.rel, data)
            if options.thumbnails:
                keep_for_thumbnail(instance, output, rendered.image, options)
            out.append(_still_row(instance, target.frame, output, rendered))
        return out


def render_still(
    decoded: np.ndarray, ds: Dataset, desc: PixelDescription, index: int, options: ConvertOptions
) -> Rendered:
    """One decoded frame rendered as its still is (`--window`, `--bits`, `--raw`, overlays)."""
    return render_decoded(
        decoded,
        ds,
        desc,
        index,
        window=options.window,
        bits=options.bits,
        raw=options.raw,
        overlays=options.overlays,
    )


def _grey(instance: Instance) -> bool:
    desc = instance.desc
    return desc.samples_per_pixel == 1 and desc.photometric_interpretation != "PALETTE COLOR"


def _requested(selection: FrameSelection) -> list[int]:
    """The frame numbers a list or range selection names, whether they exist or not."""
    if selection.kind is FrameKind.RANGE:
        a, b = selection.numbers
        return list(range(a, b + 1))
    return list(selection.numbers) if selection.kind is FrameKind.LIST else []


def _frames_beyond(selection: FrameSelection, n_frames: int) -> list[int]:
    """Requested frame numbers past the last frame (``--frames 99`` on a 30-frame cine)."""
    return [n for n in _requested(selection) if n > n_frames]


def _still_row(
    instance: Instance, frame: int | None, output: str, rendered: Rendered
) -> ManifestRow:
    row = ManifestRow(
        source=instance.source,
        frame=frame,
        output=output,
        window_center=rendered.window_center,
        window_width=rendered.window_width,
        raw_offset=rendered.raw_offset,
        voi=rendered.voi,
        kind=Kind.IMAGE,
        note="; ".join(n for n in (instance.note, describe_overlays(rendered.overlay_groups)) if n),
    )
    if rendered.raw_offset is not None or _grey(instance):  # modality values recoverable
        row.rescale_slope, row.rescale_intercept = fastpath.modality_rescale(
            instance.ds, (frame or 1) - 1, instance.desc
        )
    return row
