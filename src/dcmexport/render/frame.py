"""Render one frame of a DICOM dataset to an 8- or 16-bit image: decode → transforms → levels."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ..dicom import decoding
from ..errors import NoPixelDataError, PixelDataError, UsageError
from ..options import WindowSpec, parse_window
from . import fastpath
from . import overlays as ov
from . import pixels as px
from .pipeline import (
    PixelDescription,
    Rendered,
    lut_words,
    render_colour,
    render_raw,
    render_stored,
)
from .windowing import VoiLut, VoiLutFunction, Window, select_voi


def check_renderable(ds: Dataset) -> PixelDescription:
    """The pixel description of an image dataset; `NoPixelDataError` for non-image objects."""
    keyword = decoding.pixel_keyword(ds)
    private = _private_pixels(ds) if keyword is None else None
    if private:
        raise PixelDataError(private)
    if keyword is None:
        cut = decoding.header_truncation(ds)  # the pixels may be what the cut lost
        if cut:
            raise PixelDataError(cut)
        raise NoPixelDataError(decoding.describe_missing_pixels(ds))
    return fastpath.pixel_description(ds)


def _private_pixels(ds: Dataset) -> str | None:
    """Pixels kept in a vendor's private group 7FE1 (ELSCINT1's compressed pixels): say so."""
    if not any(tag.group == 0x7FE1 for tag in ds.keys()):  # noqa: SIM118
        return None
    creator = ds.get((0x7FE1, 0x0010))
    vendor = str(creator.value).strip() if creator is not None else ""
    return (
        f"the pixels are in a private element of {vendor or 'a vendor'} (group 7FE1), in the "
        "vendor's own compression, not in Pixel Data: no open decoder reads them"
    )


def _palette_to_rgb(indices: np.ndarray, ds: Dataset) -> tuple[np.ndarray, int]:
    """PALETTE COLOR indices through the file's (possibly segmented) palette LUTs.

    Channels are scaled from the largest descriptor bit depth, as DCMTK does.
    """
    from pydicom.pixels import apply_color_lut

    try:
        rgb = apply_color_lut(indices, _palette_for_pydicom(ds))
        bits = max(
            int(ds[f"{c}PaletteColorLookupTableDescriptor"].value[2])
            for c in ("Red", "Green", "Blue")
        )
    except (AttributeError, ValueError, IndexError, TypeError) as exc:
        raise PixelDataError(f"unusable palette colour lookup table ({exc})") from None
    return rgb[..., :3], bits


_PALETTE_CHANNELS = ("Red", "Green", "Blue", "Alpha")


def _palette_for_pydicom(ds: Dataset) -> Dataset:
    """The palette with its LUT Data as little-endian bytes, the only form pydicom 3.0's
    `apply_color_lut` reads right: it ignores a big-endian file's byte order and cannot take
    US values (segmented palettes it reads right, so they are passed as they are)."""
    if "RedPaletteColorLookupTableData" not in ds:
        return ds
    palette = Dataset()
    if "PixelPresentation" in ds:
        palette.PixelPresentation = ds.PixelPresentation
    for channel in _PALETTE_CHANNELS:
        descriptor = f"{channel}PaletteColorLookupTableDescriptor"
        data = f"{channel}PaletteColorLookupTableData"
        if descriptor in ds:
            setattr(palette, descriptor, ds[descriptor].value)
        if ds.get(data) is not None:
            setattr(palette, data, lut_words(ds[data].value, ds).astype("<u2").tobytes())
    return palette


def stored_values(decoded: np.ndarray, desc: PixelDescription) -> np.ndarray:
    """Grey container values masked to Bits Stored at High Bit, sign-extended (1-bit and
    floating-point values as they are)."""
    if desc.bits_allocated <= 1 or decoded.dtype.kind == "f":
        return decoded
    return px.extract_stored_values(
        decoded, desc.bits_stored, desc.high_bit, desc.pixel_representation
    )


def render_decoded(
    decoded: np.ndarray,
    ds: Dataset,
    desc: PixelDescription,
    frame_index: int,
    *,
    window: WindowSpec,
    bits: int,
    raw: bool,
    voi: Window | VoiLut | None = None,
    overlays: bool = True,
) -> Rendered:
    """Apply the display pipeline to one decoded frame (container values, colour as RGB).

    `voi`, if given, replaces the VOI that `window` would select for this frame alone.
    `overlays` draws the overlay planes into grey images, as DCMTK does (not with `raw`).
    """
    if desc.photometric_interpretation == "PALETTE COLOR" and decoded.ndim == 2 and not raw:
        rgb, lut_bits = _palette_to_rgb(decoded, ds)
        return render_colour(rgb, lut_bits, bits)
    if decoded.ndim == 3:
        return _render_colour_samples(decoded, ds, desc, bits=bits, raw=raw)
    if decoded.dtype.kind == "f":  # Float / Double Float Pixel Data (parametric maps)
        if raw:
            return Rendered(decoded.astype(np.float32), voi="raw float32", raw_offset=0)
        values = np.nan_to_num(decoded.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return render_stored(values, fastpath.transforms(ds, frame_index, desc), window, bits, voi)
    stored = stored_values(decoded, desc)
    if raw:
        return render_raw(stored, desc, bits)
    if desc.bits_stored == 1 and voi is None:  # segmentations: 0/255, as DCMTK shows them
        t = fastpath.transforms(ds, frame_index, desc)
        if select_voi(window, list(t.windows), list(t.voi_luts)) is None:
            voi = Window(0.5, 1.0, VoiLutFunction.LINEAR, "1-bit", span=(0.0, 1.0))
    rendered = render_stored(stored, fastpath.transforms(ds, frame_index, desc), window, bits, voi)
    return _with_overlays(rendered, decoded, ds, frame_index) if overlays else rendered


def _with_overlays(rendered: Rendered, decoded: np.ndarray, ds: Dataset, index: int) -> Rendered:
    """`rendered` with the frame's overlay planes drawn in, read from `decoded` if embedded."""

    def container(frame_index: int) -> np.ndarray:
        if frame_index == index:
            return decoded
        path = getattr(ds, "filename", None)
        return decoding.decode_frame(ds, frame_index, path if isinstance(path, str) else None)

    planes = ov.overlay_planes(ds, index, container)
    if not planes:
        return rendered
    image = ov.apply_overlays(rendered.image, planes)
    return dataclasses.replace(rendered, image=image, overlay_groups=tuple(p.group for p in planes))


def _render_colour_samples(
    decoded: np.ndarray, ds: Dataset, desc: PixelDescription, *, bits: int, raw: bool
) -> Rendered:
    """RGB or YBR samples: mask to Bits Stored, convert YBR, scale to the export depth."""
    samples = decoded
    if desc.bits_stored < decoded.dtype.itemsize * 8:
        samples = px.extract_stored_values(decoded, desc.bits_stored, desc.high_bit, 0)
    if raw:
        depth = max(bits, 8 if desc.bits_stored <= 8 else 16)
        return Rendered(px.rescale_colour_depth(samples, depth, depth), voi="raw", raw_offset=0)
    photometric = desc.photometric_interpretation
    ts = decoding.transfer_syntax(ds)
    if photometric in ("YBR_FULL", "YBR_FULL_422") and not decoding.codec_converts_colour(
        ts, desc.bits_allocated
    ):
        samples = px.convert_ybr_to_rgb(
            samples, desc.bits_stored, subsampled=photometric == "YBR_FULL_422"
        )
    return render_colour(samples, desc.bits_stored, bits)


def render_dataset_frame(
    ds: Dataset,
    frame_number: int = 1,
    *,
    window: WindowSpec | str = "auto",
    bits: int = 8,
    raw: bool = False,
    source: str | os.PathLike[str] | None = None,
    overlays: bool = True,
) -> Rendered:
    """Render 1-based `frame_number` of `ds`; `source` lets multi-frame reads stay per frame."""
    spec = parse_window(window) if isinstance(window, str) else window
    if bits not in (8, 16):
        raise UsageError(f"bits={bits}: use 8 or 16")
    desc = check_renderable(ds)
    n = decoding.frames_present(ds)
    if not 1 <= frame_number <= n:
        raise UsageError(f"frame {frame_number} does not exist (the file has {n})")
    decoded = decoding.decode_frame(ds, frame_number - 1, source)
    return render_decoded(
        decoded, ds, desc, frame_number - 1, window=spec, bits=bits, raw=raw, overlays=overlays
    )


def render_frame(
    source: str | os.PathLike[str] | Dataset,
    frame: int = 1,
    window: WindowSpec | str = "auto",
    bits: int = 8,
    raw: bool = False,
    overlays: bool = True,
) -> np.ndarray:
    """Render one frame (1-based) of a DICOM file or Dataset as it should be displayed.

    Returns a (rows, columns) grey or (rows, columns, 3) RGB array of uint8 (`bits=8`) or
    uint16 (`bits=16`). `window` is as for ``--window``: ``auto``, ``file[:N]``, ``minmax``,
    ``C,W`` or a CT preset name. `overlays` draws the overlay planes (60xx) of grey images.
    """
    if isinstance(source, Dataset):
        ds, path = source, None
    else:
        path = Path(source)
        ds = decoding.read_dataset(path)
    rendered = render_dataset_frame(
        ds, frame, window=window, bits=bits, raw=raw, source=path, overlays=overlays
    )
    return rendered.image
