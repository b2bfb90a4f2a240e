"""Throughput of `dcmexport convert` against the baselines, side by side in one run.

For each series size (default 300, 3,000 and 20,000 generated 512² CT slices): `convert -j N`
(all cores) and `-j 1`, with the main process's CPU per file and the peak RSS of the main
process and of the largest worker; on the smallest size also the baselines, a `dcm2pnm` loop
(one DCMTK process per file, the file's window) and a one-process pydicom + Pillow script.
`--compare SRC` adds the same `convert` rows run from another source tree (e.g. main's
``src``), so "before" and "after" are measured in the same run under the same load.

Rows are interleaved per repeat (A, B, A, B …) so load from other processes hits all alike;
medians are printed, with files/s and the ratio to the first row.

    python benchmarks/throughput.py --sizes 300,3000 --repeat 3 --keep /tmp/bench \
        --compare /tmp/main/src

`--out /dev/shm/bench-out` writes every row's outputs to a tmpfs folder. On the 2-core VM
this was measured on, creating an output file on its ext4 root costs 0.2–1 ms of kernel time
(more as a folder grows), a third or more of a slice's cost, for every tool alike.

`--j1-only --in-process` compares ``-j 1`` in one worker process (the default) with ``-j 1``
in the dcmexport process itself.
"""

from __future__ import annotations

import argparse
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

#: Runs `dcmexport` in this process and reports its own CPU and peak RSS, and its children's
#: (the pool's workers, reaped before exit), as JSON on the last line of stderr.
MEASURED_CLI = r"""
import json, resource, sys
from dcmexport.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu": me.ru_utime + me.ru_stime, "rss_kb": me.ru_maxrss,
                  "worker_cpu": kids.ru_utime + kids.ru_stime, "worker_rss_kb": kids.ru_maxrss}),
      file=sys.stderr)
sys.exit(code or 0)
"""


class Row:
    """One measured command: wall seconds and, for ours, main-process CPU and peak RSS."""

    def __init__(self, name: str, files: int, run: Callable[[], dict[str, float]]) -> None:
        self.name, self.files, self.run = name, files, run
        self.samples: list[dict[str, float]] = []

    def measure(self) -> None:
        started = time.perf_counter()
        extra = self.run()
        self.samples.append({"seconds": time.perf_counter() - started, **extra})

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.samples if key in s]
        return statistics.median(values) if values else None


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _series(folder: Path, n: int) -> Path:
    """A generated 512² CT series of `n` slices (kept if it already exists). Every file under
    the folder is counted, nested folders too, since `convert` converts them all."""
    from dcmexport.sample import write_ct_series

    if not folder.exists() or sum(1 for p in folder.rglob("*") if p.is_file()) != n:
        write_ct_series(_fresh(folder), n, size=512)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,3000,20000", help="series sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate the series here and keep them")
    parser.add_argument("--compare", type=Path, help="another source tree's src/ to run too")
    parser.add_argument(
        "--out",
        type=Path,
        help="where every row writes its outputs (default: beside the series); e.g. a tmpfs "
        "folder, to tell the file system's cost of creating files from the tools' own",
    )
    parser.add_argument("--no-j1", action="store_true", help="skip the -j 1 rows")
    parser.add_argument("--no-baselines", action="store_true", help="skip dcm2pnm and the script")
    parser.add_argument("--j1-only", action="store_true", help="only the -j 1 rows")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also -j 1 in the dcmexport process itself (DCMEXPORT_IN_PROCESS=1) beside the "
        "default -j 1 in one worker process",
    )
    args = parser.parse_args()

    from dcmexport.engine.executor import default_jobs

    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = args.keep or Path(tempfile.mkdtemp(prefix="dcmexport-bench-"))
    series = {n: _series(work / f"ct{n}", n) for n in sizes}
    out = args.out or work / "out"
    cores = default_jobs()
    here = Path(__file__).resolve().parents[1] / "src"
    trees = [("", here)] + ([(" (compare)", args.compare.resolve())] if args.compare else [])

    def ours(
        folder: Path, jobs: int, src: Path, in_process: bool = False
    ) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            env = {**os.environ, "PYTHONPATH": str(src)}
            if in_process:
                env["DCMEXPORT_IN_PROCESS"] = "1"
            cmd = [sys.executable, "-c", MEASURED_CLI, "convert", str(folder), "-q"]
            done = subprocess.run(
                [*cmd, "-o", str(_fresh(out)), "-j", str(jobs)],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
                check=True,
            )
            return json.loads(done.stderr.strip().splitlines()[-1])

        return run

    def dcm2pnm_loop(folder: Path) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            target = _fresh(out)
            for f in sorted(folder.glob("*.dcm")):
                png = str(target / f"{f.stem}.png")
                subprocess.run(["dcm2pnm", "-O", "+Wi", "1", "+on", str(f), png], check=True)
            return {}

        return run

    def pydicom_pillow(folder: Path) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            script = [sys.executable, "-c", BASELINE_SCRIPT, str(folder), str(_fresh(out))]
            subprocess.run(script, check=True)
            return {}

        return run

    rows: list[Row] = []
    for n in sizes:
        for label, src in trees:
            if not args.j1_only:
                rows.append(Row(f"dcmexport -j {cores}{label}", n, ours(series[n], cores, src)))
            if not args.no_j1 and n <= 3000:
                rows.append(Row(f"dcmexport -j 1{label}", n, ours(series[n], 1, src)))
                if args.in_process:
                    in_process = ours(series[n], 1, src, in_process=True)
                    rows.append(Row(f"dcmexport -j 1 in-process{label}", n, in_process))
        if n == sizes[0] and not args.no_baselines:
            if shutil.which("dcm2pnm"):
                rows.append(Row("dcm2pnm loop (DCMTK)", n, dcm2pnm_loop(series[n])))
            rows.append(Row("pydicom + Pillow, one process", n, pydicom_pillow(series[n])))
    for _ in range(args.repeat):  # interleaved: load from elsewhere hits every row alike
        for row in rows:
            row.measure()
    _print_table(rows, args.repeat)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _print_table(rows: list[Row], repeat: int) -> None:
    print(f"\n512x512 int16 CT slices → 8-bit PNG, median of {repeat} run(s), start-up included\n")
    head = ("tool", "files", "seconds", "files/s", "main ms/file", "main MB", "worker MB")
    print("| {:<34} | {:>6} | {:>8} | {:>8} | {:>12} | {:>7} | {:>9} |".format(*head))
    print("|" + "|".join("-" * (w + 2) for w in (34, 6, 8, 8, 12, 7, 9)) + "|")
    for row in rows:
        seconds = row.median("seconds") or 0.0
        cpu, rss, wrss = row.median("cpu"), row.median("rss_kb"), row.median("worker_rss_kb")
        print(
            "| {:<34} | {:>6} | {:>8.2f} | {:>8.0f} | {:>12} | {:>7} | {:>9} |".format(
                row.name,
                row.files,
                seconds,
                row.files / seconds,
                f"{cpu * 1000 / row.files:.3f}" if cpu is not None else "",
                f"{rss / 1024:.0f}" if rss is not None else "",
                f"{wrss / 1024:.0f}" if wrss else "",
            )
        )
    print("\nmain ms/file: CPU of the main process (start-up included) per file")


if __name__ == "__main__":
    raise SystemExit(main())
