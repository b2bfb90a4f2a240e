"""Faults that are not a file's but the run's: the output disk full or read-only. They stop
the run (`StoreError`) instead of failing every file that follows. Per-file reasons come from
`dicom.faults`.
"""

from __future__ import annotations

import errno
import sqlite3

from ..dicom.faults import PASS_THROUGH, plain_reason
from ..errors import StoreError

__all__ = ["PASS_THROUGH", "plain_reason", "store_fault"]

#: errno values that mean the output folder cannot take more writes.
_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


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
