"""Still-image encoders, one per `StillFormat`: the registry the still exporter writes with."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from ..options import StillFormat
from .png import encode_png


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Baseline JPEG via Pillow; 8-bit only. No EXIF or comment markers are written."""
    from PIL import Image

    if image.dtype != np.uint8:
        raise ValueError("JPEG output is 8-bit: use --format png or tiff for 16-bit")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def encode_tiff(image: np.ndarray, quality: int = 90) -> bytes:
    """Uncompressed baseline TIFF (grey or RGB, 8 or 16 bits) via tifffile, no metadata tags."""
    import tifffile

    buffer = io.BytesIO()
    photometric = "rgb" if image.ndim == 3 else "minisblack"
    tifffile.imwrite(buffer, image, photometric=photometric, metadata=None, software=False)
    return buffer.getvalue()


def _encode_png(image: np.ndarray, quality: int = 90) -> bytes:
    return encode_png(image)


#: One encoder per still format; `quality` matters to JPEG only.
ENCODERS: dict[StillFormat, Callable[[np.ndarray, int], bytes]] = {
    StillFormat.PNG: _encode_png,
    StillFormat.JPEG: encode_jpeg,
    StillFormat.TIFF: encode_tiff,
}


def encode_still(image: np.ndarray, fmt: StillFormat, quality: int = 90) -> bytes:
    """Encode one rendered frame in the requested still format."""
    return ENCODERS[StillFormat(fmt)](image, quality)
