"""Still-image writers keyed by output format, and the atomic write they all go through.

Every file is written to a temporary name in the destination folder and renamed into place,
so a crash never leaves a half-written image under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .options import StillFormat
from .png import encode_png


def _default_file_mode() -> int:
    """What a plain `open(..., "w")` would give: 0o666 less the umask (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


@contextlib.contextmanager
def atomic_path(path: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """A temporary file to fill; renamed onto `path` when the block succeeds, else removed.

    The temporary file goes in `tmp_dir` (on the same file system; a batch uses a folder it
    can clear after a crash) or beside `path`. Readers never see a half-written `path`, and
    the file gets the usual permissions (mkstemp's are owner-only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=tmp_dir or path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.EXDEV or tmp_dir is None:
                raise
            # OUT spans file systems: copy beside `path`, then rename there
            with atomic_path(path) as beside:
                shutil.copyfile(tmp, beside)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write `data` to `path` through `atomic_path`: `path` is never partial."""
    with atomic_path(path, tmp_dir) as tmp:
        tmp.write_bytes(data)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Baseline JPEG via Pillow; 8-bit only. No EXIF or comment markers are written."""
    from PIL import Image

    if image.dtype != np.uint8:
        raise ValueError("JPEG output is 8-bit: use --format png or tiff for 16-bit")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def encode_tiff(image: np.ndarray) -> bytes:
    """Uncompressed baseline TIFF (grey or RGB, 8 or 16 bits) via tifffile, no metadata tags."""
    import tifffile

    buffer = io.BytesIO()
    photometric = "rgb" if image.ndim == 3 else "minisblack"
    tifffile.imwrite(buffer, image, photometric=photometric, metadata=None, software=False)
    return buffer.getvalue()


def encode_still(image: np.ndarray, fmt: StillFormat, quality: int = 90) -> bytes:
    """Encode one rendered frame in the requested still format."""
    encoders: dict[StillFormat, Callable[[np.ndarray], bytes]] = {
        StillFormat.PNG: encode_png,
        StillFormat.JPEG: lambda im: encode_jpeg(im, quality),
        StillFormat.TIFF: encode_tiff,
    }
    return encoders[fmt](image)
