"""MP4 encoding speed: dcmexport's `Mp4Writer` against the ffmpeg CLI on the same frames.

Both encode the same 8-bit frames with libx264 at the same CRF and preset
(`exporters.video.MP4_CRF`, `MP4_PRESET`) into yuv420p; the CLI reads them as raw video on
stdin, so its time includes its start-up. A third row is PyAV used the plain way (a new
scaler per frame via `VideoFrame.reformat`, PyAV's default slice threads): what our writer did
before. Runs are interleaved (A, B, C, A, B, C …) so that load from other processes hits all
alike; the table gives the median fps and the ratio to the CLI.

    python benchmarks/video_speed.py --frames 300 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from dcmexport.exporters.video import MP4_CRF, MP4_PRESET, ClipTiming, Mp4Writer


def clip(kind: str, n: int) -> list[np.ndarray]:
    """A moving, textured clip: 512² grey (XA/fluoroscopy-like) or 640x480 RGB (US-like)."""
    rng = np.random.default_rng(0)
    shape = (512, 512) if kind == "grey" else (480, 640)
    base = (rng.standard_normal(shape) * 25 + 110).clip(0, 255).astype(np.uint8)
    if kind == "rgb":
        base = np.stack([base, np.roll(base, 7, 0), np.roll(base, 11, 1)], axis=-1)
    return [np.ascontiguousarray(np.roll(base, 3 * i, axis=1)) for i in range(n)]


def ours(frames: list[np.ndarray], path: Path) -> float:
    rows, columns = frames[0].shape[:2]
    started = time.perf_counter()
    writer = Mp4Writer(path, ClipTiming(Fraction(25), "benchmark"), rows, columns)
    for frame in frames:
        writer.write(frame)
    writer.close()
    return len(frames) / (time.perf_counter() - started)


def plain_pyav(frames: list[np.ndarray], path: Path) -> float:
    import av

    rows, columns = frames[0].shape[:2]
    layout = "gray" if frames[0].ndim == 2 else "rgb24"
    started = time.perf_counter()
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = columns, rows, "yuv420p"
        stream.options = {"crf": str(MP4_CRF), "preset": MP4_PRESET}
        for frame in frames:
            yuv = av.VideoFrame.from_ndarray(frame, format=layout).reformat(format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(frames) / (time.perf_counter() - started)


def ffmpeg_cli(frames: list[np.ndarray], path: Path) -> float:
    rows, columns = frames[0].shape[:2]
    layout = "gray" if frames[0].ndim == 2 else "rgb24"
    raw = b"".join(frame.tobytes() for frame in frames)
    command = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", layout]
    command += ["-s", f"{columns}x{rows}", "-r", "25", "-i", "-", "-c:v", "libx264"]
    command += ["-crf", str(MP4_CRF), "-preset", MP4_PRESET, "-pix_fmt", "yuv420p", str(path)]
    started = time.perf_counter()
    subprocess.run(command, input=raw, check=True)
    return len(frames) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tools: dict[str, Callable[[list[np.ndarray], Path], float]] = {
        "ffmpeg CLI (libx264)": ffmpeg_cli,
        "dcmexport Mp4Writer": ours,
        "PyAV, plain use": plain_pyav,
    }
    print(f"\n{args.frames} frames, CRF {MP4_CRF}, preset {MP4_PRESET}, median of {args.repeat}\n")
    print("| clip | tool | fps | vs CLI |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("grey", "rgb"):
            frames = clip(kind, args.frames)
            fps: dict[str, list[float]] = {name: [] for name in tools}
            for _ in range(args.repeat):
                for name, tool in tools.items():
                    fps[name].append(tool(frames, Path(tmp) / "out.mp4"))
            reference = statistics.median(fps["ffmpeg CLI (libx264)"])
            for name, values in fps.items():
                median = statistics.median(values)
                print(f"| {kind} | {name} | {median:.1f} | {median / reference:.2f}x |")


if __name__ == "__main__":
    main()
