"""The command line's start-up: less work before the first file is read.

Three things, each measured on a 1-file ``convert`` (CPU, medians of interleaved runs):

- The cyclic garbage collector is paused while modules load. Importing pydicom, NumPy and
  dcmexport allocates a few hundred thousand objects that live as long as the process; the
  collections Python runs among them mid-import cost about 75 ms of a 0.45 s start.
  `loaded()` then freezes what was loaded (`gc.freeze`): later collections skip it, in the
  main process and in forked workers (whose pages the collector then does not touch).
- OpenBLAS, loaded by NumPy, starts a thread per core that spins while the imports go on
  (about 85 ms of CPU on this 2-core machine) for linear algebra a conversion never does on
  large matrices. One thread unless the user set ``OPENBLAS_NUM_THREADS``.
- pydicom imports its test-data manager (`pydicom.data`, which imports requests, urllib3 and
  tqdm for downloads) and resolves 13 example paths (`pydicom.examples`) when it loads; about
  60 ms that only `pydicom.data`'s and `pydicom.examples`' own users need. Both stay
  `_Deferred` until first touched, then load for real.

Imported first by `cli`; `loaded()` ends its imports. A process that already imported
pydicom (a test run, a script calling `cli.main`) keeps it as it is.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
import types
from typing import Any

_was_enabled = gc.isenabled()
gc.disable()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


class _Deferred(types.ModuleType):
    """A pydicom package whose real import waits for the first use of one of its names.

    Its submodules import as under the real package (`__path__` is the real one's, and a
    submodule's name is left to the import system), so the real package reuses them.
    """

    def __getattr__(self, name: str) -> Any:
        if importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            raise AttributeError(name)  # a submodule: `from . import x` then imports it
        return getattr(_real(self.__name__), name)


def _real(name: str) -> types.ModuleType:
    """Import the real module `name` in place of its `_Deferred` stand-in."""
    if isinstance(sys.modules.get(name), _Deferred):
        del sys.modules[name]
    return importlib.import_module(name)  # also rebinds the parent package's attribute


def _get_palette_files(*args: Any, **kwargs: Any) -> Any:
    """`pydicom.pixels.processing` binds this name from `pydicom.data` when it loads."""
    return _real("pydicom.data").get_palette_files(*args, **kwargs)


_DEFERRED = ("pydicom.data", "pydicom.examples")


def _defer_pydicom_extras() -> None:
    spec = importlib.util.find_spec("pydicom")  # finds it without importing it
    if "pydicom" in sys.modules or spec is None or not spec.submodule_search_locations:
        return
    for name in _DEFERRED:
        stand_in = _Deferred(name)
        stand_in.__path__ = [
            os.path.join(location, name.rpartition(".")[2])
            for location in spec.submodule_search_locations
        ]
        sys.modules[name] = stand_in
    sys.modules["pydicom.data"].get_palette_files = _get_palette_files  # type: ignore[attr-defined]
    import pydicom  # a stand-in put in sys.modules is not bound on its package: bind them

    for name in _DEFERRED:
        setattr(pydicom, name.rpartition(".")[2], sys.modules[name])


_defer_pydicom_extras()


def loaded() -> None:
    """The imports are done: keep their objects out of later collections, collect again."""
    gc.freeze()
    if _was_enabled:
        gc.enable()
