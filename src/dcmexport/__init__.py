"""dcmexport: DICOM images to PNG/JPEG/TIFF stills with correct windowing, plus a manifest.

The public API is imported lazily (PEP 562): `import dcmexport` stays cheap, so the command
line and worker processes start fast, and pydicom is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS = {
    "render_frame": "dcmexport.render.frame",
    "convert": "dcmexport.engine.batch",
    "convert_one": "dcmexport.engine.work",
    "Summary": "dcmexport.engine.batch",
    "FileResult": "dcmexport.engine.work",
    "ConvertOptions": "dcmexport.options",
    "StillFormat": "dcmexport.options",
    "write_samples": "dcmexport.sample",
    "build_index": "dcmexport.index",
    "index_rows": "dcmexport.index",
    "IndexSummary": "dcmexport.index",
    "DcmExportError": "dcmexport.errors",
    "NotDicomError": "dcmexport.errors",
    "NoPixelDataError": "dcmexport.errors",
    "PixelDataError": "dcmexport.errors",
    "UnsupportedTransferSyntaxError": "dcmexport.errors",
    "UsageError": "dcmexport.errors",
    "WindowError": "dcmexport.errors",
}

__all__ = [
    "ConvertOptions",
    "DcmExportError",
    "FileResult",
    "IndexSummary",
    "NoPixelDataError",
    "NotDicomError",
    "PixelDataError",
    "StillFormat",
    "Summary",
    "UnsupportedTransferSyntaxError",
    "UsageError",
    "WindowError",
    "__version__",
    "build_index",
    "convert",
    "convert_one",
    "index_rows",
    "render_frame",
    "write_samples",
]

if TYPE_CHECKING:
    from .engine.batch import Summary, convert
    from .engine.work import FileResult, convert_one
    from .errors import (
        DcmExportError,
        NoPixelDataError,
        NotDicomError,
        PixelDataError,
        UnsupportedTransferSyntaxError,
        UsageError,
        WindowError,
    )
    from .index import IndexSummary, build_index, index_rows
    from .options import ConvertOptions, StillFormat
    from .render.frame import render_frame
    from .sample import write_samples


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dcmexport' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
