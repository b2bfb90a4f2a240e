"""De-identified DICOM copies (`dcmexport anonymize`): one PS3.10 file per input.

Any DICOM object is copied, image or not (SR, RT plan, waveform): the engine has already
de-identified the dataset before this exporter sees it, so all it does is encode it once,
straight into the store's atomic temporary file, under the base the engine claimed (a name
made of the new UIDs).
"""

from __future__ import annotations

from typing import ClassVar

from ..manifest import Kind, ManifestRow
from ..options import ConvertOptions, Product
from ..store import Store
from .base import DicomObject, Level, Target

#: the extension of a DICOM copy (PS3.10 file)
DICOM_EXTENSION = ".dcm"


class DicomCopyExporter:
    """``OUT/<base>.dcm``: the (already de-identified) dataset as a PS3.10 file."""

    level: ClassVar[Level] = Level.OBJECT

    def wanted(self, options: ConvertOptions) -> bool:
        return options.product is Product.DICOM

    def targets(self, obj: DicomObject, options: ConvertOptions) -> list[Target]:
        return [Target(f"{obj.base}{DICOM_EXTENSION}")]

    def write(self, obj: DicomObject, options: ConvertOptions, store: Store) -> list[ManifestRow]:
        (target,) = self.targets(obj, options)
        with store.open_atomic(target.rel) as tmp:  # encoded once, straight into the file
            from ..dicom.deid import save_deidentified

            save_deidentified(obj.ds, tmp)
        output = store.output_name(target.rel)
        return [ManifestRow(source=obj.source, output=output, kind=Kind.DICOM, note=obj.note)]
