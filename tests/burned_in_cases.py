"""Synthetic ultrasound and secondary-capture images with identifying text burned in, drawn
with Pillow's default font at several sizes and contrasts (white on black, grey on speckle,
yellow on grey), in the corners and over the image; and the independent OCR that reads the
outputs (RapidOCR with its own default settings, not the ones dcmexport uses)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom.uid
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset

#: what is burned in: a name, an ID, a birth date and an institution
NAME, PATIENT_ID, BIRTH_DATE, INSTITUTION = "DOE^JANE", "PID 4471", "1962-03-14", "MUNGO HOSPITAL"
PLANTED = (NAME, PATIENT_ID, BIRTH_DATE, INSTITUTION)
#: what the OCR of an output must not contain (upper case, spaces removed)
TOKENS = ("DOE", "JANE", "4471", "1962", "MUNGO", "HOSPITAL")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Text:
    text: str
    xy: tuple[int, int]
    size: int
    fill: tuple[int, int, int]
    backing: tuple[int, int, int] | None = None  # a plate behind the text (white on black)


def us_texts(width: int = 640, height: int = 480) -> list[Text]:
    """The four identifiers: corners (white on black, yellow on grey) and over the image
    (grey on speckle), 13 to 22 px."""
    return [
        Text(NAME, (6, 4), 16, (255, 255, 255), backing=(0, 0, 0)),
        Text(PATIENT_ID, (width - 120, 6), 14, (255, 255, 0), backing=(90, 90, 90)),
        Text(BIRTH_DATE, (8, height - 24), 13, (255, 255, 255), backing=(0, 0, 0)),
        Text(INSTITUTION, (width // 2 - 90, height // 2 - 10), 22, (215, 215, 215)),
    ]


def speckle(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A dark ultrasound-like sector of grey speckle on black (uint8, rows × columns)."""
    yy, xx = np.mgrid[0:height, 0:width]
    r = np.hypot(xx - width / 2, yy + 40)
    angle = np.degrees(np.arctan2(xx - width / 2, yy + 40))
    sector = (np.abs(angle) < 38) & (r > 80) & (r < height + 10)
    noise = rng.gamma(2.0, 18.0, size=(height, width))
    img = np.where(sector, np.clip(noise, 0, 140), 0)
    return img.astype(np.uint8)


def draw(base: np.ndarray, texts: list[Text]) -> tuple[np.ndarray, list[Box]]:
    """RGB `base` with `texts` drawn on it, and the boxes the text covers."""
    img = Image.fromarray(base if base.ndim == 3 else np.stack([base] * 3, axis=-1))
    pen = ImageDraw.Draw(img)
    boxes = []
    for t in texts:
        font = ImageFont.load_default(size=t.size)
        box = pen.textbbox(t.xy, t.text, font=font)
        if t.backing is not None:
            pen.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=t.backing)
        pen.text(t.xy, t.text, fill=t.fill, font=font)
        boxes.append((int(box[0]), int(box[1]), int(box[2]), int(box[3])))
    return np.asarray(img), boxes


def us_dataset(frames: np.ndarray, modality: str = "US") -> Dataset:
    """An RGB ultrasound (or secondary capture) image, one or more frames, native, with the
    planted identifiers in the header too and no Burned In Annotation."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    multi = frames.ndim == 4
    sop = "1.2.840.10008.5.1.4.1.1.3.1" if multi else "1.2.840.10008.5.1.4.1.1.6.1"
    if modality == "OT":
        sop = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(sop)
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, "PID4471", "19620314"
    ds.InstitutionName = INSTITUTION
    ds.Modality = modality
    ds.StudyDate = "20240102"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = frames.shape[-3], frames.shape[-2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if multi:
        ds.NumberOfFrames = frames.shape[0]
        ds.FrameTime = 50
        ds.CineRate = 20
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()
    return ds


def us_still(seed: int = 1, with_text: bool = True) -> tuple[Dataset, list[Box]]:
    rng = np.random.default_rng(seed)
    base = speckle(rng, 640, 480)
    if not with_text:
        return us_dataset(np.stack([base] * 3, axis=-1)), []
    pixels, boxes = draw(base, us_texts())
    return us_dataset(pixels), boxes


def us_cine(frames: int = 12, seed: int = 2) -> tuple[Dataset, list[Box]]:
    """A cine: the same speckle with a bright structure drifting 1 px a frame, identifiers
    burned in as a static overlay on every frame."""
    rng = np.random.default_rng(seed)
    base = speckle(rng, 640, 480).astype(np.int16)
    yy, xx = np.mgrid[0:480, 0:640]
    out: list[np.ndarray] = []
    boxes: list[Box] = []
    for k in range(frames):
        blob = np.hypot(xx - 300 - k, yy - 300) < 40
        frame = np.clip(base + 45 * blob, 0, 255).astype(np.uint8)
        pixels, boxes = draw(frame, us_texts())
        out.append(pixels)
    return us_dataset(np.stack(out)), boxes


def write(ds: Dataset, path: Path, syntax: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if syntax is not None:
        ds.compress(syntax, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


@functools.cache
def _oracle() -> Any:
    from rapidocr import RapidOCR

    return RapidOCR(params={"Global.log_level": "critical"})


def read_all(image: np.ndarray) -> str:
    """Everything the independent OCR reads in an RGB or grey image, upper case, no spaces."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    result = _oracle()(np.ascontiguousarray(image[..., :3], dtype=np.uint8))
    return re.sub(r"\s+", "", " ".join(result.txts or ())).upper()


def found_tokens(image: np.ndarray) -> list[str]:
    text = read_all(image)
    return [t for t in TOKENS if t in text]


def grown(boxes: list[Box], margin: int, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask of `boxes` grown by `margin` (the planted text and its surroundings)."""
    mask = np.zeros(shape[:2], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = True
    return mask
