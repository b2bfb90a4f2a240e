"""Where outputs go: a local folder or an object store behind one `Store` protocol, atomic
writes inside OUT, dcmexport's own (local) folders, the OUT boundary.

Imports nothing of ours but `errors`.
"""

from .base import SERVER_SCHEMES, Store, default_state_dir, is_url, store_for, url_scheme
from .local import (
    STATE_DIR,
    LocalStore,
    atomic_path,
    inside_output,
    relative_to_output,
    write_atomic,
)
from .objectstore import ObjectStore, checked_key, filesystem, redact, version_stamp

__all__ = [
    "SERVER_SCHEMES",
    "STATE_DIR",
    "LocalStore",
    "ObjectStore",
    "Store",
    "atomic_path",
    "checked_key",
    "default_state_dir",
    "filesystem",
    "inside_output",
    "is_url",
    "redact",
    "relative_to_output",
    "store_for",
    "url_scheme",
    "version_stamp",
    "write_atomic",
]
