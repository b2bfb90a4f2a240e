"""SERVER arguments and the plain values every PACS function passes around.

A SERVER is either a DICOMweb base URL (``http(s)://host:port/dicom-web``) or a DIMSE address
(``dicom://CALLED_AET@HOST:PORT``). Everything here is a frozen dataclass of strings and
numbers, so it pickles to worker processes and Dask workers unchanged. Credentials travel with
the `Server` (a worker has to authenticate too) but never appear in its `repr`, its display
URL, a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import UsageError
from .base import SERVER_SCHEMES

logger = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "DCMEXPORT"
#: environment variables read when no credential option is given
ENV_USER = "DCMEXPORT_USER"
ENV_PASSWORD = "DCMEXPORT_PASSWORD"
ENV_TOKEN = "DCMEXPORT_TOKEN"

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: default repertoire, no backslash
_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")

T = TypeVar("T")


class ServerKind(str, enum.Enum):
    """How dcmexport talks to a server: DICOMweb (QIDO-RS / WADO-RS) or DIMSE (C-FIND / C-GET)."""

    DICOMWEB = "dicomweb"
    DIMSE = "dimse"


class QueryLevel(str, enum.Enum):
    """The Query/Retrieve level of a search (PS3.4 C.3): one row per study, series or instance."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclasses.dataclass(frozen=True)
class Credentials:
    """HTTP basic (user + password) or a bearer token; hidden from repr and never logged."""

    user: str = dataclasses.field(default="", repr=False)
    password: str = dataclasses.field(default="", repr=False)
    token: str = dataclasses.field(default="", repr=False)

    def __bool__(self) -> bool:
        return bool(self.user or self.token)


@dataclasses.dataclass(frozen=True)
class Server:
    """A parsed SERVER: where it is, how to talk to it, and how hard to try.

    `url` is the display form (no credentials): it goes into the manifest's `source` column and
    into messages. `host`/`port`/`called_aet` are set for DIMSE only.
    """

    kind: ServerKind
    url: str
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = DEFAULT_CALLING_AET
    credentials: Credentials = dataclasses.field(default_factory=Credentials, repr=False)
    timeout: float = 30.0
    retries: int = 3

    def __str__(self) -> str:
        return self.url


def is_server(text: str) -> bool:
    """True when `text` names a server (``http(s)://`` or ``dicom://``), not a path."""
    return text.lower().startswith(SERVER_SCHEMES)


def parse_server(
    text: str,
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    environ: Mapping[str, str] | None = None,
) -> Server:
    """Parse a SERVER argument; credentials come from the options, then from the URL
    (``https://user:pass@host/...``), then from ``DCMEXPORT_USER`` / ``DCMEXPORT_PASSWORD`` /
    ``DCMEXPORT_TOKEN``. Raises `UsageError` for anything malformed."""
    env = os.environ if environ is None else environ
    if timeout <= 0 or retries < 0:
        raise UsageError("--timeout must be > 0 and --retries >= 0")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.hostname:
            raise UsageError(f"SERVER {scheme}://... has no host")
        url_user = unquote(parts.username or "")
        url_password = unquote(parts.password or "")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        display = urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
        credentials = Credentials(
            user=user or url_user or env.get(ENV_USER, ""),
            password=password or url_password or env.get(ENV_PASSWORD, ""),
            token=token or env.get(ENV_TOKEN, ""),
        )
        return Server(
            ServerKind.DICOMWEB,
            display,
            calling_aet=_check_aet(calling_aet, "--calling-aet"),
            credentials=credentials,
            timeout=timeout,
            retries=retries,
        )
    if scheme == "dicom":
        match = re.match(r"^dicom://([^@/]+)@(\[[^\]]+\]|[^:/]+):(\d+)/?$", text, re.IGNORECASE)
        if match is None:
            raise UsageError("a DIMSE SERVER is dicom://CALLED_AET@HOST:PORT")
        called, host, port = match.group(1), match.group(2).strip("[]"), int(match.group(3))
        if not 0 < port < 65536:
            raise UsageError(f"SERVER port {port} is not in 1-65535")
        return Server(
            ServerKind.DIMSE,
            f"dicom://{called}@{match.group(2)}:{port}",
            host=host,
            port=port,
            called_aet=_check_aet(called, "the called AE title"),
            calling_aet=_check_aet(calling_aet, "--calling-aet"),
            timeout=timeout,
            retries=retries,
        )
    raise UsageError(
        "SERVER must be a DICOMweb URL (http(s)://HOST:PORT/PATH) or dicom://CALLED_AET@HOST:PORT"
    )


def _check_aet(value: str, what: str) -> str:
    if not _AET.match(value) or not value.strip():
        raise UsageError(f"{what} must be 1-16 printable ASCII characters, no backslash")
    return value


def is_valid_uid(value: str) -> bool:
    """A UID we can use as a file name: digits and dots only, at most 64 characters (PS3.5 9.1)."""
    return len(value) <= 64 and _UID.match(value) is not None


def check_uid(value: str, what: str) -> str:
    """`value` if it is a valid UID, else a `UsageError` (for UIDs the user typed)."""
    if not is_valid_uid(value):
        raise UsageError(f"{what} {value!r} is not a UID (digits and dots, at most 64)")
    return value


@dataclasses.dataclass(frozen=True)
class QueryFilters:
    """The CONTRACT filters; empty means "any". `*` and `?` in `patient_id` and `accession`
    are DICOM wildcards (PS3.4 C.2.2.2.4), sent to the server as they are."""

    patient_id: str = ""
    study_date: str = ""  # YYYYMMDD or YYYYMMDD-YYYYMMDD (either end may be open)
    modality: str = ""
    accession: str = ""
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        date = _DATE.match(self.study_date)
        if date is None or self.study_date == "-":
            raise UsageError(f"--study-date {self.study_date!r}: use YYYYMMDD or YYYYMMDD-YYYYMMDD")
        if date.group(1) and date.group(3) and date.group(1) > date.group(3):
            raise UsageError(f"--study-date {self.study_date!r}: the range ends before it starts")
        for uid in self.study_uids:
            check_uid(uid, "--study")
        for uid in self.series_uids:
            check_uid(uid, "--series")
        for name in ("patient_id", "modality", "accession"):
            if "\\" in getattr(self, name):
                raise UsageError(f"--{name.replace('_', '-')} may not contain a backslash")


@dataclasses.dataclass(frozen=True)
class InstanceRef:
    """One instance on a server, by its UIDs: what a worker needs to fetch it."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""

    @property
    def valid(self) -> bool:
        """All three UIDs are usable as file names."""
        return all(map(is_valid_uid, (self.study_uid, self.series_uid, self.sop_instance_uid)))

    @property
    def relative_path(self) -> PurePosixPath:
        """``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``: PHI-free."""
        if not self.valid:
            raise UsageError("the server returned a UID that is not digits and dots")
        return PurePosixPath(self.study_uid, self.series_uid, f"{self.sop_instance_uid}.dcm")

    def source(self, server: Server) -> str:
        """The manifest's `source`: the server's URL and the instance's UIDs (the WADO-RS URL)."""
        return (
            f"{server.url}/studies/{self.study_uid}/series/{self.series_uid}"
            f"/instances/{self.sop_instance_uid}"
        )

    def fingerprint(self, server: Server) -> str:
        """Resume key: the same instance on the same server is the same input."""
        return f"{server.url}|{self.sop_instance_uid}"


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    """One row of `dcmexport query`: a study as the server describes it."""

    patient_id: str
    study_date: str
    modalities: tuple[str, ...]
    description: str
    study_uid: str
    accession: str = ""
    number_of_series: int | None = None
    number_of_instances: int | None = None


@dataclasses.dataclass(frozen=True)
class SeriesRecord:
    """One row of `dcmexport query --level series`."""

    patient_id: str
    study_date: str
    modality: str
    description: str
    study_uid: str
    series_uid: str
    series_number: str = ""
    number_of_instances: int | None = None


def with_retries(
    server: Server,
    attempt: Callable[[], T],
    retry_on: tuple[type[BaseException], ...],
    what: str,
) -> T:
    """Run `attempt`, retrying `server.retries` times on `retry_on` with exponential backoff
    (0.25 s, 0.5 s, 1 s, ...): a busy PACS or a restarting proxy gets a second chance."""
    for number in range(server.retries + 1):
        try:
            return attempt()
        except retry_on as exc:
            if number == server.retries:
                raise
            delay = 0.25 * 2**number
            logger.debug(
                "%s failed (%s); retry %d in %.2f s", what, type(exc).__name__, number + 1, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class ServerInput:
    """A SERVER input of `convert`: the server and which of its instances (the filters)."""

    server: Server
    filters: QueryFilters = QueryFilters()

    def __str__(self) -> str:
        return self.server.url


def as_server_input(item: object) -> ServerInput | None:
    """`item` as a `ServerInput` if it names a server (credentials then come from the
    URL or the environment), else None (a path)."""
    if isinstance(item, ServerInput):
        return item
    if isinstance(item, str) and is_server(item):
        return ServerInput(parse_server(item))
    return None
