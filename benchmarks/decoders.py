"""Decode time per frame for each installed pydicom plugin, per transfer syntax.

The measurement behind `decoding.PREFERRED_PLUGINS`: run it after changing the plugin order.

    python benchmarks/decoders.py
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from dcmexport.dicom.decoding import plugin_order


def _encoded_copies(folder: Path) -> dict[str, Path]:
    """The sample CT slice in each compressed transfer syntax, plus an 8-bit JPEG baseline."""
    from dcmexport.sample import write_ct_series

    source = write_ct_series(folder, 1, size=512)[0]
    copies = {}
    for uid, plugin in [
        (RLELossless, "pylibjpeg"),
        (JPEGLSLossless, "pyjpegls"),
        (JPEG2000Lossless, "pylibjpeg"),
    ]:
        ds = pydicom.dcmread(source)
        ds.compress(uid, encoding_plugin=plugin)
        copies[uid.name] = folder / f"{uid.keyword}.dcm"
        ds.save_as(copies[uid.name])
    ds = pydicom.dcmread(source)
    arr = ds.pixel_array
    lo, hi = int(arr.min()), int(arr.max())
    eight = ((arr.astype(float) - lo) * 255 / (hi - lo)).astype("uint8")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for keyword in ("PixelPaddingValue", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            del ds[keyword]
    ds.set_pixel_data(eight, "MONOCHROME2", 8)
    # pydicom has no JPEG baseline encoder: Pillow writes the codestream, pydicom wraps it
    buffer = io.BytesIO()
    Image.fromarray(eight).save(buffer, format="JPEG", quality=90)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    copies[JPEGBaseline8Bit.name] = folder / "jpeg_baseline.dcm"
    ds.save_as(copies[JPEGBaseline8Bit.name])
    return copies


def _median_ms(ds: pydicom.Dataset, plugin: str, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        pixel_array(ds, decoding_plugin=plugin)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> int:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        copies = _encoded_copies(Path(tmp))
        print("| transfer syntax | plugin | ms per 512² frame | our order |")
        print("|---|---|---|---|")
        for name, path in copies.items():
            ds = pydicom.dcmread(path)
            ts = ds.file_meta.TransferSyntaxUID
            order = plugin_order(ts)
            for plugin in get_decoder(ts).available_plugins:
                ms = _median_ms(ds, plugin)
                print(f"| {name} | {plugin} | {ms:.2f} | {order.index(plugin) + 1} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
