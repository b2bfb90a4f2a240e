"""Does `dcmexport convert`'s main process scale with the work? Memory and per-file CPU of the
main process at 2,000, 20,000 and 200,000 inputs (issue 20, item 4).

The inputs are tiny (16² CT slices) so that the workers' per-file work is small and the main
process's share — discovery, naming, futures glue, the resume state, progress, the manifest —
is what the figures show. One slice from `dcmexport.sample.write_ct_series` is the template;
every input is a byte copy of it with its own SOP Instance UID (same length, patched in place),
1,000 per folder (``s0000/CT_000000.dcm`` …), written in seconds even for 200,000.

Each size runs ``dcmexport convert DIR -o OUT -j 2`` once in a fresh interpreter
(`throughput.MEASURED_CLI`: the main process's own CPU and peak RSS, and its largest worker's
peak RSS), and samples the main process's VmRSS every 0.2 s, so a growth with the count shows
both across sizes and within one run:

- *growth/1k (sizes)*: (peak RSS − the previous size's peak RSS) per 1,000 more inputs;
- *slope/1k (in run)*: the least-squares slope of VmRSS from 30 % to 90 % of the run (after
  start-up), per 1,000 inputs converted (at the run's mean rate).

    python benchmarks/scaling.py --sizes 2000,20000,200000 --keep /tmp/scaling
    python benchmarks/scaling.py --sizes 2000,20000 --compare /tmp/main/src

`--compare SRC` runs each size with another source tree too (e.g. main's ``src``), the two
interleaved, so "before" and "after" share the machine's load.
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
import threading
import time
from pathlib import Path

from throughput import MEASURED_CLI

PER_FOLDER = 1000
SAMPLE_EVERY = 0.2  # seconds between two reads of the main process's VmRSS


def template_slice(folder: Path) -> tuple[bytes, bytes]:
    """One 16² CT slice file's bytes and its SOP Instance UID (as stored, both occurrences:
    the file meta and the dataset)."""
    import pydicom

    from dcmexport.sample import write_ct_series

    path = write_ct_series(folder, 1, size=16)[0]
    data = path.read_bytes()
    uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID.encode()
    path.unlink()
    if data.count(uid) != 2 or len(uid) < 20:
        raise RuntimeError("the template's SOP Instance UID is not where expected")
    return data, uid


def generate(folder: Path, n: int) -> Path:
    """`n` copies of the template slice, each with its own SOP Instance UID, 1,000 per folder;
    reused when `folder` already holds them (a marker beside it says how many)."""
    marker = folder.with_name(folder.name + ".count")
    if folder.is_dir() and marker.is_file() and marker.read_text() == str(n):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data, uid = template_slice(folder)
    stem = uid[:-10]  # the last 10 digits of the UID's last component become the counter
    for k in range(n):
        sub = folder / f"s{k // PER_FOLDER:04d}"
        if k % PER_FOLDER == 0:
            sub.mkdir()
        new_uid = stem + b"%010d" % k
        (sub / f"CT_{k:06d}.dcm").write_bytes(data.replace(uid, new_uid))
    marker.write_text(str(n))
    return folder


class RssSampler:
    """VmRSS of one process every `SAMPLE_EVERY` seconds, on a thread, until it exits."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []  # (seconds since start, kB)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:  # the process has gone
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    kb = int(line.split()[1])
                    self.samples.append((time.perf_counter() - self._started, kb))
                    break
            else:
                return  # a zombie has no VmRSS
            time.sleep(SAMPLE_EVERY)

    def join(self) -> None:
        self._thread.join()

    def slope_kb_per_second(self, wall: float) -> float | None:
        """The least-squares slope of VmRSS from 30 % to 90 % of the run (after start-up)."""
        middle = [(t, kb) for t, kb in self.samples if 0.3 * wall <= t <= 0.9 * wall]
        if len(middle) < 3:
            return None
        ts, kbs = zip(*middle, strict=True)
        mean_t, mean_kb = statistics.fmean(ts), statistics.fmean(kbs)
        var = sum((t - mean_t) ** 2 for t in ts)
        if var == 0:
            return None
        return sum((t - mean_t) * (kb - mean_kb) for t, kb in middle) / var

    def at_fraction(self, fraction: float, wall: float) -> int | None:
        """VmRSS at the sample nearest `fraction` of the run's wall time."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: abs(s[0] - fraction * wall))[1]


def run_convert(
    source: Path, out: Path, jobs: int, src: Path, quiet: bool, extra: list[str]
) -> dict[str, object]:
    """One measured ``convert`` in a fresh interpreter into an empty `out`."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-c", MEASURED_CLI, "convert", str(source), "-o", str(out)]
    command += ["-j", str(jobs), *(["-q"] if quiet else []), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    sampler = RssSampler(process.pid)
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"convert exited {process.returncode}:\n{stderr[-2000:]}")
    measured = json.loads(stderr.strip().splitlines()[-1])
    return {**measured, "wall": wall, "sampler": sampler}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="2000,20000,200000", help="input counts, comma-separated"
    )
    parser.add_argument("--keep", type=Path, help="generate the inputs here and keep them")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another source tree's src/ to run too")
    parser.add_argument("--quiet", action="store_true", help="run convert with -q (no progress)")
    parser.add_argument("--trace", action="store_true", help="print the VmRSS samples too")
    parser.add_argument("extra", nargs="*", help="more convert options (after --)")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = args.keep or Path(tempfile.mkdtemp(prefix="dcmexport-scaling-"))
    here = Path(__file__).resolve().parents[1] / "src"
    trees = [("", here)] + ([("compare", args.compare.resolve())] if args.compare else [])
    table: list[tuple[str, int, dict[str, object]]] = []
    try:
        for n in sizes:
            started = time.perf_counter()
            source = generate(work / f"ct{n}", n)
            print(f"{n} inputs ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            for label, src in trees:
                result = run_convert(source, work / "out", args.jobs, src, args.quiet, args.extra)
                table.append((label, n, result))
                print(f"  {label or 'this tree'}: {result['wall']:.1f} s", file=sys.stderr)
                if args.trace:
                    _print_trace(result)
    finally:
        shutil.rmtree(work / "out", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _print_table(table, args.jobs)
    return 0


def _print_trace(result: dict[str, object]) -> None:
    sampler = result["sampler"]
    assert isinstance(sampler, RssSampler)
    step = max(1, len(sampler.samples) // 40)
    for t, kb in sampler.samples[::step]:
        print(f"    {t:7.1f} s  {kb / 1024:7.1f} MB", file=sys.stderr)


def _print_table(table: list[tuple[str, int, dict[str, object]]], jobs: int) -> None:
    print(f"\n16² CT slices → 8-bit PNG, `convert -j {jobs}`, one run per row\n")
    head = (
        "tree",
        "inputs",
        "wall s",
        "files/s",
        "main CPU ms/file",
        "main peak MB",
        "worker peak MB",
        "growth/1k (sizes)",
        "slope/1k (in run)",
        "RSS 10/50/90 % MB",
    )
    widths = (8, 7, 7, 7, 16, 12, 14, 17, 17, 19)
    print("| " + " | ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    previous: dict[str, tuple[int, float]] = {}
    for label, n, r in table:
        wall, cpu = float(r["wall"]), float(r["cpu"])  # type: ignore[arg-type]
        rss_mb = float(r["rss_kb"]) / 1024  # type: ignore[arg-type]
        sampler = r["sampler"]
        assert isinstance(sampler, RssSampler)
        n0, rss0 = previous.get(label, (n, rss_mb))
        previous[label] = (n, rss_mb)
        growth = f"{(rss_mb - rss0) * 1024 / ((n - n0) / 1000):.2f} KB" if n > n0 else ""
        slope = sampler.slope_kb_per_second(wall)
        per_k = f"{slope / (n / wall / 1000):.2f} KB" if slope is not None else ""
        marks = [sampler.at_fraction(f, wall) for f in (0.1, 0.5, 0.9)]
        trace = "/".join(f"{m / 1024:.0f}" if m else "-" for m in marks)
        cells = (
            label or "this",
            n,
            f"{wall:.1f}",
            f"{n / wall:.0f}",
            f"{cpu * 1000 / n:.3f}",
            f"{rss_mb:.0f}",
            f"{float(r['worker_rss_kb']) / 1024:.0f}",  # type: ignore[arg-type]
            growth,
            per_k,
            trace,
        )
        print("| " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + " |")
    print(
        "\nmain CPU ms/file: the main process's CPU (start-up included) per input; "
        "growth/1k: peak RSS over the previous size's, per 1,000 more inputs"
    )


if __name__ == "__main__":
    raise SystemExit(main())
