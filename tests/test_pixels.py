"""Formula tests of the grayscale pipeline against PS3.3 C.11.2 as written in RENDERING.md.

Expected values are computed here, per value, with plain Python arithmetic straight from the
formula text (never by calling the function under test), then floored as the project quantises.
End-to-end cases build tiny Datasets by hand and go through `render_frame`.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dcmexport.errors import PixelDataError, UsageError, WindowError
from dcmexport.options import FrameSelection, parse_frames
from dcmexport.render import pixels as px
from dcmexport.render.frame import render_frame
from dcmexport.render.pipeline import read_lut
from dcmexport.render.windowing import CT_PRESETS, WindowSpec, parse_window

BITS = [8, 16]


def ymax_of(bits: int) -> int:
    return (1 << bits) - 1


# --- the formulas of RENDERING.md, one value at a time -------------------------------------


def linear(x: float, c: float, w: float, ymax: int) -> float:
    """LINEAR: x ≤ c−0.5−(w−1)/2 → 0; x > c−0.5+(w−1)/2 → ymax;
    otherwise ((x−(c−0.5))/(w−1)+0.5)·ymax."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return float(ymax)
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax


def linear_exact(x: float, c: float, w: float, ymax: int) -> float:
    """LINEAR_EXACT: x ≤ c−w/2 → 0; x > c+w/2 → ymax; else ((x−c)/w+0.5)·ymax."""
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return float(ymax)
    return ((x - c) / w + 0.5) * ymax


def sigmoid(x: float, c: float, w: float, ymax: int) -> float:
    """SIGMOID: ymax / (1 + exp(−4(x−c)/w))."""
    exponent = -4 * (x - c) / w
    if exponent > 700:  # exp overflows: the limit is 0
        return 0.0
    return ymax / (1 + math.exp(exponent))


def floor_all(values: list[float]) -> list[int]:
    """Floor, treating values within 1e-9 below an integer as that integer (px.quantise)."""
    return [math.floor(v + px.QUANTISE_EPSILON) for v in values]


# --- LINEAR, LINEAR_EXACT, SIGMOID -----------------------------------------------------------

LINEAR_WINDOWS = [
    (40, 400),
    (-600, 1500),
    (0, 1),
    (10.5, 1),
    (127.5, 256),
    (10.25, 6.5),
    (3.7, 2.3),
    (2048, 4096),
    (-0.3, 17.9),
]


def linear_probe_points(c: float, w: float) -> list[float]:
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    points = [lo - 1000, lo - 1, lo - 0.5, lo, lo + 0.25, lo + 0.5, c - 0.5, c, c + 0.25]
    points += [hi - 0.5, hi - 1e-6, hi, hi + 1e-6, hi + 0.5, hi + 1, hi + 1000]
    points += [float(i) for i in range(math.floor(lo) - 2, math.ceil(hi) + 3, max(1, int(w) // 40))]
    return points


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("c", "w"), LINEAR_WINDOWS)
def test_linear_window_matches_formula(c: float, w: float, bits: int) -> None:
    ymax = ymax_of(bits)
    xs = linear_probe_points(c, w)
    got = px.quantise(px.apply_window_linear(np.array(xs), c, w, ymax), bits)
    assert got.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert got.tolist() == floor_all([linear(x, c, w, ymax) for x in xs])


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("c", "w"), LINEAR_WINDOWS)
def test_linear_window_edges(c: float, w: float, bits: int) -> None:
    ymax = ymax_of(bits)
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    below = [lo - 100, lo - 1, lo]  # x ≤ lower edge → 0
    above = [hi + 1e-6, hi + 1, hi + 100]  # x > upper edge → ymax
    y = px.apply_window_linear(np.array(below + above), c, w, ymax)
    assert y.tolist() == [0.0] * 3 + [float(ymax)] * 3


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("c", "w"), [(40, 400), (10.25, 6.5), (127.5, 256), (-600, 1500)])
def test_linear_window_reaches_ymax_at_upper_edge(c: float, w: float, bits: int) -> None:
    """At x = c−0.5+(w−1)/2 the formula gives exactly ymax (exactly representable windows)."""
    ymax = ymax_of(bits)
    hi = c - 0.5 + (w - 1) / 2
    assert px.quantise(px.apply_window_linear(np.array([hi]), c, w, ymax), bits).tolist() == [ymax]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("c", [0, 10.5, -3.25, 100.7])
def test_linear_width_one_is_a_threshold(c: float, bits: int) -> None:
    ymax = ymax_of(bits)
    xs = [c - 10, c - 1, c - 0.5, c - 0.5 + 1e-9, c, c + 10]
    got = px.quantise(px.apply_window_linear(np.array(xs), c, 1, ymax), bits)
    assert got.tolist() == [0, 0, 0, ymax, ymax, ymax]


LINEAR_EXACT_WINDOWS = [(40, 400), (0, 1), (10.25, 0.5), (3.7, 2.3), (-600, 1500), (0.5, 0.01)]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("c", "w"), LINEAR_EXACT_WINDOWS)
def test_linear_exact_window_matches_formula(c: float, w: float, bits: int) -> None:
    ymax = ymax_of(bits)
    lo, hi = c - w / 2, c + w / 2
    xs = [lo - 1000, lo - 1, lo, lo + w / 4, c, hi - w / 4, hi, hi + 1e-6, hi + 1, hi + 1000]
    xs += [float(i) for i in range(math.floor(lo) - 2, math.ceil(hi) + 3, max(1, int(w) // 40))]
    got = px.quantise(px.apply_window_linear_exact(np.array(xs), c, w, ymax), bits)
    assert got.tolist() == floor_all([linear_exact(x, c, w, ymax) for x in xs])
    edges = px.apply_window_linear_exact(np.array([lo - 1, lo, hi + 1e-6, hi + 1]), c, w, ymax)
    assert edges.tolist() == [0.0, 0.0, float(ymax), float(ymax)]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("c", "w"), [(40, 400), (0, 1), (3.7, 2.3), (-600, 1500), (1000, 10)])
def test_sigmoid_window_matches_formula(c: float, w: float, bits: int) -> None:
    ymax = ymax_of(bits)
    xs = [c - 1e6, c - 5 * w, c - w, c - w / 2, c - 0.1, c, c + 0.1, c + w / 2, c + w, c + 1e6]
    got = px.quantise(px.apply_window_sigmoid(np.array(xs), c, w, ymax), bits)
    assert got.tolist() == floor_all([sigmoid(x, c, w, ymax) for x in xs])
    assert got[0] == 0 and got[-1] == ymax
    assert got[5] == ymax // 2  # ymax/2 at the centre, floored


def test_quantise_floors_and_clips() -> None:
    y = np.array([-3.0, -0.5, 0.0, 0.999, 1.0, 127.5, 254.9999, 255.0, 300.0])
    assert px.quantise(y, 8).tolist() == [0, 0, 0, 0, 1, 127, 254, 255, 255]
    y16 = np.array([-1.0, 0.7, 32767.99, 65534.999, 65535.0, 70000.0])
    out = px.quantise(y16, 16)
    assert out.dtype == np.uint16
    assert out.tolist() == [0, 0, 32767, 65534, 65535, 65535]


@pytest.mark.parametrize("bits", BITS)
def test_invert_polarity_is_ymax_minus_y(bits: int) -> None:
    ymax = ymax_of(bits)
    y = np.array([0.0, 0.25, 10.5, ymax - 3.0, float(ymax)])
    # ymax − y, never max(y) − y: the second array's maximum is far below ymax
    assert px.invert_polarity(y, ymax).tolist() == [ymax - v for v in y.tolist()]
    assert px.invert_polarity(np.array([1.0, 2.0]), ymax).tolist() == [ymax - 1.0, ymax - 2.0]


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (-1024, 3071), (-2.5, 7.25), (100, 100)])
def test_minmax_window_formula(lo: float, hi: float) -> None:
    c, w = px.minmax_window(lo, hi)
    assert c == (lo + hi + 1) / 2
    assert w == max(hi - lo + 1, 1)


# --- VOI LUT Sequence -----------------------------------------------------------------------


@pytest.mark.parametrize("first", [-2, 0, 5, -1000])
def test_apply_lut_clips_below_first_and_above_last(first: int) -> None:
    data = np.array([10, 20, 30, 40])
    xs = [first - 100, first - 1, first, first + 1, first + 2, first + 3, first + 4, first + 500]
    expected = [data[min(max(x - first, 0), len(data) - 1)] for x in xs]
    assert expected == [10, 10, 10, 20, 30, 40, 40, 40]
    assert px.apply_lut(np.array(xs), first, data).tolist() == expected


@pytest.mark.parametrize("out_bits", BITS)
@pytest.mark.parametrize("lut_bits", [8, 10, 12, 16])
def test_scale_lut_output(lut_bits: int, out_bits: int) -> None:
    top = (1 << lut_bits) - 1
    values = [0, 1, 2, 3, 7, 1 << (lut_bits - 1), top - 1, top]
    got = px.scale_lut_output(np.array(values), lut_bits, out_bits)
    assert got.tolist() == [v * 2**out_bits // 2**lut_bits for v in values]


def test_scale_lut_output_dcmtk_examples() -> None:
    assert px.scale_lut_output(np.array([4095]), 12, 8).tolist() == [255]
    assert px.scale_lut_output(np.array([4095]), 12, 16).tolist() == [65520]
    assert px.scale_lut_output(np.array([255]), 8, 16).tolist() == [65280]


def lut_item(descriptor: list[int], data: bytes | list[int], vr: str = "OW") -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", descriptor)  # LUT Descriptor
    item.add_new(0x00283006, vr, data)  # LUT Data
    return item


LITTLE = Dataset()  # read_lut only asks the dataset for its byte order


def test_read_lut_descriptor_zero_means_65536_entries() -> None:
    table = np.arange(65536, dtype="<u2")[::-1].copy()
    first, bits, data = read_lut(lut_item([0, 0, 16], table.tobytes()), LITTLE, False)
    assert (first, bits) == (0, 16)
    assert len(data) == 65536
    assert data[0] == 65535 and data[-1] == 0


@pytest.mark.parametrize(
    ("stored_first", "signed_input", "expected"),
    [(64536, True, -1000), (64536, False, 64536), (32768, True, -32768), (1000, True, 1000)],
)
def test_read_lut_first_value_sign(stored_first: int, signed_input: bool, expected: int) -> None:
    item = lut_item([3, stored_first, 16], np.array([1, 2, 3], dtype="<u2").tobytes())
    first, _, data = read_lut(item, LITTLE, signed_input)
    assert first == expected
    assert data.tolist() == [1, 2, 3]


def test_read_lut_ow_is_little_endian() -> None:
    item = lut_item([2, 0, 16], b"\x01\x02\x03\x04")
    assert read_lut(item, LITTLE, False)[2].tolist() == [0x0201, 0x0403]


def test_read_lut_ow_in_big_endian_file() -> None:
    big = types.SimpleNamespace(original_encoding=(False, False))
    item = lut_item([2, 0, 16], b"\x01\x02\x03\x04")
    assert read_lut(item, big, False)[2].tolist() == [0x0102, 0x0304]  # type: ignore[arg-type]


def test_read_lut_us_values() -> None:
    item = lut_item([3, 0, 12], [0, 2048, 4095], vr="US")
    first, bits, data = read_lut(item, LITTLE, False)
    assert (first, bits, data.tolist()) == (0, 12, [0, 2048, 4095])


def test_voi_lut_with_us_data_via_render_frame() -> None:
    stored = np.array([[0, 1, 2, 3, 9]])
    ds = make_ds(stored)
    ds.VOILUTSequence = Sequence([lut_item([4, 0, 8], [10, 20, 30, 40], vr="US")])
    assert render_frame(ds).tolist() == [[10, 20, 30, 40, 40]]


@pytest.mark.parametrize("entries", [4, 5, 255, 256])
def test_read_lut_8bit_packed_two_per_word(entries: int) -> None:
    values = [(7 * i + 3) % 256 for i in range(entries)]
    padded = [*values, 0xAA] if entries % 2 else values  # odd count: unused high byte
    words = [padded[i] | padded[i + 1] << 8 for i in range(0, len(padded), 2)]  # low byte first
    item = lut_item([entries, 0, 8], np.array(words, dtype="<u2").tobytes())
    first, bits, data = read_lut(item, LITTLE, False)
    assert (first, bits) == (0, 8)
    assert data.tolist() == values


def test_read_lut_8bit_unpacked_one_per_word() -> None:
    values = [0, 17, 255, 128]
    item = lut_item([4, 0, 8], np.array(values, dtype="<u2").tobytes())
    assert read_lut(item, LITTLE, False)[2].tolist() == values


@pytest.mark.parametrize(("declared", "expected_bits"), [(0, 10), (1, 10), (7, 10), (20, 10)])
def test_read_lut_bits_outside_8_to_16_from_max(declared: int, expected_bits: int) -> None:
    item = lut_item([3, 0, declared], np.array([0, 500, 1000], dtype="<u2").tobytes())
    _, bits, data = read_lut(item, LITTLE, False)
    assert bits == expected_bits
    assert data.tolist() == [0, 500, 1000]


@pytest.mark.parametrize(
    ("bits", "raw", "masked"),
    [
        (12, [0xF005, 0x0FFF, 0x1FFF], [5, 0xFFF, 0xFFF]),
        (10, [0xFC00, 0x03FF, 0x0401], [0, 0x3FF, 1]),
        (8, [0x0100, 0xFFFF, 0x0180], [0, 0xFF, 0x80]),
    ],
)
def test_read_lut_data_masked_to_declared_bits(
    bits: int, raw: list[int], masked: list[int]
) -> None:
    item = lut_item([3, 0, bits], np.array(raw, dtype="<u2").tobytes())
    assert read_lut(item, LITTLE, False)[2].tolist() == masked


def test_read_lut_malformed_raises() -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [3, 0, 16])
    with pytest.raises(PixelDataError):
        read_lut(item, LITTLE, False)


# --- extract_stored_values ------------------------------------------------------------------


def test_extract_12_bits_at_high_bit_11_drops_junk_above() -> None:
    values = [0, 1, 2047, 2048, 4095, 1234]
    junk = [0xF, 0x1, 0x8, 0xA, 0x5, 0x3]
    raw = np.array([v | j << 12 for v, j in zip(values, junk, strict=True)], dtype=np.uint16)
    out = px.extract_stored_values(raw, 12, 11, 0)
    assert out.tolist() == values


def test_extract_12_bits_at_high_bit_15_uses_top_bits() -> None:
    values = [0, 1, 2047, 2048, 4095, 1234]
    raw = np.array([v << 4 | (i * 5) % 16 for i, v in enumerate(values)], dtype=np.uint16)
    assert px.extract_stored_values(raw, 12, 15, 0).tolist() == values


@pytest.mark.parametrize(("high_bit", "junk"), [(11, 0xA000), (11, 0xF000), (15, 0x0009)])
def test_extract_signed_12_bits_sign_extends(high_bit: int, junk: int) -> None:
    """Two's complement in the 12 stored bits; junk outside them (above, or below at HighBit 15)."""
    values = [-2048, -2000, -1, 0, 1, 2047, -1000]
    shift = high_bit - 11
    raw = np.array([(v & 0xFFF) << shift | junk for v in values], dtype=np.uint16)
    out = px.extract_stored_values(raw, 12, high_bit, 1)
    assert out.dtype.kind == "i"
    assert out.tolist() == values


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_extract_16_bits_signed(dtype: type) -> None:
    values = [-32768, -2000, -1, 0, 1, 32767]
    raw = np.array(values, dtype=np.int16).view(dtype)
    out = px.extract_stored_values(raw, 16, 15, 1)
    assert out.tolist() == values


def test_extract_full_width_samples_are_returned_unchanged_without_a_copy() -> None:
    raw = np.array([0, 1, 40000, 65535], dtype=np.uint16)
    out = px.extract_stored_values(raw, 16, 15, 0)
    assert out is raw and out.tolist() == [0, 1, 40000, 65535]
    signed = np.array([-3000, 0, 3000], dtype=np.int16)
    assert px.extract_stored_values(signed, 16, 15, 1) is signed


@pytest.mark.parametrize(
    ("bits_stored", "high_bit", "signed"), [(16, 15, 0), (12, 11, 0), (12, 11, 1)]
)
def test_extract_big_endian_input(bits_stored: int, high_bit: int, signed: int) -> None:
    native = np.array([0x0001, 0x0FFF, 0xF800, 0x1234, 0x8000], dtype=np.uint16)
    big = native.astype(">u2")
    assert big.tobytes() != native.tobytes()
    expected = px.extract_stored_values(native, bits_stored, high_bit, signed)
    got = px.extract_stored_values(big, bits_stored, high_bit, signed)
    assert got.tolist() == expected.tolist()
    if bits_stored == 12 and not signed:
        assert got.tolist() == [1, 0xFFF, 0x800, 0x234, 0]


def test_extract_rejects_floats() -> None:
    with pytest.raises(TypeError):
        px.extract_stored_values(np.zeros(3, dtype=np.float32), 16, 15, 0)


# --- rescale_colour_depth -------------------------------------------------------------------


def test_rescale_colour_8_to_16_is_times_257() -> None:
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = px.rescale_colour_depth(v, 8, 16)
    assert out.dtype == np.uint16
    assert out.tolist() == (v.astype(np.int64) * 257).tolist()


def test_rescale_colour_16_to_8_drops_low_byte() -> None:
    v = np.array([0, 255, 256, 32767, 32768, 65280, 65535], dtype=np.uint16)
    out = px.rescale_colour_depth(v, 16, 8)
    assert out.dtype == np.uint8
    assert out.tolist() == [x >> 8 for x in v.tolist()]


def test_rescale_colour_12_to_16_truncates() -> None:
    v = np.arange(4096, dtype=np.uint16)
    out = px.rescale_colour_depth(v, 12, 16)
    assert out.tolist() == [x * 65535 // 4095 for x in range(4096)]
    assert out[-1] == 65535


def test_rescale_colour_same_depth_and_12_to_8() -> None:
    v = np.array([0, 17, 255], dtype=np.uint8)
    assert px.rescale_colour_depth(v, 8, 8).tolist() == [0, 17, 255]
    w = np.array([0, 15, 16, 4095], dtype=np.uint16)
    assert px.rescale_colour_depth(w, 12, 8).tolist() == [0, 0, 1, 255]


# --- padding_mask ---------------------------------------------------------------------------


def test_padding_mask() -> None:
    stored = np.array([-2000, -1999, -1500, -1499, 0])
    assert px.padding_mask(stored, None, None) is None
    assert px.padding_mask(stored, -2000, None).tolist() == [True, False, False, False, False]
    assert px.padding_mask(stored, -2000, -1500).tolist() == [True, True, True, False, False]
    assert px.padding_mask(stored, -1500, -2000).tolist() == [True, True, True, False, False]


# --- end to end through render_frame on hand-built Datasets ---------------------------------


def make_ds(
    frames: np.ndarray,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.7",
    **attributes: object,
) -> Dataset:
    """A 16-bit grayscale dataset; `frames` is (rows, cols) or (frames, rows, cols)."""
    stack = frames if frames.ndim == 3 else frames[None]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.Rows, ds.Columns = stack.shape[1:]
    if frames.ndim == 3:
        ds.NumberOfFrames = stack.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(signed)
    ds.PixelData = stack.astype("<i2" if signed else "<u2").tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def ramp(lo: int, hi: int, columns: int = 8) -> np.ndarray:
    """Every value lo..hi once, padded with `hi` to fill whole rows."""
    values = list(range(lo, hi + 1))
    values += [hi] * (-len(values) % columns)
    return np.array(values).reshape(-1, columns)


def expected_linear(
    stored: np.ndarray,
    c: float,
    w: float,
    bits: int,
    *,
    invert: bool = False,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> list[list[int]]:
    ymax = ymax_of(bits)
    out = []
    for row in stored.tolist():
        line = []
        for s in row:
            y = linear(s * slope + intercept, c, w, ymax)
            line.append(floor_all([ymax - y if invert else y])[0])
        out.append(line)
    return out


@pytest.mark.parametrize("bits", BITS)
def test_monochrome1_window_inverted_once_floor_after_inversion(bits: int) -> None:
    c, w = 100.3, 57.7
    stored = ramp(50, 160)
    ds = make_ds(stored, "MONOCHROME1", WindowCenter=c, WindowWidth=w)
    got = render_frame(ds, bits=bits)
    expected = expected_linear(stored, c, w, bits, invert=True)
    assert got.tolist() == expected
    ymax = ymax_of(bits)
    floor_then_invert = [
        [ymax - math.floor(linear(s, c, w, ymax)) for s in row] for row in stored.tolist()
    ]
    assert expected != floor_then_invert  # the case tells the two orders apart


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [
        ("MONOCHROME1", None, True),
        ("MONOCHROME1", "INVERSE", True),  # still one inversion
        ("MONOCHROME1", "IDENTITY", True),  # documented choice: MONOCHROME1 wins (DCMTK differs)
        ("MONOCHROME2", "INVERSE", True),
        ("MONOCHROME2", "IDENTITY", False),
        ("MONOCHROME2", None, False),
    ],
)
def test_polarity(photometric: str, shape: str | None, inverted: bool, bits: int) -> None:
    c, w = 20.5, 30.25
    stored = ramp(0, 40)
    extra = {"PresentationLUTShape": shape} if shape else {}
    ds = make_ds(stored, photometric, WindowCenter=c, WindowWidth=w, **extra)
    got = render_frame(ds, window="file", bits=bits)
    assert got.tolist() == expected_linear(stored, c, w, bits, invert=inverted)


def packed_lut(values: list[int]) -> bytes:
    padded = [*values, 0] if len(values) % 2 else values
    return bytes(padded)  # two entries per little-endian 16-bit word, low byte first


def voi_lut_item(descriptor: list[int], data: bytes, explanation: str = "") -> Dataset:
    item = lut_item(descriptor, data)
    if explanation:
        item.LUTExplanation = explanation
    return item


@pytest.mark.parametrize("bits", BITS)
def test_packed_8bit_voi_lut_applied_by_auto(bits: int) -> None:
    table = [3, 50, 100, 150, 200, 250, 255]  # 7 entries: odd, packed in 4 words
    first = 5
    stored = ramp(0, 19, columns=4)
    ds = make_ds(stored, WindowCenter=10, WindowWidth=4)  # the LUT comes first
    ds.VOILUTSequence = Sequence([voi_lut_item([len(table), first, 8], packed_lut(table))])
    got = render_frame(ds, window="auto", bits=bits)
    expected = [
        [table[min(max(s - first, 0), len(table) - 1)] * 2**bits // 2**8 for s in row]
        for row in stored.tolist()
    ]
    assert got.tolist() == expected


@pytest.mark.parametrize("bits", BITS)
def test_zero_width_window_is_ignored(bits: int) -> None:
    stored = ramp(-100, 300)
    ds = make_ds(stored, signed=True, WindowCenter=40, WindowWidth=0)
    got = render_frame(ds, window="auto", bits=bits)
    c, w = (-100 + 300 + 1) / 2, 300 - (-100) + 1
    assert got.tolist() == expected_linear(stored, c, w, bits)
    assert got.min() == 0 and got.max() == ymax_of(bits)
    assert got.tolist() == render_frame(ds, window="minmax", bits=bits).tolist()
    with pytest.raises(WindowError):
        render_frame(ds, window="file", bits=bits)


def test_zero_width_pair_keeps_numbering_and_auto_passes_over_it() -> None:
    """file:N numbers the file's windows as the file (and DCMTK's +Wi N) does."""
    stored = ramp(0, 100)
    ds = make_ds(stored, WindowCenter=[40, 50], WindowWidth=[0, 20])
    with pytest.raises(WindowError, match="width 0"):
        render_frame(ds, window="file:1")
    assert render_frame(ds, window="file:2").tolist() == expected_linear(stored, 50, 20, 8)
    assert render_frame(ds, window="auto").tolist() == expected_linear(stored, 50, 20, 8)


@pytest.mark.parametrize(
    ("slope", "intercept", "center", "width", "expected"),
    [
        ("1,00", "-1024", "40", "400", (1.0, -1024.0, 40.0, 400.0)),  # decimal comma
        ("1", "-1024", "2000,5", "400.0 ", (1.0, -1024.0, 2000.0, 400.0)),
    ],
)
def test_malformed_decimal_strings_read_leniently(
    slope: str, intercept: str, center: str, width: str, expected: tuple
) -> None:
    """DCMTK reads the leading number of a malformed DS; so do we (not drop the rescale)."""
    stored = ramp(0, 3000)
    got = render_frame(_with_raw_ds(make_ds(stored), slope, intercept, center, width))
    s, i, c, w = expected
    assert got.tolist() == expected_linear(stored, c, w, 8, slope=s, intercept=i)


def _with_raw_ds(ds: Dataset, *values: str) -> Dataset:
    """`ds` saved and read back with Rescale Slope/Intercept and Window Center/Width holding
    the given DS strings verbatim, as a real file with malformed values reads."""
    import io
    import struct

    import pydicom

    tags = [(0x0028, 0x1053), (0x0028, 0x1052), (0x0028, 0x1050), (0x0028, 0x1051)]
    for (group, element), value in zip(tags, values, strict=True):
        ds.add_new((group, element), "LO", value)
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    for group, element in tags:
        tag = struct.pack("<HH", group, element)
        data = data.replace(tag + b"LO", tag + b"DS")
    return pydicom.dcmread(io.BytesIO(data))


def test_file_numbering_luts_first_then_windows() -> None:
    stored = ramp(0, 63)
    table = list(range(255, -1, -4))  # 64 entries, 8-bit
    ds = make_ds(stored, WindowCenter=30, WindowWidth=20)
    ds.VOILUTSequence = Sequence([voi_lut_item([64, 0, 8], packed_lut(table), "LUT A")])
    lut_expected = [[table[s] for s in row] for row in stored.tolist()]
    assert render_frame(ds, window="file:1").tolist() == lut_expected
    assert render_frame(ds, window="file").tolist() == lut_expected
    assert render_frame(ds, window="auto").tolist() == lut_expected
    assert render_frame(ds, window="file:2").tolist() == expected_linear(stored, 30, 20, 8)
    with pytest.raises(WindowError):
        render_frame(ds, window="file:3")


def test_file_numbering_two_windows() -> None:
    stored = ramp(0, 63)
    ds = make_ds(stored, WindowCenter=[30, 10], WindowWidth=[20, 5])
    assert render_frame(ds, window="file:1").tolist() == expected_linear(stored, 30, 20, 8)
    assert render_frame(ds, window="file:2").tolist() == expected_linear(stored, 10, 5, 8)
    with pytest.raises(WindowError):
        render_frame(ds, window="file:3")


@pytest.mark.parametrize("bits", BITS)
def test_explicit_window_and_preset(bits: int) -> None:
    stored = ramp(0, 1300, columns=10)  # CT: modality values −1100..200 HU
    ds = make_ds(stored, RescaleSlope=1, RescaleIntercept=-1100, WindowCenter=0, WindowWidth=1)
    got = render_frame(ds, window="-1000,150", bits=bits)
    assert got.tolist() == expected_linear(stored, -1000, 150, bits, intercept=-1100)
    brain = render_frame(ds, window="brain", bits=bits)
    assert brain.tolist() == expected_linear(stored, 40, 80, bits, intercept=-1100)
    assert len(set(brain.ravel().tolist())) > 50


MINMAX_RESCALES = [
    pytest.param(0.5, -1024.0, 0, 100, id="slope-0.5"),
    pytest.param(0.25, 0.5, 10, 300, id="slope-0.25"),
    pytest.param(2.0, -3.0, -50, 50, id="slope-2"),
    pytest.param(1.0, -1024.0, 0, 4095, id="slope-1"),
    # 0.3 and 0.1 put the max at 254.99999999999997 in float64: quantise's epsilon keeps it 255
    pytest.param(0.3, 0.0, 3, 10, id="slope-0.3"),
    pytest.param(0.1, -1024.0, 1, 2, id="slope-0.1"),
]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("slope", "intercept", "lo", "hi"), MINMAX_RESCALES)
def test_fractional_slope_minmax_maps_min_to_0_and_max_to_ymax(
    slope: float, intercept: float, lo: int, hi: int, bits: int
) -> None:
    stored = ramp(lo, hi)
    ds = make_ds(stored, signed=lo < 0, RescaleSlope=slope, RescaleIntercept=intercept)
    got = render_frame(ds, window="auto", bits=bits)
    assert got[0, 0] == 0  # stored lo
    assert got.flat[hi - lo] == ymax_of(bits)  # stored hi
    m_lo, m_hi = lo * slope + intercept, hi * slope + intercept
    c, w = (m_lo + m_hi + 1) / 2, m_hi - m_lo + 1
    inner = expected_linear(stored, c, w, bits, slope=slope, intercept=intercept)
    assert got.tolist()[1:-1] == inner[1:-1]


@pytest.mark.parametrize("bits", BITS)
def test_padding_value_excluded_from_minmax(bits: int) -> None:
    stored = ramp(-1000, 1000, columns=7)
    stored[0, :3] = -2000  # air padding over -1000, -999, -998 ...
    stored[-1, -1] = -1000  # ... so put the minimum back elsewhere
    ds = make_ds(stored, signed=True)
    ds.add_new(0x00280120, "US", 63536)  # Pixel Padding Value −2000 read as US
    got = render_frame(ds, window="auto", bits=bits)
    assert got.tolist() == expected_linear(stored, (-1000 + 1000 + 1) / 2, 2001, bits)
    assert got[-1, -1] == 0
    assert got.max() == ymax_of(bits)
    assert (got[0, :3] == 0).all()
    # without padding the window would stretch down to −2000
    ds_no_padding = make_ds(stored, signed=True)
    assert render_frame(ds_no_padding, window="auto", bits=bits)[-1, -1] > 0


def test_padding_value_as_ss_in_signed_image() -> None:
    stored = np.array([[-2000, -2000, -10, 0, 10, 20]])
    ds = make_ds(stored, signed=True)
    ds.add_new(0x00280120, "SS", -2000)
    assert render_frame(ds).tolist() == expected_linear(stored, (-10 + 20 + 1) / 2, 31, 8)


@pytest.mark.parametrize("bits", BITS)
def test_padding_range_limit_inclusive(bits: int) -> None:
    stored = np.array([[-2000, -1800, -1500, -1499, 0, 500]])
    ds = make_ds(stored, signed=True)
    ds.add_new(0x00280120, "US", 63536)  # −2000
    ds.add_new(0x00280121, "US", 64036)  # Pixel Padding Range Limit −1500
    got = render_frame(ds, bits=bits)
    c, w = (-1499 + 500 + 1) / 2, 500 - (-1499) + 1
    assert got.tolist() == expected_linear(stored, c, w, bits)
    assert got[0, 3] == 0 and got[0, 5] == ymax_of(bits)


def test_padding_in_unsigned_image_with_rescale() -> None:
    stored = np.array([[0, 0, 24, 1024, 2048, 3000]])
    ds = make_ds(stored, RescaleSlope=0.5, RescaleIntercept=-1024, PixelPaddingValue=0)
    got = render_frame(ds)
    m_lo, m_hi = 24 * 0.5 - 1024, 3000 * 0.5 - 1024
    expected = expected_linear(
        stored, (m_lo + m_hi + 1) / 2, m_hi - m_lo + 1, 8, slope=0.5, intercept=-1024
    )
    assert got.tolist() == expected
    assert got[0, 2] == 0 and got[0, 5] == 255


def test_all_padding_does_not_crash() -> None:
    stored = np.full((2, 3), 7)
    ds = make_ds(stored, PixelPaddingValue=7)
    assert render_frame(ds).shape == (2, 3)


def functional_group(**items: Dataset) -> Dataset:
    group = Dataset()
    for keyword, item in items.items():
        setattr(group, keyword, Sequence([item]))
    return group


def window_item(c: float, w: float) -> Dataset:
    item = Dataset()
    item.WindowCenter = c
    item.WindowWidth = w
    return item


def rescale_item(slope: float, intercept: float) -> Dataset:
    item = Dataset()
    item.RescaleSlope = slope
    item.RescaleIntercept = intercept
    item.RescaleType = "US"
    return item


@pytest.mark.parametrize("bits", BITS)
def test_enhanced_multiframe_per_frame_windows(bits: int) -> None:
    frame = ramp(0, 255, columns=16)
    ds = make_ds(np.stack([frame, frame]), sop_class="1.2.840.10008.5.1.4.1.1.2.1")
    ds.SharedFunctionalGroupsSequence = Sequence(
        [functional_group(PixelValueTransformationSequence=rescale_item(2, -100))]
    )
    windows = [(0.0, 100.0), (250.5, 40.25)]
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [functional_group(FrameVOILUTSequence=window_item(c, w)) for c, w in windows]
    )
    for number, (c, w) in enumerate(windows, start=1):
        got = render_frame(ds, frame=number, bits=bits)
        assert got.tolist() == expected_linear(frame, c, w, bits, slope=2, intercept=-100)
    assert render_frame(ds, frame=1).tolist() != render_frame(ds, frame=2).tolist()


def test_enhanced_multiframe_per_frame_rescale_overrides_shared() -> None:
    frame = ramp(0, 63)
    ds = make_ds(np.stack([frame, frame]), sop_class="1.2.840.10008.5.1.4.1.1.2.1")
    ds.SharedFunctionalGroupsSequence = Sequence(
        [
            functional_group(
                PixelValueTransformationSequence=rescale_item(1, 0),
                FrameVOILUTSequence=window_item(32, 64),
            )
        ]
    )
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [Dataset(), functional_group(PixelValueTransformationSequence=rescale_item(1, 20))]
    )
    assert render_frame(ds, frame=1).tolist() == expected_linear(frame, 32, 64, 8)
    assert render_frame(ds, frame=2).tolist() == expected_linear(frame, 32, 64, 8, intercept=20)


@pytest.mark.parametrize("bits", BITS)
def test_enhanced_multiframe_voi_lut_in_the_shared_group(bits: int) -> None:
    """A VOI LUT only in the Frame VOI LUT macro (DCMTK 3.6.7 does not find it): applied by
    `auto` to every frame, its 12-bit entries scaled to the export depth as floor(v·2^b/2^12)."""
    frame = ramp(0, 15, columns=4)
    ds = make_ds(np.stack([frame, frame]), sop_class="1.2.840.10008.5.1.4.1.1.4.1")
    table = np.array([0, 4095, 100, 3000] * 4, dtype="<u2")
    lut_group = Dataset()
    lut_group.VOILUTSequence = Sequence([lut_item([16, 0, 12], table.tobytes())])
    ds.SharedFunctionalGroupsSequence = Sequence([functional_group(FrameVOILUTSequence=lut_group)])
    expected = (table.astype(np.int64)[frame] << bits) >> 12
    for number in (1, 2):
        assert render_frame(ds, frame=number, bits=bits).tolist() == expected.tolist()


# --- parse_window and parse_frames ----------------------------------------------------------


def test_parse_window_keywords() -> None:
    assert parse_window("auto").kind == "auto"
    assert parse_window(" AUTO ").kind == "auto"
    assert parse_window("minmax").kind == "minmax"
    spec = parse_window("file")
    assert (spec.kind, spec.index) == ("file", 1)
    spec = parse_window("file:2")
    assert (spec.kind, spec.index) == ("file", 2)
    assert parse_window("File:12").index == 12


@pytest.mark.parametrize(
    ("text", "center", "width"),
    [("40,400", 40, 400), ("-600,1500", -600, 1500), ("40.5, 0.5", 40.5, 0.5), ("0,1", 0, 1)],
)
def test_parse_window_explicit(text: str, center: float, width: float) -> None:
    spec = parse_window(text)
    assert isinstance(spec, WindowSpec)
    assert (spec.kind, spec.center, spec.width) == ("explicit", center, width)


@pytest.mark.parametrize("name", sorted(CT_PRESETS))
def test_parse_window_presets(name: str) -> None:
    spec = parse_window(name)
    assert (spec.kind, (spec.center, spec.width)) == ("explicit", CT_PRESETS[name])
    assert parse_window(name.upper()) == spec


def test_preset_values() -> None:
    assert CT_PRESETS["brain"] == (40, 80)
    assert CT_PRESETS["lung"] == (-600, 1500)
    assert CT_PRESETS["bone"] == (400, 1800)
    assert CT_PRESETS["abdomen"] == (40, 400)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "foo",
        "40",
        "40,",
        ",400",
        "40,0",
        "40,-1",
        "40,400,1",
        "nan,400",
        "40,inf",
        "file:0",
        "file:-1",
        "file:x",
        "file:",
        "file2",
        "brain2",
    ],
)
def test_parse_window_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        parse_window(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", FrameSelection("all")),
        ("first", FrameSelection("first")),
        ("middle", FrameSelection("middle")),
        (" Middle ", FrameSelection("middle")),
        ("3", FrameSelection("list", (3,))),
        ("2-5", FrameSelection("range", (2, 5))),
        ("4-4", FrameSelection("range", (4, 4))),
        ("1,3,7", FrameSelection("list", (1, 3, 7))),
    ],
)
def test_parse_frames(text: str, expected: FrameSelection) -> None:
    assert parse_frames(text) == expected


@pytest.mark.parametrize(
    ("text", "n", "numbers"),
    [
        ("all", 4, [1, 2, 3, 4]),
        ("first", 4, [1]),
        ("middle", 4, [2]),
        ("middle", 5, [3]),
        ("middle", 1, [1]),
        ("2-5", 4, [2, 3, 4]),
        ("1,3,7", 5, [1, 3]),
    ],
)
def test_frame_numbers(text: str, n: int, numbers: list[int]) -> None:
    assert parse_frames(text).frame_numbers(n) == numbers


@pytest.mark.parametrize(
    "text", ["", "0", "-1", "5-3", "0-2", "1-", "x", "1.5", "1,,2", "1,0", "1-2-3", "a-b"]
)
def test_parse_frames_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        parse_frames(text)


def test_frame_selection_beyond_file_raises() -> None:
    with pytest.raises(UsageError):
        parse_frames("7").frame_numbers(3)


@pytest.mark.parametrize(
    "attributes",
    [
        {"RescaleIntercept": -1024},  # slope missing
        {"RescaleSlope": 2},  # intercept missing
        {"RescaleSlope": 0, "RescaleIntercept": -1024},  # zero slope
    ],
    ids=["no-slope", "no-intercept", "zero-slope"],
)
def test_incomplete_rescale_is_ignored(attributes: dict) -> None:
    """Rescale Slope and Intercept are Type 1C together: half a pair is not applied (DCMTK)."""
    stored = np.array([[0, 100, 200]])
    ds = make_ds(stored, **attributes)
    assert render_frame(ds, window="100,101").tolist() == expected_linear(stored, 100, 101, 8)


def test_xa_ignores_rescale_like_dcmtk() -> None:
    """PS3.3 XA/XRF images have no Modality LUT: DCMTK ignores one, and so do we."""
    stored = np.array([[0, 100, 200]])
    ds = make_ds(
        stored, sop_class="1.2.840.10008.5.1.4.1.1.12.1", RescaleSlope=2, RescaleIntercept=5
    )
    assert render_frame(ds, window="100,101").tolist() == expected_linear(stored, 100, 101, 8)


@pytest.mark.parametrize("subsampled", [False, True])
def test_ybr_to_rgb_in_row_bands_is_the_same_and_bounded(monkeypatch, subsampled: bool) -> None:
    """Fuzz class: a YBR frame with a lying Columns (240 x 65535) took 1.2 GB converting in
    float64 at once; it now converts in bands of rows, with the same (DCMTK-exact) result."""
    import tracemalloc

    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (600, 500, 3), dtype=np.uint8)
    whole = px.convert_ybr_to_rgb(small, 8, subsampled=subsampled)
    monkeypatch.setattr(px, "_YBR_CHUNK_PIXELS", 1 << 12)
    assert np.array_equal(px.convert_ybr_to_rgb(small, 8, subsampled=subsampled), whole)
    monkeypatch.undo()
    large = rng.integers(0, 256, (3000, 2000, 3), dtype=np.uint8)  # 6 Mpx, 18 MB
    tracemalloc.start()
    try:
        px.convert_ybr_to_rgb(large, 8, subsampled=subsampled)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, peak  # was ~80 bytes a pixel (~480 MB)


def test_lut_data_that_is_not_numbers_is_a_malformed_lut() -> None:
    """Fuzz class: LUT Data whose VR was mutated to a text VR reached `int()` and came out
    as "unexpected ValueError" with the data's bytes in the reason."""
    item = Dataset()
    item.LUTDescriptor = [2, 0, 12]
    item.add_new(0x00283006, "LO", ["&", "'"])
    with pytest.raises(PixelDataError, match="LUT Data is not 16-bit numbers"):
        read_lut(item, Dataset(), signed_input=False)
