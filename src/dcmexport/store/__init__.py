"""Where outputs go: atomic writes inside OUT, dcmexport's own folders, the OUT boundary.

A local implementation now; an object store plugs in behind the same methods later.
Imports nothing of ours but `errors`.
"""

from .local import (
    STATE_DIR,
    LocalStore,
    atomic_path,
    inside_output,
    relative_to_output,
    write_atomic,
)

__all__ = [
    "STATE_DIR",
    "LocalStore",
    "atomic_path",
    "inside_output",
    "relative_to_output",
    "write_atomic",
]
