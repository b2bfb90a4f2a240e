"""Typed errors raised by the library; the CLI maps them to one-line messages and exit codes.

Messages say what happened and, where possible, what to do about it. They never contain
patient data (names, IDs, dates): only file paths, tag names and technical values.
"""

from __future__ import annotations


class DcmExportError(Exception):
    """Base class for every error dcmexport raises on purpose."""


class UsageError(DcmExportError, ValueError):
    """An option value the user gave cannot be used (bad window, frame range, ...)."""


class NotDicomError(DcmExportError):
    """The file is not DICOM (no preamble/DICM marker and no parseable header)."""


class NoPixelDataError(DcmExportError):
    """A valid DICOM file without an image (SR, RT plan, presentation state, DICOMDIR)."""


class UnsupportedTransferSyntaxError(DcmExportError):
    """No installed decoder handles the file's transfer syntax."""


class PixelDataError(DcmExportError):
    """The pixel data or its description is broken (truncated, inconsistent, undecodable)."""


class VideoError(DcmExportError):
    """The video encoder cannot take these frames (too large for H.264, or refused them)."""


class WindowError(DcmExportError):
    """The requested VOI (window or VOI LUT) does not exist in, or does not fit, the file."""


class OutsideOutputError(DcmExportError):
    """An output path would resolve outside the output folder (a hostile name or link)."""


class InputReadError(DcmExportError):
    """The input file could not be read (vanished, no permission, I/O error)."""


class VolumeError(DcmExportError):
    """A series (or part of one) cannot become a volume: no geometry, an ambiguous 4th axis."""


class ColourVolumeError(VolumeError):
    """A colour series (RGB, YBR, PALETTE COLOR) was asked for as a volume: only greyscale."""


class DeidentificationError(DcmExportError):
    """A dataset cannot be de-identified into a valid file (e.g. it has no SOP Instance UID)."""


class BurnedInTextError(DcmExportError):
    """`--burned-in mask`: text is still found in the pixels after masking (or they cannot
    be masked): the image is an `error` and nothing is written for it."""


class ExcludedError(DcmExportError):
    """An input left out on purpose (e.g. `--burned-in exclude`): a `skipped` row, not an error."""


class ServerError(DcmExportError):
    """A PACS or DICOMweb server refused or failed a request (bad credentials, 4xx/5xx, DIMSE
    failure status) after any retries."""


class ServerUnreachableError(ServerError, ConnectionError):
    """A PACS or DICOMweb server could not be reached at all (refused, timed out, no route)."""


class UnreadableDicomError(DcmExportError):
    """A DICOM file (Part 10 preamble) whose header pydicom cannot parse: an error, not a
    skipped non-DICOM file."""


class LimitError(DcmExportError):
    """The input asks for more than a safety limit allows (pixels, frames, inflated bytes);
    the message names the limit and the option that raises it."""


class StoreError(DcmExportError):
    """The output folder cannot be used (read-only, full, a symlinked state folder): the run
    stops with one line instead of failing every file."""
