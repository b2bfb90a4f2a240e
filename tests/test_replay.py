"""The replay (`engine.replay`) converts a series' slices exactly as the general path does, and
the general path never reads a value the replay's key leaves out.

Oracle: the general path itself (checked against DCMTK elsewhere), run on the same inputs
with the replay off; outputs compared byte for byte and manifest rows field by field, over
every sample file under several option sets.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dcmexport.dicom import decoding, native, plainread
from dcmexport.engine import replay, work
from dcmexport.engine.work import FileResult, WorkItem, convert_one
from dcmexport.manifest import Kind, Status
from dcmexport.options import ConvertOptions, StillFormat, parse_window
from dcmexport.sources import InputRef
from dcmexport.store import LocalStore

from .conftest import pydicom_test_files_dir

OPTION_SETS = {
    "default": ConvertOptions(),
    "16-bit": ConvertOptions(bits=16),
    "jpeg": ConvertOptions(format=StillFormat.JPEG, quality=80),
    "tiff": ConvertOptions(format=StillFormat.TIFF),
    "window": ConvertOptions(window=parse_window("50,350")),
    "minmax": ConvertOptions(window=parse_window("minmax")),
    "raw": ConvertOptions(raw=True, format=StillFormat.TIFF),
    "no-overlays": ConvertOptions(overlays=False),
}


@pytest.fixture(autouse=True)
def _fresh_plans() -> Iterator[None]:
    replay.forget()
    yield
    replay.forget()


def _inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())


def _convert_all(
    paths: list[Path], out: Path, options: ConvertOptions, *, enabled: bool
) -> tuple[list[FileResult], int]:
    """Every path converted in order, as a worker converts a chunk; (results, replays)."""
    store = LocalStore(out)
    store.clear_temp()
    replays = 0
    start, play = replay.start, replay.replay

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal replays
        row = play(*args, **kwargs)
        replays += 1  # a slice the replay converted (not one it handed back)
        return row

    items = [
        WorkItem(str(p), InputRef(p), f"o{i:03d}_{p.stem}", seq=i) for i, p in enumerate(paths)
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay, "start", start if enabled else lambda *a, **k: None)
        patch.setattr(replay, "replay", counted)
        results = [convert_one(item, options, store) for item in items]
    return results, replays


def _both(
    paths: list[Path], tmp_path: Path, options: ConvertOptions | None = None
) -> tuple[list[FileResult], list[FileResult], int]:
    """`paths` converted the general way and with the replay: (general, replayed, replays)."""
    options = options or ConvertOptions()
    general, none = _convert_all(paths, tmp_path / "general", options, enabled=False)
    replayed, replays = _convert_all(paths, tmp_path / "replayed", options, enabled=True)
    assert none == 0
    return general, replayed, replays


def _rows(result: FileResult) -> list[dict[str, Any]]:
    return [dataclasses.asdict(row) for row in result.rows]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_replayed_outputs_are_the_general_paths(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, name: str
) -> None:
    options = OPTION_SETS[name]
    paths = _inputs(sample_set[0])
    if name != "default":  # the cines (whole-file videos) once: they are never replayed
        paths = [p for p in paths if p.parent.name not in ("US", "XA")]
    general, replayed, replays = _both(paths, tmp_path, options)
    for a, b in zip(general, replayed, strict=True):
        assert (a.status, a.reason, _rows(a)) == (b.status, b.reason, _rows(b)), a.source
        for row in a.rows:
            if row.output and row.kind == Kind.IMAGE:  # videos: x264's threads vary the bytes
                mine = (tmp_path / "replayed" / row.output).read_bytes()
                assert mine == (tmp_path / "general" / row.output).read_bytes(), row.output
    # the CT and MR series' slices after the first two (the first is seen, the second
    # learnt from); never with a window from the pixels
    series = [sum(1 for p in paths if p.parent.name == name) for name in ("CT", "MR")]
    assert replays == (0 if name == "minmax" else sum(n - 2 for n in series)), replays


def test_a_slice_with_another_window_gets_its_own_plan(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices differing in a value the key holds (the window: 40, then 41 in as many bytes,
    then 300) are planned apart; those differing only in per-instance values (UIDs of
    another length among them, so that some are walked) share one plan."""
    source = _inputs(sample_set[0] / "CT")[0]
    folder = tmp_path / "series"
    folder.mkdir()
    windows = [(40, 400)] * 4 + [(41, 400)] * 3 + [(300, 1500)] * 3
    for i, (center, width) in enumerate(windows):
        ds = pydicom.dcmread(source)
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{1000 + i * 37}" + ".7" * (i % 3 == 2)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, i * 2.5]
        ds.add_new(0x00090010, "LO", "ACME 1.0")
        ds.add_new(0x00091001, "LO", f"vendor value {i}")  # a private value
        ds.WindowCenter, ds.WindowWidth = center, width
        ds.save_as(folder / f"s{i}.dcm", enforce_file_format=True)
    fitted = []
    fits = replay.Layout.fits

    def counted(self: replay.Layout, head: bytes, size: int) -> bool:
        fitted.append(fits(self, head, size))
        return fitted[-1]

    monkeypatch.setattr(replay.Layout, "fits", counted)
    paths = _inputs(folder)
    general, replayed, replays = _both(paths, tmp_path)
    assert replays == 2 + 1 + 1  # each window: one slice seen, one learnt from, the rest
    assert 0 < sum(fitted) < replays  # some by their layout, the others walked
    assert [_rows(r) for r in general] == [_rows(r) for r in replayed]
    assert [r.rows[0].window_center for r in replayed] == [float(c) for c, _ in windows]
    for row in (r.rows[0] for r in general):
        assert (tmp_path / "replayed" / row.output).read_bytes() == (
            tmp_path / "general" / row.output
        ).read_bytes()


def test_a_layout_is_the_walks_bytes_outside_per_instance_values(
    sample_set: tuple[Path, list[Path]],
) -> None:
    """A file fits a layout only if every byte the walk reads is the same: a changed window
    digit (same length), a changed VR, a longer file do not fit; another UID value does."""
    path = _inputs(sample_set[0] / "CT")[0]
    data = path.read_bytes()
    found = plainread.walk_plain_file(str(path), native.WHOLE_READ_LIMIT)
    assert found is not None
    walked, size = found
    layout = replay.layout_of(walked, data[: plainread.HEAD_BYTES], size)
    assert layout is not None and layout.fits(data, size)
    uid = walked.raw[pydicom.tag.BaseTag(0x00080018)]
    other_uid = bytearray(data)
    other_uid[uid.value_tell + uid.length - 2] ^= 1  # a digit of the SOP Instance UID
    assert layout.fits(bytes(other_uid), size)
    center = walked.raw[pydicom.tag.BaseTag(0x00281050)]
    other_window = bytearray(data)
    other_window[center.value_tell] ^= 1
    assert not layout.fits(bytes(other_window), size)
    other_vr = bytearray(data)
    other_vr[center.value_tell - 4] ^= 1  # the window's VR
    assert not layout.fits(bytes(other_vr), size)
    assert not layout.fits(data, size + 2)
    preamble = b"x" * 128 + data[128:]  # not read, not in the key
    assert layout.fits(preamble, size)


def test_a_window_from_the_pixels_is_never_replayed(tmp_path: Path) -> None:
    """8-bit slices without a window are shown min-max: a first slice spanning 0-255 gives
    the same window as the table of every pattern, but the next slices need their own."""
    import numpy as np

    ramps = [np.arange(256)] * 3 + [np.resize(np.arange(50, 101), 256)] * 2
    paths = _secondary_capture(tmp_path / "sc", ramps)
    general, replayed, replays = _both(paths, tmp_path)
    assert replays == 0
    assert [_rows(r) for r in general] == [_rows(r) for r in replayed]
    assert general[-1].rows[0].window_center != general[0].rows[0].window_center


def _secondary_capture(folder: Path, pixels: list[Any], **elements: Any) -> list[Path]:
    """8-bit MONOCHROME2 slices of one series, one per array in `pixels`."""
    import numpy as np
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    folder.mkdir()
    for i, values in enumerate(pixels):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Modality, ds.InstanceNumber = "OT", i + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = 16, 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
        ds.PixelData = np.asarray(values, dtype=np.uint8).tobytes()
        ds.save_as(folder / f"s{i}.dcm", enforce_file_format=True)
    return _inputs(folder)


def test_pixels_that_are_a_codestream_go_the_general_way(tmp_path: Path) -> None:
    """The general path recognises a JPEG or JPEG 2000 stream under a native label by its
    markers (and reports it); a slice whose pixels begin so is not replayed."""
    import numpy as np

    ramp = np.arange(256)
    jpeg, j2k = ramp.copy(), ramp.copy()
    jpeg[:4], j2k[:4] = [0xFF, 0xD8, 0xFF, 0xC0], [0xFF, 0x4F, 0xFF, 0x51]
    paths = _secondary_capture(
        tmp_path / "sc", [ramp, ramp, ramp, jpeg, j2k], WindowCenter=128, WindowWidth=256
    )
    general, replayed, replays = _both(paths, tmp_path)
    assert [(r.status, r.reason, _rows(r)) for r in general] == [
        (r.status, r.reason, _rows(r)) for r in replayed
    ]
    assert general[3].status == Status.ERROR and replays == 1  # only the third slice


def test_headers_not_worth_a_plan_get_no_key(tmp_path: Path) -> None:
    """No key (nothing remembered) for a file holding more than 64 KB of values besides its
    pixels (a header longer than that is not walked at all; a last element after the Pixel
    Data is) or Float Pixel Data: the memory a worker keeps stays small."""
    import numpy as np

    big = _secondary_capture(tmp_path / "big", [np.arange(256)])[0]
    ds = pydicom.dcmread(big)
    ds.add_new(0xFFFCFFFC, "OB", b"x" * (70 * 1024))  # Data Set Trailing Padding, last
    ds.save_as(big, enforce_file_format=True)
    small = _secondary_capture(tmp_path / "small", [np.arange(256)])[0]
    keys = []
    for path in (big, small):
        found = plainread.walk_plain_file(str(path), native.WHOLE_READ_LIMIT)
        assert found is not None
        keys.append(replay.header_key(found[0]))
    assert keys[0] is None and keys[1] is not None
    ds = pydicom.dcmread(small)
    ds.FloatPixelData = np.zeros(256, np.float32).tobytes()
    del ds.PixelData
    ds.BitsAllocated = 32
    ds.save_as(tmp_path / "float.dcm", enforce_file_format=True)
    found = plainread.walk_plain_file(str(tmp_path / "float.dcm"), native.WHOLE_READ_LIMIT)
    assert found is not None and replay.header_key(found[0]) is None


def test_a_header_pydicom_cannot_build_is_read_by_pydicom(tmp_path: Path) -> None:
    """A file whose walk succeeds but whose dataset cannot be built (a Specific Character Set
    written as US) gets pydicom's own reading and error, as without the replay."""
    import numpy as np

    folder = tmp_path / "bad"
    paths = _secondary_capture(folder, [np.arange(256)] * 3, SpecificCharacterSet="ISO_IR 100")
    for path in paths:  # the element's VR bytes patched: CS -> US
        data = path.read_bytes()
        at = data.index(b"\x08\x00\x05\x00CS")
        path.write_bytes(data[: at + 4] + b"US" + data[at + 6 :])
    general, replayed, _ = _both(paths, tmp_path)
    assert [(r.status, r.reason, r.detail == "") for r in general] == [
        (r.status, r.reason, r.detail == "") for r in replayed
    ]


class _Reads(dict):  # type: ignore[type-arg]
    """A dataset's element dict that remembers every tag whose value was taken."""

    read: set[int]

    def __getitem__(self, key: Any) -> Any:
        self.read.add(int(key))
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.read.add(int(key))
        return super().get(key, default)

    def values(self) -> Any:
        self.read.update(int(k) for k in self)
        return super().values()

    def items(self) -> Any:
        self.read.update(int(k) for k in self)
        return super().items()


@pytest.mark.parametrize("name", ["default", "16-bit", "raw"])
def test_the_general_path_never_reads_a_per_instance_value(
    sample_set: tuple[Path, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Every element value the general path takes while converting a still is in the
    replay's key: a slice differing only in the others converts the same."""
    read: set[int] = set()
    original = decoding.read_dataset

    def recorded(*args: Any, **kwargs: Any) -> Any:
        ds = original(*args, **kwargs)
        for dataset in (ds, getattr(ds, "file_meta", None)):
            if dataset is not None:
                reads = _Reads(dataset._dict)
                reads.read = read
                dataset._dict = reads
        return ds

    copy = decoding._decodable_view

    def copied(ds: Any) -> Any:  # a repaired copy of every element: no value is read
        paused = set(read)
        try:
            return copy(ds)
        finally:
            read.intersection_update(paused)

    monkeypatch.setattr(work.decoding, "read_dataset", recorded)
    monkeypatch.setattr(decoding, "_decodable_view", copied)
    monkeypatch.setattr(replay, "start", lambda *a, **k: None)
    store = LocalStore(tmp_path)
    store.clear_temp()
    stills = 0
    paths = _inputs(sample_set[0]) + _inputs(pydicom_test_files_dir())
    for i, path in enumerate(paths):
        read.clear()
        item = WorkItem(str(path), InputRef(path), f"o{i:03d}", seq=i)
        result = convert_one(item, OPTION_SETS[name], store)
        if result.status != Status.OK or [r.kind for r in result.rows] != [Kind.IMAGE]:
            continue  # not an input the replay takes
        walked = plainread.walk_plain_file(str(path), native.WHOLE_READ_LIMIT)
        if walked is None or replay.header_key(walked[0]) is None:
            continue  # not plain: pydicom reads it, never the replay
        stills += 1
        taken = sorted(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in read if replay.per_instance(t))
        assert not taken, (path.name, taken)
    assert stills > 30, stills


def test_the_key_leaves_out_per_instance_values_only(sample_set: tuple[Path, list[Path]]) -> None:
    a, b = _inputs(sample_set[0] / "CT")[:2]
    walked = [plainread.walk_plain_file(str(p), native.WHOLE_READ_LIMIT) for p in (a, b)]
    assert walked[0] is not None and walked[1] is not None
    keys = [replay.header_key(w[0]) for w in walked]
    assert keys[0] is not None and keys[0] == keys[1]  # slices of one series
    assert hash(keys[0]) == hash(keys[1])
    assert replay.per_instance(0x00080018) and replay.per_instance(0x00291010)
    assert not replay.per_instance(0x00281050)  # Window Center
    assert not replay.per_instance(0x00290010)  # a private creator
    assert not replay.per_instance(0x7FE10010) and not replay.per_instance(0x7FE11010)


def test_a_folder_converts_the_same_with_and_without_replay(
    sample_set: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole command on two workers: same files, same manifest."""
    from dcmexport.cli import main

    root = tmp_path / "in"
    shutil.copytree(sample_set[0] / "CT", root / "CT")
    assert main(["convert", str(root), "-o", str(tmp_path / "a"), "-j", "2", "-q"]) == 0
    monkeypatch.setattr(replay, "start", lambda *a, **k: None)
    assert main(["convert", str(root), "-o", str(tmp_path / "b"), "-j", "2", "-q"]) == 0
    a = (tmp_path / "a" / "manifest.csv").read_text()
    assert a == (tmp_path / "b" / "manifest.csv").read_text()
    for png in (tmp_path / "a").rglob("*.png"):
        assert png.read_bytes() == (tmp_path / "b" / png.relative_to(tmp_path / "a")).read_bytes()


def test_the_replay_lets_no_warning_out(tmp_path: Path) -> None:
    """pydicom's warnings about a value it tolerates (an unknown character set) stay inside
    the conversion, as on the general path, also while the replay walks a file."""
    import warnings

    import numpy as np

    paths = _secondary_capture(
        tmp_path / "sc", [np.arange(256)] * 4, SpecificCharacterSet="ISO_IR 999"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results, _ = _convert_all(paths, tmp_path / "out", ConvertOptions(), enabled=True)
    assert all(r.status == Status.OK for r in results)
