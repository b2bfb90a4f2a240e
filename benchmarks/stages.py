"""Where a worker's time goes: CPU ms per file, stage by stage, for 512² CT → 8-bit PNG.

Two paths over the same generated slices, in one run (so machine load hits both alike):

- **ours**: the stages `engine.work._convert` goes through, called one by one — read + parse
  (`dicom.decoding.read_dataset`), header checks (`check_renderable`, frame count), decode
  (`decode_frame`), modality + VOI (`render_decoded`), PNG encode (`encode_still`), write
  (`LocalStore.put`), manifest row;
- **lean**: the least the same libraries can do — read the bytes once, parse from memory,
  pixel data by `np.frombuffer`, one `np.take` through a cached window table, PNG (Up filter,
  ISA-L level 1), temp file + rename.

CPU time (`time.process_time`) per stage, median over --repeat passes of --slices files.

    python benchmarks/stages.py --slices 300 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def _ours(paths: list[Path], out: Path) -> dict[str, float]:
    from dcmexport.dicom import decoding
    from dcmexport.exporters.encoders import encode_still
    from dcmexport.manifest import Kind, ManifestRow
    from dcmexport.options import ConvertOptions
    from dcmexport.render.frame import check_renderable, render_decoded
    from dcmexport.store import LocalStore

    options = ConvertOptions()
    store = LocalStore(out)
    store.clear_temp()
    spent: dict[str, float] = defaultdict(float)
    for i, path in enumerate(paths):
        clock = [time.process_time()]

        def lap(stage: str, clock: list[float] = clock) -> None:
            now = time.process_time()
            spent[stage] += now - clock[0]
            clock[0] = now

        ds = decoding.read_dataset(str(path))
        lap("read + parse")
        desc = check_renderable(ds)
        decoding.number_of_frames(ds)
        lap("header checks")
        decoded = decoding.decode_frame(ds, 0, str(path))
        lap("decode")
        rendered = render_decoded(decoded, ds, desc, 0, window=options.window, bits=8, raw=False)
        lap("modality + VOI")
        data = encode_still(rendered.image, options.format)
        lap("PNG encode")
        output = store.put(f"s{i:05d}.png", data)
        lap("write")
        ManifestRow(
            source=str(path),
            output=output,
            window_center=rendered.window_center,
            window_width=rendered.window_width,
            voi=rendered.voi,
            kind=Kind.IMAGE,
        )
        lap("manifest row")
    return spent


def _unit(paths: list[Path], out: Path, *, replay: bool = True) -> float:
    """CPU seconds of `engine.work.convert_one` over `paths`: the whole unit a worker runs
    (guards, limits, every exporter's check, the manifest rows), not just the stages; with
    `replay` (the default) the slices after a series' second are replayed (`engine.replay`),
    else every slice goes the general way above."""
    from dcmexport.engine import replay as replaying
    from dcmexport.engine.work import WorkItem, convert_one
    from dcmexport.options import ConvertOptions
    from dcmexport.sources import InputRef
    from dcmexport.store import LocalStore

    options, store = ConvertOptions(), LocalStore(out)
    store.clear_temp()
    items = [WorkItem(str(p), InputRef(p), f"u{i:05d}", seq=i) for i, p in enumerate(paths)]
    start = replaying.start
    if not replay:
        replaying.start = lambda *args, **kwargs: None  # type: ignore[assignment]
    replaying.forget()
    try:
        started = time.process_time()
        for item in items:
            convert_one(item, options, store)
        return time.process_time() - started
    finally:
        replaying.start = start


def _png_up(image: np.ndarray) -> bytes:
    """8-bit grey PNG with the Up filter on every row, ISA-L deflate level 1."""
    import struct

    from isal import isal_zlib

    rows, cols = image.shape
    up = np.empty((rows, cols + 1), dtype=np.uint8)
    up[:, 0] = 2
    up[0, 1:] = image[0]
    np.subtract(image[1:], image[:-1], out=up[1:, 1:], dtype=np.uint8, casting="unsafe")
    body = isal_zlib.compress(up.tobytes(), 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = isal_zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def _lean(paths: list[Path], out: Path) -> dict[str, float]:
    import pydicom

    spent: dict[str, float] = defaultdict(float)
    table: np.ndarray | None = None
    for i, path in enumerate(paths):
        t0 = time.process_time()
        data = path.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        t1 = time.process_time()
        stored = np.frombuffer(ds.PixelData, dtype="<i2").reshape(ds.Rows, ds.Columns)
        t2 = time.process_time()
        if table is None:  # one table per series: rescale + window over the int16 range
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            center, width = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
            x = np.arange(-32768, 32768, dtype=np.float64) * slope + intercept
            y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
            table = np.clip(np.floor(y), 0, 255).astype(np.uint8)
        image = table[stored.view(np.uint16) ^ 0x8000]
        t3 = time.process_time()
        png = _png_up(image)
        t4 = time.process_time()
        target = out / f"l{i:05d}.png"
        tmp = out / f".tmp-l{i:05d}.png"
        with open(tmp, "wb") as f:
            f.write(png)
        os.replace(tmp, target)
        t5 = time.process_time()
        spent["read + parse"] += t1 - t0
        spent["decode"] += t2 - t1
        spent["modality + VOI"] += t3 - t2
        spent["PNG encode"] += t4 - t3
        spent["write"] += t5 - t4
    return spent


STAGES = (
    "read + parse",
    "header checks",
    "decode",
    "modality + VOI",
    "PNG encode",
    "write",
    "manifest row",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from dcmexport.sample import write_ct_series

    work = Path(tempfile.mkdtemp(prefix="dcmexport-stages-"))
    paths = write_ct_series(work / "ct", args.slices, size=512)
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "lean": []}
    units: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.repeat):
        for name, run in (("ours", _ours), ("lean", _lean)):
            out = work / f"{name}{r}"
            out.mkdir()
            runs[name].append(run(paths, out))
        for replay in (False, True):
            units[replay].append(_unit(paths, work / f"unit{r}{replay}", replay=replay))
    n = len(paths)
    print(f"\nCPU ms per file, {n} 512x512 int16 CT slices → 8-bit PNG, median of {args.repeat}\n")
    print(f"| {'stage':<16} | {'ours':>7} | {'lean':>7} |")
    print(f"|{'-' * 18}|{'-' * 9}|{'-' * 9}|")
    totals = {"ours": 0.0, "lean": 0.0}
    for stage in STAGES:
        cells = []
        for name in ("ours", "lean"):
            ms = statistics.median(run.get(stage, 0.0) for run in runs[name]) * 1000 / n
            totals[name] += ms
            cells.append(f"{ms:7.3f}")
        print(f"| {stage:<16} | {cells[0]} | {cells[1]} |")
    print(f"| {'total':<16} | {totals['ours']:7.3f} | {totals['lean']:7.3f} |")
    print(f"\nours / lean: {totals['ours'] / totals['lean']:.2f}x")
    general, replayed = (statistics.median(units[k]) * 1000 / n for k in (False, True))
    print(f"whole unit of work (engine.work.convert_one), general path: {general:.3f} ms/file")
    print(f"whole unit of work (engine.work.convert_one), replayed: {replayed:.3f} ms/file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
