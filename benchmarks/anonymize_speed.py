"""Speed of `dcmexport anonymize` (the batch path) vs dicognito, in files/s, on 512² CT slices.

Generates --files CT slices with `write_ct_series` (or reuses them with --keep), then times,
median of --repeat runs, each writing into a fresh output folder, every tool through its own
command line in a fresh interpreter (start-up included for all):

- ``dcmexport anonymize IN -o OUT --key K -j 2`` (and ``-j 1``): discovery, header-read
  planning, de-identification and DICOM copies on worker processes, resume state, manifest;
- ``python -m dicognito -o OUT IN`` (one process; it has no worker option).

CPU ms/file is the run's CPU time (the command and every worker it waited for) per file:
steadier than the wall figure on a machine shared with other work. The issue's target is
300 files/s with 2 workers. dicognito is a benchmark-only dependency (``pip install
dicognito``); it is skipped when missing.

    python benchmarks/anonymize_speed.py --files 300 --repeat 3 --keep /tmp/ct300
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dcmexport.sample import write_ct_series

Command = Callable[[Path, Path], list[str]]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _median(command: list[str], out: Path, repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `command`, each time into an empty `out`."""
    walls, cpus = [], []
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        started, cpu = time.perf_counter(), _children_cpu()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(walls), statistics.median(cpus)


def _ours(source: Path, out: Path, jobs: int) -> list[str]:
    command = [sys.executable, "-m", "dcmexport", "anonymize", str(source), "-o", str(out)]
    return [*command, "--key", "benchmark key", "-j", str(jobs), "-q"]


def _dicognito(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dicognito", "--quiet", "-o", str(out), str(source)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
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
        out = work / "out"
        commands: list[tuple[str, list[str]]] = [
            ("dcmexport anonymize -j 2", _ours(source, out, 2)),
            ("dcmexport anonymize -j 1", _ours(source, out, 1)),
        ]
        if importlib.util.find_spec("dicognito") is not None:
            commands.append(("python -m dicognito", _dicognito(source, out)))
        rows = [(name, *_median(command, out, args.repeat)) for name, command in commands]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"{len(paths)} CT slices 512x512, median of {args.repeat} runs, "
            f"{os.cpu_count()} cores, load average {load:.1f}\n"
        )
        print("| tool | files/s | wall s | CPU ms/file |")
        print("| --- | ---: | ---: | ---: |")
        for name, wall, cpu in rows:
            rate = len(paths) / wall
            print(f"| {name} | {rate:,.0f} | {wall:.2f} | {1000 * cpu / len(paths):.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
