"""dcmexport: DICOM images to PNG/JPEG/TIFF stills with correct windowing, plus a manifest."""

from __future__ import annotations

__version__ = "0.1.0"
