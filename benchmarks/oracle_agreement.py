"""How often our rendering agrees with DCMTK, frame by frame, on any folder of DICOM files.

For every image in the given files and folders, render frames with `dcmexport.render.frame` and with
DCMTK (`dcm2pnm`, `dcmj2pnm`, `dcml2pnm`, the first one that reads the file) in three modes:
the default window (``auto``) at 8 and 16 bits and ``40,400`` at 8 bits (grey images only).
Our mode becomes DCMTK options as in tests/test_oracle_dcmtk.py (RENDERING.md's oracle table):
file window N → ``+Wi N``, VOI LUT → ``+Wl 1``, explicit → ``+Ww C W +Wfl``, min-max → the
window we computed, ``+Ww c w +Wfl`` (``+Wfs`` for a SIGMOID window from the functional
groups). JPEG 2000/HTJ2K files, which DCMTK cannot decode, are given to it as a copy
decompressed by pydicom; headers DCMTK cannot parse, as pydicom's re-encoding.

Multi-frame files with more than 3 frames are compared on their first, middle and last frame
(``--all-frames``: every frame). A frame agrees when no pixel differs by more than ±1 level
(±3 for lossy codecs; at 16 bits ×257 for colour, lossy or ≤ 8-bit sources). Prints an
agreement table per mode, then every disagreeing frame (max difference, share of pixels off,
DCMTK arguments, and a hint where DCMTK 3.6.7 is known to be no valid oracle: RENDERING.md,
tests/test_oracle_dcmtk.py, or measured), then the files we failed on, with whether DCMTK
renders them and whether ``pydicom.dcmread(path).pixel_array`` works with any plugin.

Where DCMTK is no valid oracle (fractional rescale, per-frame windows of enhanced
multi-frame, LINEAR_EXACT, 32-bit big-endian pixels), each frame is compared with the
formulas instead: a small NumPy implementation here, independent of dcmexport's render code,
of PS3.4 N.2 (stored value → Modality LUT → VOI → polarity) and PS3.3 C.11.2 (LINEAR,
LINEAR_EXACT, SIGMOID; min–max as RENDERING.md defines it), on pydicom's ``pixel_array``.
Those frames are counted on their own line; the formulas are checked against DCMTK on every
frame where DCMTK is valid (the "formulas vs DCMTK" line), so the reference is itself tested.
Needs DCMTK on PATH and imagecodecs (a dev dependency).

    python benchmarks/oracle_agreement.py /path/to/dicoms [more paths] [--all-frames]
        [--jobs 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom

from dcmexport.dicom import decoding
from dcmexport.render.frame import render_dataset_frame
from dcmexport.render.pipeline import _functional_group

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `tests` is a package of the repository, not installed
    sys.path.insert(0, str(REPO))

# one mapping from our modes to DCMTK's options, shared with the differential tests (whose
# import reads pydicom's files to list its cases: quietly)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tests.test_oracle_dcmtk import _dcmtk_args, _is_colour, _tolerance, voi_function

MODES: tuple[tuple[str, int], ...] = (("auto", 8), ("auto", 16), ("40,400", 8))
DCMTK_TOOLS = ("dcm2pnm", "dcmj2pnm", "dcml2pnm")
#: multi-frame files with more frames than this get first, middle and last (unless --all-frames)
FEW_FRAMES = 3
DCMTK_TIMEOUT = 300


@dataclasses.dataclass
class Comparison:
    """One frame in one mode: ours against DCMTK."""

    mode: str
    frame: int
    agrees: bool | None  # None: not compared (we or DCMTK failed)
    max_diff: int = 0
    share_off: float = 0.0
    tolerance: int = 0
    args: str = ""
    known_limit: str = ""  # why RENDERING.md says DCMTK is no valid oracle here, if it does
    error: str = ""
    # ours against the formulas (None: the formulas do not cover this frame, e.g. a LUT)
    formula_agrees: bool | None = None
    formula_max_diff: int = 0
    formula_vs_dcmtk: bool | None = None  # the formulas against DCMTK (checks the reference)


@dataclasses.dataclass
class FileResult:
    path: str
    kind: str  # image, not-dicom, no-image
    reason: str = ""
    ours_error: str = ""
    pydicom_decodes: bool | None = None
    pydicom_error: str = ""
    dcmtk_source: str = ""  # how DCMTK was given the file, when not as it is
    dcmtk_error: str = ""
    dcmtk_renders: bool | None = None  # for files we fail on: does DCMTK render frame 1?
    comparisons: list[Comparison] = dataclasses.field(default_factory=list)


def _known_limit(ds: pydicom.Dataset, mode: str, frame: int) -> str:
    """Why DCMTK 3.6.7 is no valid oracle for this frame (RENDERING.md, or measured); else ''."""
    reasons = []
    big_endian = decoding.transfer_syntax(ds) == pydicom.uid.ExplicitVRBigEndian
    if big_endian and int(ds.get("BitsAllocated") or 0) == 32:
        reasons.append("DCMTK misreads 32-bit big-endian pixels (test_oracle_dcmtk.py)")
    if _is_colour(ds):
        return "; ".join(reasons)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if frame <= len(per_frame) and per_frame[frame - 1].get("PixelValueTransformationSequence"):
        reasons.append("per-frame Pixel Value Transformation (DCMTK ignores it)")
    rescale = _functional_group(ds, frame - 1, "PixelValueTransformationSequence") or ds
    try:
        slope = float(rescale.get("RescaleSlope", 1) or 1)
        intercept = float(rescale.get("RescaleIntercept", 0) or 0)
        if not (slope.is_integer() and intercept.is_integer()):
            reasons.append("fractional rescale (DCMTK keeps integer modality values)")
    except (TypeError, ValueError):
        pass
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "MONOCHROME1" and str(ds.get("PresentationLUTShape", "")) == "IDENTITY":
        reasons.append("MONOCHROME1 with IDENTITY: DCMTK does not invert")
    if mode == "auto" and voi_function(ds, frame) == "LINEAR_EXACT":
        reasons.append("VOI LUT Function LINEAR_EXACT (DCMTK uses LINEAR)")
    return "; ".join(reasons)


# --- the formulas: PS3.4 N.2 and PS3.3 C.11.2, written here without dcmexport's code ------------


def _group_item(ds: pydicom.Dataset, frame: int, keyword: str) -> pydicom.Dataset | None:
    """The item of functional group `keyword` for 1-based `frame`: per-frame, else shared."""
    for groups, index in (
        ("PerFrameFunctionalGroupsSequence", frame - 1),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        sequence = ds.get(groups) or []
        if index < len(sequence) and sequence[index].get(keyword):
            return sequence[index].get(keyword)[0]
    return None


def _first(value: object) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = next(iter(value))  # type: ignore[call-overload]
    return float(value)  # type: ignore[arg-type]


def formula_render(
    path: Path, ds: pydicom.Dataset, frame: int, mode: str, bits: int
) -> np.ndarray | None:
    """Frame `frame` (1-based) of a grey image as the standard says, or None when the
    formulas here do not cover it (colour, a Modality or VOI LUT Sequence, an unknown
    function, overlay planes, a stored value pydicom cannot decode)."""
    from pydicom.pixels import pixel_array

    if _is_colour(ds) or "ModalityLUTSequence" in ds:
        return None
    if any(0x6000 <= tag.group <= 0x601E and tag.element == 0x0010 for tag in ds.keys()):  # noqa: SIM118
        return None  # overlay planes: both sides draw them, the formulas here do not
    try:
        stored = np.asarray(pixel_array(str(path), index=frame - 1), dtype=np.float64)
    except Exception:
        try:
            stored = np.asarray(pydicom.dcmread(path, force=True).pixel_array, dtype=np.float64)
            stored = stored[frame - 1] if decoding.number_of_frames(ds) > 1 else stored
        except Exception:
            return None
    rescale = _group_item(ds, frame, "PixelValueTransformationSequence") or ds
    slope = float(rescale.get("RescaleSlope", 1) or 1)
    intercept = float(rescale.get("RescaleIntercept", 0) or 0)
    x = stored * slope + intercept  # PS3.3 C.11.1: the modality values
    ymax = float(2**bits - 1)
    function = "LINEAR"
    if mode == "auto":
        voi = _group_item(ds, frame, "FrameVOILUTSequence") or ds
        if "VOILUTSequence" in voi:
            return None
        function = str(voi.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        if voi.get("WindowCenter") not in (None, "") and voi.get("WindowWidth") not in (None, ""):
            c, w = _first(voi.WindowCenter), _first(voi.WindowWidth)
        else:  # min-max over the modality values, padding excluded (RENDERING.md)
            keep = np.ones(stored.shape, bool)
            padding = ds.get("PixelPaddingValue")
            if padding is not None:
                limit = ds.get("PixelPaddingRangeLimit", padding)
                low, high = sorted((float(padding), float(limit)))
                keep = (stored < low) | (stored > high)
            values = x[keep] if keep.any() else x
            low, high = float(values.min()), float(values.max())
            c, w, function = (low + high + 1) / 2, high - low + 1, "LINEAR"
    else:
        c, w = (float(v) for v in mode.split(","))
    if function == "LINEAR" and w >= 1:  # PS3.3 C.11.2.1.2.1
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax if w > 1 else np.where(x > c - 0.5, ymax, 0)
        y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
        y = np.where(x > c - 0.5 + (w - 1) / 2, ymax, y)
    elif function == "LINEAR_EXACT" and w > 0:  # C.11.2.1.3.2
        y = ((x - c) / w + 0.5) * ymax
        y = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, ymax, y))
    elif function == "SIGMOID" and w > 0:  # C.11.2.1.3.1
        y = ymax / (1 + np.exp(-4 * (x - c) / w))
    else:
        return None
    out = np.floor(np.clip(y, 0, ymax))  # DCMTK truncates (RENDERING.md)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "MONOCHROME1":  # one inversion, after the VOI
        out = ymax - out
    return out.astype(np.uint16 if bits == 16 else np.uint8)


def _frames(n: int, all_frames: bool) -> list[int]:
    if all_frames or n <= FEW_FRAMES:
        return list(range(1, n + 1))
    return sorted({1, (n + 1) // 2, n})


def _pydicom_decodes(path: Path) -> tuple[bool, str]:
    """Whether `pydicom.dcmread(path).pixel_array` works with any installed plugin."""
    from pydicom.pixels import get_decoder

    errors = []
    try:
        ds = pydicom.dcmread(path, force=True)
        ts = decoding.transfer_syntax(ds)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            ds.file_meta.TransferSyntaxUID = ts
        try:
            plugins = ["", *get_decoder(ts).available_plugins]
        except NotImplementedError:
            plugins = [""]
    except Exception as exc:
        return False, f"dcmread: {_one_line(exc)}"
    for plugin in plugins:
        try:
            if plugin:
                ds.pixel_array_options(decoding_plugin=plugin)
            ds.pixel_array  # noqa: B018
            return True, ""
        except Exception as exc:
            errors.append(f"{plugin or 'default'}: {_one_line(exc)}")
    return False, "; ".join(errors)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _dcmtk_source(path: Path, ds: pydicom.Dataset, work: Path) -> tuple[Path, str]:
    """The file to give DCMTK and a note when it is not `path` itself.

    JPEG 2000/HTJ2K: a copy decompressed by pydicom. A header DCMTK cannot parse (`dcmdump`
    fails, e.g. implicit VR in an explicit VR file): pydicom's re-encoding.
    """
    ts = decoding.transfer_syntax(ds)
    if "2000" in ts.name:
        full = pydicom.dcmread(path, force=True)
        full.decompress(decoding_plugin="pylibjpeg")
        copy = work / "decompressed.dcm"
        full.save_as(copy, enforce_file_format=True)
        return copy, "JPEG 2000 decompressed by pydicom"
    probe = subprocess.run(["dcmdump", "-q", str(path)], capture_output=True)
    if probe.returncode == 0:
        return path, ""
    return _resaved(path, work)


#: what DCMTK needs to render a frame as we do: Image Pixel, Modality LUT, VOI LUT, Presentation
RENDERING_KEYWORDS = (
    "SOPClassUID",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)


def _resaved(path: Path, work: Path) -> tuple[Path, str]:
    """pydicom's conformant re-encoding of `path`, for headers DCMTK cannot parse.

    The whole dataset if pydicom can write it, else only the elements rendering depends on
    (a malformed header element, such as implicit VR in an explicit VR file, can stop both).
    """
    full = pydicom.dcmread(path, force=True)
    copy = work / "resaved.dcm"
    try:
        full.save_as(copy, enforce_file_format=True)
        return copy, "re-saved by pydicom (DCMTK failed on the original)"
    except Exception:
        pass
    ts = decoding.transfer_syntax(full)
    fresh = pydicom.Dataset()
    fresh.file_meta = pydicom.dataset.FileMetaDataset()
    fresh.file_meta.TransferSyntaxUID = ts
    fresh.file_meta.MediaStorageSOPClassUID = full.get(
        "SOPClassUID", pydicom.uid.SecondaryCaptureImageStorage
    )
    fresh.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    fresh.SOPInstanceUID = fresh.file_meta.MediaStorageSOPInstanceUID
    for keyword in RENDERING_KEYWORDS:
        if keyword in full:
            fresh[keyword] = full[keyword]
    for element in full:
        if element.tag.group in range(0x6000, 0x6020, 2):  # overlays: both draw them
            fresh.add(element)
    fresh.PixelData = full.PixelData
    fresh["PixelData"].VR = "OB" if ts.is_encapsulated else full["PixelData"].VR
    fresh.save_as(copy, enforce_file_format=True)
    return copy, "rendering attributes re-saved by pydicom (DCMTK failed on the original)"


def _dcmtk_render(
    source: Path, args: list[str], bits: int, frame: int, out: Path, tools: list[str]
) -> tuple[np.ndarray | None, str]:
    """DCMTK's rendering of one frame, trying `tools` in order (the one that worked first)."""
    errors = []
    for tool in list(tools):
        out.unlink(missing_ok=True)
        cmd = [tool, "-il", *args, "+F", str(frame), "+on" if bits == 8 else "+on2"]
        try:
            result = subprocess.run(
                [*cmd, str(source), str(out)],
                capture_output=True,
                text=True,
                timeout=DCMTK_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            errors.append(f"{tool}: timed out")
            continue
        if result.returncode == 0 and out.exists():
            tools.remove(tool)
            tools.insert(0, tool)
            return imagecodecs.png_decode(out.read_bytes()), ""
        errors.append(f"{tool}: {' '.join(result.stderr.split())[-200:]}")
    return None, "; ".join(errors)


def check_file(path: str, all_frames: bool = False) -> FileResult:
    """Compare every selected frame of one file in every mode (runs in a worker process)."""
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    result = FileResult(path, "image")
    p = Path(path)
    try:
        ds = decoding.read_dataset(p)
    except Exception as exc:
        return FileResult(path, "not-dicom", reason=_one_line(exc))
    if decoding.pixel_keyword(ds) is None or "Rows" not in ds:
        return FileResult(path, "no-image", reason=decoding.describe_missing_pixels(ds))
    result.pydicom_decodes, result.pydicom_error = _pydicom_decodes(p)
    colour = _is_colour(ds)
    with tempfile.TemporaryDirectory(prefix="oracle-") as tmp:
        work = Path(tmp)
        try:
            source, result.dcmtk_source = _dcmtk_source(p, ds, work)
        except Exception as exc:
            source, result.dcmtk_source = p, f"preparing a copy failed: {_one_line(exc)}"
        tools = list(DCMTK_TOOLS)
        for frame in _frames(decoding.number_of_frames(ds), all_frames):
            for mode, bits in MODES:
                if colour and mode != "auto":
                    continue
                label = f"{mode}/{bits}"
                try:
                    rendered = render_dataset_frame(ds, frame, window=mode, bits=bits, source=p)
                except Exception as exc:
                    message = f"{type(exc).__name__}: {_one_line(exc)}"
                    result.ours_error = result.ours_error or message
                    result.comparisons.append(Comparison(label, frame, None, error=message))
                    continue
                window = (rendered.window_center, rendered.window_width)
                args = _dcmtk_args(ds, mode, window, frame)
                out = work / "ref.png"
                ref, error = _dcmtk_render(source, args, bits, frame, out, tools)
                command = " ".join(args) or "(none)"
                if ref is None:
                    result.dcmtk_error = result.dcmtk_error or error
                    result.comparisons.append(
                        Comparison(label, frame, None, args=command, error=f"DCMTK: {error}")
                    )
                    continue
                ours = rendered.image
                tolerance = _tolerance(ds, bits, colour)
                known = _known_limit(ds, mode, frame)
                if ref.shape != ours.shape:
                    result.comparisons.append(
                        Comparison(
                            label,
                            frame,
                            False,
                            max_diff=-1,
                            share_off=1.0,
                            tolerance=tolerance,
                            args=command,
                            known_limit=known,
                            error=f"shape {ours.shape} vs DCMTK {ref.shape}",
                        )
                    )
                    continue
                diff = np.abs(ref.astype(np.int64) - ours.astype(np.int64))
                max_diff = int(diff.max())
                comparison = Comparison(
                    label,
                    frame,
                    max_diff <= tolerance,
                    max_diff=max_diff,
                    share_off=float(np.mean(diff > tolerance)),
                    tolerance=tolerance,
                    args=command,
                    known_limit=known,
                )
                formula = None if colour else formula_render(p, ds, frame, mode, bits)
                if formula is not None and formula.shape == ours.shape:
                    off = np.abs(formula.astype(np.int64) - ours.astype(np.int64))
                    comparison.formula_max_diff = int(off.max())
                    comparison.formula_agrees = comparison.formula_max_diff <= tolerance
                    versus = np.abs(formula.astype(np.int64) - ref.astype(np.int64))
                    comparison.formula_vs_dcmtk = int(versus.max()) <= tolerance
                result.comparisons.append(comparison)
        if result.ours_error:
            args = [] if colour else ["+Wm"]
            ref, _ = _dcmtk_render(source, args, 8, 1, work / "ref.png", tools)
            result.dcmtk_renders = ref is not None
    return result


def discover(paths: list[str]) -> list[str]:
    """Every regular file under the given files and folders, sorted (DICOM or not)."""
    found: set[str] = set()
    for given in paths:
        p = Path(given)
        if p.is_file():
            found.add(str(p))
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(str(Path(root) / f) for f in files if not f.startswith("."))
        else:
            print(f"warning: {given} does not exist", file=sys.stderr)
    return sorted(found)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def report(results: list[FileResult], root: str) -> str:
    """The agreement table, the disagreeing frames and the failures, as text."""

    def name(path: str) -> str:
        return os.path.relpath(path, root) if root else path

    images = [r for r in results if r.kind == "image"]
    lines = [
        f"{len(results)} files: {len(images)} images, "
        f"{sum(r.kind == 'no-image' for r in results)} DICOM without pixels, "
        f"{sum(r.kind == 'not-dicom' for r in results)} not DICOM",
        "",
        f"{'mode':<10} {'frames':>7} {'agree':>7} {'share':>7} {'off':>5} "
        f"{'off, known DCMTK limit':>23} {'share w/o known':>16} {'not compared':>13}",
    ]
    labels = [f"{m}/{b}" for m, b in MODES]
    for label in [*labels, "all"]:
        rows = [c for r in images for c in r.comparisons if label in ("all", c.mode)]
        compared = [c for c in rows if c.agrees is not None]
        agree = sum(bool(c.agrees) for c in compared)
        off = [c for c in compared if not c.agrees]
        known = sum(bool(c.known_limit) for c in off)
        lines.append(
            f"{label:<10} {len(compared):>7} {agree:>7} {_percent(agree, len(compared)):>7} "
            f"{len(off):>5} {known:>23} {_percent(agree, len(compared) - known):>16} "
            f"{len(rows) - len(compared):>13}"
        )
    lines += ["", "Where DCMTK is no valid oracle (RENDERING.md), ours against the formulas:"]
    for label in [*labels, "all"]:
        rows = [c for r in images for c in r.comparisons if label in ("all", c.mode)]
        known_rows = [c for c in rows if c.agrees is not None and c.known_limit]
        judged = [c for c in known_rows if c.formula_agrees is not None]
        agree = sum(bool(c.formula_agrees) for c in judged)
        compared = [c for c in rows if c.agrees is not None]
        valid = [c for c in compared if not c.known_limit]
        overall = sum(bool(c.agrees) for c in valid) + agree
        lines.append(
            f"{label:<10} {len(known_rows):>4} frames, {len(judged):>4} judged by the formulas, "
            f"{agree:>4} agree; overall (DCMTK where valid, else formulas) "
            f"{overall}/{len(compared)} = {_percent(overall, len(compared))}"
        )
    checked = [
        c
        for r in images
        for c in r.comparisons
        if c.agrees is not None and not c.known_limit and c.formula_vs_dcmtk is not None
    ]
    lines.append(
        f"formulas vs DCMTK where DCMTK is valid (the reference checked): "
        f"{sum(bool(c.formula_vs_dcmtk) for c in checked)}/{len(checked)} frames agree"
    )
    formula_off = [
        (r, c)
        for r in images
        for c in r.comparisons
        if c.known_limit and c.agrees is not None and c.formula_agrees is False
    ]
    for r, c in formula_off:
        lines.append(
            f"  ours vs formulas off: {name(r.path)} {c.mode} frame {c.frame}: "
            f"max {c.formula_max_diff} / ±{c.tolerance}"
        )
    lines += ["", "Disagreeing frames (path, mode, frame: max diff / tolerance, pixels off):"]
    off_rows = [(r, c) for r in images for c in r.comparisons if c.agrees is False]
    for r, c in sorted(off_rows, key=lambda rc: (rc[0].path, rc[1].mode, rc[1].frame)):
        extra = f" [{c.error}]" if c.error else ""
        hint = f"  known DCMTK limit: {c.known_limit}" if c.known_limit else ""
        if c.known_limit and c.formula_agrees is not None:
            verdict = "agree" if c.formula_agrees else f"DISAGREE (max {c.formula_max_diff})"
            hint += f"; ours and the formulas {verdict}"
        via = f"  (DCMTK given: {r.dcmtk_source})" if r.dcmtk_source else ""
        lines.append(
            f"  {name(r.path)}  {c.mode} frame {c.frame}: max {c.max_diff} / ±{c.tolerance}, "
            f"{c.share_off:.2%} off; DCMTK {c.args}{extra}{hint}{via}"
        )
    if not off_rows:
        lines.append("  none")
    ours_failed = [r for r in images if r.ours_error]
    lines += [
        "",
        f"Files we failed on: {len(ours_failed)} of {len(images)} images; "
        f"pydicom decodes {sum(bool(r.pydicom_decodes) for r in ours_failed)} of them, "
        f"DCMTK renders {sum(bool(r.dcmtk_renders) for r in ours_failed)} "
        f"(pydicom decodes {sum(bool(r.pydicom_decodes) for r in images)} of all images)",
    ]
    for r in ours_failed:
        status = "pydicom decodes it" if r.pydicom_decodes else f"pydicom fails: {r.pydicom_error}"
        dcmtk = "DCMTK renders it" if r.dcmtk_renders else "DCMTK fails too"
        lines.append(f"  {name(r.path)}: {r.ours_error[:200]}  [{dcmtk}; {status[:160]}]")
    pydicom_only_failed = [r for r in images if not r.pydicom_decodes and not r.ours_error]
    if pydicom_only_failed:
        lines.append("Files pydicom's pixel_array fails on but we render:")
        lines += [f"  {name(r.path)}: {r.pydicom_error[:200]}" for r in pydicom_only_failed]
    dcmtk_failed = [r for r in images if r.dcmtk_error]
    lines.append(f"Files DCMTK could not render (not compared): {len(dcmtk_failed)}")
    lines += [f"  {name(r.path)}: {r.dcmtk_error[:200]}" for r in dcmtk_failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="DICOM files and folders (searched recursively)")
    parser.add_argument("--all-frames", action="store_true", help="every frame of multi-frames")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write every comparison as JSON")
    args = parser.parse_args(argv)
    missing = [t for t in DCMTK_TOOLS if shutil.which(t) is None]
    if missing:
        parser.error(f"DCMTK tools not on PATH: {', '.join(missing)} (apt-get install dcmtk)")
    files = discover(args.paths)
    results: list[FileResult] = []
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = {pool.submit(check_file, f, args.all_frames): f for f in files}
        for done, future in enumerate(as_completed(futures), 1):
            try:
                results.append(future.result())
            except Exception as exc:  # a worker crash is a finding, not the end of the run
                path = futures[future]
                results.append(FileResult(path, "image", ours_error=f"worker crashed: {exc}"))
            if sys.stderr.isatty():
                print(f"\r{done}/{len(files)} files", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    results.sort(key=lambda r: r.path)
    root = args.paths[0] if len(args.paths) == 1 and Path(args.paths[0]).is_dir() else ""
    print(report(results, root))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
