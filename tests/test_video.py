"""Video export: MP4 checked with ffprobe and decoded back with PyAV, GIFs read with Pillow.

The cines are the sample module's XA (8-bit, 15 fps, brightness rising frame by frame) and
RGB ultrasound (30 fps), plus small clips built here for timing, colour models, enhanced
multi-frame functional groups and the GIF guard.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from dcmexport import convert, sample
from dcmexport.cli import main
from dcmexport.exporters import video
from dcmexport.exporters.cine import MultiFrameClip, clip_voi, combine_vois
from dcmexport.render.frame import check_renderable
from dcmexport.render.windowing import Window, parse_window

av = pytest.importorskip("av")


@pytest.fixture(scope="session")
def ffprobe() -> str:
    tool = shutil.which("ffprobe")
    if tool is None:
        pytest.skip("ffprobe is not installed: apt-get install ffmpeg")
    return tool


def probe(ffprobe: str, path: Path) -> dict:
    """ffprobe's view of the video stream, every frame counted, plus the frame timestamps."""
    out = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,"
            "color_space,color_range:frame=pts_time:format=format_name",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out)
    stream = data["streams"][0]
    stream["pts"] = [float(f["pts_time"]) for f in data["frames"]]
    return stream


def faststart(path: Path) -> bool:
    """True if the MP4 index (moov) comes before the media data (mdat)."""
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")


def mp4_frames(path: Path, layout: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format=layout) for f in container.decode(video=0)]


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int], int | None]:
    """Every GIF frame as RGB, its delay in ms, and the loop count."""
    with Image.open(path) as im:
        frames, delays = [], []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            delays.append(im.info["duration"])
        return frames, delays, im.info.get("loop")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def xa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(sample._xa_dataset(), tmp_path_factory.mktemp("xa") / "xa.dcm")


@pytest.fixture(scope="module")
def us(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = sample._us_frames()
    return save(sample._us_cine_dataset(frames), tmp_path_factory.mktemp("us") / "us.dcm")


@pytest.fixture(scope="module")
def xa_out(xa: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xa_out")
    assert main(["convert", str(xa), "-o", str(out), "-q", "-j", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def us_out(us: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("us_out")
    assert main(["convert", str(us), "-o", str(out), "-q", "-j", "1"]) == 0
    return out


# --- the acceptance clips -------------------------------------------------------------


def test_xa_cine_is_h264_at_15_fps_with_every_frame(xa_out: Path, ffprobe: str) -> None:
    info = probe(ffprobe, xa_out / "xa.mp4")
    assert info["codec_name"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (512, 512)
    assert info["r_frame_rate"] == "15/1" and info["avg_frame_rate"] == "15/1"
    assert int(info["nb_read_frames"]) == 30
    assert info["pts"] == pytest.approx([i / 15 for i in range(30)], abs=1e-3)
    assert info["color_space"] == "bt709" and info["color_range"] == "tv"
    assert faststart(xa_out / "xa.mp4")


def test_xa_gif_has_every_frame_with_the_file_delay(xa_out: Path) -> None:
    frames, delays, loop = gif_frames(xa_out / "xa.gif")
    assert len(frames) == 30
    assert loop == 0  # loops forever
    assert all(abs(d - 1000 / 15) <= 10 for d in delays)  # GIF counts in 10 ms steps
    assert sum(delays) == pytest.approx(30 * 1000 / 15, abs=10)  # and does not drift


def test_xa_brightness_ramp_survives_in_mp4_and_gif(xa: Path, xa_out: Path) -> None:
    ds = pydicom.dcmread(xa)
    source = [frame.mean() for frame in ds.pixel_array]
    assert all(b > a for a, b in itertools.pairwise(source))
    grey = [f.mean() for f in mp4_frames(xa_out / "xa.mp4", "gray")]
    gif = [f.mean() for f in gif_frames(xa_out / "xa.gif")[0]]
    for means in (grey, gif):
        assert all(b > a for a, b in itertools.pairwise(means)), np.round(means, 2)
    # the GIF is the exact 8-bit rendering: the still of each frame, as dcm2pnm would give it
    still = np.asarray(Image.open(io.BytesIO(_still(xa, 30))))
    assert np.array_equal(gif_frames(xa_out / "xa.gif")[0][29][..., 0], still)
    # the MP4 is the same picture through H.264 (lossy) and limited-range luma: no level shift
    decoded = mp4_frames(xa_out / "xa.mp4", "gray")[29].astype(int)
    assert abs((decoded - still).mean()) < 1.0 and np.abs(decoded - still).mean() < 3.0


def _still(path: Path, frame: int) -> bytes:
    from dcmexport import render_frame

    buffer = io.BytesIO()
    Image.fromarray(render_frame(path, frame)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_us_cine_keeps_its_colours_at_30_fps(us: Path, us_out: Path, ffprobe: str) -> None:
    info = probe(ffprobe, us_out / "us.mp4")
    assert (info["codec_name"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert info["r_frame_rate"] == "30/1" and int(info["nb_read_frames"]) == 20
    source = pydicom.dcmread(us).pixel_array
    decoded = mp4_frames(us_out / "us.mp4")
    assert psnr(decoded[0], source[0]) >= 30
    assert min(psnr(d, s) for d, s in zip(decoded, source, strict=True)) >= 30
    frames, delays, _ = gif_frames(us_out / "us.gif")
    assert len(frames) == 20  # identical neighbours are not merged away
    assert all(abs(d - 1000 / 30) <= 10 for d in delays)
    assert psnr(frames[0], source[0]) >= 30


def test_manifest_rows_for_videos(xa_out: Path, us_out: Path) -> None:
    rows = manifest(xa_out)
    assert [(r["output"], r["kind"], r["frame"], r["status"]) for r in rows] == [
        ("xa.mp4", "video", "", "ok"),
        ("xa.gif", "video", "", "ok"),
    ]
    assert (rows[0]["window_center"], rows[0]["window_width"]) == ("128", "256")  # the file's
    assert "30 frames, 15 fps (Frame Time)" in rows[0]["note"]
    us_rows = manifest(us_out)
    assert us_rows[0]["window_center"] == "" and us_rows[0]["voi"] == "colour"


# --- colour models --------------------------------------------------------------------------


def _jpeg_ybr_cine(frames: np.ndarray) -> Dataset:
    """An ultrasound cine as scanners write it: JPEG baseline, YBR_FULL_422."""
    ds = sample._us_cine_dataset(frames)
    fragments = []
    for rgb in frames:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=95, subsampling=1)  # 4:2:2
        fragments.append(buffer.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def test_jpeg_ybr_ultrasound_keeps_its_colours(tmp_path: Path) -> None:
    frames = sample._us_frames()[:6]
    path = save(_jpeg_ybr_cine(frames), tmp_path / "usjpeg.dcm")
    out = tmp_path / "out"
    assert convert([path], out, jobs=1, video="mp4").exit_code == 0
    decoded = mp4_frames(out / "usjpeg.mp4")
    assert len(decoded) == 6
    assert min(psnr(d, s) for d, s in zip(decoded, frames, strict=True)) >= 30


def test_palette_colour_cine_keeps_its_colours(tmp_path: Path) -> None:
    from pydicom.pixels import apply_color_lut

    ds = sample._palette_dataset()
    index = ds.pixel_array
    stack = np.stack([np.roll(index, 8 * k, axis=1) for k in range(4)])
    ds.NumberOfFrames = 4
    ds.PixelData = stack.tobytes()
    ds.FrameTime = 100
    path = save(ds, tmp_path / "palette.dcm")
    out = tmp_path / "out"
    assert convert([path], out, jobs=1).exit_code == 0
    expected = apply_color_lut(stack, ds)
    if expected.dtype != np.uint8:  # 16-bit palette entries
        expected = (expected >> 8).astype(np.uint8)
    decoded = mp4_frames(out / "palette.mp4")
    assert min(psnr(d, e) for d, e in zip(decoded, expected, strict=True)) >= 30
    gif = gif_frames(out / "palette.gif")[0]
    assert min(psnr(g, e) for g, e in zip(gif, expected, strict=True)) >= 30


def test_odd_sizes_are_padded_to_even(tmp_path: Path, ffprobe: str) -> None:
    ds = sample._xa_dataset()
    frames = ds.pixel_array[:3, :101, :75]
    ds.NumberOfFrames, ds.Rows, ds.Columns = 3, 101, 75
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    path = save(ds, tmp_path / "odd.dcm")
    out = tmp_path / "out"
    assert convert([path], out, jobs=1).exit_code == 0
    info = probe(ffprobe, out / "odd.mp4")
    assert (info["width"], info["height"]) == (76, 102)
    assert gif_frames(out / "odd.gif")[0][0].shape == (101, 75, 3)


# --- one window per clip ----------------------------------------------------------------------


def _rising_cine(n: int = 5, *, rescale_per_frame: bool = False) -> Dataset:
    """16-bit frames, each brighter than the last, without a window in the file."""
    ds = sample._xa_dataset()
    base = np.linspace(0, 999, 64 * 64, dtype=np.float64).reshape(64, 64)
    if rescale_per_frame:  # same stored values, brightness from per-frame Rescale Intercept
        stack = np.stack([base] * n).astype(np.uint16)
    else:
        stack = np.stack([base + 200 * k for k in range(n)]).astype(np.uint16)
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
        ds.pop(keyword, None)
    ds.NumberOfFrames, ds.Rows, ds.Columns = n, 64, 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = stack.tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if rescale_per_frame:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR: functional groups apply
        ds.PerFrameFunctionalGroupsSequence = []
        for k in range(n):
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept = 1, 200 * k
            transform.RescaleType = "US"
            group = Dataset()
            group.PixelValueTransformationSequence = [transform]
            ds.PerFrameFunctionalGroupsSequence.append(group)
    return ds


@pytest.mark.parametrize("per_frame", [False, True], ids=["stored", "per-frame-rescale"])
def test_minmax_is_over_the_whole_clip_so_nothing_flickers(tmp_path: Path, per_frame: bool):
    path = save(_rising_cine(rescale_per_frame=per_frame), tmp_path / "rise.dcm")
    out = tmp_path / "out"
    assert convert([path], out, jobs=1, video="gif").exit_code == 0
    means = [f.mean() for f in gif_frames(out / "rise.gif")[0]]
    # per-frame min-max would give five identical frames; one window keeps the rise
    assert all(b > a + 20 for a, b in itertools.pairwise(means)), means
    frames = gif_frames(out / "rise.gif")[0]
    assert frames[0].min() == 0 and frames[-1].max() == 255  # the clip's range, end to end
    row = manifest(out)[0]
    assert (float(row["window_center"]), float(row["window_width"])) == (900, 1800)
    assert row["voi"] == "minmax over 5 frames"


def test_per_frame_windows_become_one_window(tmp_path: Path) -> None:
    ds = _rising_cine(rescale_per_frame=True)
    for k, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = 500 + 200 * k, 1000
        group.FrameVOILUTSequence = [voi]
    path = save(ds, tmp_path / "enh.dcm")
    clip = MultiFrameClip(pydicom.dcmread(path), check_renderable(pydicom.dcmread(path)))
    voi = clip_voi(clip, parse_window("auto"))
    assert isinstance(voi, Window) and (voi.center, voi.width) == (900, 1000)  # the median
    assert voi.explanation == "median of 5 per-frame windows"
    out = tmp_path / "out"
    assert convert([path], out, jobs=1, video="gif").exit_code == 0
    means = [f.mean() for f in gif_frames(out / "enh.gif")[0]]
    assert all(b > a for a, b in itertools.pairwise(means))


def test_combine_vois_keeps_a_common_window() -> None:
    w = Window(40, 400)
    assert combine_vois([w, Window(40, 400), w]) is w


def test_explicit_window_applies_to_every_frame(xa: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert([xa], out, jobs=1, video="gif", window="100,50").exit_code == 0
    rows = manifest(out)
    assert (rows[0]["window_center"], rows[0]["window_width"]) == ("100", "50")


# --- timing ---------------------------------------------------------------------------------


def _timing_ds(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("values", "fps", "source"),
    [
        ({"FrameTime": "66.67", "CineRate": 30}, Fraction(15), "Frame Time"),
        ({"FrameTime": "33.33"}, Fraction(30), "Frame Time"),
        ({"FrameTime": "33.367"}, Fraction(30000, 1001), "Frame Time"),
        ({"FrameTimeVector": [0, 40, 40, 40], "CineRate": 10}, Fraction(25), "Frame Time Vector"),
        ({"CineRate": 12, "RecommendedDisplayFrameRate": 24}, Fraction(12), "Cine Rate"),
        ({"RecommendedDisplayFrameRate": 24}, Fraction(24), "Recommended Display Frame Rate"),
        ({"FrameTime": "0", "CineRate": "0", "RecommendedDisplayFrameRate": 8}, Fraction(8), None),
        ({}, Fraction(10), "no timing in the file: default"),
    ],
)
def test_timing_order_of_trust(values: dict, fps: Fraction, source: str | None) -> None:
    timing = video.clip_timing(_timing_ds(**values), 4)
    assert timing.fps == fps
    assert timing.durations_ms is None
    if source:
        assert timing.source == source


def test_fps_option_overrides_the_file() -> None:
    timing = video.clip_timing(_timing_ds(FrameTime="66.67"), 4, fps=24)
    assert (timing.fps, timing.source) == (24, "--fps")
    assert video.clip_timing(_timing_ds(), 4, fps=12.5).fps == Fraction(25, 2)


def test_frame_time_vector_gives_variable_timing(tmp_path: Path, ffprobe: str) -> None:
    ds = sample._xa_dataset()
    frames = ds.pixel_array[:5]
    ds.NumberOfFrames, ds.PixelData = 5, frames.tobytes()
    del ds.FrameTime
    del ds.CineRate
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTimeVector")
    ds.FrameTimeVector = [0, 100, 50, 200, 100]
    timing = video.clip_timing(ds, 5)
    assert timing.durations_ms == (100, 50, 200, 100, 112.5)
    path = save(ds, tmp_path / "vfr.dcm")
    out = tmp_path / "out"
    assert convert([path], out, jobs=1).exit_code == 0
    info = probe(ffprobe, out / "vfr.mp4")
    assert int(info["nb_read_frames"]) == 5
    assert info["pts"] == pytest.approx([0, 0.1, 0.15, 0.35, 0.45], abs=1e-3)
    assert gif_frames(out / "vfr.gif")[1] == [100, 50, 200, 100, 110]


def test_gif_delays_track_the_clock() -> None:
    shown, delays = 0, []
    for k in range(1, 7):
        delay = video.gif_delay_cs(k * 1000 / 15, shown)
        delays.append(delay)
        shown += delay
    assert delays == [7, 6, 7, 7, 6, 7]
    assert video.gif_delay_cs(5, 0) == video.GIF_MIN_DELAY_CS  # never faster than 50 fps


def test_fps_option_and_no_mp4_alias(xa: Path, tmp_path: Path, ffprobe: str) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(xa), "-o", str(out), "-q", "--fps", "5"]) == 0
    assert probe(ffprobe, out / "xa.mp4")["r_frame_rate"] == "5/1"
    assert all(d == 200 for d in gif_frames(out / "xa.gif")[1])
    gif_only = tmp_path / "gif"
    assert main(["convert", str(xa), "-o", str(gif_only), "-q", "--no-mp4"]) == 0
    assert sorted(p.name for p in gif_only.iterdir() if p.is_file()) == ["manifest.csv", "xa.gif"]
    assert main(["convert", str(xa), "-o", str(tmp_path / "bad"), "-q", "--fps", "0"]) == 2


# --- the GIF guard --------------------------------------------------------------------------


def test_gif_guard_for_a_long_large_cine() -> None:
    timing = video.ClipTiming(Fraction(30), "test")
    plan = video.GifPlan.for_clip(1000, 1024, 1024, timing)
    assert (plan.rows, plan.columns) == (640, 640)
    kept = plan.kept(1000)
    assert kept * plan.rows * plan.columns <= video.GIF_MAX_PIXELS
    assert "downscaled 1024x1024 to 640x640" in plan.describe()
    assert f"(1000 -> {kept})" in plan.describe()
    small = video.GifPlan.for_clip(30, 512, 512, timing)
    assert (small.step, small.describe()) == (1, "")
    fast = video.GifPlan.for_clip(30, 64, 64, video.ClipTiming(Fraction(100), "test"))
    assert fast.step == 2  # 10 ms frames: every other one, shown 20 ms, so time is kept


def test_gif_guard_is_applied_and_reported(xa: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(video, "GIF_MAX_SIDE", 256)
    monkeypatch.setattr(video, "GIF_MAX_PIXELS", 10 * 256 * 256)
    out = tmp_path / "out"
    assert convert([xa], out, jobs=1, video="gif").exit_code == 0
    frames, delays, _ = gif_frames(out / "xa.gif")
    assert len(frames) == 10 and frames[0].shape == (256, 256, 3)
    assert sum(delays) == pytest.approx(2000, abs=10)  # the clip still lasts 2 s
    assert "every 3th frame kept (30 -> 10)" in manifest(out)[0]["note"]


# --- batch behaviour ------------------------------------------------------------------------


def test_video_none_and_frames_alongside(xa: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = convert([xa], out, jobs=1, video="mp4", frames="first")
    assert summary.exit_code == 0 and (summary.videos, summary.images) == (1, 1)
    assert [r["output"] for r in manifest(out)] == ["xa.mp4", "xa/0001.png"]
    none = convert([xa], tmp_path / "none", jobs=1, video="none")
    assert none.exit_code == 2 and none.skipped == 1


def test_rerun_keeps_videos_up_to_date(xa: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert([xa], out, jobs=1)
    before = (out / "xa.mp4").stat().st_mtime_ns
    again = convert([xa], out, jobs=1)
    assert (again.up_to_date, again.converted) == (1, 0)
    assert (out / "xa.mp4").stat().st_mtime_ns == before
    gif_only = convert([xa], out, jobs=1, video="gif")  # other options: the MP4 is removed
    assert gif_only.converted == 1
    assert not (out / "xa.mp4").exists() and (out / "xa.gif").is_file()


def test_broken_cine_is_an_error_and_leaves_no_partial_video(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame that fails to decode half-way fails the input; nothing half-written remains.
    (A truncated cine is not that: its complete frames are written, tests/test_realworld.py.)"""
    from dcmexport.dicom import decoding
    from dcmexport.errors import PixelDataError

    ds = sample._xa_dataset()
    path = save(ds, tmp_path / "cut.dcm")
    real = decoding.iter_frames

    def breaks_at_frame_5(*args, **kwargs):
        for index, frame in enumerate(real(*args, **kwargs)):
            if index == 4:
                raise PixelDataError("frame 5 is corrupt")
            yield frame

    monkeypatch.setattr(decoding, "iter_frames", breaks_at_frame_5)
    out = tmp_path / "out"
    summary = convert([path], out, jobs=1)
    assert summary.exit_code == 1
    assert manifest(out)[0]["status"] == "error"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["manifest.csv"]
    assert not any((out / ".dcmexport" / "tmp").iterdir())
