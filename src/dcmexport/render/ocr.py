"""Offline OCR for burned-in text (``--burned-in mask``): RapidOCR with ONNX Runtime.

The ``rapidocr`` wheel (3.x) carries its detection, direction and recognition models
(PP-OCRv6 small, ~32 MB), so nothing is downloaded at run time; ``onnxruntime`` runs them on
the CPU. Both come with ``pip install "dcmexport[ocr]"``. Detection alone decides what is
masked; recognised strings only count what is left after masking and are never logged.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

import numpy as np

from ..errors import UsageError
from .burned_in import Box

log = logging.getLogger(__name__)

#: how to get the OCR engine
OCR_EXTRA = 'pip install "dcmexport[ocr]"'

#: Detection works on a copy whose longer side is at most this many pixels: 640×480
#: ultrasound is read as is; a 3000-pixel radiograph is shrunk ~3× (its text stays legible).
DETECTION_SIDE = 960

#: a recognised line counts as text left over when the recogniser is at least this sure
TEXT_SCORE = 0.5


def available() -> bool:
    """True if the OCR engine (``rapidocr`` and ``onnxruntime``) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("rapidocr", "onnxruntime"))


def require() -> None:
    """A usage error naming the extra when the OCR engine is missing (exit 2 from the CLI)."""
    if not available():
        raise UsageError(f"--burned-in mask needs the OCR engine: {OCR_EXTRA}")


@functools.cache
def _engine() -> Any:
    """One RapidOCR engine per process (loading the models takes ~1 s); quiet, one thread
    (the batch runs one worker per core), detection on a copy no larger than
    `DETECTION_SIDE`."""
    require()
    from rapidocr import RapidOCR

    return RapidOCR(
        params={
            "Global.log_level": "critical",  # it would log recognised text at info
            "Global.max_side_len": DETECTION_SIDE,
            "Det.limit_type": "max",
            "Det.limit_side_len": DETECTION_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def _box(quad: np.ndarray, shape: tuple[int, ...]) -> Box:
    """The axis-aligned box around one of RapidOCR's quadrilaterals, clipped to the image."""
    height, width = shape[:2]
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    return (max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height))


def _quads(points: Any) -> np.ndarray:
    if points is None:
        return np.zeros((0, 4, 2))
    return np.asarray(points, dtype=np.float64).reshape(-1, 4, 2)


def detect_text(image: np.ndarray) -> list[Box]:
    """Where text is in an 8-bit RGB image (detection only: every text region, whatever it
    says)."""
    result = _engine()(_contiguous(image), use_det=True, use_cls=False, use_rec=False)
    boxes = [_box(quad, image.shape) for quad in _quads(getattr(result, "boxes", None))]
    return [box for box in boxes if box[2] > box[0] and box[3] > box[1]]


def read_text(image: np.ndarray) -> list[tuple[Box, str]]:
    """The text lines found and read in an 8-bit RGB image, each with its box; only lines the
    recogniser is sure of (`TEXT_SCORE`). For counting what is left: never log the strings."""
    result = _engine()(_contiguous(image), use_det=True, use_cls=False, use_rec=True)
    texts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    quads = _quads(getattr(result, "boxes", None))
    return [
        (_box(quad, image.shape), text)
        for quad, text, score in zip(quads, texts, scores, strict=False)
        if text.strip() and float(score) >= TEXT_SCORE
    ]


def _contiguous(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image, dtype=np.uint8)
