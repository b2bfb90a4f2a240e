"""Time and peak memory of series → ``.nii.gz``: dcmexport's volume writer vs dcm2niix.

A 300-slice 512² CT series (`dcmexport.sample.write_ct_series`, 150 MB of pixels) is written
once; each converter then runs on the same folder in a child process whose peak resident set
size comes from the kernel (`wait4`). Rows:

- the library path: read the headers, plan, write one volume (`plan_files` + `write_volume`);
- the command line, ``dcmexport convert SERIES --volume nifti --video none``: the whole run
  (discovery, a PNG still per slice — `convert` always writes stills —, the series grouping,
  the volume planned and written as a series task, manifest), with ``-j 1`` (in one process:
  its peak RSS is the run's) and ``-j 2`` (a process pool: `wait4` reports the largest
  single process, not the sum); and the same run without ``--volume``, so that the
  difference is what the volume costs on top of the stills;
- dcm2niix with ``-z y`` (its default gzip path; it uses pigz when installed).

Median of `--repeat` runs.

    python benchmarks/volumes.py --slices 300 --size 512 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = r"""
import sys
from pathlib import Path
from dcmexport.exporters.volume import plan_files, write_volume
from dcmexport.options import VolumeFormat
paths = sorted(str(p) for p in Path(sys.argv[1]).iterdir())
planned = plan_files(paths)
assert len(planned.volumes) == 1 and not planned.refused, planned
write_volume(planned.volumes[0], Path(sys.argv[2]) / "series", VolumeFormat(sys.argv[3]))
"""


def run_child(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        assert process.stderr is not None
        raise SystemExit(f"{command[:3]} failed: {process.stderr.read().decode()[-800:]}")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def dcm2niix_binary() -> str | None:
    found = shutil.which("dcm2niix")
    if found:
        return found
    try:
        import dcm2niix

        return str(dcm2niix.bin)
    except ImportError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tool = dcm2niix_binary()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        series = root / "ct"
        # in a child: Linux carries a parent's peak RSS into its children across fork+exec
        code = "from dcmexport.sample import write_ct_series; "
        code += f"write_ct_series({str(series)!r}, {args.slices}, size={args.size})"
        subprocess.run([sys.executable, "-c", code], check=True)
        volume_mb = args.slices * args.size * args.size * 2 / 1e6
        print(
            f"series: {args.slices} slices of {args.size}² int16 ({volume_mb:.0f} MB of pixels); "
            f"median of {args.repeat} runs; pigz: {'yes' if shutil.which('pigz') else 'no'}\n"
        )
        ours = [sys.executable, "-c", OURS, str(series), "{out}"]
        cli = [sys.executable, "-m", "dcmexport", "convert", str(series), "-o", "{out}", "-q"]
        cli += ["--video", "none"]
        runs: list[tuple[str, list[str]]] = [
            ("library volume .nii.gz", [*ours, "nifti"]),
            ("library volume .npz", [*ours, "npz"]),
            ("convert --volume nifti -j 1", [*cli, "--volume", "nifti", "-j", "1"]),
            ("convert --volume nifti -j 2", [*cli, "--volume", "nifti", "-j", "2"]),
            ("convert (stills only) -j 1", [*cli, "-j", "1"]),
        ]
        if tool:
            runs.append(("dcm2niix -z y", [tool, "-z", "y", "-b", "n", "-o", "{out}", str(series)]))
        else:
            print("dcm2niix not found (pip install dcm2niix): its row is left out\n")
        print(f"{'run':<30} {'seconds':>8} {'peak RSS MB':>12} {'volume MB':>10}")
        for n, (label, command) in enumerate(runs):
            times, peaks, sizes = [], [], []
            for i in range(args.repeat):
                out = root / f"out-{n}-{i}"
                out.mkdir()
                seconds, peak = run_child([str(out) if c == "{out}" else c for c in command])
                times.append(seconds)
                peaks.append(peak)
                written = [p for p in out.iterdir() if p.suffix in (".gz", ".npz")]
                sizes.append(sum(p.stat().st_size for p in written) / 1e6)
                shutil.rmtree(out)
            print(
                f"{label:<30} {statistics.median(times):8.2f} {statistics.median(peaks):12.0f} "
                f"{statistics.median(sizes):10.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
