"""Shared fixtures: pydicom's bundled test files (local only, never downloaded) and DCMTK."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def pydicom_test_files_dir() -> Path:
    """pydicom's own bundled test files; `get_testdata_files` would go to the network."""
    import pydicom.data.data_manager as dm

    return Path(dm.DATA_ROOT) / "test_files"


def pydicom_file(name: str) -> Path:
    path = pydicom_test_files_dir() / name
    if not path.exists():
        pytest.skip(f"pydicom test file {name} not bundled in this pydicom version")
    return path


@pytest.fixture(scope="session")
def dcm2pnm() -> str:
    tool = shutil.which("dcm2pnm")
    if tool is None:
        pytest.skip("DCMTK (dcm2pnm) is not installed: apt-get install dcmtk")
    return tool
