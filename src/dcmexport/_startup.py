"""The command line's start-up: less work before the first file is read.

Three things, each measured on a 1-file ``convert`` (CPU, medians of interleaved runs):

- The cyclic garbage collector is paused while modules load. Importing pydicom, NumPy and
  dcmexport allocates a few hundred thousand objects that live as long as the process; the
  collections Python runs among them mid-import cost about 75 ms of a 0.45 s start.
  `loaded()` then freezes what was loaded (`gc.freeze`): later collections skip it, in the
  main process and in forked workers (whose pages the collector then does not touch).
- OpenBLAS, loaded by NumPy, starts a thread per core that spins while the imports go on
  (about 85 ms of CPU on this 2-core machine) for linear algebra a conversion never does on
  large matrices. NumPy loads it with one thread unless the user set
  ``OPENBLAS_NUM_THREADS``; the variable is not left for programs this process starts.
- pydicom imports its test-data manager (`pydicom.data`, which imports requests, urllib3 and
  tqdm for downloads) and resolves 13 example paths (`pydicom.examples`) when it loads; about
  60 ms that only their own users need. Both are `_Deferred`: their module objects exist
  from the start, and their code runs on the first use of a name.

Imported first by `cli`; `loaded()` ends its imports. A process that already imported
pydicom (a test run, a script calling `cli.main`) keeps it as it is.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
from typing import Any

_was_enabled = gc.isenabled()
gc.disable()


class _Deferred(types.ModuleType):
    """A module whose code runs on the first use of a name it does not have yet.

    It is the real module object from the start (its spec, file and package path are the
    real ones), and its code runs in it, as `importlib.util.LazyLoader` does, except that a
    name set on it beforehand does not trigger that: a reference taken early, `mock.patch`
    and `importlib.reload` all see one module. A submodule's name imports just the submodule
    (``from . import retry`` inside a submodule that loads first). The first use is not
    thread-safe against a second thread reading the module at that moment; the command
    line's main thread is the only one that could.
    """

    def __getattr__(self, name: str) -> Any:
        path = self.__dict__.get("__path__")
        if path and importlib.machinery.PathFinder.find_spec(f"{self.__name__}.{name}", path):
            return importlib.import_module(f"{self.__name__}.{name}")
        _load(self)
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        _load(self)
        return dir(self)


_loading = threading.RLock()


def _load(module: types.ModuleType) -> None:
    """Run a `_Deferred` module's own code in it, once."""
    with _loading:
        if not isinstance(module, _Deferred):
            return
        plain: types.ModuleType = module
        plain.__class__ = types.ModuleType  # its own code sees a plain module
        try:
            assert plain.__spec__ is not None and plain.__spec__.loader is not None
            plain.__spec__.loader.exec_module(plain)
        except BaseException:
            plain.__class__ = _Deferred
            raise


def _get_palette_files(*args: Any, **kwargs: Any) -> Any:
    """`pydicom.pixels.processing` binds this name from `pydicom.data` when it loads."""
    data = sys.modules["pydicom.data"]
    _load(data)
    return data.get_palette_files(*args, **kwargs)


_PYDICOM_DEFERRED = ("pydicom.data", "pydicom.examples")


def _defer_pydicom_extras() -> None:
    spec = importlib.util.find_spec("pydicom")  # finds it without importing it
    if "pydicom" in sys.modules or spec is None or not spec.submodule_search_locations:
        return
    locations = list(spec.submodule_search_locations)
    specs = [importlib.machinery.PathFinder.find_spec(n, locations) for n in _PYDICOM_DEFERRED]
    if None in specs:  # another pydicom layout: import it as it is
        return
    for name, found in zip(_PYDICOM_DEFERRED, specs, strict=True):
        assert found is not None
        module = importlib.util.module_from_spec(found)
        module.__class__ = _Deferred
        sys.modules[name] = module
    sys.modules["pydicom.data"].get_palette_files = _get_palette_files  # type: ignore[attr-defined]
    import pydicom  # a module put in sys.modules is not bound on its package: bind them

    for name in _PYDICOM_DEFERRED:
        setattr(pydicom, name.rpartition(".")[2], sys.modules[name])


def _numpy_with_one_blas_thread() -> None:
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # read once, when OpenBLAS loads
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


_numpy_with_one_blas_thread()
_defer_pydicom_extras()


def loaded() -> None:
    """The imports are done: keep their objects out of later collections, collect again."""
    gc.freeze()
    if _was_enabled:
        gc.enable()
