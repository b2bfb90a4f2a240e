"""Decode time per frame for each installed pydicom plugin, per transfer syntax.

The measurement behind `decoding.PREFERRED_PLUGINS`: run it after changing the plugin order.
A second table times 8-bit JPEG Baseline frames (grey 512², colour YBR_FULL_422 640×480)
through `decoding.decode_frame`, which decodes them with Pillow directly, against pydicom's
Pillow plugin (`pixel_array(..., decoding_plugin="pillow", as_rgb=True)`), the same pixels.

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

from dcmexport.dicom import decoding
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


def _colour_baseline(folder: Path) -> Path:
    """A 640×480 YBR_FULL_422 JPEG Baseline frame, as ultrasound cines carry them."""
    import numpy as np

    from dcmexport.sample import write_ct_series

    ds = pydicom.dcmread(write_ct_series(folder / "base", 1, size=64)[0])
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], -1).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90, subsampling="4:2:2")
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 480, 640, 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    for keyword in ("PixelPaddingValue", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            del ds[keyword]
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(folder / "colour_baseline.dcm", enforce_file_format=True)
    return folder / "colour_baseline.dcm"


def _baseline_rows(paths: dict[str, Path], repeat: int = 25) -> None:
    print("\n| 8-bit JPEG Baseline frame | decode_frame ms | pydicom Pillow plugin ms |")
    print("|---|---|---|")
    for name, path in paths.items():
        ds = decoding.read_dataset(path)
        ours, theirs = [], []
        for _ in range(repeat):  # interleaved, so load hits both alike
            started = time.process_time()
            decoding.decode_frame(ds, 0, str(path))
            ours.append(time.process_time() - started)
            started = time.process_time()
            pixel_array(ds, index=0, decoding_plugin="pillow", as_rgb=True)
            theirs.append(time.process_time() - started)
        mine, plugin = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
        print(f"| {name} | {mine:.2f} | {plugin:.2f} |")


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
        _baseline_rows(
            {
                "grey 512²": copies[JPEGBaseline8Bit.name],
                "YBR_FULL_422 640×480": _colour_baseline(Path(tmp)),
            }
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
