"""Peak memory and time of cine → video: a 1500-frame 512² 16-bit cine (750 MB of pixels).

Runs `dcmexport convert` on the generated cine in a child process and reads that child's peak
resident set size from the kernel (`wait4`), for MP4 alone and for MP4 + GIF, with and without
a window in the file (without one, `auto` needs a first streaming pass for the clip's min-max).
For scale, a naive baseline — `pixel_array` of the whole file, then PyAV — runs the same way.

    python benchmarks/video_memory.py --frames 1500 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_MB = 400

NAIVE_SCRIPT = r"""
import sys
import av, numpy as np, pydicom
ds = pydicom.dcmread(sys.argv[1])
frames = ds.pixel_array  # every frame at once
lo, hi = float(frames.min()), float(frames.max())
out = av.open(sys.argv[2], "w")
stream = out.add_stream("libx264", rate=15)
stream.width, stream.height, stream.pix_fmt = ds.Columns, ds.Rows, "yuv420p"
for f in frames:
    grey = ((f - lo) / (hi - lo) * 255).astype(np.uint8)
    for packet in stream.encode(av.VideoFrame.from_ndarray(grey, format="gray")):
        out.mux(packet)
for packet in stream.encode():
    out.mux(packet)
out.close()
"""


def write_cine(path: Path, n_frames: int, size: int, with_window: bool) -> None:
    """A 12-bit-in-16 fluoroscopy-like cine: textured background, a moving bright vessel."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    background = (1200 + 600 * np.sin(xx / 37.0) * np.cos(yy / 53.0)).astype(np.float32)
    noise = rng.normal(0, 40, (8, size, size)).astype(np.float32)
    pixels = np.empty((n_frames, size, size), dtype=np.uint16)
    for k in range(n_frames):
        cx = size / 2 + size / 3 * np.sin(2 * np.pi * k / 90)
        vessel = 1800 * np.exp(-(((xx - cx) / 12.0) ** 2))
        pixels[k] = np.clip(background + vessel + noise[k % 8], 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality, ds.PatientID, ds.StudyInstanceUID = "XA", "BENCH", generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.NumberOfFrames, ds.FrameTime = n_frames, "66.67"
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    if with_window:
        ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def run_child(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{command[:4]} failed: {process.stderr.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    args = parser.parse_args()
    dcmexport = [sys.executable, "-m", "dcmexport", "convert", "-j", "1", "-q", "--overwrite"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cines = {}
        for with_window in (True, False):
            path = root / f"cine_{'window' if with_window else 'nowindow'}.dcm"
            # in a child: Linux carries a parent's peak RSS into its children across fork+exec
            generate = f"write_cine({str(path)!r}, {args.frames}, {args.size}, {with_window})"
            code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            code += f"from video_memory import write_cine; {generate}"
            subprocess.run([sys.executable, "-c", code], check=True)
            cines[with_window] = path
        mb = cines[True].stat().st_size / 1e6
        print(f"cine: {args.frames} frames of {args.size}² 16-bit, {mb:.0f} MB; ", end="")
        print(f"median of {args.repeat} runs; target peak RSS < {TARGET_MB} MB\n")
        windowed, plain = str(cines[True]), str(cines[False])
        runs = [
            ("dcmexport --video mp4 (file window)", [*dcmexport, windowed, "--video", "mp4"]),
            (
                "dcmexport --video mp4 (clip min-max, 2 passes)",
                [*dcmexport, plain, "--video", "mp4"],
            ),
            ("dcmexport --video both (file window)", [*dcmexport, windowed, "--video", "both"]),
        ]
        if not args.no_naive:
            runs.append(
                ("naive: pixel_array + PyAV", [sys.executable, "-c", NAIVE_SCRIPT, windowed])
            )
        print(f"{'run':<48} {'seconds':>8} {'frames/s':>9} {'peak RSS MB':>12}")
        for label, command in runs:
            times, peaks = [], []
            for i in range(args.repeat):
                out = root / f"out{i}"
                target = [str(out / "naive.mp4")] if label.startswith("naive") else ["-o", str(out)]
                out.mkdir(exist_ok=True)
                seconds, peak = run_child(command + target)
                times.append(seconds)
                peaks.append(peak)
            t, p = statistics.median(times), statistics.median(peaks)
            print(f"{label:<48} {t:8.1f} {args.frames / t:9.0f} {p:12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
