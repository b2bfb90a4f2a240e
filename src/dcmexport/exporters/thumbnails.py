"""Thumbnails for the HTML report, made while converting (`convert --html`, `--contact-sheet`).

The report needs a small JPEG of every still larger than 256 px (and of every TIFF or 16-bit
still). Made afterwards it costs a decode of the written still — about as long as converting
a 512² slice took. Here the still exporter hands over each rendering it just wrote, already in
memory, reduced at once to thumbnail size (so `--frames all` on a long cine holds little), and
this exporter writes it through the store under `naming.thumbnail_name`: the name the report
looks for. The report makes the ones that are missing (an export made without `--html`).

Thumbnails are report assets, not outputs: no manifest row (the manifest and resume are the
same with or without `--html`; a row outside the input's base would also make every rerun
redo the input), and the report removes the ones no page links any more.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
from PIL import Image

from ..manifest import Kind, ManifestRow
from ..naming import THUMBNAIL_MAX, needs_thumbnail, thumbnail_name
from ..options import ConvertOptions, StillFormat
from ..render.pixels import eight_bit_view
from ..store import Store
from .base import Instance, Level, Target

#: JPEG quality of a thumbnail (the report's own thumbnails use the same)
THUMBNAIL_QUALITY = 85


def thumbnail_pixels(image: np.ndarray, *, stretch: bool) -> np.ndarray:
    """The thumbnail of a rendering: its 8-bit view fitted in `THUMBNAIL_MAX` px (a box
    reduction first when it is much larger, then bilinear with antialiasing: as sharp as
    Lanczos at this size, in half the time)."""
    view = eight_bit_view(image, stretch=stretch)
    if view.ndim == 3 and view.shape[2] == 4:
        view = view[:, :, :3]
    small = Image.fromarray(view)
    if max(small.size) >= 4 * THUMBNAIL_MAX:
        small = small.reduce(max(small.size) // (2 * THUMBNAIL_MAX))
    small.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.BILINEAR)
    return np.asarray(small)


def thumbnail_jpeg(pixels: np.ndarray) -> bytes:
    """A thumbnail's pixels as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def keep_for_thumbnail(
    instance: Instance, output: str, image: np.ndarray, options: ConvertOptions
) -> None:
    """Called by the still exporter after writing `output`: keep its thumbnail's pixels for
    `ThumbnailExporter`, unless the still is small and browser-native (its own thumbnail)."""
    height, width = image.shape[:2]
    native = options.format is not StillFormat.TIFF and image.dtype == np.uint8
    if needs_thumbnail(width, height, browser_native=native):
        instance.renderings[output] = thumbnail_pixels(image, stretch=options.raw)


class ThumbnailExporter:
    """The report's thumbnail of each still written for this input (`options.thumbnails`)."""

    level: ClassVar[Level] = Level.INSTANCE

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool:
        return options.thumbnails

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]:
        """None claimed: a thumbnail's name is a digest of its still as written, under the
        report's folder, which the `NameRegistry` reserves."""
        return []

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]:
        for row in rows:
            if row.kind != Kind.IMAGE:
                continue
            pixels = instance.renderings.pop(row.output, None)
            if pixels is None:  # its own thumbnail
                continue
            written = store.stat(row.output)
            if written is None:
                continue
            store.put(thumbnail_name(row.output, *written), thumbnail_jpeg(pixels))
        return []
