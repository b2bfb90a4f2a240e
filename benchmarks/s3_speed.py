"""Speed of object storage in and out: `convert s3://… -o s3://…` against the same run on
local disk, files/s, and the bytes `index s3://…` reads per file.

Starts a moto S3 server on 127.0.0.1 (a free port; stopped at the end), uploads a series of
512² CT slices (generated with `write_ct_series`, or reused with --keep), then times:
local → local, s3 → s3 (both with -j jobs), and `index` over the folder and the bucket. The
bytes `index` read are counted from the server's own request log (each GET's Range).
moto is a Python server on the same cores: a real S3 endpoint is at least as fast per
request, but every request crosses a network.

    python benchmarks/s3_speed.py --slices 3000 --keep /tmp/ct3000
    python benchmarks/s3_speed.py --slices 300          # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def moto_server(server: str | None = None) -> Iterator[str]:
    """A moto S3 server on loopback, up within 30 s; its endpoint URL. Stopped (killed if it
    will not stop) and its folder removed afterwards. `RuntimeError` if it does not start.
    tests/test_s3.py starts its server with this too."""
    server = server or shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if server is None:
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="moto-")
    env = dict(os.environ, MOTO_RECORDER_FILEPATH=f"{folder}/recording")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()


def served_bytes(recording: str, sizes: dict[str, int]) -> int:
    """Object bytes the server sent, from its request log (GETs and their Range)."""
    total = 0
    for line in recording.splitlines():
        request = json.loads(line)
        path = urllib.parse.unquote(urllib.parse.urlsplit(request["url"]).path).lstrip("/")
        if request["method"] != "GET" or path not in sizes:
            continue
        header = request["headers"].get("Range")
        if header is None:
            total += sizes[path]
        else:
            start, _, end = header.removeprefix("bytes=").partition("-")
            total += min(int(end), sizes[path] - 1) - int(start) + 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=None, help="default: all cores")
    parser.add_argument("--keep", type=Path, help="generate the slices here (and reuse them)")
    args = parser.parse_args()

    import fsspec

    from dcmexport.engine.batch import convert
    from dcmexport.index import build_index
    from dcmexport.sample import write_ct_series

    work = Path(tempfile.mkdtemp(prefix="s3bench-"))
    series = args.keep or work / "ct"
    if len(list(series.glob("CT_*.dcm"))) != args.slices:
        shutil.rmtree(series, ignore_errors=True)
        started = time.perf_counter()
        write_ct_series(series, args.slices, size=512)
        print(f"generated {args.slices} slices in {time.perf_counter() - started:.0f} s")
    sizes = {f"bench-in/ct/{p.name}": p.stat().st_size for p in series.glob("CT_*.dcm")}
    rows: list[tuple[str, float, str]] = []
    try:
        with moto_server() as endpoint:  # RuntimeError if it cannot start
            options: dict[str, Any] = {"endpoint_url": endpoint, "key": "k", "secret": "s"}
            fs = fsspec.filesystem("s3", **options)
            fs.mkdir("bench-in")
            fs.mkdir("bench-out")
            started = time.perf_counter()
            fs.put(f"{series}/", "bench-in/ct/", recursive=True)
            print(f"uploaded in {time.perf_counter() - started:.0f} s")

            def timed(label: str, run: Any) -> None:
                started = time.perf_counter()
                files = run()
                rate = files / (time.perf_counter() - started)
                rows.append((label, rate, ""))
                print(f"{label}: {rate:.0f} files/s")

            timed(
                "convert local → local",
                lambda: convert([series], work / "out", jobs=args.jobs).found,
            )
            timed(
                "convert s3 → s3",
                lambda: (
                    convert(
                        ["s3://bench-in/ct/"],
                        "s3://bench-out/ct/",
                        jobs=args.jobs,
                        storage_options=options,
                        state_dir=work / "state",
                    ).found
                ),
            )
            timed("index local", lambda: build_index([series], work / "a.csv", jobs=args.jobs).ok)
            _post(f"{endpoint}/moto-api/recorder/reset-recording")
            _post(f"{endpoint}/moto-api/recorder/start-recording")
            timed(
                "index s3",
                lambda: (
                    build_index(
                        ["s3://bench-in/ct/"],
                        work / "b.csv",
                        jobs=args.jobs,
                        storage_options=options,
                    ).ok
                ),
            )
            _post(f"{endpoint}/moto-api/recorder/stop-recording")
            with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording") as r:
                served = served_bytes(r.read().decode(), sizes)
            per_file, object_size = served / len(sizes), sum(sizes.values()) / len(sizes)
            label, rate, _ = rows[-1]
            rows[-1] = (label, rate, f"{per_file / 1024:.1f} KiB of {object_size / 1024:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.slices} CT slices 512², jobs={args.jobs or os.cpu_count()}\n")
    print("| run | files/s | bytes read per file |")
    print("| --- | ---: | --- |")
    for label, rate, note in rows:
        print(f"| {label} | {rate:.0f} | {note} |")


if __name__ == "__main__":
    main()
