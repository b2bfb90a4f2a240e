"""The command line's start-up (`dcmexport._startup`): what it leaves out, and that nothing
left out is lost. Each case runs in a fresh interpreter, as the command line starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(code: str, **env: str) -> dict[str, object]:
    """`code` after the command line's imports, in a new process; it prints one JSON value."""
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", "import dcmexport.cli\n" + code],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    value: dict[str, object] = json.loads(result.stdout)
    return value


def test_the_command_line_loads_no_download_machinery() -> None:
    loaded = _run(
        "import sys, json\n"
        "print(json.dumps({m: m in sys.modules for m in "
        "('requests', 'urllib3', 'tqdm', 'pydicom.data.download', 'pydicom', 'numpy')}))"
    )
    assert loaded == {
        "requests": False,
        "urllib3": False,
        "tqdm": False,
        "pydicom.data.download": False,
        "pydicom": True,
        "numpy": True,
    }


@pytest.mark.parametrize(
    "expression",
    [
        # pydicom.pixels.processing bound this name from pydicom.data while the stand-in was in
        "len(__import__('pydicom.pixels.processing').pixels.processing.get_palette_files('*'))",
        "Path(__import__('pydicom').data.get_testdata_file('CT_small.dcm')).name",
        "Path(__import__('pydicom.data.data_manager').data.data_manager"
        ".get_testdata_file('MR_small.dcm')).name",
        "__import__('pydicom').examples.ct.Modality",
        "__import__('pydicom').examples.get_path('mr').name",
        # spec-based lookups see the real spec, file and package path
        "__import__('importlib.util').util.find_spec('pydicom.data').origin",
        "len(__import__('pkgutil').get_data('pydicom.data', 'urls.json'))",
        "str(__import__('importlib.resources').resources.files('pydicom.data'))",
        "__import__('pydicom').data.__file__",
        # a submodule as an attribute, and every name
        "__import__('pydicom').data.data_manager.__name__",
        "sorted(n for n in dir(__import__('pydicom').data) if not n.startswith('_'))",
        "sorted(n for n in dir(__import__('pydicom').examples) if not n.startswith('_'))",
    ],
)
def test_deferred_pydicom_packages_answer_as_the_real_ones(expression: str) -> None:
    script = f"import json\nfrom pathlib import Path\nprint(json.dumps({{'v': {expression}}}))"
    deferred = _run(script)["v"]
    real = subprocess.run(
        [sys.executable, "-c", "import pydicom\n" + script], capture_output=True, text=True
    )
    assert real.returncode == 0, real.stderr
    assert deferred == json.loads(real.stdout)["v"]


def test_the_deferred_module_is_the_real_one_before_and_after_its_first_use() -> None:
    """One module object: a reference taken early, `mock.patch` and `reload` see the real
    module; scanning `sys.modules` for files loads nothing."""
    state = _run(
        "import sys, json, importlib, pydicom\n"
        "from unittest import mock\n"
        "from pydicom import data\n"
        "kind = lambda: type(sys.modules['pydicom.data']).__name__\n"
        "before = kind()\n"
        "files = [getattr(m, '__file__', None) for m in list(sys.modules.values())]\n"
        "scanned = 'requests' in sys.modules\n"
        "with mock.patch('pydicom.data.get_testdata_file', return_value='patched'):\n"
        "    patched = pydicom.data.get_testdata_file('CT_small.dcm')\n"
        "importlib.reload(pydicom.data)\n"
        "print(json.dumps({'before': before, 'after': kind(), 'scanned': scanned,"
        " 'patched': patched, 'same': data is pydicom.data is sys.modules['pydicom.data']}))"
    )
    assert state == {
        "before": "_Deferred",
        "after": "module",
        "scanned": False,
        "patched": "patched",
        "same": True,
    }


def test_openblas_runs_one_thread_unless_the_user_chose() -> None:
    """One OpenBLAS thread (Linux: the process has no other thread), and the variable is not
    left set for the programs the command line starts."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("counts threads in /proc")
    code = (
        "import os, json\n"
        "print(json.dumps({'threads': len(os.listdir('/proc/self/task')),"
        " 'variable': os.environ.get('OPENBLAS_NUM_THREADS')}))"
    )
    assert _run(code) == {"threads": 1, "variable": None}
    assert _run(code, OPENBLAS_NUM_THREADS="2") == {"threads": 2, "variable": "2"}


def test_a_conversion_started_from_the_command_line_still_works(tmp_path: Path) -> None:
    """The main job, end to end, in one fresh process: nothing it needs was deferred away."""
    from dcmexport.sample import write_samples

    write_samples(tmp_path / "in", ct_slices=2, size=64)
    command = ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-j", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "dcmexport", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "out").rglob("*.png"))


def test_the_index_room_loads_on_first_use() -> None:
    """The command line imports `index.columns` for its choices; the rest of the room (and
    every name it exports) comes on first use."""
    state = _run(
        "import sys, json, dcmexport.index as index\n"
        "before = sorted(m for m in sys.modules if m.startswith('dcmexport.index'))\n"
        "names = [*index.__all__, 'build', 'columns', 'read', 'series', 'table', 'values']\n"
        "missing = [n for n in names if getattr(index, n, None) is None]\n"
        "print(json.dumps({'before': before, 'missing': missing,"
        " 'all': sorted(index.__all__) == sorted(dir(index))}))"
    )
    assert state == {
        "before": ["dcmexport.index", "dcmexport.index.columns"],
        "missing": [],
        "all": True,
    }


_ON_DEMAND = (
    "dcmexport.dicom.deid",
    "dcmexport.engine.deid",
    "dcmexport.engine.deid_plan",
    "dcmexport.dicom.geometry",
    "dcmexport.sources.servers",
    "dcmexport.sources.remote",
    "dcmexport.sources.urls",
    "dcmexport.sources.dicomdir",
    "tarfile",
    "statistics",
)


def test_a_plain_conversion_loads_no_room_it_does_not_use(tmp_path: Path) -> None:
    """De-identification, volume geometry, servers, object storage, DICOMDIRs and tar
    archives load with the first input or option that needs them, not with every run (about
    15 ms of a 0.45 s run of 300 slices); every name the sources package offers still comes."""
    from dcmexport.sample import write_ct_series

    write_ct_series(tmp_path / "in", 3, size=32)
    state = _run(
        "import sys, json\n"
        "from dcmexport.engine.batch import convert\n"
        f"convert([{str(tmp_path / 'in')!r}], {str(tmp_path / 'out')!r}, jobs=1)\n"
        f"loaded = [m for m in {_ON_DEMAND!r} if m in sys.modules]\n"
        "import dcmexport.sources as s\n"
        "names = [n for n in s.__all__ if getattr(s, n, None) is None]\n"
        "print(json.dumps({'loaded': loaded, 'missing': names}))"
    )
    assert state == {"loaded": [], "missing": []}
