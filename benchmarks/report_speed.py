"""Time of building the HTML report against the conversion it reports on.

Generates a CT series of small slices with `write_ct_series` (or reuses it with --keep),
converts it with `dcmexport convert -j JOBS` into a fresh folder, then times `build_report`
cold (no thumbnails yet) and warm (a rebuild: every picture reused). The issue's target: the
cold report for 10 000 images takes under 10 % of their conversion.

    python benchmarks/report_speed.py --files 10000 --size 64 --jobs 2 --keep /tmp/ct10k
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def _series(folder: Path, n: int, size: int) -> Path:
    """A generated CT series of `n` slices of `size`² (reused if it is already there)."""
    from dcmexport.sample import write_ct_series

    marker = folder / f".series-{n}-{size}"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        write_ct_series(folder, n, size=size)
        marker.touch()
        print(f"generated {n} slices of {size}² in {time.perf_counter() - started:.0f} s")
    return folder


def _convert(series: Path, out: Path, jobs: int) -> float:
    from dcmexport.cli import main

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    code = main(["convert", str(series), "-o", str(out), "-j", str(jobs), "-q"])
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"convert exited with {code}")
    return elapsed


def _report(out: Path, *, cold: bool) -> tuple[float, int]:
    from dcmexport.report import build_report

    if cold:
        shutil.rmtree(out / "report_assets", ignore_errors=True)
        (out / "index.html").unlink(missing_ok=True)
    started = time.perf_counter()
    summary = build_report(out)
    return time.perf_counter() - started, summary.images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, action="append", help="slice size (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="convert -j (default 2)")
    parser.add_argument("--keep", type=Path, help="keep the generated series in this folder")
    args = parser.parse_args()
    sizes = args.size or [64]
    work = Path(tempfile.mkdtemp(prefix="report-speed-"))
    rows = []
    try:
        for size in sizes:
            base = args.keep or work
            series = _series(base / f"ct{args.files}_{size}", args.files, size)
            out = work / f"out{size}"
            convert = _convert(series, out, args.jobs)
            cold, images = _report(out, cold=True)
            warm, _ = _report(out, cold=False)
            index_kb = (out / "index.html").stat().st_size / 1024
            rows.append((size, images, convert, cold, warm, index_kb))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"| slices | size | convert -j {args.jobs} (s) | report, cold (s) | report / convert "
        "| rebuild (s) | index.html (KB) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, images, convert, cold, warm, index_kb in rows:
        print(
            f"| {images} | {size}² | {convert:.1f} | {cold:.2f} | {100 * cold / convert:.1f} % "
            f"| {warm:.2f} | {index_kb:.1f} |"
        )


if __name__ == "__main__":
    main()
