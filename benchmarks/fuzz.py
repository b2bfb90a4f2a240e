"""Fuzz dcmexport with mutants of real DICOM files: nothing may escape as a traceback, hang,
exit with a code other than 0/1, or take more than 1 GB.

Seeds are real files (pydicom's bundled test files and `dcmexport sample`'s set, DICOMDIR
included). Each mutant gets one or more of: bit flips, truncation, corrupted length fields,
corrupted VRs and values, absurd Rows/Columns/Number of Frames/Bits Allocated, deep sequence
nesting, and mutated DICOMDIR records. Each batch of mutants is run through

- ``dcmexport convert BATCH -o OUT -j 2`` (exit code, traceback on stderr, manifest, hang,
  peak RSS of the process tree), and the same over the batch's DICOMDIR sets with
  ``--video none --frames first`` (their real files are not the mutants: only the DICOMDIR is),
- ``dcmexport info`` and ``info --json`` on every file (in one process that calls the CLI's
  `main` per file, so an escaping exception is caught and classified),
- ``dcmexport index BATCH -o TABLE.csv``.

A crash class is (command, exception type, innermost dcmexport frame) or hang / exit code /
memory; the first mutant of each class is kept under ``OUT/crashers/``.

Short run (the suite runs a budget of this, tests/test_fuzz.py)::

    nice -n 19 python benchmarks/fuzz.py --batches 2 --batch-size 100 --seed 1 --out /tmp/fuzz

Forty batches as they come (every command)::

    nice -n 19 python benchmarks/fuzz.py --batches 40 --batch-size 500 --seed 13 --out /tmp/fuzz

Long run (100,000 mutants through ``convert`` and ``info --json``)::

    nice -n 10 python benchmarks/fuzz.py --long-run --batches 200 --batch-size 500 --seed 14
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CONVERT_TIMEOUT = 600.0  # per batch; a hang of one file is the run's --timeout (60 s here)
RSS_LIMIT = 2**30

_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT"]
_VRS += [b"OB", b"OD", b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM"]
_VRS += [b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"Ui", b"\x00\x00", b"ZZ"]
#: tags whose values decide allocation: Rows, Columns, Number of Frames, Bits, Samples
_SIZE_TAGS = [(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0008), (0x0028, 0x0100)]
_SIZE_TAGS += [(0x0028, 0x0002), (0x0028, 0x0101), (0x0028, 0x1101), (0x0004, 0x1400)]


def seeds() -> list[Path]:
    """Real files: pydicom's bundled test files and a fresh sample set (with its DICOMDIR)."""
    import pydicom.data.data_manager as dm

    files = sorted(p for p in (Path(dm.DATA_ROOT) / "test_files").glob("*.dcm"))
    files = [p for p in files if p.stat().st_size < 2_000_000]
    sample = Path(tempfile.mkdtemp(prefix="fuzz-seeds-")) / "samples"
    subprocess.run(
        [PYTHON, "-m", "dcmexport", "sample", "-o", str(sample), "-q"], check=True, env=_env()
    )
    return files + sorted(p for p in sample.rglob("*") if p.is_file())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _element_offsets(data: bytes) -> list[int]:
    """Offsets of explicit-VR element headers (a tag followed by two capital letters)."""
    return [m.start() for m in re.finditer(rb"[\x00-\x7f][\x00-\xff]{3}[A-Z]{2}", data[132:])]


_SEEDS: dict[Path, tuple[bytes, list[int]]] = {}


def _seed(path: Path) -> tuple[bytes, list[int]]:
    """A seed's bytes and element offsets, read and searched once per run."""
    if path not in _SEEDS:
        data = path.read_bytes()
        _SEEDS[path] = data, _element_offsets(data)
    return _SEEDS[path]


def mutate(data: bytes, rng: random.Random, offsets: list[int] | None = None) -> bytes:
    """One to three mutations of `data` (`offsets`: its element offsets, if known; a later
    mutation may use offsets an earlier one moved, which only makes it more random)."""
    out = bytearray(data)
    offsets = _element_offsets(data) if offsets is None else offsets
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "truncate", "length", "vr", "size", "bytes", "nest"])
        if kind == "flip" and out:
            for _ in range(rng.randint(1, 16)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == "truncate" and len(out) > 8:
            del out[rng.randrange(len(out) // 8, len(out)) :]
        elif kind == "length" and offsets:
            at = 132 + rng.choice(offsets)
            value = rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)])
            if at + 12 <= len(out):
                if out[at + 4 : at + 6] in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC"):
                    struct.pack_into("<I", out, at + 8, value)
                else:
                    struct.pack_into("<H", out, at + 6, value & 0xFFFF)
        elif kind == "vr" and offsets:
            at = 132 + rng.choice(offsets)
            out[at + 4 : at + 6] = rng.choice(_VRS)
        elif kind == "size":
            out = bytearray(_absurd_sizes(bytes(out), rng))
        elif kind == "bytes" and out:
            at = rng.randrange(len(out))
            out[at : at + 4] = rng.randbytes(4)
        elif kind == "nest":
            out = bytearray(_nested(bytes(out), rng.choice([50, 500, 3000])))
    return bytes(out)


def _absurd_sizes(data: bytes, rng: random.Random) -> bytes:
    """Set a size-deciding US/IS/UL value to an absurd number, in place in the bytes."""
    out = bytearray(data)
    group, element = rng.choice(_SIZE_TAGS)
    tag = struct.pack("<HH", group, element)
    at = out.find(tag, 128)
    if at < 0 or at + 8 > len(out):
        return data
    vr = bytes(out[at + 4 : at + 6])
    if vr == b"US" and at + 10 <= len(out):
        struct.pack_into("<H", out, at + 8, rng.choice([0, 1, 0xFFFF, 0x8000]))
    elif vr == b"UL" and at + 12 <= len(out):
        struct.pack_into("<I", out, at + 8, rng.choice([0, 0xFFFFFFFF, 1 << 31]))
    elif vr == b"IS":
        (length,) = struct.unpack_from("<H", out, at + 6)
        text = rng.choice([b"4294967296", b"2147483647", b"-1", b"0", b"1e9", b"99999999"])
        text = text[:length].ljust(length, b" ")
        out[at + 8 : at + 8 + length] = text
    return bytes(out)


def _nested(data: bytes, depth: int) -> bytes:
    """A private sequence nested `depth` deep, inserted after the file meta (undefined
    lengths: explicit VR little endian)."""
    item, end_item, end_seq = b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0", b"\xfe\xff\xdd\xe0"
    head = struct.pack("<HH2sHI", 0x0009, 0x1001, b"SQ", 0, 0xFFFFFFFF)
    nest = (head + item + b"\xff\xff\xff\xff") * depth
    nest += (b"\x00\x00\x00\x00".join([end_item, end_seq]) + b"\x00\x00\x00\x00") * depth
    at = data.find(b"\x08\x00", 132)
    return data[:at] + nest + data[at:] if at > 0 else data + nest


@dataclasses.dataclass
class Finding:
    """One crash class and its first example."""

    key: str
    count: int = 0
    example: str = ""
    #: the end of stderr of the first run that showed it, when no file explains it
    stderr: str = ""


def _peak_rss(proc: subprocess.Popen, stop: threading.Event, peak: list[int]) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            total = 0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            peak[0] = max(peak[0], total)
            time.sleep(0.2)
    except psutil.Error:
        return


def run(cmd: list[str], timeout: float) -> tuple[int | None, str, int, float]:
    """(exit code or None on a hang, stderr, peak RSS of the tree, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["nice", "-n", "19", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
    )
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_peak_rss, args=(proc, stop, peak), daemon=True)
    watcher.start()
    try:
        _, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        code = None
    stop.set()
    watcher.join()
    return code, err.decode("utf-8", "replace"), peak[0], time.monotonic() - started


_INFO_LOOP = r"""
import json, signal, sys, traceback, io, contextlib
from dcmexport.cli import main
out = []
def alarm(*_): raise TimeoutError("hang")
signal.signal(signal.SIGALRM, alarm)
json_only = sys.argv[1] == "True"
for path in sys.argv[2:]:
    for extra in ([["--json"]] if json_only else [[], ["--json"]]):
        signal.alarm(30)
        try:
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(["info", *extra, path])
            if code not in (0, 1, 2):
                out.append([path, " ".join(extra), f"exit {code}"])
            elif "Traceback" in err.getvalue():
                out.append([path, " ".join(extra), "traceback on stderr"])
        except BaseException as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in tb if "dcmexport" in f.filename]
            where = f"{ours[-1].filename.split('dcmexport/')[-1]}:{ours[-1].name}" if ours else "?"
            out.append([path, " ".join(extra), f"{type(exc).__name__} at {where}"])
        finally:
            signal.alarm(0)
print(json.dumps(out))
"""


def _traceback_class(err: str) -> str:
    """The exception type and innermost dcmexport frame of the last traceback in `err`."""
    frames = re.findall(r'File "[^"]*dcmexport/([^"]+)", line \d+, in (\w+)', err)
    last = [
        line for line in err.strip().splitlines() if re.match(r"^\w[\w.]*(Error|Exception)", line)
    ]
    kind = last[-1].split(":")[0] if last else "?"
    where = f"{frames[-1][0]}:{frames[-1][1]}" if frames else "?"
    return f"{kind} at {where}"


def fuzz_batch(
    files: list[Path],
    folder: Path,
    findings: dict[str, Finding],
    crashers: Path,
    long_run: bool = False,
) -> dict[str, object]:
    """Run one batch through convert, info, info --json and index; record crash classes.
    `long_run`: convert and ``info --json`` only (the pair the long run's target names)."""
    stats: dict[str, object] = {"files": len(files)}

    def found(key: str, example: Path | None, stderr: str = "") -> None:
        finding = findings.setdefault(key, Finding(key))
        finding.count += 1
        if stderr and not finding.stderr:
            finding.stderr = stderr[-2000:]
        if example is not None and not finding.example:
            crashers.mkdir(parents=True, exist_ok=True)
            kept = crashers / f"{len(findings):03d}_{example.name}"
            if example.is_file():
                shutil.copy(example, kept)
            finding.example = str(kept)

    # the mutants with the default options (stills, video, everything), then the DICOMDIR
    # sets: their mutated DICOMDIR is the point, the real files it references are not, so
    # those convert as first-frame stills only (a set is ~76 real files, cines included)
    sets = folder.parent / f"{folder.name}-sets"
    runs = [(folder, []), (sets, ["--video", "none", "--frames", "first"])]
    seconds_total, rss_max = 0.0, 0
    for tree, extra in runs:
        if not tree.is_dir():
            continue
        out = tree.parent / f"{tree.name}-out"
        convert = [PYTHON, "-m", "dcmexport", "convert", str(tree), "-o", str(out), "-j", "2"]
        code, err, rss, seconds = run([*convert, "-q", "--timeout", "60", *extra], CONVERT_TIMEOUT)
        seconds_total, rss_max = seconds_total + seconds, max(rss_max, rss)
        stats.update(convert_exit=max(code or 0, int(stats.get("convert_exit") or 0)))
        if code is None:
            found("convert: hang (whole batch)", None)
        elif code not in (0, 1):
            found(f"convert: exit {code}: {_traceback_class(err)}", None, err)
        if "Traceback" in err:
            found(f"convert: traceback: {_traceback_class(err)}", None, err)
        if rss > RSS_LIMIT:
            found("convert: over 1 GB", None)
        if code in (0, 1) and not (out / "manifest.csv").exists():
            found("convert: no manifest", None)
        if (out / "manifest.csv").exists():  # a reason nobody wrote yet is a class too
            with open(out / "manifest.csv", newline="", errors="replace") as f:
                for row in csv.DictReader(f):
                    if (row.get("error") or "").startswith("unexpected "):
                        kind = row["error"].split(":")[0]
                        found(f"convert: {kind}", Path(row["source"]))
        shutil.rmtree(out, ignore_errors=True)
    stats.update(convert_rss_mb=rss_max // 2**20, convert_s=round(seconds_total, 1))
    table = folder.parent / f"{folder.name}-index.csv"
    trees = [str(folder), *([str(sets)] if sets.is_dir() else [])]
    index = [PYTHON, "-m", "dcmexport", "index", *trees, "-o", str(table), "-q", "-j", "2"]
    if not long_run:
        code, err, rss, seconds = run(index, CONVERT_TIMEOUT)
        stats.update(index_exit=code, index_s=round(seconds, 1))
        if code is None or code not in (0, 1, 2) or "Traceback" in err:
            found(f"index: exit {code}: {_traceback_class(err)}", None, err)
    dicom = [str(p) for p in files if p.is_file()]
    started = time.monotonic()
    loops = [  # two loops side by side, one per core
        subprocess.Popen(
            ["nice", "-n", "19", PYTHON, "-c", _INFO_LOOP, str(long_run), *dicom[half::2]],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        for half in (0, 1)
    ]
    problems: list[list[str]] = []
    for proc in loops:
        try:
            stdout, _ = proc.communicate(timeout=CONVERT_TIMEOUT)
            problems += json.loads(stdout.strip().splitlines()[-1]) if stdout else []
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            problems.append(["?", "", "info loop hung"])
        except (json.JSONDecodeError, IndexError):
            problems.append(["?", "", f"info loop died: exit {proc.returncode}"])
    stats["info_s"] = round(time.monotonic() - started, 1)
    for path, extra, what in problems:
        found(f"info {extra}: {what}".replace("  ", " "), Path(path))
    table.unlink(missing_ok=True)
    return stats


def make_batch(folder: Path, seed_files: list[Path], size: int, rng: random.Random) -> list[Path]:
    """`size` mutants; DICOMDIR mutants go in their own folder beside their (real) files."""
    folder.mkdir(parents=True)
    made = []
    for i in range(size):
        seed = rng.choice(seed_files)
        original, offsets = _seed(seed)
        data = mutate(original, rng, offsets)
        if seed.name.upper() == "DICOMDIR":
            target = folder.parent / f"{folder.name}-sets" / f"set{i:04d}"
            skip = shutil.ignore_patterns("DICOMDIR")  # hard links: the real files are only read
            shutil.copytree(seed.parent, target, ignore=skip, copy_function=os.link)
            path = target / "DICOMDIR"
        else:
            path = folder / f"m{i:04d}_{seed.name}"
        path.write_bytes(data)
        made.append(path)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dcmexport-fuzz")
    parser.add_argument("--keep", action="store_true", help="keep the mutants")
    parser.add_argument(
        "--long-run", action="store_true", help="convert and info --json only (no index, info)"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seed_files = seeds()
    dicomdirs = [p for p in seed_files if p.name.upper() == "DICOMDIR"]
    findings: dict[str, Finding] = {}
    totals: collections.Counter[str] = collections.Counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for b in range(args.batches):
        folder = args.out / f"batch{b:03d}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(folder.parent / f"{folder.name}-sets", ignore_errors=True)
        files = make_batch(folder, seed_files + dicomdirs * 5, args.batch_size, rng)
        stats = fuzz_batch(files, folder, findings, args.out / "crashers", args.long_run)
        totals["files"] += len(files)
        print(json.dumps({"batch": b, **stats}), flush=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(folder.parent / f"{folder.name}-sets", ignore_errors=True)
    report = {
        "seed": args.seed,
        "mutants": totals["files"],
        "crash_classes": [dataclasses.asdict(f) for f in findings.values()],
    }
    print(json.dumps(report, indent=1))
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
