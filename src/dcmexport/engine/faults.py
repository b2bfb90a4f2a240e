"""What went wrong, in words a person understands: the one-line reason for any exception a
reader, decoder or DICOMDIR walker can raise on a broken file, and the faults that stop a run.

Everything short of the user's own interrupt becomes a reason here — `MemoryError`, a Rust
decoder's `PanicException` (a `BaseException`, and not picklable back from a worker), a
`RecursionError` from deeply nested sequences — so that one file never costs the batch.
Faults of the output folder (disk full, read-only) are not the file's fault: they stop the
run (`StoreError`) instead of failing every file that follows.
"""

from __future__ import annotations

import errno
import sqlite3
import struct

from ..errors import StoreError

#: Exceptions that are the user's (or the interpreter's) and must pass every guard.
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)

#: errno values that mean the output folder cannot take more writes.
_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _text(exc: BaseException, limit: int = 200) -> str:
    return " ".join(str(exc).split())[:limit]


def store_fault(exc: BaseException) -> StoreError | None:
    """A `StoreError` if `exc` says the output disk is full or read-only, else None."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _STORE_ERRNOS:
        what = "read-only" if exc.errno == errno.EROFS else "full"
        return StoreError(
            f"the output disk is {what} ({exc.strerror}): the run stopped; files finished so "
            "far are kept, free space (or fix permissions) and run the same command to resume"
        )
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
        return StoreError(
            "the output disk is full (the state database could not be written): the run "
            "stopped; free space and run the same command to resume"
        )
    return None


def plain_reason(exc: BaseException) -> str:
    """The one-line manifest reason for an exception that is not one of ours."""
    name = type(exc).__name__
    text = _text(exc)
    lowered = text.lower()
    if isinstance(exc, MemoryError):
        return "out of memory reading this file (its header claims far more data than it holds?)"
    if name == "PanicException":  # pyo3: a Rust decoder gave up on the data
        return f"the pixel decoder crashed on this file's data (corrupt codestream): {text}"
    if isinstance(exc, RecursionError):
        return "the data is nested too deeply to read (corrupt or hostile sequences)"
    if name == "BytesLengthException":
        return f"an element's length does not fit its value representation ({text})"
    if isinstance(exc, KeyError) and ("descriptor" in lowered or "lut" in lowered):
        return "the palette colour lookup table descriptor is broken"
    if isinstance(exc, OSError) and "no tag to read" in lowered:
        return "the file ends in the middle of a data element (truncated)"
    if "unknown vr" in lowered or ("vr" in lowered and isinstance(exc, NotImplementedError)):
        return f"a data element has an unknown value representation ({text})"
    if isinstance(exc, struct.error | EOFError):
        return "a data element is cut short (truncated or corrupt file)"
    if isinstance(exc, ZeroDivisionError):
        return "the header has a zero where a size, spacing or time is needed"
    if isinstance(exc, UnicodeError):
        return "a text value cannot be decoded in the file's character set"
    if isinstance(exc, OverflowError):
        return f"a header value is too large to use ({text})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read the file ({exc.strerror})"
    return f"unexpected {name}: {_text(exc, 300)}"
