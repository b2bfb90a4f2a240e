"""Throughput of `dcmexport convert` against the baselines, side by side in one run.

Baselines: a `dcm2pnm` loop (one DCMTK process per file, the file's window) and a one-process
pydicom + Pillow script (read, rescale, window, save PNG), on the same generated 512² CT slices.
Prints a table of median seconds and files/s over --repeat runs, and the ratios.

    python benchmarks/throughput.py --slices 300 --repeat 3
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
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate the series here and keep it")
    args = parser.parse_args()

    from dcmexport.sample import write_ct_series

    work = args.keep or Path(tempfile.mkdtemp(prefix="dcmexport-bench-"))
    series = work / "ct"
    if not series.exists() or len(list(series.glob("*.dcm"))) != args.slices:
        _fresh(series)
        write_ct_series(series, args.slices, size=512)
    files = sorted(series.glob("*.dcm"))
    n = len(files)
    out = work / "out"

    def ours() -> None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dcmexport",
                "convert",
                str(series),
                "-o",
                str(_fresh(out)),
                "-q",
            ],
            check=True,
        )

    def dcm2pnm_loop() -> None:
        target = _fresh(out)
        for f in files:
            subprocess.run(
                ["dcm2pnm", "-O", "+Wi", "1", "+on", str(f), str(target / f"{f.stem}.png")],
                check=True,
            )

    def pydicom_pillow() -> None:
        subprocess.run(
            [sys.executable, "-c", BASELINE_SCRIPT, str(series), str(_fresh(out))], check=True
        )

    rows = [("dcmexport convert", _time(ours, args.repeat))]
    if shutil.which("dcm2pnm"):
        rows.append(("dcm2pnm loop (DCMTK)", _time(dcm2pnm_loop, args.repeat)))
    rows.append(("pydicom + Pillow, one process", _time(pydicom_pillow, args.repeat)))

    ours_s = rows[0][1]
    print(f"\n{n} CT slices, 512x512 int16, median of {args.repeat} run(s)\n")
    print(f"| {'tool':<30} | {'seconds':>8} | {'files/s':>8} | {'dcmexport is':>13} |")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 10}|{'-' * 15}|")
    for name, seconds in rows:
        ratio = "-" if name.startswith("dcmexport") else f"{seconds / ours_s:.1f}x faster"
        print(f"| {name:<30} | {seconds:>8.2f} | {n / seconds:>8.0f} | {ratio:>13} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
