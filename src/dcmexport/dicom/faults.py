"""The one-line reason, in words a person understands, for any exception a reader, decoder or
DICOMDIR walker can raise on a broken file.

Everything short of the user's own interrupt becomes a reason here — `MemoryError`, a Rust
decoder's `PanicException` (a `BaseException`, and not picklable back from a worker), a
`RecursionError` from deeply nested sequences — so that one file never costs the batch.
"""

from __future__ import annotations

import functools
import re
import struct

#: Exceptions that are the user's (or the interpreter's) and must pass every guard.
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


#: A value an exception message quotes ('DOE^JOHN'); VR codes and numbers or UIDs are kept
_QUOTED = re.compile(r"""(['"])(.*?)\1""")
_HARMLESS = re.compile(r"[A-Z]{2}|[0-9.+-]*")


@functools.cache
def _element_names() -> frozenset[str]:
    from pydicom.datadict import DicomDictionary

    return frozenset(name for entry in DicomDictionary.values() for name in (entry[2], entry[4]))


def _redacted(match: re.Match[str]) -> str:
    quote, value = match.group(1), match.group(2)
    if _HARMLESS.fullmatch(value) or value in _element_names():  # 'Bits Allocated'
        return match.group(0)
    return f"{quote}…{quote}"


def _text(exc: BaseException, limit: int = 200) -> str:
    """The message on one line, with the values it quotes left out: a header value in a
    reason would put patient data in the manifest and the log."""
    return _QUOTED.sub(_redacted, " ".join(str(exc).split()))[:limit]


def plain_reason(exc: BaseException) -> str:
    """The one-line manifest reason for an exception that is not one of ours."""
    name = type(exc).__name__
    text = _text(exc)
    lowered = " ".join(str(exc).split()).lower()  # classified on the whole message
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
    if "transfer syntax" in lowered and isinstance(exc, ValueError | NotImplementedError):
        return f"the file's Transfer Syntax UID is not a usable transfer syntax ({text})"
    if isinstance(exc, ValueError | AttributeError) and (
        text.startswith(("A (0028,", "Missing required element: (0028", "Unknown (0028,0004)"))
    ):  # pydicom's check of the Image Pixel description before it decodes
        return f"the image pixel description is invalid: {text}"
    if "unknown vr" in lowered or "unknown value representation" in lowered:
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
