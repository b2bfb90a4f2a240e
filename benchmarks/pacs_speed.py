"""Speed of `dcmexport pull` from a loopback Orthanc (DICOMweb, C-GET) against `convert` from disk.

Writes `--slices` 512² CT slices (`write_ct_series`), starts Orthanc with its DICOMweb plugin in
a private network namespace (`unshare -n`, loopback only; needs root), joins that namespace,
uploads the slices over REST, then times (median of --repeat, fresh output folder each run):

- `pull` over DICOMweb (QIDO-RS listing + WADO-RS per instance, -j 4 connections),
- `pull` over DIMSE (C-FIND listing + C-GET per series),
- `convert -j 2` of the same files from disk, and `convert -j 2 SERVER` over DICOMweb and
  DIMSE (PNG, nothing kept but the outputs), each as a subprocess (worker start-up included),
- fetch only over DIMSE, three ways (why `convert SERVER` keeps an association per worker).

    python benchmarks/pacs_speed.py --slices 300 --repeat 3
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from dcmexport.sample import write_ct_series
from dcmexport.sources.pull import pull
from dcmexport.sources.servers import QueryFilters, parse_server

PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
WEB = "http://127.0.0.1:8042/dicom-web"
DIMSE = "dicom://ORTHANC@127.0.0.1:4242"


def _setns(path: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


def _start_orthanc(folder: Path) -> subprocess.Popen[bytes]:
    """Orthanc in its own network namespace; this thread joins it."""
    config = {
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": 8042,
        "DicomPort": 4242,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [PLUGIN],
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "SaveJobs": False,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            f"ip link set lo up && exec Orthanc {folder / 'orthanc.json'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while Path(f"/proc/{process.pid}/exe").resolve().name != "Orthanc":
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("Orthanc did not start")
        time.sleep(0.02)
    _setns(f"/proc/{process.pid}/ns/net")
    while True:
        try:
            if requests.get("http://127.0.0.1:8042/system", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.05)
        if time.monotonic() > deadline:
            raise SystemExit("Orthanc did not answer")


def _median(run: Callable[[Path], int], out: Path, repeat: int) -> tuple[int, float]:
    times, files = [], 0
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        files = run(out)
        times.append(time.perf_counter() - started)
    return files, statistics.median(times)


def _fetch_rows(repeat: int) -> list[tuple[str, int, float]]:
    """How a worker should fetch over DIMSE, fetch only (no conversion, in this process):
    a C-GET per instance on a new association each time, on one kept association, and one
    C-GET per series."""
    from dcmexport.sources import dimse, query

    server = parse_server("dicom://ORTHANC@127.0.0.1:4242")
    refs = query.list_instances(server, QueryFilters())

    def new_association(_: Path) -> int:
        for ref in refs:
            dimse.get_instances(server, [ref], lambda r, data: None)
        return len(refs)

    def kept(_: Path) -> int:
        for ref in refs:
            dimse.get_instance(server, ref)
        dimse.close_kept()
        return len(refs)

    def per_series(_: Path) -> int:
        dimse.get_instances(server, refs, lambda r, data: None)
        return len(refs)

    return [
        (name, *_median(run, Path("/nonexistent"), repeat))
        for name, run in (
            ("fetch only, C-GET per instance, new association each", new_association),
            ("fetch only, C-GET per instance, one kept association", kept),
            ("fetch only, C-GET per series", per_series),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcmx-pacs-") as tmp:
        folder = Path(tmp)
        (folder / "db").mkdir()
        paths = write_ct_series(folder / "ct", args.slices)
        process = _start_orthanc(folder)
        try:
            with requests.Session() as session:
                for path in paths:
                    session.post("http://127.0.0.1:8042/instances", data=path.read_bytes())
            rows = []
            for name, url in (
                ("pull, DICOMweb (WADO-RS, 4 connections)", WEB),
                ("pull, DIMSE (C-GET per series)", DIMSE),
            ):
                server = parse_server(url)

                def run(out: Path, server: object = server) -> int:
                    return pull(server, QueryFilters(), out, jobs=4).fetched  # type: ignore[arg-type]

                rows.append((name, *_median(run, folder / "pulled", args.repeat)))
            for name, source in (
                ("convert -j 2 from disk (PNG)", str(folder / "ct")),
                ("convert -j 2 SERVER, DICOMweb (WADO-RS, 4 at a time per worker)", WEB),
                ("convert -j 2 SERVER, DIMSE (a C-GET per chunk of 8, kept association)", DIMSE),
            ):

                def convert(out: Path, source: str = source) -> int:
                    command = [sys.executable, "-m", "dcmexport", "convert", source]
                    command += ["-o", str(out), "-j", "2", "-q"]
                    subprocess.run(command, check=True)
                    return len(list(out.rglob("*.png")))

                rows.append((name, *_median(convert, folder / "png", args.repeat)))
            rows += _fetch_rows(args.repeat)
        finally:
            process.kill()
            process.wait()
    print(f"{args.slices} CT slices 512², median of {args.repeat}, {os.cpu_count()} cores\n")
    print("| what | files | seconds | files/s |\n| --- | ---: | ---: | ---: |")
    for name, files, seconds in rows:
        print(f"| {name} | {files} | {seconds:.2f} | {files / seconds:.0f} |")


if __name__ == "__main__":
    main()
