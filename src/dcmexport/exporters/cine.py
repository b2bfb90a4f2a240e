"""Cines and series as clips: one VOI for every frame, frames rendered and encoded one at a time.

A clip is a multi-frame file or a stack of single-frame slices. Its VOI is decided once before
any frame is written: per-frame windows make a video flicker. `auto` takes the file's window
(the median of per-frame windows where an enhanced file gives each frame its own) and, where
the file has none, the min-max over the whole clip, found by a first streaming pass. Frames
are then decoded, rendered and handed to the MP4 and GIF writers one at a time, so memory does
not grow with the number of frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
from pydicom.dataset import Dataset

from ..dicom import decoding
from ..errors import PixelDataError
from ..options import WindowSpec
from ..render import pixels as px
from ..render.frame import check_renderable, render_decoded, stored_values
from ..render.overlays import describe_overlays
from ..render.pipeline import FrameTransforms, PixelDescription, frame_minmax, frame_transforms
from ..render.windowing import VoiLut, VoiLutFunction, Window, select_voi
from ..store import Store
from .video import ClipTiming, GifPlan, GifWriter, Mp4Writer, fit_into

ClipVoi = Window | VoiLut | None


class Clip(Protocol):
    """Frames in display order, with their datasets, read lazily (twice at most)."""

    @property
    def n_frames(self) -> int: ...

    @property
    def rows(self) -> int: ...

    @property
    def columns(self) -> int: ...

    def headers(self) -> Iterator[tuple[Dataset, PixelDescription, int]]:
        """(dataset, pixel description, 0-based frame index) per frame, without decoding."""
        ...

    def frames(self) -> Iterator[tuple[Dataset, PixelDescription, int, np.ndarray]]:
        """The same, with the frame decoded (container values, colour as samples)."""
        ...


@dataclasses.dataclass
class MultiFrameClip:
    """The frames of one multi-frame file; a large one is streamed from `path`."""

    ds: Dataset
    desc: PixelDescription
    path: str | None = None

    @property
    def n_frames(self) -> int:
        return decoding.frames_present(self.ds)

    @property
    def rows(self) -> int:
        return self.desc.rows

    @property
    def columns(self) -> int:
        return self.desc.columns

    def headers(self) -> Iterator[tuple[Dataset, PixelDescription, int]]:
        for index in range(self.n_frames):
            yield self.ds, self.desc, index

    def frames(self) -> Iterator[tuple[Dataset, PixelDescription, int, np.ndarray]]:
        for index, decoded in enumerate(decoding.iter_frames(self.ds, self.path)):
            yield self.ds, self.desc, index, decoded


@dataclasses.dataclass
class SliceClip:
    """One frame from each of several files (a CT or MR stack), in the order given."""

    paths: Sequence[str]
    rows: int
    columns: int

    @property
    def n_frames(self) -> int:
        return len(self.paths)

    def headers(self) -> Iterator[tuple[Dataset, PixelDescription, int]]:
        for path in self.paths:
            ds = decoding.read_dataset(path, stop_before_pixels=True)
            yield ds, PixelDescription.from_dataset(ds), 0

    def frames(self) -> Iterator[tuple[Dataset, PixelDescription, int, np.ndarray]]:
        for path in self.paths:
            ds = decoding.read_dataset(path)
            yield ds, check_renderable(ds), 0, decoding.decode_frame(ds, 0, path)


def is_grayscale(desc: PixelDescription) -> bool:
    """Grey images get a VOI; colour (RGB, YBR, palette) is never windowed."""
    return desc.samples_per_pixel == 1 and desc.photometric_interpretation != "PALETTE COLOR"


def _transforms_per_frame() -> Callable[[Dataset, PixelDescription, int], FrameTransforms]:
    """`frame_transforms`, computed once per dataset unless it has per-frame groups."""
    cache: dict[int, FrameTransforms] = {}

    def get(ds: Dataset, desc: PixelDescription, index: int) -> FrameTransforms:
        if "PerFrameFunctionalGroupsSequence" in ds:
            return frame_transforms(ds, index, desc)
        key = id(ds)
        if key not in cache:
            cache.clear()  # slices come one dataset after another: keep one
            cache[key] = frame_transforms(ds, index, desc)
        return cache[key]

    return get


def clip_minmax(clip: Clip) -> Window:
    """LINEAR window over the modality values of every frame (padding excluded): a first
    pass that decodes each frame and keeps only its range."""
    transforms = _transforms_per_frame()
    low, high = np.inf, -np.inf
    for ds, desc, index, decoded in clip.frames():
        span = frame_minmax(stored_values(decoded, desc), transforms(ds, desc, index)).span
        assert span is not None
        low, high = min(low, span[0]), max(high, span[1])
    if not np.isfinite(low):
        raise PixelDataError("the clip has no frames")
    center, width = px.minmax_window(float(low), float(high))
    label = f"minmax over {clip.n_frames} frames"
    return Window(center, width, VoiLutFunction.LINEAR, label, span=(float(low), float(high)))


def combine_vois(vois: Sequence[Window | VoiLut]) -> Window | VoiLut:
    """One VOI for frames that each name their own: the common one, else for windows the
    median center and width (robust to a few odd frames), else the middle frame's VOI LUT."""
    first = vois[0]
    if all(isinstance(v, Window) for v in vois):
        windows = [v for v in vois if isinstance(v, Window)]
        keys = {(w.center, w.width, w.function) for w in windows}
        if len(keys) == 1:
            return first
        import statistics  # its import costs 2 ms of every start

        center = statistics.median(w.center for w in windows)
        width = statistics.median(w.width for w in windows)
        label = f"median of {len(windows)} per-frame windows"
        return Window(center, width, windows[0].function, label)
    if all(v is first for v in vois):
        return first
    return vois[len(vois) // 2]


def clip_voi(clip: Clip, spec: WindowSpec) -> ClipVoi:
    """The one VOI for every frame of a grey clip (None for colour clips)."""
    transforms = _transforms_per_frame()
    chosen: list[Window | VoiLut] = []
    for ds, desc, index in clip.headers():
        if not is_grayscale(desc):
            return None
        t = transforms(ds, desc, index)
        voi = select_voi(spec, list(t.windows), list(t.voi_luts))  # file:N missing raises
        if voi is None:  # minmax asked for, or a frame without a window of its own
            return clip_minmax(clip)
        chosen.append(voi)
    if not chosen:
        raise PixelDataError("the clip has no frames")
    return combine_vois(chosen)


@dataclasses.dataclass(frozen=True)
class ClipResult:
    """What `export_clip` wrote: frames per output, the VOI applied, notes for the manifest."""

    frames: dict[str, int]
    voi: ClipVoi
    notes: dict[str, str]

    @property
    def window(self) -> tuple[float | None, float | None, str]:
        """(center, width, label) for the manifest columns."""
        if isinstance(self.voi, Window):
            return self.voi.center, self.voi.width, self.voi.explanation or self.voi.function.value
        if isinstance(self.voi, VoiLut):
            return None, None, f"VOI LUT {self.voi.explanation}".strip()
        return None, None, "colour"


def export_clip(
    clip: Clip,
    spec: WindowSpec,
    timing: ClipTiming,
    targets: dict[str, str],
    store: Store,
    overlays: bool = True,
) -> ClipResult:
    """Write the clip to each of `targets` (``"mp4"`` and/or ``"gif"`` → path relative to
    OUT) in one pass.

    Every output is written under a temporary name and renamed into place only when complete.
    Frames whose header size differs from the clip's are left out (and counted in the notes),
    as are the overlay groups drawn into any frame (`overlays`). A frame that decodes to
    another size than its header says (encapsulated frames of different sizes) is fitted into
    the clip's size, aspect kept, on black (`video.fit_into`), and named in the notes.
    """
    voi = clip_voi(clip, spec)
    rows, columns = clip.rows, clip.columns
    gif_plan = GifPlan.for_clip(clip.n_frames, rows, columns, timing)
    left_out = 0
    fitted: list[str] = []
    drawn: set[int] = set()
    with contextlib.ExitStack() as stack:
        writers: dict[str, Mp4Writer | GifWriter] = {}
        for kind, target in targets.items():
            tmp = stack.enter_context(store.open_atomic(target))
            if kind == "mp4":
                writer: Mp4Writer | GifWriter = Mp4Writer(tmp, timing, rows, columns)
                stack.callback(writer.abort)  # the file is closed whatever happens
            else:
                writer = GifWriter(tmp, timing, gif_plan)
            writers[kind] = writer
        for ds, desc, index, decoded in clip.frames():
            if (desc.rows, desc.columns) != (rows, columns):
                left_out += 1
                continue
            rendered = render_decoded(
                decoded, ds, desc, index, window=spec, bits=8, raw=False, voi=voi, overlays=overlays
            )
            drawn.update(rendered.overlay_groups)
            image = rendered.image
            if image.shape[:2] != (rows, columns):
                fitted.append(f"{index + 1} ({image.shape[1]}x{image.shape[0]})")
                image = fit_into(image, rows, columns)
            for writer in writers.values():
                writer.write(image)
        for writer in writers.values():
            writer.close()
    frames = {kind: writer.frames for kind, writer in writers.items()}
    notes = {}
    for kind, count in frames.items():
        note = f"{count} frames, {timing.describe()}"
        if kind == "gif" and (guard := gif_plan.describe()):
            note = f"{note}; {guard}"
        if left_out:
            note = f"{note}; {left_out} frame(s) of another size left out"
        if fitted:
            note = (
                f"{note}; frame(s) {', '.join(fitted)} fitted into the video's "
                f"{columns}x{rows} (aspect kept, black borders)"
            )
        if drawn:
            note = f"{note}; {describe_overlays(drawn)}"
        notes[kind] = note
    return ClipResult(frames, voi, notes)
