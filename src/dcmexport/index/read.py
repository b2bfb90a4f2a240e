"""The worker side of an index: one file's row from a header-only read, never raising."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

from pydicom.dataset import Dataset

from .. import sources
from ..dicom import decoding, limits, plainread
from ..dicom.faults import PASS_THROUGH, plain_reason
from ..errors import DcmExportError, InputReadError, NotDicomError
from ..naming import display_path
from ..sources import InputKind, InputRef
from .columns import Column, Row, column_spec
from .values import _dicom_values

log = logging.getLogger(__name__)


def _opened(path: str | InputRef) -> str | bytes | InputRef:
    """What the header is read from: a local path, an archive member's bytes (read through
    its source, as `convert` reads it, limits included), or an object (read by range).

    A reference the source refused (a hostile member, a broken archive, a DICOMDIR record
    without its file) raises its reason, as it does in `convert`."""
    if isinstance(path, str):
        return path
    if path.problem:
        raise InputReadError(path.problem)
    if path.kind is InputKind.URL:
        return path
    return sources.open_input(path)


def _head_dataset(path: str) -> plainread.PlainHeader | None:
    """The header of a plain local file parsed from its first bytes, with the file's size
    from the same open (`plainread.read_plain_header`: the data set pydicom's header-only
    read gives, every element whole), or None: the caller reads the path as before, and
    says why it failed."""
    try:
        return plainread.read_plain_header(path)
    except OSError:
        return None


def _read_values(
    path: str | InputRef, source: str | bytes | InputRef, specs: Sequence[Column]
) -> tuple[Row, int | None]:
    """The DICOM columns of one file and, if a local file's read gave it, its size;
    `NotDicomError` for an unusable header."""
    size = None
    ds: Dataset
    head = _head_dataset(source) if isinstance(source, str) else None
    if head is not None:
        ds, size = head.ds, head.size
    elif isinstance(source, InputRef):  # an object: a few range requests, never the whole
        with sources.open_header(source) as header:
            ds = decoding.read_dataset(header, stop_before_pixels=True)
    else:  # the plain read was tried (or the input is bytes)
        ds = decoding.read_dataset(source, stop_before_pixels=True, plain=False)
    problem = None if head is not None else decoding.header_truncation(ds)
    if problem:
        raise NotDicomError(problem)
    row = _dicom_values(ds, specs, _shown(path))
    row["transfer_syntax"] = str(decoding.transfer_syntax(ds))
    return row, size


def _failure(path: str | InputRef, exc: BaseException) -> tuple[str, str]:
    """(status, reason) for a file that could not be indexed."""
    if isinstance(exc, NotDicomError):
        if isinstance(path, InputRef):  # only a header without ``DICM`` is "not DICOM"
            return ("skipped" if str(exc) == "not a DICOM file" else "error"), str(exc)
        try:
            part10 = decoding.has_dicm_prefix(path)
        except OSError:
            part10 = True
        return ("error" if part10 else "skipped"), str(exc)
    if isinstance(exc, DcmExportError):  # e.g. the file could not be read
        return "error", str(exc)
    if isinstance(exc, OSError) and "no tag to read" not in str(exc):
        return "error", f"cannot read the file ({exc.strerror or type(exc).__name__})"
    return "error", plain_reason(exc)


def _shown(path: str | InputRef) -> str:
    return path.source if isinstance(path, InputRef) else path


def _file_size(path: str | InputRef) -> int | None:
    if isinstance(path, InputRef) and path.member:  # the archive's size is not the member's
        return None
    if isinstance(path, InputRef):
        stamp = sources.fingerprint(path)
        return stamp[0] if stamp is not None else None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def read_header(path: str | InputRef, columns: Sequence[str]) -> Row:
    """The row of one file (a path, or an object-store input), with exactly the keys
    `columns`; never raises for the file."""
    row: Row = dict.fromkeys(columns)
    size = None
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity it tolerates
            warnings.simplefilter("ignore")
            source = _opened(path)
            size = len(source) if isinstance(source, bytes) else None
            values, known = _read_values(path, source, [column_spec(c) for c in columns])
            size = size if known is None else known
        row.update((k, v) for k, v in values.items() if k in row)
        row["status"] = "ok"
    except PASS_THROUGH:
        raise
    except BaseException as exc:  # MemoryError, a Rust panic, a bug: this file's row, go on
        row["status"], row["error"] = _failure(path, exc)
        log.debug("%s: %s", _shown(path), row["error"])
    row["path"] = display_path(_shown(path))
    if "file_size" in row:
        row["file_size"] = size if size is not None else _file_size(path)
    return row


def read_headers(
    paths: Sequence[str | InputRef],
    columns: Sequence[str],
    limit_values: limits.LimitValues | None = None,
) -> list[Row]:
    """The rows of a chunk of files: the picklable unit of work for a process pool or Dask.

    `limit_values` (``--max-inflate`` ...) are applied in the worker, as `convert` does."""
    if limit_values is None:
        return [read_header(path, columns) for path in paths]
    with limits.applied(limit_values):
        return [read_header(path, columns) for path in paths]
