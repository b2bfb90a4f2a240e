"""Time of building the HTML report against the conversion it reports on.

Generates a CT series with `write_ct_series` (or reuses it with --keep) and measures, each in a
fresh output folder:

- `convert --html`: the conversion with the thumbnail exporter on (`ConvertOptions(thumbnails=
  True)`: each still's thumbnail made from the rendering in memory), then the report's first
  build (it finds every thumbnail and decodes no still);
- `convert`, then `dcmexport report OUT`: the conversion alone, then a report that makes every
  thumbnail itself (reads each written still back), then a rebuild (everything reused).

The issue's target: the report for 10 000 images takes under 10 % of their conversion. On a
shared machine the times move by tens of percent: `--repeat N` keeps the fastest of N runs
of each measure.

    python benchmarks/report_speed.py --files 10000 --size 64 --jobs 2 --keep /tmp/ct10k
"""

from __future__ import annotations

import argparse
import dataclasses
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


def _convert(series: Path, out: Path, jobs: int, *, thumbnails: bool) -> float:
    from dcmexport.engine.batch import convert
    from dcmexport.options import ConvertOptions

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = convert([series], out, options=ConvertOptions(thumbnails=thumbnails), jobs=jobs)
    elapsed = time.perf_counter() - started
    if summary.exit_code != 0:
        raise SystemExit(f"convert exited with {summary.exit_code}")
    return elapsed


def _report(out: Path) -> tuple[float, int, int]:
    from dcmexport.report import build_report

    started = time.perf_counter()
    summary = build_report(out)
    return time.perf_counter() - started, summary.images, summary.assets_made


@dataclasses.dataclass
class Figures:
    size: int
    images: int
    convert_html: float  # convert with thumbnails
    report_html: float  # the report after it
    made_html: int  # pictures the report had to make after --html (0 expected)
    convert: float  # convert alone
    report: float  # the report making every thumbnail itself
    rebuild: float
    index_kb: float


def measure(series: Path, work: Path, size: int, jobs: int) -> Figures:
    html, plain = work / f"html{size}", work / f"plain{size}"
    convert_html = _convert(series, html, jobs, thumbnails=True)
    report_html, images, made_html = _report(html)
    shutil.rmtree(html, ignore_errors=True)
    convert = _convert(series, plain, jobs, thumbnails=False)
    report, _, _ = _report(plain)
    rebuild, _, _ = _report(plain)
    index_kb = (plain / "index.html").stat().st_size / 1024
    shutil.rmtree(plain, ignore_errors=True)
    return Figures(
        size, images, convert_html, report_html, made_html, convert, report, rebuild, index_kb
    )


def fastest(runs: list[Figures]) -> Figures:
    """Each time the fastest of `runs` (other sessions' load only ever adds time)."""
    first = runs[0]
    times = {
        f.name: min(getattr(r, f.name) for r in runs)
        for f in dataclasses.fields(Figures)
        if f.type == "float" and f.name != "index_kb"
    }
    return dataclasses.replace(first, **times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, action="append", help="slice size (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="convert -j (default 2)")
    parser.add_argument("--keep", type=Path, help="keep the generated series in this folder")
    parser.add_argument("--repeat", type=int, default=1, help="keep the fastest of N runs")
    args = parser.parse_args()
    sizes = args.size or [64]
    work = Path(tempfile.mkdtemp(prefix="report-speed-"))
    rows = []
    try:
        for size in sizes:
            base = args.keep or work
            series = _series(base / f"ct{args.files}_{size}", args.files, size)
            runs = [measure(series, work, size, args.jobs) for _ in range(args.repeat)]
            rows.append(fastest(runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"| slices | size | convert --html -j {args.jobs} (s) | report after it (s) | report / "
        f"convert | convert -j {args.jobs} (s) | report making thumbnails (s) | report / convert "
        "| rebuild (s) | index.html (KB) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for f in rows:
        made = f" ({f.made_html} made)" if f.made_html else ""
        print(
            f"| {f.images} | {f.size}² | {f.convert_html:.1f} | {f.report_html:.2f}{made} "
            f"| {100 * f.report_html / f.convert_html:.1f} % | {f.convert:.1f} "
            f"| {f.report:.2f} | {100 * f.report / f.convert:.1f} % | {f.rebuild:.2f} "
            f"| {f.index_kb:.1f} |"
        )


if __name__ == "__main__":
    main()
