"""`--contact-sheet`: one PNG per series tiling its stills, each labelled with its instance
number, for people who want one picture to send. Names carry modality, series number and a
hash, never patient data."""

from __future__ import annotations

import hashlib
import io
import math
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..naming import CONTACT_SHEETS_DIR
from ..store import write_atomic
from .assets import display_image
from .model import Series

SHEETS_DIR = CONTACT_SHEETS_DIR
CELL = 128  # px per tile (the image is fitted inside, centred)
LABEL = 14  # px band under each tile for the instance number
MAX_TILES = 256  # a longer series is sampled evenly, so the sheet stays sendable
_SAFE = re.compile(r"[^A-Za-z0-9-]+")


def sheet_name(series: Series) -> str:
    """A PHI-free name that changes when the series' stills change."""
    digest = hashlib.sha256(series.key.encode("utf-8", "surrogateescape"))
    for still in series.stills:
        digest.update(f"\0{still.thumb}".encode("utf-8", "surrogateescape"))
    modality = _SAFE.sub("", series.modality)[:8] or "series"
    number = _SAFE.sub("", series.number)[:12] or "x"
    return f"{SHEETS_DIR}/{modality}_series-{number}_{digest.hexdigest()[:10]}.png"


def _sampled(n: int) -> list[int]:
    if n <= MAX_TILES:
        return list(range(n))
    return sorted({round(i * (n - 1) / (MAX_TILES - 1)) for i in range(MAX_TILES)})


def _label(series: Series, index: int) -> str:
    still = series.stills[index]
    if still.frame is not None:
        return f"frame {still.frame}"
    return f"#{still.instance_number}" if still.instance_number else f"{index + 1}"


def render_sheet(out: Path, series: Series) -> bytes:
    """The contact sheet PNG of a series whose stills have pictures."""
    picks = [i for i in _sampled(len(series.stills)) if not series.stills[i].missing]
    cols = max(1, math.ceil(math.sqrt(len(picks))))
    rows = max(1, math.ceil(len(picks) / cols))
    sheet = Image.new("RGB", (cols * CELL, rows * (CELL + LABEL)), "black")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for slot, index in enumerate(picks):
        x, y = (slot % cols) * CELL, (slot // cols) * (CELL + LABEL)
        tile = display_image(out, series.stills[index].thumb).convert("RGB")
        tile.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
        sheet.paste(tile, (x + (CELL - tile.width) // 2, y + (CELL - tile.height) // 2))
        draw.text((x + 3, y + CELL + 1), _label(series, index), fill="white", font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_sheet(out: Path, series: Series) -> tuple[str, int]:
    """Write (once) the series' contact sheet; its path relative to OUT and files written."""
    name = sheet_name(series)
    if (out / name).is_file():
        return name, 0
    write_atomic(out / name, render_sheet(out, series))
    return name, 1
