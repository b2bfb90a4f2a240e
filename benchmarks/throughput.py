"""Throughput of `dcmexport convert` against the baselines, side by side in one run.

Baselines: a `dcm2pnm` loop (one DCMTK process per file, the file's window) and a one-process
pydicom + Pillow script (read, rescale, window, save PNG), on the same generated 512² CT slices;
then dcmexport alone on a larger series. Prints median seconds and files/s over --repeat runs
and how many times slower than dcmexport on all cores each one is per file.

    python benchmarks/throughput.py --slices 300 --large 3000 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASELINE_SCRIPT = r"""
import sys
from pathlib import Path
import numpy as np
import pydicom
from PIL import Image
src, out = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(src.rglob("*.dcm")):
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    c, w = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
    y = np.clip(((hu - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255).astype(np.uint8)
    Image.fromarray(y).save(out / (path.stem + ".png"))
"""


def _time(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300, help="series for the comparison")
    parser.add_argument("--large", type=int, default=3000, help="series for our own rate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate the series here and keep them")
    args = parser.parse_args()

    from dcmexport.engine.executor import default_jobs

    work = args.keep or Path(tempfile.mkdtemp(prefix="dcmexport-bench-"))
    small = _series(work / "ct", args.slices)
    large = _series(work / f"ct{args.large}", args.large) if args.large else None
    out = work / "out"
    cores = default_jobs()

    def ours(series: Path, jobs: int) -> Callable[[], None]:
        def run() -> None:
            cmd = [sys.executable, "-m", "dcmexport", "convert", str(series), "-q"]
            subprocess.run([*cmd, "-o", str(_fresh(out)), "-j", str(jobs)], check=True)

        return run

    def dcm2pnm_loop() -> None:
        target = _fresh(out)
        for f in sorted(small.glob("*.dcm")):
            png = str(target / f"{f.stem}.png")
            subprocess.run(["dcm2pnm", "-O", "+Wi", "1", "+on", str(f), png], check=True)

    def pydicom_pillow() -> None:
        script = [sys.executable, "-c", BASELINE_SCRIPT, str(small), str(_fresh(out))]
        subprocess.run(script, check=True)

    n = args.slices
    rows = [
        (f"dcmexport -j {cores}", n, _time(ours(small, cores), args.repeat)),
        ("dcmexport -j 1", n, _time(ours(small, 1), args.repeat)),
    ]
    if shutil.which("dcm2pnm"):
        rows.append(("dcm2pnm loop (DCMTK)", n, _time(dcm2pnm_loop, args.repeat)))
    rows.append(("pydicom + Pillow, one process", n, _time(pydicom_pillow, args.repeat)))
    if large is not None:
        rows.append((f"dcmexport -j {cores}", args.large, _time(ours(large, cores), args.repeat)))
    _print_table(rows, args.repeat)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _series(folder: Path, n: int) -> Path:
    """A generated 512² CT series of `n` slices (kept if it already exists)."""
    from dcmexport.sample import write_ct_series

    if not folder.exists() or len(list(folder.glob("*.dcm"))) != n:
        write_ct_series(_fresh(folder), n, size=512)
    return folder


def _print_table(rows: list[tuple[str, int, float]], repeat: int) -> None:
    ours = rows[0][2] / rows[0][1]  # seconds per file, all cores
    print(f"\n512x512 int16 CT slices, median of {repeat} run(s), process start-up included\n")
    print(f"| {'tool':<30} | {'files':>5} | {'seconds':>8} | {'files/s':>8} | {'vs ours':>8} |")
    print(f"|{'-' * 32}|{'-' * 7}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for name, files, seconds in rows:
        ratio = f"{seconds / files / ours:.1f}x"
        print(
            f"| {name:<30} | {files:>5} | {seconds:>8.2f} | {files / seconds:>8.0f} | {ratio:>8} |"
        )
    print("\n'vs ours': seconds per file relative to the first row (higher = slower than ours)")


if __name__ == "__main__":
    raise SystemExit(main())
