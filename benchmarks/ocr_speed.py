"""Speed of ``--burned-in mask``: images/s for 640×480 RGB ultrasound stills and a 60-frame
ultrasound cine, and the share of the time spent in OCR.

The images are the tests' synthetic ones (tests/burned_in_cases.py: speckle sector, a name,
an ID, a birth date and an institution burned in at corners and in the middle). Two views:

- in process, one core: `mask_burned_in` on each de-identified dataset (decode, OCR views,
  detection, masking, the re-check, native pixel data), with the time inside the OCR engine
  (`ocr.detect_text`, `ocr.read_text`) measured separately;
- the command line: ``dcmexport anonymize IN -o OUT --burned-in mask -j J`` in a fresh
  interpreter (start-up and model loading included), beside ``--burned-in warn``.

    python benchmarks/ocr_speed.py --stills 20 --cine-frames 60 --jobs 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.burned_in_cases

from tests.burned_in_cases import us_cine, us_still, write

from dcmexport.engine.burned_in import mask_burned_in
from dcmexport.render import ocr


class _Timed:
    """Wraps the OCR entry points to add up the time spent inside them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def in_process(stills: int, cine_frames: int) -> None:
    timer = _Timed()
    ocr.detect_text = timer.wrap(ocr.detect_text)
    ocr.read_text = timer.wrap(ocr.read_text)
    ocr._engine()  # load the models once, outside the timings
    datasets = [us_still(seed=k)[0] for k in range(stills)]
    start = time.perf_counter()
    boxes = sum(mask_burned_in(ds).boxes for ds in datasets)
    wall = time.perf_counter() - start
    print(
        f"stills  640x480 RGB: {stills / wall:5.2f} images/s, "
        f"{wall / stills * 1000:6.0f} ms/image, "
        f"OCR {timer.seconds / wall:4.0%} of the time ({timer.calls} OCR calls, {boxes} boxes)"
    )
    cine, _ = us_cine(cine_frames)
    timer.seconds, timer.calls = 0.0, 0
    start = time.perf_counter()
    report = mask_burned_in(cine)
    wall = time.perf_counter() - start
    print(
        f"cine    {cine_frames} frames: {1 / wall:5.2f} cines/s, "
        f"{cine_frames / wall:5.1f} frames/s, "
        f"OCR on {report.frames_checked} frame(s) (+ re-check), "
        f"OCR {timer.seconds / wall:4.0%} of the time"
    )


def command_line(stills: int, cine_frames: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(stills):
            write(us_still(seed=k)[0], root / "stills" / f"{k}.dcm")
        write(us_cine(cine_frames)[0], root / "cine" / "cine.dcm")
        for name, count in (("stills", stills), ("cine", 1)):
            for policy in ("warn", "mask"):
                out = root / f"out-{name}-{policy}"
                argv = [sys.executable, "-m", "dcmexport", "anonymize", str(root / name)]
                argv += ["-o", str(out), "--burned-in", policy, "-j", str(jobs), "-q"]
                start = time.perf_counter()
                subprocess.run(argv, check=True)
                wall = time.perf_counter() - start
                shutil.rmtree(out)
                print(
                    f"anonymize --burned-in {policy:4} -j {jobs}, {count:3} {name:6}: "
                    f"{wall:6.1f} s, {count / wall:5.2f} images/s"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=int, default=20)
    parser.add_argument("--cine-frames", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    in_process(args.stills, args.cine_frames)
    command_line(args.stills, args.cine_frames, args.jobs)


if __name__ == "__main__":
    main()
