"""Pictures the report shows beside the exported files: thumbnails, 8-bit previews, posters.

Made with Pillow from the written stills (never by rendering DICOM again), once: an asset's
name is a hash of the output's path, size and modification time (`naming.asset_digest`), so a
rebuild reuses it and a rewritten still gets a new one. Names carry no patient data even when
a layout template put a Patient ID in the output path. A still that a browser shows as it is
(8-bit PNG or JPEG) and that is small (<= 256 px) is its own thumbnail. After
`convert --html` the thumbnails are already there (the thumbnail exporter wrote them from the
renderings in memory, under the same `naming.thumbnail_name`); only the missing ones are made.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ..naming import (
    OWN_THUMBNAIL_MAX,
    REPORT_ASSETS_DIR,
    THUMBNAIL_MAX,
    asset_digest,
    needs_thumbnail,
    thumbnail_name,
)
from ..render.pixels import eight_bit_view
from ..store import write_atomic

log = logging.getLogger(__name__)

ASSETS_DIR = REPORT_ASSETS_DIR
THUMBS = "thumbs"
PREVIEWS = "previews"
THUMB_MAX = THUMBNAIL_MAX  # px, the longer side of a thumbnail
OWN_THUMB_MAX = OWN_THUMBNAIL_MAX
POSTER_MAX = 320
_BROWSER_STILLS = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class Picture:
    """Where a still's thumbnail and its full-size view are, relative to OUT."""

    thumb: str
    full: str
    width: int  # of the thumbnail as shown
    height: int
    made: int = 0  # assets written now (0 when reused)


def output_exists(out: Path, output: str) -> bool:
    """True if the manifest's `output` (relative to OUT) is a file there now."""
    return bool(output) and os.path.isfile(out / output)


def asset_name(out: Path, output: str, suffix: str) -> str:
    """A PHI-free name for an asset of `output`, changing whenever the output changes."""
    st = os.stat(out / output)
    return asset_digest(output, st.st_size, st.st_mtime_ns) + suffix


def _png_header(path: Path) -> tuple[int, int, int] | None:
    """(width, height, bit depth) from a PNG's IHDR chunk, without decoding it."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height, depth = struct.unpack(">IIB", head[16:25])
    return width, height, depth


def _bounded(width: int, height: int, limit: int) -> tuple[int, int]:
    scale = min(1.0, limit / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _load_for_display(path: Path, stretch: bool) -> Image.Image:
    """A still as an 8-bit L or RGB image (TIFF via tifffile: Pillow misreads 16-bit RGB)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        array = np.asarray(tifffile.imread(path))
    else:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "RGB"):
                return im.copy()
            if im.mode in ("P", "RGBA", "LA", "1"):
                return im.convert("RGB" if im.mode != "1" else "L")
            array = np.asarray(im)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    return Image.fromarray(eight_bit_view(array, stretch=stretch))


def _jpeg(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _png(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _thumbnail(im: Image.Image) -> Image.Image:
    small = im.copy()
    if max(small.size) >= 4 * THUMB_MAX:  # a fast box reduction first, then a clean resample
        small = small.reduce(max(small.size) // (2 * THUMB_MAX))
    # bilinear with Pillow's antialiasing support: half the time of Lanczos, as sharp at 160 px
    small.thumbnail((THUMB_MAX, THUMB_MAX), Image.Resampling.BILINEAR)
    return small


def still_picture(out: Path, output: str, *, raw: bool) -> Picture:
    """The thumbnail and full-size view of the still `output` (relative to OUT), made if
    missing: an 8-bit PNG preview for TIFF and 16-bit PNG (browsers show no TIFF, and a raw
    16-bit PNG looks black), a JPEG thumbnail for anything larger than `THUMB_MAX`."""
    path = out / output
    suffix = path.suffix.lower()
    header = _png_header(path) if suffix == ".png" else None
    native = suffix in _BROWSER_STILLS and (header is None or header[2] <= 8)
    if native:
        if header is None:
            with Image.open(path) as im:
                width, height = im.size
        else:
            width, height = header[:2]
        if not needs_thumbnail(width, height, browser_native=True):
            return Picture(output, output, *_bounded(width, height, THUMB_MAX))
    st = os.stat(path)
    full = output
    if not native:
        full = f"{ASSETS_DIR}/{PREVIEWS}/{asset_digest(output, st.st_size, st.st_mtime_ns)}.png"
    thumb = thumbnail_name(output, st.st_size, st.st_mtime_ns)
    made = 0
    image: Image.Image | None = None
    if not (out / full).is_file():
        image = _load_for_display(path, raw)
        write_atomic(out / full, _png(image))
        made += 1
    if not (out / thumb).is_file():
        image = image or _load_for_display(path, raw)
        write_atomic(out / thumb, _jpeg(_thumbnail(image)))
        made += 1
    with Image.open(out / thumb) as im:
        width, height = im.size
    return Picture(thumb, full, width, height, made)


def still_pictures(out: Path, stills: list[tuple[str, bool]]) -> list[Picture | None]:
    """`still_picture` of each (output, raw); None where the still cannot be read."""
    pictures: list[Picture | None] = []
    for output, raw in stills:
        try:
            pictures.append(still_picture(out, output, raw=raw))
        except (OSError, ValueError) as exc:  # a damaged still: the page says it is missing
            log.warning("report: cannot read a still (%s)", type(exc).__name__)
            pictures.append(None)
    return pictures


def gif_poster(out: Path, gif: str) -> tuple[str, int]:
    """A JPEG of a GIF's first frame, to show before a cine loads; (path, assets made)."""
    poster = (Path(ASSETS_DIR) / THUMBS / asset_name(out, gif, ".jpg")).as_posix()
    if (out / poster).is_file():
        return poster, 0
    with Image.open(out / gif) as im:
        im.seek(0)
        frame = im.convert("RGB")
    frame.thumbnail((POSTER_MAX, POSTER_MAX), Image.Resampling.LANCZOS)
    write_atomic(out / poster, _jpeg(frame))
    return poster, 1


def display_image(out: Path, picture_path: str) -> Image.Image:
    """An asset or browser-native still, opened for tiling (contact sheets)."""
    with Image.open(out / picture_path) as im:
        return im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()


def prune(out: Path, keep: set[str]) -> int:
    """Delete thumbnails, previews and study pages this build no longer links; how many."""
    removed = 0
    for folder in (THUMBS, PREVIEWS, "studies"):
        directory = out / ASSETS_DIR / folder
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            rel = f"{ASSETS_DIR}/{folder}/{entry.name}"
            if entry.is_file() and rel not in keep and not entry.name.startswith(".tmp-"):
                entry.unlink()
                removed += 1
    return removed
