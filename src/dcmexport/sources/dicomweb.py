"""DICOMweb: QIDO-RS searches and WADO-RS instance retrieval over `requests`.

Why `requests` and not `dicomweb-client`: (1) dicomweb-client percent-encodes every query
value, so the wildcard ``PatientID=SAMP*`` goes out as ``SAMP%2A``, which Orthanc (1.10,
DICOMweb plugin 1.7) matches literally and silently finds nothing; here `*` and `?` are sent
as they are (both are legal in a URL query, RFC 3986 3.4). (2) Its `retrieve_instance` parses
the part into a pydicom Dataset; `pull` must store the bytes the server sent (byte-identical,
and no decode/re-encode cost), so we split the ``multipart/related`` body ourselves. (3) We
want one retry policy (5xx and timeouts, exponential backoff) and typed errors shared with DIMSE.

Every function takes the picklable `Server` first, so it can run in a worker process; each
thread keeps its own HTTP session (connection reuse, no sharing across threads).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from email.message import Message
from typing import Any
from urllib.parse import quote

import requests
from pydicom.dataset import Dataset

from ..errors import ServerError, ServerUnreachableError
from .servers import InstanceRef, QueryFilters, QueryLevel, Server, with_retries

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
#: any transfer syntax: the server sends what it stored, unchanged (PS3.18 8.7.3.5.2)
_ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_ACCEPT_JSON = "application/dicom+json, application/json"
_RETRY_STATUS = frozenset({500, 502, 503, 504})
# characters sent unencoded in a query value: unreserved, the DICOM wildcards, range and list
_SAFE = "*?-,._~^"

_local = threading.local()


class _RetryableStatus(Exception):
    """A 5xx answer: worth another try."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _session(server: Server) -> requests.Session:
    """This thread's session for `server` (keep-alive connections, credentials set once)."""
    if getattr(_local, "pid", None) != os.getpid():  # a forked worker: the parent's sockets
        _local.sessions, _local.pid = {}, os.getpid()
    sessions: dict[Server, requests.Session] = _local.sessions
    session = sessions.get(server)
    if session is None:
        session = requests.Session()
        creds = server.credentials
        if creds.token:
            session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.user:
            session.auth = (creds.user, creds.password)
        session.headers["User-Agent"] = "dcmexport"
        sessions[server] = session
    return session


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """``k=v&...`` with `*`, `?`, `-` and `,` left as they are (see the module docstring)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=_SAFE)}" for k, v in params)


def _reason(exc: BaseException) -> str:
    """A short, credential-free reason for a connection failure ("Connection refused")."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.strerror or errno.errorcode.get(current.errno, str(current.errno))
        nested: list[object] = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return "connection failed"


def _get(
    server: Server,
    path: str,
    params: Sequence[tuple[str, str]],
    accept: str,
    encoding: str = "gzip, deflate",
) -> requests.Response:
    """GET `server.url + path` with retries; raises typed errors (never with credentials)."""
    url = server.url + path + (f"?{query_string(params)}" if params else "")
    headers = {"Accept": accept, "Accept-Encoding": encoding}

    def attempt() -> requests.Response:
        response = _session(server).get(url, headers=headers, timeout=server.timeout)
        if response.status_code in _RETRY_STATUS:
            raise _RetryableStatus(response)
        return response

    try:
        response = with_retries(
            server,
            attempt,
            (requests.ConnectionError, requests.Timeout, _RetryableStatus),
            f"GET {path}",
        )
    except _RetryableStatus as exc:
        raise ServerError(f"{server.url}: HTTP {exc.response.status_code} for {path}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServerUnreachableError(f"cannot reach {server.url}: {_reason(exc)}") from None
    if response.status_code in (401, 403):
        raise ServerError(
            f"{server.url}: HTTP {response.status_code} (not authorised): give credentials with "
            "--user/--password or --token, or DCMEXPORT_USER/DCMEXPORT_PASSWORD/DCMEXPORT_TOKEN"
        )
    if response.status_code >= 400:
        raise ServerError(f"{server.url}: HTTP {response.status_code} for {path}")
    return response


def search(
    server: Server,
    level: QueryLevel,
    params: Sequence[tuple[str, str]],
    *,
    study_uid: str = "",
    series_uid: str = "",
    page_size: int = PAGE_SIZE,
) -> Iterator[Dataset]:
    """QIDO-RS (PS3.18 10.6): every match at `level`, fetched `page_size` at a time.

    `study_uid`/`series_uid` scope the search (``/studies/{uid}/series``...). Paging stops on a
    short page, and also when a server ignores `offset` (it answers the same page again).
    """
    path = {
        QueryLevel.STUDY: "/studies",
        QueryLevel.SERIES: f"/studies/{study_uid}/series" if study_uid else "/series",
        QueryLevel.INSTANCE: (
            f"/studies/{study_uid}/series/{series_uid}/instances" if series_uid else "/instances"
        ),
    }[level]
    offset = 0
    first_of_last_page: Any = None
    while True:
        paged = [*params, ("limit", str(page_size)), ("offset", str(offset))]
        response = _get(server, path, paged, _ACCEPT_JSON)
        page = response.json() if response.status_code != 204 and response.content else []
        if not isinstance(page, list):
            raise ServerError(f"{server.url}: QIDO-RS answer for {path} is not a JSON array")
        if page and page[0] == first_of_last_page:
            return  # the server ignored offset
        for item in page:
            yield Dataset.from_json(item)
        if len(page) != page_size:
            return
        first_of_last_page = page[0] if page else None
        offset += len(page)


def _include(*keywords: str) -> list[tuple[str, str]]:
    return [("includefield", ",".join(keywords))] if keywords else []


def study_params(filters: QueryFilters) -> list[tuple[str, str]]:
    """The QIDO-RS matching keys for the study-level filters."""
    params = [
        ("PatientID", filters.patient_id),
        ("StudyDate", filters.study_date),
        ("AccessionNumber", filters.accession),
        ("ModalitiesInStudy", filters.modality),
        ("StudyInstanceUID", ",".join(filters.study_uids)),  # UID list matching
    ]
    return [(k, v) for k, v in params if v]


def search_studies(server: Server, filters: QueryFilters) -> list[Dataset]:
    """The studies matching the study-level filters, with their series/instance counts."""
    fields = _include(
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    )
    return list(search(server, QueryLevel.STUDY, [*study_params(filters), *fields]))


def search_series(server: Server, filters: QueryFilters, study_uid: str = "") -> list[Dataset]:
    """The series matching `Modality` and `--series` (within `study_uid`, or anywhere)."""
    params = [("Modality", filters.modality), ("SeriesInstanceUID", ",".join(filters.series_uids))]
    if not study_uid:  # a search over all series takes the study-level keys too
        params += [p for p in study_params(filters) if p[0] != "ModalitiesInStudy"]
    fields = _include("SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyDate")
    matching = [(k, v) for k, v in params if v]
    return list(search(server, QueryLevel.SERIES, [*matching, *fields], study_uid=study_uid))


def search_instances(server: Server, study_uid: str, series_uid: str) -> list[Dataset]:
    """Every instance of one series (SOP Class and Instance UIDs are returned by default)."""
    return list(search(server, QueryLevel.INSTANCE, [], study_uid=study_uid, series_uid=series_uid))


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a ``multipart/related`` body (RFC 2046 5.1), headers removed."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ServerError("WADO-RS answer has no multipart boundary")
    delimiter = b"--" + boundary.encode("ascii")
    chunks = body.split(b"\r\n" + delimiter)
    if chunks[0].startswith(delimiter):
        chunks[0] = chunks[0][len(delimiter) :]
    else:
        chunks = chunks[1:]  # a preamble before the first delimiter
    parts: list[bytes] = []
    for chunk in chunks:
        if chunk.startswith(b"--"):  # the close delimiter
            break
        _head, sep, content = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(content)
    return parts


def retrieve_instance(server: Server, ref: InstanceRef) -> bytes:
    """WADO-RS (PS3.18 10.4) one instance as the server stored it: a Part-10 file's bytes."""
    path = f"/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_instance_uid}"
    # identity: Orthanc gzips on the fly otherwise, 10x slower on a LAN for 512² CT
    response = _get(server, path, [], _ACCEPT_DICOM, encoding="identity")
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith("application/dicom"):
        return response.content  # a server that answers single-part
    parts = split_multipart(content_type, response.content)
    if len(parts) != 1:
        raise ServerError(f"WADO-RS answered {len(parts)} parts for one instance")
    return parts[0]
