"""The one tag grammar: how a user names an element, for `info --tag`, `index --columns` and
`--layout` templates alike.

A tag is a keyword (``PatientName``; exact first, then ignoring case), ``GGGG,EEEE``,
``(GGGG,EEEE)``, ``0xGGGGEEEE`` or the bare ``GGGGEEEE`` of DICOM JSON keys; hex forms may drop
leading zeros (``0x281050`` and ``(28,1050)`` are (0028,1050)). Repeating-group keywords
(``OverlayData``) name their first group.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

from pydicom.datadict import RepeatersDictionary, keyword_dict, keyword_for_tag, tag_for_keyword
from pydicom.tag import BaseTag, Tag

from ..errors import UsageError

__all__ = [
    "close_keywords",
    "column_name",
    "keyword_tag",
    "parse_tag",
    "split_tags",
    "tag_text",
]

_TAG_PAIR = re.compile(r"\s*([0-9A-Fa-f]{1,4})\s*,\s*([0-9A-Fa-f]{1,4})\s*")
_TAG_HEX = re.compile(r"0[xX]([0-9A-Fa-f]{1,8})")
_TAG_BARE = re.compile(r"[0-9A-Fa-f]{8}")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


# --- tags -------------------------------------------------------------------------------


@functools.cache
def _keywords() -> dict[str, int]:
    """Dictionary keywords, repeating groups (``OverlayData`` is (6000,3000)) included."""
    table = dict(keyword_dict)
    for mask, entry in RepeatersDictionary.items():
        table.setdefault(entry[4], int(mask.replace("x", "0"), 16))
    table.pop("", None)  # retired elements without a keyword
    return table


@functools.cache
def _keywords_folded() -> dict[str, str]:
    return {keyword.lower(): keyword for keyword in _keywords()}


def parse_tag(text: str) -> BaseTag:
    """The tag `text` names: a keyword, ``GGGG,EEEE``, ``(GGGG,EEEE)`` or ``0xGGGGEEEE``.

    Hex forms may drop leading zeros (``0x281050`` is (0028,1050)); the bare ``GGGGEEEE`` of
    the JSON keys is accepted too. Keywords match exactly first, then ignoring case, so a
    typed ``patientname`` still works. Anything else is a `UsageError` that suggests the
    nearest keywords.
    """
    text = text.strip()
    if text in _keywords():
        return Tag(_keywords()[text])
    inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    if pair := _TAG_PAIR.fullmatch(inner):
        return Tag(int(pair[1], 16), int(pair[2], 16))
    if number := _TAG_HEX.fullmatch(text):
        return Tag(int(number[1], 16))
    if _TAG_BARE.fullmatch(text):
        return Tag(int(text, 16))
    if _KEYWORD.fullmatch(text) and (keyword := _keywords_folded().get(text.lower())):
        return Tag(_keywords()[keyword])
    near = difflib.get_close_matches(text, _keywords(), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    raise UsageError(
        f"unknown tag {text!r}{hint}: give a keyword such as PatientName, or the tag as "
        "GGGG,EEEE, (GGGG,EEEE) or 0xGGGGEEEE"
    )


#: In a list of tags, a parenthesised pair or a bare ``GGGG,EEEE`` of four digits each is one
#: token; elsewhere commas and spaces separate (``PatientID,0008,0060`` is two tokens).
_TOKEN = re.compile(
    r"\(\s*[0-9a-f]{1,4}\s*,\s*[0-9a-f]{1,4}\s*\)|(?<!\w)[0-9a-f]{4},[0-9a-f]{4}(?!\w)|[^,\s]+",
    re.IGNORECASE,
)


def split_tags(text: str) -> list[str]:
    """The tag tokens of a comma- or space-separated list (``--columns``)."""
    return _TOKEN.findall(text)


def keyword_tag(keyword: str) -> int | None:
    """The tag of an exact keyword (repeating groups included), or None."""
    return _keywords().get(keyword)


def close_keywords(text: str, extra: Iterable[str] = (), n: int = 3) -> list[str]:
    """Keywords (and `extra` names) spelled like `text`, for a "did you mean" hint."""
    return difflib.get_close_matches(text, [*_keywords(), *extra], n=n)


def column_name(tag: int) -> str:
    """The keyword if it names exactly this tag (not another repeater group), else GGGGEEEE."""
    keyword = keyword_for_tag(tag)
    return keyword if keyword and tag_for_keyword(keyword) == tag else f"{tag:08X}"


def tag_text(tag: int) -> str:
    """``(GGGG,EEEE)``, as DCMTK and the standard print a tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
