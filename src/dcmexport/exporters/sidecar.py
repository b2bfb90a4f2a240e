"""Per-image metadata sidecars for `convert --metadata txt|json`.

`txt` starts with a short summary a person can read (who, what study, which machine, what the
image is and which window was applied), then the complete header dump; `json` is the header in
the DICOM JSON Model (PS3.18 F.2) plus a `dcmexport` block saying what was written and how.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import ClassVar

from pydicom.dataset import Dataset

from ..dicom import decoding
from ..dicom.values import text_value
from ..manifest import Kind, ManifestRow
from ..options import ConvertOptions, MetadataFormat, MetadataPhi
from ..store import Store
from .base import Instance, Level, Target

#: (line label, ((value label, keyword), ...)) for the human summary, in reading order.
_SUMMARY: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Patient",
        (
            ("", "PatientName"),
            ("ID", "PatientID"),
            ("born", "PatientBirthDate"),
            ("sex", "PatientSex"),
        ),
    ),
    ("Study", (("", "StudyDescription"), ("date", "StudyDate"), ("accession", "AccessionNumber"))),
    (
        "Series",
        (
            ("", "Modality"),
            ("number", "SeriesNumber"),
            ("", "SeriesDescription"),
            ("body part", "BodyPartExamined"),
        ),
    ),
    (
        "Equipment",
        (("", "Manufacturer"), ("", "ManufacturerModelName"), ("station", "StationName")),
    ),
    ("Instance", (("number", "InstanceNumber"), ("UID", "SOPInstanceUID"))),
)


def _image_line(ds: Dataset) -> str:
    size = f"{ds.get('Columns', '?')} × {ds.get('Rows', '?')}"
    bits = f"{ds.get('BitsStored', '?')}/{ds.get('BitsAllocated', '?')} bits"
    signed = "signed" if ds.get("PixelRepresentation") == 1 else "unsigned"
    parts = [size, f"{bits} {signed}", text_value(ds, "PhotometricInterpretation")]
    spacing = text_value(ds, "PixelSpacing")
    if spacing:
        parts.append(f"pixel spacing {spacing} mm")
    parts.append(f"{int(ds.get('NumberOfFrames') or 1)} frame(s)")
    return ", ".join(p for p in parts if p)


def _window_line(rows: Sequence[ManifestRow]) -> str:
    row = rows[0]
    if row.window_center is not None and row.window_width is not None:
        return f"center {row.window_center:g}, width {row.window_width:g} ({row.voi})"
    return row.voi or "none"


def summary_lines(
    ds: Dataset, rows: Sequence[ManifestRow], repairs: Sequence[str] = ()
) -> list[str]:
    """The short human summary at the top of a `txt` sidecar; `repairs` are what reading the
    file had to repair or assume (the manifest's notes), one line each."""
    lines = []
    for label, fields in _SUMMARY:
        values = [f"{name} {text}".strip() for name, k in fields if (text := text_value(ds, k))]
        if values:
            lines.append(f"{label + ':':<11} {', '.join(values)}")
    lines.append(f"{'Image:':<11} {_image_line(ds)}")
    if rows:
        lines.append(f"{'Window:':<11} {_window_line(rows)}")
        if written := [r.output for r in rows if r.output]:
            lines.append(f"{'Written:':<11} {', '.join(written)}")
    lines += [f"{'Repaired:':<11} {repair}" for repair in repairs]
    return lines


def sidecar_txt(ds: Dataset, rows: Sequence[ManifestRow], repairs: Sequence[str] = ()) -> str:
    """Summary, a blank line, then the complete header (long values shortened)."""
    from ..dicom.metadata import dump_lines

    return "\n".join([*summary_lines(ds, rows, repairs), "", *dump_lines(ds)]) + "\n"


def sidecar_json(ds: Dataset, rows: Sequence[ManifestRow], repairs: Sequence[str] = ()) -> str:
    """The header as DICOM JSON, plus what dcmexport wrote from it, with which window, and
    what reading the file had to repair (`repairs`: the same texts as the manifest's notes),
    so the JSON alone says that, say, a truncated file's missing pixels were shown as 0."""
    from ..dicom.metadata import to_json_model

    document = to_json_model(ds)
    block: dict[str, object] = {
        "outputs": [
            {k: v for k, v in dataclasses.asdict(r).items() if v not in (None, "")} for r in rows
        ]
    }
    if repairs:
        block["repairs"] = list(repairs)
    document["dcmexport"] = block
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


class SidecarExporter:
    """`OUT/<base>.txt` or `.json` beside the images (docs/cli.md `--metadata`)."""

    level: ClassVar[Level] = Level.INSTANCE

    def wanted(self, instance: Instance, options: ConvertOptions) -> bool:
        return options.metadata is not MetadataFormat.NONE

    def targets(self, instance: Instance, options: ConvertOptions) -> list[Target]:
        return [Target(f"{instance.base}.{options.metadata.value}")]

    def write(
        self,
        instance: Instance,
        options: ConvertOptions,
        store: Store,
        rows: list[ManifestRow],
    ) -> list[ManifestRow]:
        render = sidecar_txt if options.metadata is MetadataFormat.TXT else sidecar_json
        header = instance.ds if instance.metadata_ds is None else instance.metadata_ds
        if options.metadata_phi is MetadataPhi.NONE:  # input names may name the patient
            rows = [dataclasses.replace(r, source="", output="", note="") for r in rows]
        # the repairs reading the pixels needed (our own texts, never header values): they are
        # added to the manifest's notes after the exporters ran, so the rows do not carry them
        text = render(header, rows, decoding.repair_notes(instance.ds))
        (target,) = self.targets(instance, options)
        output = store.put(target.rel, text.encode("utf-8"))
        return [
            ManifestRow(
                source=instance.source, output=output, kind=Kind.METADATA, note=instance.note
            )
        ]
