"""Plain files and archive members on a local (or mounted) file system."""

from __future__ import annotations

import os
import stat

from . import archives
from .base import InputKind, InputRef


class FileSource:
    """A file read from its path (pixel data of large files is streamed from it)."""

    kind = InputKind.FILE

    def open(self, ref: InputRef) -> bytes | str:
        return str(ref.path)

    def fingerprint(self, ref: InputRef) -> tuple[int, int] | None:
        try:
            st = os.stat(ref.path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns


class MemberSource:
    """A zip or tar member: a tar member's bytes travel with it, a zip's are read on demand.

    Its fingerprint is the archive's: a changed archive redoes its members.
    """

    kind = InputKind.MEMBER

    def open(self, ref: InputRef) -> bytes | str:
        if ref.data is not None:
            return ref.data
        return archives.read_member(ref.path, ref.member, copy=ref.copy)

    def fingerprint(self, ref: InputRef) -> tuple[int, int] | None:
        try:
            st = os.stat(ref.path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size, st.st_mtime_ns
