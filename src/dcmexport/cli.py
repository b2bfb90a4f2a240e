"""The `dcmexport` command: a thin layer that parses arguments and calls the library.

Library exceptions become one-line messages and exit codes here (0 ok, 1 some inputs failed,
2 usage error or nothing to convert); tracebacks only with `-v`.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .errors import DcmExportError, NotDicomError, UsageError
from .index.columns import IndexLevel
from .options import MetadataFormat, StillFormat, VideoFormat

DEFAULT_INPUT = "dicom_data"
DEFAULT_OUTPUT = "output"


class _Parser(argparse.ArgumentParser):
    """argparse that exits with 2 and a one-line message (its own behaviour, made explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only fatal errors")
    group.add_argument(
        "-v", "--verbose", action="store_true", help="print debug messages and tracebacks"
    )


def _add_execution(p: argparse.ArgumentParser) -> None:
    """Where the work runs: -j worker processes or a Dask cluster (convert, index)."""
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes (default: all cores; 1 = work in this process)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (pip install 'dcmexport[dask]')",
    )


def _add_storage(p: argparse.ArgumentParser) -> None:
    """fsspec options for object-store URL inputs and outputs (convert, index)."""
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec option for s3:// (or other URL) inputs and outputs, e.g. "
        "endpoint_url=http://127.0.0.1:9000 (repeatable; AWS_* variables work too)",
    )


def _convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert DICOM images to PNG/JPEG/TIFF stills and MP4/GIF videos, with a manifest",
        description="Convert DICOM images to PNG/JPEG/TIFF stills, multi-frame cines to MP4 and "
        "GIF videos, and write OUT/manifest.csv.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help=f"files, folders or s3:// (fsspec) URLs (default: ./{DEFAULT_INPUT})",
    )
    p.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="INPUT",
        help="an input file or folder (repeatable; same as a positional INPUT)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="OUT",
        help=f"output folder or s3:// (fsspec) URL (default: ./{DEFAULT_OUTPUT})",
    )
    _add_storage(p)
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where the resume state is kept (default: OUT/.dcmexport; for a URL OUT a cache "
        "folder named after it, under $XDG_CACHE_HOME/dcmexport)",
    )
    p.add_argument(
        "--format",
        choices=[f.value for f in StillFormat],
        default=StillFormat.PNG.value,
        help="still image format (default: png)",
    )
    p.add_argument(
        "--bits",
        type=int,
        choices=[8, 16],
        default=8,
        help="bits per sample, 16 for png and tiff only (default: 8)",
    )
    p.add_argument(
        "--8bit",
        dest="bits",
        action="store_const",
        const=8,
        help="same as --bits 8 (for older scripts)",
    )
    p.add_argument(
        "--window",
        default="auto",
        metavar="WINDOW",
        help="auto, file[:N], minmax, C,W (e.g. 40,400 or -600,1500), or a CT preset: "
        "brain, subdural, stroke, bone, lung, mediastinum, abdomen, liver, soft-tissue "
        "(default: auto)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="write stored pixel values unchanged (signed + 32768), no LUTs",
    )
    p.add_argument(
        "--overlays",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw overlay planes (60xx) into stills and video, as viewers do (default: on)",
    )
    p.add_argument(
        "--frames",
        metavar="FRAMES",
        help="stills of multi-frame inputs: all, first, middle, N, A-B or N,M,... (1-based)",
    )
    p.add_argument(
        "--video",
        choices=[v.value for v in VideoFormat],
        default=VideoFormat.BOTH.value,
        help="video of multi-frame inputs: H.264 MP4, looping GIF, both, or none (default: both)",
    )
    p.add_argument(
        "--no-mp4",
        dest="video",
        action="store_const",
        const=VideoFormat.GIF.value,
        help="same as --video gif (for older scripts)",
    )
    p.add_argument(
        "--series-video",
        action="store_true",
        help="also one video per series of single-frame images (a CT or MR stack), slices "
        "in order along the slice normal: OUT/<folder of the slices>/series_<SeriesNumber>.mp4",
    )
    p.add_argument(
        "--fps",
        type=float,
        metavar="FPS",
        help="video frame rate (default: the file's Frame Time, Frame Time Vector, Cine Rate or "
        "Recommended Display Frame Rate, else 10)",
    )
    p.add_argument(
        "--quality", type=int, default=90, metavar="Q", help="JPEG quality 1-100 (default: 90)"
    )
    p.add_argument(
        "--metadata",
        choices=[m.value for m in MetadataFormat],
        default=MetadataFormat.NONE.value,
        help="a metadata sidecar per converted input: txt (summary + full header) or json "
        "(DICOM JSON model + what was written) (default: none)",
    )
    p.add_argument(
        "--layout",
        default="mirror",
        metavar="LAYOUT",
        help="output names: mirror (the input tree, default), a preset (study = "
        "{PatientID}/{StudyDate}/{SeriesNumber}/{InstanceNumber}, series, flat) or a template "
        "of {Keyword} / {Keyword:04d} fields and {stem}, {index}, {frame}",
    )
    _add_execution(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite outputs an earlier run made with the same options "
        "(default: skip them, so a rerun resumes)",
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_convert)


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print a DICOM file's metadata (all of it, or selected tags)",
        description="Print a DICOM file's header: the whole dataset (file meta first, sequences "
        "nested, private elements with their creator), selected tags, or DICOM JSON.",
    )
    p.add_argument("file", metavar="FILE", help="a DICOM file (with or without preamble)")
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="print only this element: a keyword (PatientName), GGGG,EEEE, (GGGG,EEEE) or "
        "0xGGGGEEEE; repeatable",
    )
    p.add_argument(
        "--find", metavar="TEXT", help="list the elements whose keyword or name contains TEXT"
    )
    p.add_argument("--json", action="store_true", help="the DICOM JSON model (PS3.18 F.2)")
    p.add_argument(
        "--bulk", action="store_true", help="with --json: include binary values as InlineBinary"
    )
    p.add_argument("--full", action="store_true", help="do not shorten long values")
    _add_verbosity(p)
    p.set_defaults(run=_run_info)


def _index_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="one table row per DICOM instance (or series), from header-only reads",
        description="Write a table of the DICOM files under INPUT: one row per instance (or per "
        "series with --level series), CSV or Parquet, for pandas, DuckDB and friends.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, folders (recursed) or s3:// URLs"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="TABLE", help="TABLE.csv or TABLE.parquet"
    )
    p.add_argument(
        "--columns",
        action="append",
        metavar="COLS",
        help="comma-separated keywords or tags (PatientID,0008,0060 is ambiguous: use "
        "(0008,0060) or 0x00080060 for tags); repeatable; default: a standard set",
    )
    p.add_argument(
        "--level",
        choices=[level.value for level in IndexLevel],
        default=IndexLevel.INSTANCE.value,
        help="one row per instance (default) or per series, with counts",
    )
    _add_storage(p)
    _add_execution(p)
    _add_verbosity(p)
    p.set_defaults(run=_run_index)


def _sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="write realistic sample DICOM files to try dcmexport on",
        description="Write synthetic but realistic DICOM files (CT series, MR, CR, XA and US "
        "cines, palette, YBR, compressed copies and a DICOMDIR).",
    )
    p.add_argument(
        "-o",
        "--output",
        default=DEFAULT_INPUT,
        metavar="DIR",
        help=f"where to write them (default: ./{DEFAULT_INPUT})",
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_sample)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog="dcmexport",
        description="Turn DICOM images into PNG, JPEG or TIFF with correct windowing.",
    )
    parser.add_argument("--version", action="version", version=f"dcmexport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _convert_parser(sub)
    _info_parser(sub)
    _index_parser(sub)
    _sample_parser(sub)
    return parser


def _err(message: str) -> None:
    print(f"dcmexport: {message}", file=sys.stderr)


def _run_convert(args: argparse.Namespace) -> int:
    from .engine.batch import convert
    from .options import ConvertOptions, parse_storage_options
    from .progress import ConsoleReporter

    inputs = [*args.inputs, *args.input] or [DEFAULT_INPUT]
    if inputs == [DEFAULT_INPUT] and not Path(DEFAULT_INPUT).exists():
        raise UsageError(
            f"no input given and ./{DEFAULT_INPUT} does not exist: pass files or folders, "
            "or run `dcmexport sample` first"
        )
    options = ConvertOptions(
        format=args.format,
        bits=args.bits,
        window=args.window,
        raw=args.raw,
        overlays=args.overlays,
        frames=args.frames,
        video=args.video,
        fps=args.fps,
        series_video=args.series_video,
        layout=args.layout,
        quality=args.quality,
        metadata=args.metadata,
        overwrite=args.overwrite,
    )
    reporter = None if args.quiet else ConsoleReporter(verbose=args.verbose)
    try:
        summary = convert(
            inputs,
            args.output,
            options=options,
            jobs=args.jobs,
            scheduler=args.scheduler,
            reporter=reporter,
            storage_options=parse_storage_options(args.storage_option),
            state_dir=args.state_dir,
        )
    finally:
        if reporter is not None:
            reporter.close()
    if not args.quiet:
        up_to_date = f", {summary.up_to_date} already up to date" if summary.up_to_date else ""
        series = f"{summary.series_videos} series video(s), " if summary.series_videos else ""
        if summary.series_failed:
            series += f"{summary.series_failed} series video(s) failed, "
        print(
            f"converted {summary.converted} file(s) to {summary.images} image(s)"
            f"{f' and {summary.videos} video(s)' if summary.videos else ''}{up_to_date}, "
            f"{series}"
            f"skipped {summary.skipped}, failed {summary.failed} "
            f"in {summary.elapsed:.1f} s ({summary.files_per_second:.0f} files/s); "
            f"manifest: {summary.manifest}",
            file=sys.stderr,
        )
    if summary.found == 0:
        _err(f"no files found in {', '.join(map(str, inputs))}")
    elif summary.exit_code == 2:
        _err("no convertible DICOM image found (see the manifest for why each was skipped)")
    return summary.exit_code


def _run_info(args: argparse.Namespace) -> int:
    import json
    import warnings

    from pydicom.dataset import Dataset

    from .dicom import metadata
    from .dicom.decoding import read_dataset

    tags = [metadata.parse_tag(t) for t in args.tag]  # a bad spelling is a usage error
    if not Path(args.file).is_file():
        what = "is a folder, not a file" if Path(args.file).is_dir() else "not found"
        raise UsageError(f"{args.file}: {what}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if not args.verbose else "default")
        try:
            ds = read_dataset(args.file)
        except NotDicomError as exc:
            raise NotDicomError(f"{args.file}: {exc}") from None
        if args.json:
            if tags:  # only the asked-for elements, still as DICOM JSON
                subset = Dataset()
                for _tag, element in metadata.select_elements(ds, tags):
                    if element is not None:
                        subset.add(element)
                ds = subset
            model = metadata.to_json_model(ds, bulk=args.bulk)
            print(json.dumps(model, indent=1, ensure_ascii=False))
            return 0
        if args.find:
            lines = [
                line
                for element in metadata.find_elements(ds, args.find)
                for line in metadata.element_lines(element, full=args.full)
            ]
            print("\n".join(lines) if lines else f"no element matches {args.find!r}")
            return 0 if lines else 1
        if not tags:
            print("\n".join(metadata.dump_lines(ds, full=args.full)))
            return 0
        missing = 0
        for tag, element in metadata.select_elements(ds, tags):
            if element is None:
                missing += 1
                _err(f"{tag} is not in {args.file}")
            else:
                print("\n".join(metadata.element_lines(element, full=args.full)))
        return 1 if missing else 0


def _run_index(args: argparse.Namespace) -> int:
    from .index import DEFAULT_COLUMNS, build_index, parse_columns
    from .options import parse_storage_options
    from .progress import ConsoleReporter

    columns = parse_columns(args.columns) if args.columns else DEFAULT_COLUMNS
    reporter = None if args.quiet else ConsoleReporter(verbose=args.verbose)
    try:
        summary = build_index(
            args.inputs,
            args.output,
            columns=columns,
            level=args.level,
            jobs=args.jobs,
            scheduler=args.scheduler,
            reporter=reporter,
            storage_options=parse_storage_options(args.storage_option),
        )
    finally:
        if reporter is not None:
            reporter.close()
    if not args.quiet:
        print(
            f"indexed {summary.files} file(s): {summary.ok} ok, {summary.skipped} skipped, "
            f"{summary.failed} unreadable; {summary.rows} row(s) in {summary.table} "
            f"in {summary.elapsed:.1f} s ({summary.files_per_second:.0f} files/s)",
            file=sys.stderr,
        )
    return summary.exit_code


def _run_sample(args: argparse.Namespace) -> int:
    from .sample import write_samples

    paths = write_samples(args.output)
    if not args.quiet:
        print(f"wrote {len(paths)} sample DICOM files to {args.output}", file=sys.stderr)
        print(f"next: dcmexport convert {args.output} -o output", file=sys.stderr)
    return 0


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--window -600,1500` → `--window=-600,1500`: argparse takes `-600,1500` for an option."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--window" and re.match(r"^-\d", arg):
            out[-1] = f"--window={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="dcmexport: %(message)s",
    )
    if not args.verbose:  # pydicom logs every tolerated oddity; our manifest has the reasons
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda record: not record.name.startswith("pydicom"))
    try:
        return int(args.run(args))
    except UsageError as exc:
        _err(str(exc))
        return 2
    except DcmExportError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
