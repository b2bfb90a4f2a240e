"""The `dcmexport` command: a thin layer that parses arguments and calls the library.

Library exceptions become one-line messages and exit codes here (0 ok, 1 some inputs failed,
2 usage error or nothing to convert); tracebacks only with `-v`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _startup  # first: pauses the garbage collector while the modules below load
from ._version import __version__
from .engine.pool import DEFAULT_TIMEOUT, RunTerminated, install_terminate_handler
from .errors import (
    DcmExportError,
    NotDicomError,
    ServerError,
    StoreError,
    UnreadableDicomError,
    UsageError,
)
from .index.columns import IndexLevel
from .options import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_INFLATE,
    DEFAULT_MAX_PIXELS,
    BurnedInPolicy,
    MetadataFormat,
    MetadataPhi,
    StillFormat,
    VideoFormat,
    VolumeFormat,
)
from .progress import RunOutcome

if TYPE_CHECKING:
    from .dicom.deid import DeidOptions
    from .sources.servers import QueryFilters, Server, ServerInput

_startup.loaded()

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
        help="worker processes (default: all cores; 1 = one worker, guarded as any)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (pip install 'dcmexport[dask]')",
    )


#: set to 1 to run a ``-j 1`` run in the dcmexport process itself (debuggers, profilers):
#: no --timeout then, and a crashing decoder ends the run
IN_PROCESS_VARIABLE = "DCMEXPORT_IN_PROCESS"


def _isolate() -> bool:
    """Whether ``-j 1`` works in one worker process (the default: a hang or a crash costs one
    input, as with more workers) rather than in this process (`IN_PROCESS_VARIABLE`)."""
    return os.environ.get(IN_PROCESS_VARIABLE, "").strip() in ("", "0")


#: the environment variable holding the de-identification key when --key is not given
KEY_VARIABLE = "DCMEXPORT_KEY"


def _add_deidentification(p: argparse.ArgumentParser) -> None:
    """--key, --map, --set, --keep, --burned-in (anonymize, convert --anonymize)."""
    from .dicom.deid import KeepOption

    p.add_argument(
        "--key",
        metavar="SECRET",
        help=f"the same key gives the same pseudonyms, UIDs and date shifts in every run "
        f"(default: ${KEY_VARIABLE}, else a random key for this run)",
    )
    p.add_argument(
        "--map",
        metavar="FILE",
        help="write the original -> pseudonym map (paths, patient IDs, UIDs, date offsets) "
        "to FILE, a CSV for authorised re-linking; never inside OUT",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEYWORD=VALUE",
        help="use VALUE instead of the generated value (repeatable), e.g. "
        '--set PatientName="no name"',
    )
    p.add_argument(
        "--keep",
        action="append",
        default=[],
        choices=[k.value for k in KeepOption],
        metavar="OPTION",
        help="retain what a PS3.15 Annex E option retains (repeatable): "
        + ", ".join(k.value for k in KeepOption)
        + " (default: Basic Profile, dates shifted per patient)",
    )
    p.add_argument(
        "--burned-in",
        choices=[b.value for b in BurnedInPolicy],
        default=BurnedInPolicy.WARN.value,
        help="images that may carry burned-in text (ultrasound, secondary capture, Burned In "
        "Annotation YES): warn (noted in the manifest), exclude (skipped), mask (OCR finds the "
        "text and blacks it out; mask-all: every image; needs the ocr extra) (default: warn)",
    )


def _deid_options(args: argparse.Namespace) -> DeidOptions:
    """The de-identification settings from --key / $DCMEXPORT_KEY, --keep and --set."""
    import os

    from .dicom.deid import DeidOptions, key_from_text, random_key

    secret = args.key if args.key is not None else os.environ.get(KEY_VARIABLE)
    overrides = []
    for text in args.set:
        keyword, sep, value = text.partition("=")
        if not sep or not keyword.strip():
            raise UsageError(f"--set {text!r}: use KEYWORD=VALUE, e.g. PatientName=anonymous")
        overrides.append((keyword.strip(), value))
    return DeidOptions(
        key=key_from_text(secret) if secret else random_key(),
        keep=frozenset(args.keep),
        overrides=tuple(overrides),
    )


def _deid_given(args: argparse.Namespace) -> bool:
    return bool(args.key or args.map or args.set or args.keep) or (
        args.burned_in != BurnedInPolicy.WARN.value
    )


def _require_ocr(args: argparse.Namespace) -> None:
    """``--burned-in mask``/``mask-all`` without the OCR engine: a usage error naming the extra."""
    if BurnedInPolicy(args.burned_in).masks:
        from .render import ocr

        ocr.require()


def _anonymize_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "anonymize",
        help="de-identified DICOM copies (PS3.15 Annex E), with a manifest",
        description="Write a de-identified copy of every DICOM input under OUT (PS3.15 Annex E "
        "Basic Profile, dates shifted per patient), named by the new UIDs, and "
        "OUT/manifest.csv. Inputs are never modified.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, folders (recursed) or s3:// URLs"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output folder or s3:// URL"
    )
    _add_storage(p, state_dir=True)
    _add_deidentification(p)
    _add_execution(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite copies an earlier run made with the same key and options "
        "(default: skip them, so a rerun resumes)",
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_anonymize)


def _add_limits(p: argparse.ArgumentParser) -> None:
    """Safety limits against hostile inputs (docs/cli.md, "Limits")."""
    p.add_argument(
        "--max-pixels",
        default=str(DEFAULT_MAX_PIXELS),
        metavar="N",
        help="refuse a frame of more pixels (rows x columns x samples), from the header or "
        "the codestream, before decoding (default: 2^28)",
    )
    p.add_argument(
        "--max-frames",
        default=str(DEFAULT_MAX_FRAMES),
        metavar="N",
        help="refuse an input of more frames (default: 2^20)",
    )
    _add_inflate_and_timeout(p)


def _add_inflate_and_timeout(p: argparse.ArgumentParser) -> None:
    """The limits that also hold for header reads (convert, anonymize, index)."""
    p.add_argument(
        "--max-inflate",
        default=str(DEFAULT_MAX_INFLATE),
        metavar="BYTES",
        help="refuse a deflated dataset or archive member that inflates to more, e.g. 4G "
        "(default: 1G; also refused: over 100 times its compressed size past 64M)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="stop an input that takes longer in its worker process and mark it failed "
        "(default: 300; 0 = no limit)",
    )


def _add_storage(p: argparse.ArgumentParser, *, state_dir: bool = False) -> None:
    """fsspec options for object-store URL inputs and outputs (convert, anonymize, index),
    and where a run's resume state is kept (commands that write OUT)."""
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec option for s3:// (or other URL) inputs and outputs, e.g. "
        "endpoint_url=http://127.0.0.1:9000 (repeatable; AWS_* variables work too)",
    )
    if state_dir:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="where the resume state is kept (default: OUT/.dcmexport; for a URL OUT a "
            "cache folder named after it, under $XDG_CACHE_HOME/dcmexport)",
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
    _add_storage(p, state_dir=True)
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
        "--volume",
        choices=[v.value for v in VolumeFormat],
        default=VolumeFormat.NONE.value,
        help="one volume per series of slices (and per enhanced multi-frame file), with a "
        ".json sidecar of its geometry: nifti (.nii.gz, RAS), npz (NumPy, LPS) or none: "
        "OUT/<folder of the series' outputs>/series_<SeriesNumber>.nii.gz (default: none)",
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
    p.add_argument(
        "--metadata-phi",
        choices=[m.value for m in MetadataPhi],
        default=MetadataPhi.KEEP.value,
        help="none: --metadata sidecars describe the de-identified header (no patient data) "
        "while the images are converted as they are (default: keep)",
    )
    p.add_argument(
        "--anonymize",
        action="store_true",
        help="de-identify every input (PS3.15 Annex E) before anything is written: names, "
        "layout values, sidecars and the manifest carry nothing identifying",
    )
    _add_deidentification(p)
    _add_execution(p)
    _add_server_options(p)
    _add_limits(p)
    _add_report_options(p, html=True)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite outputs an earlier run made with the same options "
        "(default: skip them, so a rerun resumes)",
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_convert)


def _add_report_options(p: argparse.ArgumentParser, *, html: bool) -> None:
    """The HTML report's options: --html on convert (the report command always writes it)."""
    if html:
        p.add_argument(
            "--html",
            action="store_true",
            help="also write OUT/index.html, a browsable offline report of the export",
        )
    p.add_argument(
        "--contact-sheet",
        action="store_true",
        help="with the report: one PNG per series tiling its images, under OUT/contact_sheets/",
    )


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="(re)build the HTML report of an existing export",
        description="Write OUT/index.html (pages and thumbnails under OUT/report_assets/) from "
        "OUT/manifest.csv, the files it lists and the inputs' headers (read header-only).",
    )
    p.add_argument("output", metavar="OUT", help="an output folder written by `convert`")
    _add_report_options(p, html=False)
    _add_verbosity(p)
    p.set_defaults(run=_run_report)


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
    p.add_argument(
        "--value",
        action="store_true",
        help="with --tag: print only the value(s), one per line (for scripts)",
    )
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
    _add_inflate_and_timeout(p)
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


def _add_server_filters(p: argparse.ArgumentParser) -> None:
    """SERVER, the CONTRACT filters and the connection options shared by query and pull."""
    p.add_argument(
        "server",
        metavar="SERVER",
        help="a DICOMweb base URL (http(s)://HOST:PORT/dicom-web) or dicom://CALLED_AET@HOST:PORT",
    )
    _add_server_options(p)


def _add_server_options(p: argparse.ArgumentParser) -> None:
    """The CONTRACT filters and the connection options (query, pull, convert SERVER)."""
    f = p.add_argument_group("filters (* and ? are wildcards)")
    f.add_argument("--patient-id", default="", metavar="ID", help="Patient ID")
    f.add_argument("--study-date", default="", metavar="DATE", help="YYYYMMDD or YYYYMMDD-YYYYMMDD")
    f.add_argument("--modality", default="", metavar="MOD", help="e.g. CT, MR")
    f.add_argument("--accession", default="", metavar="NUMBER", help="Accession Number")
    f.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="UID",
        help="Study Instance UID (repeatable)",
    )
    f.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="UID",
        help="Series Instance UID (repeatable)",
    )
    c = p.add_argument_group("connection")
    c.add_argument(
        "--calling-aet",
        default="DCMEXPORT",
        metavar="AET",
        help="our AE title (DIMSE; default: DCMEXPORT)",
    )
    c.add_argument("--user", metavar="USER", help="HTTP basic user (or DCMEXPORT_USER)")
    c.add_argument(
        "--password",
        metavar="PASSWORD",
        help="HTTP basic password; prefer DCMEXPORT_PASSWORD (a command line is visible to others)",
    )
    c.add_argument("--token", metavar="TOKEN", help="bearer token; prefer DCMEXPORT_TOKEN")
    c.add_argument(
        "--server-timeout",
        dest="server_timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds per request to the server (default: 30)",
    )
    c.add_argument(
        "--retries",
        type=int,
        default=3,
        metavar="N",
        help="retries on timeouts and 5xx answers, with backoff (default: 3)",
    )


def _query_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "query",
        help="list the studies (or series) a PACS or DICOMweb server holds that match",
        description="Search a DICOMweb (QIDO-RS) or DIMSE (C-FIND) server and print one row per "
        "matching study (or series).",
    )
    _add_server_filters(p)
    p.add_argument(
        "--level",
        choices=["study", "series"],
        default="study",
        help="one row per study (default) or series",
    )
    p.add_argument(
        "-o", "--output", metavar="TABLE", help="also save the table: TABLE.csv or TABLE.parquet"
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_query)


def _pull_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pull",
        help="fetch matching instances from a server as DICOM files",
        description="Fetch the matching instances (WADO-RS or C-GET) into "
        "DIR/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm, with DIR/manifest.csv; "
        "instances already there are not fetched again.",
    )
    _add_server_filters(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where to store the files")
    p.add_argument(
        "-j", "--jobs", type=int, default=4, metavar="N", help="parallel connections (default: 4)"
    )
    _add_verbosity(p)
    p.set_defaults(run=_run_pull)


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
    _anonymize_parser(sub)
    _info_parser(sub)
    _index_parser(sub)
    _sample_parser(sub)
    _query_parser(sub)
    _pull_parser(sub)
    _report_parser(sub)
    return parser


#: Exit code of a run that could not finish (a fault, not the inputs): see docs/cli.md.
EXIT_STOPPED = 3


def _quiet_warnings(verbose: bool) -> None:
    """pydicom warns about every oddity it tolerates; the manifest has the reasons."""
    if not verbose:
        warnings.filterwarnings("ignore", module="pydicom")


def _stopped(args: argparse.Namespace, exc: Exception) -> int:
    """One line for an exception nothing else caught; the traceback with -v."""
    from .engine.faults import plain_reason

    if args.verbose:
        traceback.print_exc()
    if args.command == "info":  # the file's fault, as for any unreadable file
        _err(f"{args.file}: {plain_reason(exc)}")
        return 1
    _err(f"the run stopped: {plain_reason(exc)} (rerun to resume; -v shows the traceback)")
    return EXIT_STOPPED


def _err(message: str) -> None:
    print(f"dcmexport: {message}", file=sys.stderr)


def _run_convert(args: argparse.Namespace) -> int:
    from .engine.batch import convert
    from .options import ConvertOptions, Limits, parse_storage_options
    from .progress import ConsoleReporter

    inputs = [*args.inputs, *args.input] or [DEFAULT_INPUT]
    if inputs == [DEFAULT_INPUT] and not Path(DEFAULT_INPUT).exists():
        raise UsageError(
            f"no input given and ./{DEFAULT_INPUT} does not exist: pass files or folders, "
            "or run `dcmexport sample` first"
        )
    items = _server_inputs(args, inputs)
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
        volume=args.volume,
        layout=args.layout,
        quality=args.quality,
        metadata=args.metadata,
        overwrite=args.overwrite,
        anonymize=args.anonymize,
        burned_in=args.burned_in,
        metadata_phi=args.metadata_phi,
        limits=Limits(args.max_pixels, args.max_frames, args.max_inflate),
        thumbnails=args.html or args.contact_sheet,
    )
    deidentifying = args.anonymize or options.metadata_phi is MetadataPhi.NONE
    if _deid_given(args) and not deidentifying:
        raise UsageError(
            "--key, --map, --set, --keep and --burned-in need --anonymize (or --metadata-phi none)"
        )
    if BurnedInPolicy(args.burned_in).masks and not args.anonymize:
        raise UsageError(
            "--burned-in mask masks the images of a de-identified run: add --anonymize"
        )
    _require_ocr(args)
    deid = _deid_options(args) if deidentifying else None
    if args.anonymize:
        _redact_logged_paths()
    storage = parse_storage_options(args.storage_option)
    reporter = None if args.quiet else ConsoleReporter(verbose=args.verbose)
    try:
        summary = convert(
            items,
            args.output,
            options=options,
            jobs=args.jobs,
            scheduler=args.scheduler,
            reporter=reporter,
            timeout=args.timeout or None,
            deid=deid,
            map_path=args.map,
            storage_options=storage,
            state_dir=args.state_dir,
            isolate=_isolate(),
        )
    finally:
        if reporter is not None:
            reporter.close()
    outcome = _run_outcome(summary.manifest, inputs, storage) if not args.quiet else None
    if outcome is not None:
        outcome.print_before_summary()
    if not args.quiet:
        up_to_date = f", {summary.up_to_date} already up to date" if summary.up_to_date else ""
        series = f"{summary.series_videos} series video(s), " if summary.series_videos else ""
        if summary.series_failed:
            series += f"{summary.series_failed} series video(s) failed, "
        if summary.volumes or summary.volumes_failed:
            series += f"{summary.volumes} volume(s), "
        if summary.volumes_failed:
            series += f"{summary.volumes_failed} volume(s) refused, "
        print(
            f"converted {summary.converted} file(s) to {summary.images} image(s)"
            f"{f' and {summary.videos} video(s)' if summary.videos else ''}{up_to_date}, "
            f"{series}"
            f"skipped {summary.skipped}, failed {summary.failed - _missing(outcome)}"
            f"{_missing_text(outcome)} "
            f"in {summary.elapsed:.1f} s ({summary.files_per_second:.0f} files/s); "
            f"manifest: {summary.manifest}",
            file=sys.stderr,
        )
        _burned_in_line(summary.burned_in)
    if args.html or args.contact_sheet:
        _write_report(Path(args.output), args)
    if summary.found == 0:
        where = "the given inputs" if args.anonymize else ", ".join(map(str, inputs))
        _err(f"no files found in {where}")
    elif summary.exit_code == 2:
        _err("no convertible DICOM image found (see the manifest for why each was skipped)")
    return summary.exit_code


def _redact_logged_paths() -> None:
    """De-identified runs: discovery's warnings name folders and files, which may name the
    patient; they are logged without the path."""

    def redact(record: logging.LogRecord) -> bool:
        if record.name.startswith("dcmexport.sources"):
            record.msg, record.args = "an input folder or DICOMDIR could not be read: skipped", ()
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


def _burned_in_line(count: int) -> None:
    if count:
        print(
            f"dcmexport: {count} image(s) may carry burned-in identifying text (kept with "
            "Burned In Annotation YES; see the manifest notes, or use --burned-in exclude)",
            file=sys.stderr,
        )


def _run_anonymize(args: argparse.Namespace) -> int:
    from .engine.batch import anonymize
    from .options import parse_storage_options
    from .progress import ConsoleReporter

    _require_ocr(args)
    deid = _deid_options(args)
    _redact_logged_paths()
    reporter = None if args.quiet else ConsoleReporter(verbose=args.verbose)
    try:
        summary = anonymize(
            args.inputs,
            args.output,
            deid=deid,
            burned_in=BurnedInPolicy(args.burned_in),
            map_path=args.map,
            overwrite=args.overwrite,
            jobs=args.jobs,
            scheduler=args.scheduler,
            reporter=reporter,
            storage_options=parse_storage_options(args.storage_option),
            state_dir=args.state_dir,
            isolate=_isolate(),
        )
    finally:
        if reporter is not None:
            reporter.close()
    if not args.quiet:
        up_to_date = f", {summary.up_to_date} already up to date" if summary.up_to_date else ""
        print(
            f"anonymized {summary.converted} file(s){up_to_date}, skipped {summary.skipped}, "
            f"failed {summary.failed} in {summary.elapsed:.1f} s "
            f"({summary.files_per_second:.0f} files/s); manifest: {summary.manifest}",
            file=sys.stderr,
        )
        _burned_in_line(summary.burned_in)
    if summary.found == 0:
        _err("no files found in the given inputs")
    elif summary.exit_code == 2:
        _err("no DICOM file to anonymize (see the manifest for why each was skipped)")
    return summary.exit_code


def _server_inputs(args: argparse.Namespace, inputs: list[str]) -> list[str | ServerInput]:
    """SERVER inputs of `convert` with the filters and connection options, listed here so that
    a server that cannot be used is exit 2 before OUT is made; the other inputs unchanged."""
    from .sources import remote
    from .sources.servers import ServerInput, is_server

    out: list[str | ServerInput] = []
    for text in inputs:
        if is_server(text):
            server, filters = _server_and_filters(args, text)
            item = ServerInput(server, filters)
            remote.list_inputs(item)  # the run reuses this listing
            out.append(item)
        else:
            out.append(text)
    filters_given = any(
        (args.patient_id, args.study_date, args.modality, args.accession, args.study, args.series)
    )
    if filters_given and not any(isinstance(item, ServerInput) for item in out):
        raise UsageError("--patient-id, --study-date, ... select instances of a SERVER input")
    return out


def _run_outcome(
    manifest: Path | str, inputs: list[str], storage_options: dict[str, Any] | None = None
) -> RunOutcome | None:
    from .progress import read_outcome

    try:
        return read_outcome(manifest, inputs, storage_options)
    except OSError:
        return None


def _missing(outcome: RunOutcome | None) -> int:
    return outcome.missing if outcome is not None else 0


def _missing_text(outcome: RunOutcome | None) -> str:
    n = _missing(outcome)
    return f", {n} referenced by a DICOMDIR but missing" if n else ""


def _write_report(out: Path, args: argparse.Namespace) -> None:
    from .report import build_report

    report = build_report(out, contact_sheet=args.contact_sheet)
    if not args.quiet:
        sheets = f", {len(report.contact_sheets)} contact sheet(s)" if report.contact_sheets else ""
        studies = f"{report.studies} stud{'y' if report.studies == 1 else 'ies'}"
        print(
            f"report: {report.index} ({studies}, {report.series} series, "
            f"{report.images} image(s), {report.cines} cine(s){sheets}) "
            f"in {report.elapsed:.1f} s",
            file=sys.stderr,
        )


def _run_report(args: argparse.Namespace) -> int:
    _write_report(Path(args.output), args)
    return 0


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
        except (NotDicomError, UnreadableDicomError) as exc:
            raise type(exc)(f"{args.file}: {exc}") from None
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
        truncated = metadata_truncation(args.file, ds)
        if truncated:
            _err(f"{args.file}: {truncated}; showing what could be read")
        if args.find:
            lines = metadata.find_lines(ds, args.find, full=args.full)
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
            elif args.value:
                print("\n".join(metadata.value_lines(element)))
            else:
                print("\n".join(metadata.element_lines(element, full=args.full)))
        return 1 if missing else 0


def metadata_truncation(path: str, ds: object) -> str | None:
    """What `info` says about a truncated file (None when it looks whole)."""
    from .dicom.decoding import describe_truncation

    try:
        size = Path(path).stat().st_size
    except OSError:
        size = None
    return describe_truncation(ds, size)  # type: ignore[arg-type]


def _run_index(args: argparse.Namespace) -> int:
    from .index import DEFAULT_COLUMNS, build_index, parse_columns
    from .options import Limits, parse_storage_options
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
            limits=Limits(max_inflate=args.max_inflate),
            timeout=args.timeout or None,
            isolate=_isolate(),
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


def _server_and_filters(
    args: argparse.Namespace, text: str | None = None
) -> tuple[Server, QueryFilters]:
    from .sources.remote import clients
    from .sources.servers import QueryFilters, parse_server

    clients()  # a UsageError naming the pacs extra if requests or pynetdicom is missing
    server = parse_server(
        args.server if text is None else text,
        calling_aet=args.calling_aet,
        user=args.user,
        password=args.password,
        token=args.token,
        timeout=args.server_timeout,
        retries=args.retries,
    )
    filters = QueryFilters(
        patient_id=args.patient_id,
        study_date=args.study_date,
        modality=args.modality,
        accession=args.accession,
        study_uids=tuple(args.study),
        series_uids=tuple(args.series),
    )
    return server, filters


def _run_query(args: argparse.Namespace) -> int:
    from .sources.query import format_table, records_for, write_query_table
    from .sources.servers import QueryLevel

    server, filters = _server_and_filters(args)
    rows, columns = records_for(server, filters, QueryLevel(args.level))
    print(format_table(rows, columns))
    if args.output:
        write_query_table(rows, args.output, columns)
    if not args.quiet:
        print(f"{len(rows)} {args.level}(s) on {server}", file=sys.stderr)
    return 0


def _run_pull(args: argparse.Namespace) -> int:
    from .progress import ConsoleReporter
    from .sources.pull import pull

    server, filters = _server_and_filters(args)
    reporter = None if args.quiet else ConsoleReporter(verbose=args.verbose)
    try:
        summary = pull(
            server,
            filters,
            args.output,
            jobs=args.jobs,
            on_start=reporter.start if reporter else None,
            on_result=reporter.result if reporter else None,
        )
    finally:
        if reporter is not None:
            reporter.close()
    if summary.found == 0:
        _err(f"no instance on {server} matches the filters")
    elif not args.quiet:
        print(
            f"pulled {summary.fetched} instance(s), {summary.present} already present, "
            f"failed {summary.failed} in {summary.elapsed:.1f} s "
            f"({summary.files_per_second:.0f} files/s); manifest: {summary.manifest}",
            file=sys.stderr,
        )
    return summary.exit_code


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--window -600,1500` → `--window=-600,1500`: argparse takes `-600,1500` for an option."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] == "--window" and re.match(r"^-\d", arg):
            out[-1] = f"--window={arg}"
        else:
            out.append(arg)
    return out


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the flush at exit cannot raise BrokenPipeError."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


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
            handler.addFilter(lambda record: not record.name.startswith(("pydicom", "pynetdicom")))
    _quiet_warnings(args.verbose)
    install_terminate_handler()  # SIGTERM stops cleanly, as Ctrl-C
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:  # `dcmexport info FILE | head -1`: the reader has what it wanted
        _quiet_stdout()
        return 141
    except (UsageError, ServerError) as exc:  # a server we cannot use: nothing to work on
        _err(str(exc))
        return 2
    except StoreError as exc:
        _err(str(exc))
        return EXIT_STOPPED
    except DcmExportError as exc:
        _err(str(exc))
        return 1
    except RunTerminated:
        _err("terminated")
        return 143
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:  # a bug or a fault no guard foresaw: one line, its own code
        return _stopped(args, exc)
