"""Shared fixtures: pydicom's bundled test files (local only, never downloaded) and DCMTK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def pydicom_test_files_dir() -> Path:
    """pydicom's own bundled test files; `get_testdata_files` would go to the network."""
    import pydicom.data.data_manager as dm

    return Path(dm.DATA_ROOT) / "test_files"


def pydicom_data_files() -> list[Path]:
    """pydicom-data's files when that package is installed (it is optional), else none."""
    try:
        import data_store  # pydicom-data's package
    except ImportError:
        return []
    return sorted((Path(data_store.__file__).parent / "data").glob("*.dcm"))


def pydicom_file(name: str) -> Path:
    """A pydicom test file: bundled with pydicom, else in pydicom-data if it is installed
    (never downloaded); the test skips when neither has it."""
    path = pydicom_test_files_dir() / name
    if not path.exists():
        try:
            import data_store  # pydicom-data's package

            path = Path(data_store.__file__).parent / "data" / name
        except ImportError:
            pass
    if not path.exists():
        pytest.skip(f"pydicom test file {name} not bundled in this pydicom version")
    return path


def dcmtk_tool(name: str) -> str:
    """The path of a DCMTK command line tool; skip the test when DCMTK is not installed."""
    tool = shutil.which(name)
    if tool is None:
        pytest.skip(f"DCMTK ({name}) is not installed: apt-get install dcmtk")
    return tool


@pytest.fixture(scope="session")
def dcm2pnm() -> str:
    return dcmtk_tool("dcm2pnm")


#: The one sample set every test module shares (written once per session, read-only):
#: the CT series' length and matrix.
SAMPLE_CT_SLICES, SAMPLE_CT_SIZE = 20, 256


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """`dcmexport sample`'s files, written once: (root, every path incl. the DICOMDIR).

    Tests must not modify them: copy what you need to change.
    """
    from dcmexport.sample import write_samples

    root = tmp_path_factory.mktemp("samples") / "dicom_data"
    return root, write_samples(root, ct_slices=SAMPLE_CT_SLICES, size=SAMPLE_CT_SIZE)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real two-worker Dask cluster on 127.0.0.1, started and stopped by the test."""
    pytest.importorskip("distributed")
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command is not installed")
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    scheduler = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--scheduler-file",
            str(scheduler_file),
            *common,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen(
            [
                dask,
                "worker",
                address,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                *common,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
