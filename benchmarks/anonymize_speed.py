"""Speed of the de-identification engine vs dicognito, in files/s, on 512² CT slices.

Generates --files CT slices with `write_ct_series` (or reuses them with --keep), then times,
median of --repeat runs, each writing into a fresh output folder:

- ours: in this process, on one core: `dcmread` → `deidentify` → `write_deidentified` → file;
- dicognito: ``python -m dicognito -o OUT IN`` (its own CLI, one process; interpreter start-up
  included, which is why a per-file CPU figure is given as well).

The issue's target is 300 files/s for ours. dicognito is a benchmark-only dependency
(``pip install dicognito``); it is skipped when missing.

    python benchmarks/anonymize_speed.py --files 500 --repeat 3 --keep /tmp/ct500
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread

from dcmexport.dicom.deid import DeidOptions, deidentify, key_from_text, write_deidentified
from dcmexport.sample import write_ct_series


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _median(run: Callable[[Path], None], out_root: Path, repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `run`, each time into an empty folder."""
    walls, cpus = [], []
    for index in range(repeat):
        out = out_root / f"run{index}"
        started, cpu = time.perf_counter(), _cpu_seconds()
        run(out)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_seconds() - cpu)
        shutil.rmtree(out)
    return statistics.median(walls), statistics.median(cpus)


def _ours(paths: list[Path], options: DeidOptions) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        out.mkdir(parents=True)
        for path in paths:
            result = deidentify(dcmread(path), options)
            (out / result.output_name).write_bytes(write_deidentified(result.dataset))

    return run


def _dicognito(source: Path) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        command = [sys.executable, "-m", "dicognito", "--quiet", "-o", str(out), str(source)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate into / reuse this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="anonymize_speed_"))
    source = args.keep or work / "ct"
    try:
        paths = sorted(source.glob("CT_*.dcm")) if source.exists() else []
        if len(paths) != args.files:
            shutil.rmtree(source, ignore_errors=True)
            paths = write_ct_series(source, args.files, size=512)
        options = DeidOptions(key=key_from_text("benchmark key"))
        rows = [
            ("dcmexport deidentify (1 process)", *_median(_ours(paths, options), work, args.repeat))
        ]
        if importlib.util.find_spec("dicognito") is not None:
            rows.append(("python -m dicognito", *_median(_dicognito(source), work, args.repeat)))
        print(f"{len(paths)} CT slices 512x512, median of {args.repeat} runs\n")
        print("| tool | files/s | wall s | CPU ms/file |")
        print("| --- | ---: | ---: | ---: |")
        for name, wall, cpu in rows:
            rate = len(paths) / wall
            print(f"| {name} | {rate:,.0f} | {wall:.2f} | {1000 * cpu / len(paths):.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
