"""DIMSE: C-ECHO, C-FIND and C-GET (Study Root) with `pynetdicom`.

Retrieval is C-GET, not C-MOVE: C-GET brings the instances back over the association we
opened, so it needs no listening port on our side, no firewall opening towards us and no
registration of our AE title as a move destination on the PACS. C-MOVE would add only the PACS
that implement no C-GET (some older ones); it is left out until someone needs it.

For C-GET we act as the Storage SCP on our own association: each storage SOP class found by
C-FIND is proposed once per transfer syntax we can decode, with the SCP role (PS3.7 D.3.3.4),
so the server sends every instance in the transfer syntax it stored — no transcoding, and the
data set bytes arrive exactly as stored.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.util
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from ..errors import ServerError, ServerUnreachableError
from .servers import InstanceRef, QueryFilters, QueryLevel, Server, with_retries

logger = logging.getLogger(__name__)

#: transfer syntaxes accepted for C-GET's C-STORE sub-operations, one presentation context each
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
)
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255
#: SOP classes per C-GET association (one context is the C-GET model itself)
CLASSES_PER_ASSOCIATION = (_MAX_CONTEXTS - 1) // len(STORAGE_TRANSFER_SYNTAXES)
#: SOP Instance UIDs per C-GET request (a UI value is at most 64 KiB in explicit VR)
UIDS_PER_REQUEST = 500

_LEVEL = {QueryLevel.STUDY: "STUDY", QueryLevel.SERIES: "SERIES", QueryLevel.INSTANCE: "IMAGE"}

Sink = Callable[[InstanceRef, bytes], None]


class _NotEstablished(Exception):
    """The association request failed at the transport level: worth another try."""


def _ae(server: Server) -> AE:
    ae = AE(ae_title=server.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = server.timeout
    ae.connection_timeout = server.timeout
    return ae


def _connect(server: Server, ae: AE, **kwargs: Any) -> Association:
    """An established association to `server` (retried on transport failures); typed errors
    otherwise."""
    handlers = [*kwargs.pop("evt_handlers", []), (evt.EVT_CONN_OPEN, _no_delay)]

    def attempt() -> Association:
        assoc = ae.associate(
            server.host, server.port, ae_title=server.called_aet, evt_handlers=handlers, **kwargs
        )
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            raise ServerError(
                f"{server.url} rejected the association from {server.calling_aet}: check the "
                "called AE title and that the PACS knows --calling-aet"
            )
        raise _NotEstablished(_tcp_reason(server))

    try:
        assoc = with_retries(server, attempt, (_NotEstablished,), "A-ASSOCIATE")
    except _NotEstablished as exc:
        raise ServerUnreachableError(f"cannot reach {server.url}: {exc}") from None
    return assoc


@contextlib.contextmanager
def _association(server: Server, ae: AE, **kwargs: Any) -> Iterator[Association]:
    """An established association to `server`, released at the end; typed errors otherwise."""
    assoc = _connect(server, ae, **kwargs)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _no_delay(event: evt.Event) -> None:
    """TCP_NODELAY: DIMSE is request/response in small PDUs, and Nagle's algorithm with
    delayed ACKs costs ~40 ms per message (C-FIND and C-GET run twice as fast without it)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _tcp_reason(server: Server) -> str:
    """Why no association came up: the TCP error if a plain connect fails too."""
    try:
        with socket.create_connection((server.host, server.port), timeout=server.timeout):
            return "the association was aborted"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def echo(server: Server) -> None:
    """C-ECHO (PS3.7 9.1.5): the server is there and answers us."""
    ae = _ae(server)
    ae.add_requested_context(Verification)
    with _association(server, ae) as assoc:
        status = assoc.send_c_echo()
        if not status or status.get("Status", -1) != 0:
            raise ServerError(f"{server.url}: C-ECHO failed")


def c_find(server: Server, identifier: Dataset) -> list[Dataset]:
    """C-FIND (PS3.4 C.4.1), Study Root: every pending match's identifier."""
    return c_find_many(server, [identifier])


def c_find_many(server: Server, identifiers: Sequence[Dataset]) -> list[Dataset]:
    """Several C-FINDs on one association (an association costs ~0.1 s to set up)."""
    ae = _ae(server)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    matches: list[Dataset] = []
    with _association(server, ae) as assoc:
        for identifier in identifiers:
            for status, found in assoc.send_c_find(
                identifier, StudyRootQueryRetrieveInformationModelFind
            ):
                code = status.get("Status", -1) if status else -1
                if code in (0xFF00, 0xFF01) and found is not None:
                    matches.append(found)
                elif code != 0x0000:
                    raise ServerError(f"{server.url}: C-FIND failed (status 0x{code:04X})")
    return matches


def _identifier(level: QueryLevel, **keys: str | tuple[str, ...]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = _LEVEL[level]
    for keyword, value in keys.items():
        setattr(ds, keyword, list(value) if isinstance(value, tuple) else value)
    return ds


def find_studies(server: Server, filters: QueryFilters) -> list[Dataset]:
    """C-FIND at STUDY level with the study-level filters; return keys as for `dcmexport query`."""
    return c_find(
        server,
        _identifier(
            QueryLevel.STUDY,
            PatientID=filters.patient_id,
            StudyDate=filters.study_date,
            AccessionNumber=filters.accession,
            ModalitiesInStudy=filters.modality,
            StudyInstanceUID=filters.study_uids or "",
            StudyDescription="",
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
        ),
    )


def find_series(server: Server, filters: QueryFilters, study_uid: str = "") -> list[Dataset]:
    """C-FIND at SERIES level, within `study_uid` (hierarchical) or, without it, relational."""
    keys: dict[str, str | tuple[str, ...]] = {
        "StudyInstanceUID": study_uid or filters.study_uids or "",
        "SeriesInstanceUID": filters.series_uids or "",
        "Modality": filters.modality,
        "SeriesDescription": "",
        "SeriesNumber": "",
        "NumberOfSeriesRelatedInstances": "",
    }
    if not study_uid:
        keys.update(PatientID=filters.patient_id, StudyDate=filters.study_date)
        keys.update(AccessionNumber=filters.accession)
    return c_find(server, _identifier(QueryLevel.SERIES, **keys))


def find_instances(server: Server, series: Sequence[tuple[str, str]]) -> list[Dataset]:
    """C-FIND at IMAGE level for each (study UID, series UID): every instance with its SOP
    Class UID, all on one association."""
    return c_find_many(
        server,
        [
            _identifier(
                QueryLevel.INSTANCE,
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series_uid,
                SOPInstanceUID="",
                SOPClassUID="",
                InstanceNumber="",
            )
            for study_uid, series_uid in series
        ],
    )


def _get_ae(server: Server, sop_classes: Sequence[str]) -> tuple[AE, list[Any]]:
    """An AE proposing C-GET plus, per SOP class, one context per transfer syntax (SCP role)."""
    ae = _ae(server)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in sop_classes:
        for transfer_syntax in STORAGE_TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [transfer_syntax])
    return ae, [build_role(sop_class, scp_role=True) for sop_class in sop_classes]


def get_instances(server: Server, refs: Sequence[InstanceRef], sink: Sink) -> dict[str, str]:
    """C-GET (PS3.4 C.4.3) `refs` (one series, or any instances); `sink(ref, part10_bytes)` is
    called for each instance as it arrives (in the association's thread).

    Instances the server sends that were not asked for are refused. Returns the SOP Instance
    UIDs that did not arrive or that `sink` refused, each with a one-line reason.
    """
    wanted = {ref.sop_instance_uid: ref for ref in refs}
    failures: dict[str, str] = {}
    classes = sorted({ref.sop_class_uid for ref in refs if ref.sop_class_uid})
    if len(classes) != len({ref.sop_class_uid for ref in refs}):
        raise ServerError("C-GET needs the SOP Class UID of every instance (from C-FIND)")
    for start in range(0, len(classes), CLASSES_PER_ASSOCIATION):
        group = classes[start : start + CLASSES_PER_ASSOCIATION]
        subset = [ref for ref in refs if ref.sop_class_uid in group]
        failures.update(_get_group(server, group, subset, wanted, sink))
    return failures


def _get_group(
    server: Server,
    classes: Sequence[str],
    refs: Sequence[InstanceRef],
    wanted: dict[str, InstanceRef],
    sink: Sink,
) -> dict[str, str]:
    received: set[str] = set()
    failures: dict[str, str] = {}

    def on_store(event: evt.Event) -> int:
        request: C_STORE = event.request  # type: ignore[assignment]
        sop_uid = str(request.AffectedSOPInstanceUID)
        ref = wanted.get(sop_uid)
        if ref is None or sop_uid in received:
            logger.warning("C-GET: the server sent an instance that was not asked for; refused")
            return 0xA900  # Data Set does not match SOP Class (refused)
        received.add(sop_uid)
        try:
            sink(ref, event.encoded_dataset())
        except Exception as exc:  # the sink's reason becomes this instance's error row
            failures[sop_uid] = str(exc) or type(exc).__name__
            return 0xA700  # Out of Resources
        return 0x0000

    ae, roles = _get_ae(server, classes)
    with _association(
        server, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    ) as assoc:
        for identifier in _get_identifiers(refs):
            last = 0xFFFF
            for status, _ in assoc.send_c_get(
                identifier, StudyRootQueryRetrieveInformationModelGet
            ):
                last = status.get("Status", 0xFFFF) if status else 0xFFFF
            if last not in (0x0000, 0xB000):
                logger.debug("C-GET ended with status 0x%04X", last)
    for ref in refs:
        if ref.sop_instance_uid not in received:
            failures[ref.sop_instance_uid] = "not received from the server (C-GET)"
    return failures


def _get_identifiers(refs: Sequence[InstanceRef]) -> Iterator[Dataset]:
    """IMAGE-level C-GET identifiers, one per series and 500 UIDs (UID list matching): we
    always ask for exactly the instances C-FIND listed, so a resumed pull fetches only the
    missing ones and a series that grew since the search brings nothing unexpected."""
    by_series: dict[tuple[str, str], list[str]] = {}
    for ref in refs:
        by_series.setdefault((ref.study_uid, ref.series_uid), []).append(ref.sop_instance_uid)
    for (study_uid, series_uid), sop_uids in by_series.items():
        for start in range(0, len(sop_uids), UIDS_PER_REQUEST):
            yield _identifier(
                QueryLevel.INSTANCE,
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series_uid,
                SOPInstanceUID=tuple(sop_uids[start : start + UIDS_PER_REQUEST]),
            )


# --------------------------------------------------------------------------- one instance


class _Dropped(Exception):
    """The kept association ended under us (idle timeout on the server, network): reconnect."""


class _KeptAssociation:
    """A C-GET association for one server and SOP class, kept open across requests.

    `convert SERVER` fetches in the worker, a chunk of instances at a time; opening an
    association per request (A-ASSOCIATE with 13 presentation contexts, then A-RELEASE)
    costs ~30 ms on loopback, so each worker process (and thread) keeps one open.
    """

    def __init__(self, server: Server, sop_class: str) -> None:
        self.server = server
        self.wanted: set[str] = set()
        self.received: dict[str, bytes] = {}
        ae, roles = _get_ae(server, [sop_class])
        self.assoc = _connect(
            server, ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def _on_store(self, event: evt.Event) -> int:
        request: C_STORE = event.request  # type: ignore[assignment]
        sop_uid = str(request.AffectedSOPInstanceUID)
        if sop_uid not in self.wanted or sop_uid in self.received:
            logger.warning("C-GET: the server sent an instance that was not asked for; refused")
            return 0xA900
        self.received[sop_uid] = event.encoded_dataset()
        return 0x0000

    def get(self, refs: Sequence[InstanceRef]) -> dict[str, bytes]:
        """One C-GET for `refs` (one series); what arrived, by SOP Instance UID."""
        self.wanted, self.received = {r.sop_instance_uid for r in refs}, {}
        for identifier in _get_identifiers(refs):
            for status, _ in self.assoc.send_c_get(
                identifier, StudyRootQueryRetrieveInformationModelGet
            ):
                if not status:  # pynetdicom's empty status: aborted or timed out
                    raise _Dropped()
        if not self.received and not self.assoc.is_established:
            raise _Dropped()
        return self.received

    def close(self) -> None:
        if self.assoc.is_established:
            with contextlib.suppress(Exception):
                self.assoc.release()


_KEPT: dict[tuple[int, int, Server, str], _KeptAssociation] = {}
_FINALIZED_IN: set[int] = set()


def close_kept() -> None:
    """Release this process's kept associations (at exit, and in tests)."""
    pid = os.getpid()
    for key in [k for k in _KEPT if k[0] == pid]:
        _KEPT.pop(key).close()
    for key in list(_KEPT):  # inherited through fork: the parent's, not ours to release
        del _KEPT[key]


def get_instance(server: Server, ref: InstanceRef) -> bytes:
    """C-GET one instance over an association kept open in this process (`get_kept`)."""
    data = get_kept(server, [ref]).get(ref.sop_instance_uid)
    if data is None:
        raise ServerError(f"{server.url}: C-GET sent no instance")
    return data


def get_kept(server: Server, refs: Sequence[InstanceRef]) -> dict[str, bytes]:
    """C-GET `refs` (any series, each with its SOP class) in their stored transfer syntax,
    over associations kept open in this process and thread, one per server and SOP class;
    what arrived, by SOP Instance UID (what did not is simply absent)."""
    pid = os.getpid()
    if pid not in _FINALIZED_IN:  # released at exit, in the main process and in pool workers
        _FINALIZED_IN.add(pid)
        multiprocessing.util.Finalize(None, close_kept, exitpriority=10)
    if not all(ref.sop_class_uid for ref in refs):
        raise ServerError("C-GET needs the SOP Class UID of every instance (from C-FIND)")
    groups: dict[tuple[str, str], list[InstanceRef]] = {}
    for ref in refs:
        groups.setdefault((ref.sop_class_uid, ref.series_uid), []).append(ref)
    received: dict[str, bytes] = {}
    for (sop_class, _), group in groups.items():
        key = (pid, threading.get_ident(), server, sop_class)
        for attempt in range(2):
            kept = _KEPT.get(key)
            if kept is None or not kept.assoc.is_established:
                kept = _KEPT[key] = _KeptAssociation(server, sop_class)
            try:
                received.update(kept.get(group))
                break
            except _Dropped:
                kept.close()
                del _KEPT[key]
                if attempt:
                    raise ServerError(f"{server.url}: the association ended during C-GET") from None
    return received
