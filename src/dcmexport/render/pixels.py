"""Pure pixel transforms of the DICOM grayscale and colour display pipeline.

Each function implements one step of PS3.4 Annex N.2 and is named after it. They take NumPy
arrays, return new arrays and never touch a Dataset, so they can be tested against the formulas
of PS3.3 C.11 directly and composed into a lookup table by `pipeline`.

Order: stored value → `extract_stored_values` → Modality LUT (`apply_rescale` or
`apply_modality_lut`) → VOI (`apply_window_*` or `apply_voi_lut`) → polarity
(`invert_polarity`) → `quantise`.
"""

from __future__ import annotations

import numpy as np


def extract_stored_values(
    arr: np.ndarray, bits_stored: int, high_bit: int, pixel_representation: int
) -> np.ndarray:
    """Keep bits HighBit−BitsStored+1 … HighBit and sign-extend (PS3.5 8.1.1).

    Real files carry overlay or junk bits above High Bit, and some put a 12-bit sample at
    High Bit 15; pydicom assumes High Bit = Bits Stored − 1, so we do this ourselves on the
    decoded container values. Signed results are int32 (int64 for 32-bit data); an array
    that needs no change is returned as is (not copied).
    """
    if arr.dtype.kind not in "ui":
        raise TypeError(f"stored values must be integers, not {arr.dtype}")
    if not arr.dtype.isnative:  # big-endian transfer syntaxes decode to '>u2' views
        arr = arr.astype(arr.dtype.newbyteorder("="))
    itemsize = arr.dtype.itemsize
    shift = max(high_bit + 1 - bits_stored, 0)
    signed_dtype = arr.dtype.kind == "i"
    if shift == 0 and bits_stored >= itemsize * 8 and signed_dtype == bool(pixel_representation):
        return arr  # every bit is a sample bit and the dtype already has the right sign
    unsigned = arr.view(f"u{itemsize}") if signed_dtype else arr
    bits_stored = min(bits_stored, itemsize * 8 - shift)
    values = unsigned >> shift if shift else unsigned
    if bits_stored < itemsize * 8:
        values = values & np.asarray((1 << bits_stored) - 1, dtype=unsigned.dtype)
    if not pixel_representation:
        return values if values is not arr else values.copy()
    wide = np.int64 if itemsize >= 4 else np.int32
    sign_bit = 1 << (bits_stored - 1)
    return (values.astype(wide) ^ sign_bit) - sign_bit


def apply_rescale(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality LUT by Rescale Slope/Intercept (PS3.3 C.11.1.1.2): slope·x + intercept."""
    return np.asarray(x, dtype=np.float64) * slope + intercept


def apply_lut(x: np.ndarray, first_mapped: int, data: np.ndarray) -> np.ndarray:
    """A LUT as in the Modality and VOI LUT Sequences (PS3.3 C.11.1.1.1, C.11.2.1.1).

    Inputs below the first mapped value get the first entry, inputs past the end the last.
    """
    index = np.asarray(x, dtype=np.int64) - int(first_mapped)
    np.clip(index, 0, len(data) - 1, out=index)
    return data[index]


def apply_window_linear(x: np.ndarray, center: float, width: float, ymax: int) -> np.ndarray:
    """VOI LUT Function LINEAR (PS3.3 C.11.2.1.2.1), continuous output in 0..ymax."""
    x = np.asarray(x, dtype=np.float64)
    width = max(float(width), 1.0)
    c = center - 0.5
    low, high = c - (width - 1) / 2, c + (width - 1) / 2
    if width == 1:
        return np.where(x <= low, 0.0, float(ymax))
    y = ((x - c) / (width - 1) + 0.5) * ymax
    y = np.where(x <= low, 0.0, y)
    return np.where(x > high, float(ymax), y)


def apply_window_minmax(x: np.ndarray, low: float, high: float, ymax: int) -> np.ndarray:
    """LINEAR with the min–max window c = (low+high+1)/2, w = high−low+1, in closed form.

    Algebraically (x − low)·ymax / (high − low); written so, `low` maps to exactly 0 and
    `high` to exactly ymax in float64 (through c and w, 255 can come out as 254.99999999999997).
    """
    x = np.asarray(x, dtype=np.float64)
    if high <= low:
        return np.where(x <= low, 0.0, float(ymax))
    return np.clip((x - low) * ymax / (high - low), 0.0, float(ymax))


def apply_window_linear_exact(x: np.ndarray, center: float, width: float, ymax: int) -> np.ndarray:
    """VOI LUT Function LINEAR_EXACT (PS3.3 C.11.2.1.3.2), continuous output in 0..ymax."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - center) / width + 0.5) * ymax
    y = np.where(x <= center - width / 2, 0.0, y)
    return np.where(x > center + width / 2, float(ymax), y)


def apply_window_sigmoid(x: np.ndarray, center: float, width: float, ymax: int) -> np.ndarray:
    """VOI LUT Function SIGMOID (PS3.3 C.11.2.1.3.1), continuous output in 0..ymax."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return ymax / (1.0 + np.exp(-4.0 * (x - center) / width))


def scale_lut_output(values: np.ndarray, lut_bits: int, out_bits: int) -> np.ndarray:
    """Bring LUT output of `lut_bits` to the export depth: floor(v · 2^out / 2^lut_bits).

    This is what DCMTK does, bit-exact (a 12-bit LUT's 4095 becomes 255, or 65520 at 16 bits).
    """
    v = np.asarray(values, dtype=np.int64)
    if out_bits >= lut_bits:
        return v << (out_bits - lut_bits)
    return v >> (lut_bits - out_bits)


def invert_polarity(y: np.ndarray, ymax: int) -> np.ndarray:
    """MONOCHROME1 / Presentation LUT Shape INVERSE: ymax − y (never max(y) − y)."""
    return ymax - np.asarray(y)


#: Added before flooring so that results that are integers in exact arithmetic but land a few
#: ulps below in float64 (a min–max window's maximum: 254.99999999999997) are not cut by one.
QUANTISE_EPSILON = 1e-9


def quantise(y: np.ndarray, bits: int) -> np.ndarray:
    """Floor continuous output to unsigned `bits`-bit integers, as DCMTK truncates."""
    ymax = (1 << bits) - 1
    out = np.floor(np.asarray(y, dtype=np.float64) + QUANTISE_EPSILON)
    np.clip(out, 0, ymax, out=out)
    return out.astype(np.uint8 if bits == 8 else np.uint16)


def minmax_window(modality_min: float, modality_max: float) -> tuple[float, float]:
    """Window (center, width) mapping `modality_min` to 0 and `modality_max` to ymax (LINEAR).

    c = (min + max + 1) / 2, w = max − min + 1 (RENDERING.md); a flat image gets width 1.
    """
    width = max(modality_max - modality_min + 1.0, 1.0)
    return (modality_min + modality_max + 1.0) / 2.0, width


def padding_mask(
    stored: np.ndarray, padding_value: int | None, padding_range_limit: int | None
) -> np.ndarray | None:
    """Pixels that are Pixel Padding Value or within the padding range (inclusive), or None."""
    if padding_value is None:
        return None
    if padding_range_limit is None:
        return stored == padding_value
    low, high = sorted((padding_value, padding_range_limit))
    return (stored >= low) & (stored <= high)


#: Pixels converted at a time, so a large colour frame costs its output and a band, not ~80
#: bytes a pixel (the arithmetic and its truncation stay float64, exact against DCMTK)
_YBR_CHUNK_PIXELS = 1 << 20


def convert_ybr_to_rgb(ybr: np.ndarray, bits: int, *, subsampled: bool = False) -> np.ndarray:
    """YBR_FULL or YBR_FULL_422 (already upsampled) to RGB (PS3.3 C.7.6.3.1.2), as DCMTK does.

    The inverse of the standard's forward equations with DCMTK's constants: chroma centred
    on (2^bits − 1)/2 and each result truncated; for 8-bit YBR_FULL every chroma term is
    truncated separately, through the tables DCMTK builds. This agrees with DCMTK exactly,
    whereas centring on 2^(bits−1) is off by 2 on about a sixth of the pixels.
    """
    v = np.asarray(ybr)
    rows = v.shape[0] if v.ndim == 3 else 0
    step = max(_YBR_CHUNK_PIXELS // max(v.shape[1], 1), 1) if rows else 0
    if rows > step:  # row bands: the float64 work costs ~80 bytes a pixel at its peak
        out = np.empty(v.shape, np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32)
        for start in range(0, rows, step):
            band = v[start : start + step]
            out[start : start + step] = convert_ybr_to_rgb(band, bits, subsampled=subsampled)
        return out
    top = float((1 << bits) - 1)
    y, cb, cr = (v[..., i].astype(np.float64) for i in range(3))
    if bits == 8 and not subsampled:
        table = np.arange(256, dtype=np.float64)
        r_cr = np.trunc(1.402 * table - 0.701 * 255)
        g_cb = np.trunc(0.3441 * table)
        g_cr = np.trunc(0.7141 * table - 0.5291 * 255)
        b_cb = np.trunc(1.772 * table - 0.8859 * 255)
        icb, icr = v[..., 1], v[..., 2]
        rgb = np.stack([y + r_cr[icr], y - g_cb[icb] - g_cr[icr], y + b_cb[icb]], axis=-1)
    else:
        rgb = np.stack(
            [
                y + 1.402 * cr - 0.701 * top,
                y - 0.3441 * cb - 0.7141 * cr + 0.5291 * top,
                y + 1.772 * cb - 0.8859 * top,
            ],
            axis=-1,
        )
        rgb = np.trunc(rgb)
    np.clip(rgb, 0, top, out=rgb)
    return rgb.astype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32)


def rescale_colour_depth(rgb: np.ndarray, bits_in: int, bits_out: int) -> np.ndarray:
    """Colour samples of `bits_in` bits to the export depth, as DCMTK scales them.

    Down: drop low bits (v >> (in − out)). Up: stretch to full range, v · (2^out − 1) /
    (2^in − 1), so 8-bit 255 becomes 65535 (v · 257).
    """
    v = np.asarray(rgb)
    out: np.ndarray
    if bits_in > bits_out:
        out = v >> (bits_in - bits_out)
    elif bits_in < bits_out:
        out = v.astype(np.uint64) * ((1 << bits_out) - 1) // ((1 << bits_in) - 1)
    else:
        out = v
    return out.astype(np.uint8 if bits_out == 8 else np.uint16)


def eight_bit_view(image: np.ndarray, *, stretch: bool) -> np.ndarray:
    """An 8-bit view of a rendering (a thumbnail, a report image): as it is if 8-bit; else
    the top byte of a display rendering (which spans 0-65535), or a min-max stretch of
    `--raw` stored values (which rarely do)."""
    if image.dtype == np.uint8:
        return image
    data = image.astype(np.float64)
    if stretch:
        low, high = float(data.min()), float(data.max())
        data = (data - low) * (255.0 / (high - low)) if high > low else data * 0.0
    else:
        data = data / 257.0
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)
