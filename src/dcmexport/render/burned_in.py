"""Pixel-side masking of burned-in text (``--burned-in mask``): pure functions on frames.

What OCR sees of a frame (`ocr_view`), which frames of a cine are worth reading
(`frames_to_check`), the boxes grown by a margin (`with_margin`) and blacked out in the
frame's own stored values (`masked`), with the black of its photometric interpretation
(`black_value`). Nothing outside the boxes changes, so colour cines are never scrambled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .pixels import convert_ybr_to_rgb

#: a box: (x0, y0, x1, y1) in pixels, the ends exclusive
Box = tuple[int, int, int, int]

#: photometric interpretations whose stored values can be blacked out in place
MASKABLE = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")

#: a cine frame is read every this many frames even when nothing seems to change
CHECK_EVERY = 10

#: a frame is read again when an 8×8 block's mean grey level moved by more than this
#: (0-255) since the last frame read: new text changes its blocks by far more, while
#: speckle averages out within a block
CHANGE_LEVEL = 24.0

#: a text line is thinner than this share of the image (or `LINE_LIMIT` pixels) one way
LINE_SHARE = 0.2
LINE_LIMIT = 48

#: the margin around a detected box: this share of its height, at least `MIN_MARGIN` pixels
MARGIN_SHARE = 0.25
MIN_MARGIN = 3


def ocr_view(frame: np.ndarray, photometric: str, bits_stored: int) -> np.ndarray:
    """The frame as 8-bit RGB for OCR: greyscale stretched min to max (MONOCHROME1
    inverted), YBR converted to RGB, deeper colour shifted down to 8 bits."""
    if frame.ndim == 2:
        low, high = float(frame.min()), float(frame.max())
        grey = (frame.astype(np.float32) - low) * (255.0 / (high - low) if high > low else 0.0)
        if photometric == "MONOCHROME1":
            grey = 255.0 - grey
        out = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(out[..., None], 3, axis=2)
    bits = max(int(bits_stored), 8)
    rgb = convert_ybr_to_rgb(frame, bits) if photometric.startswith("YBR_FULL") else frame
    if bits > 8:
        rgb = np.right_shift(rgb.astype(np.uint32), bits - 8)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def black_value(frame: np.ndarray, photometric: str, bits_stored: int) -> np.ndarray:
    """The stored value(s) that display as black in this frame: the darkest value present for
    greyscale (the brightest for MONOCHROME1), zero for RGB, (0, mid, mid) for YBR_FULL."""
    if frame.ndim == 2:
        return np.asarray(frame.max() if photometric == "MONOCHROME1" else frame.min())
    if photometric.startswith("YBR_FULL"):
        mid = 1 << (max(int(bits_stored), 8) - 1)
        return np.asarray([0, mid, mid], dtype=frame.dtype)
    return np.zeros(frame.shape[-1], dtype=frame.dtype)


def _block_means(view: np.ndarray, block: int = 8) -> np.ndarray:
    grey = view.astype(np.float32).mean(axis=2) if view.ndim == 3 else view.astype(np.float32)
    h, w = (grey.shape[0] // block) * block, (grey.shape[1] // block) * block
    if h == 0 or w == 0:
        return grey.reshape(1, -1).mean(axis=1, keepdims=True)
    blocks = grey[:h, :w].reshape(h // block, block, w // block, block)
    means: np.ndarray = blocks.mean(axis=(1, 3))
    return means


def frames_to_check(views: Sequence[np.ndarray], every: int = CHECK_EVERY) -> list[int]:
    """Which frames OCR reads: the first, one every `every`, and each frame whose content
    differs from the last one read (a block mean moved by more than `CHANGE_LEVEL`)."""
    checked: list[int] = []
    last: np.ndarray | None = None
    for index, view in enumerate(views):
        means = _block_means(view)
        due = last is None or index % every == 0
        if not due and last is not None:
            due = last.shape != means.shape or float(np.abs(means - last).max()) > CHANGE_LEVEL
        if due:
            checked.append(index)
            last = means
    return checked


def is_text_line(box: Box, shape: tuple[int, ...]) -> bool:
    """True if `box` has the shape of a line of text: thin in one direction (at most a fifth
    of the image, or 48 pixels). The detector sometimes marks a whole dark, textured picture
    (an ultrasound sector, a small CT) as one region; that is not a line and is not masked."""
    x0, y0, x1, y1 = box
    height, width = shape[:2]
    return (y1 - y0) <= max(LINE_LIMIT, height * LINE_SHARE) or (x1 - x0) <= max(
        LINE_LIMIT, width * LINE_SHARE
    )


def with_margin(box: Box, shape: tuple[int, ...]) -> Box:
    """`box` grown by a margin on every side (`MARGIN_SHARE` of its height), within the image."""
    x0, y0, x1, y1 = box
    margin = max(MIN_MARGIN, round((y1 - y0) * MARGIN_SHARE))
    height, width = shape[:2]
    return (
        max(x0 - margin, 0),
        max(y0 - margin, 0),
        min(x1 + margin, width),
        min(y1 + margin, height),
    )


def box_mask(shape: tuple[int, ...], boxes: Sequence[Box]) -> np.ndarray:
    """A boolean (rows, columns) mask: True inside any of the boxes."""
    mask = np.zeros(shape[:2], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def masked(frame: np.ndarray, mask: np.ndarray, value: np.ndarray) -> np.ndarray:
    """A copy of `frame` with the pixels under `mask` set to `value`; the rest untouched."""
    out = frame.copy()
    out[mask] = value
    return out
