"""SERVER inputs of `convert`: a server's matching instances, each fetched by the worker that
converts it, never stored.

Discovery lists the instances (QIDO-RS or C-FIND with the CONTRACT filters) and hands the
engine one `InputRef` per instance that carries only the server's URL and the instance's
UIDs. The worker's `ServerSource.open` fetches it (WADO-RS, or a C-GET over an association
the worker keeps open) and checks it is the instance asked for; the bytes go straight to the
decoder. The resume key is the server URL and SOP Instance UID, so a rerun fetches nothing
that was converted.

Credentials are not put in the refs (every ref is pickled to a worker, and a Dask scheduler
keeps them): they stay in this module's table of configured servers, filled in the process
that starts the run and inherited by forked pool workers. A worker without it (spawn, Dask)
builds the server from its URL and the environment (``DCMEXPORT_USER``,
``DCMEXPORT_PASSWORD``, ``DCMEXPORT_TOKEN``, ``DCMEXPORT_CALLING_AET``).

`requests` and `pynetdicom` (the ``pacs`` extra) are imported only when a server is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from ..errors import UsageError
from .base import InputKind, InputRef
from .servers import (
    DEFAULT_CALLING_AET,
    InstanceRef,
    Server,
    ServerInput,
    ServerKind,
    parse_server,
)

logger = logging.getLogger(__name__)

#: our AE title in workers that did not inherit the run's configuration
ENV_CALLING_AET = "DCMEXPORT_CALLING_AET"

_CONFIGURED: dict[str, Server] = {}
_LISTED: dict[ServerInput, list[InputRef]] = {}
#: instances a chunk's DIMSE prefetch brought, by (server URL, SOP Instance UID); per thread
_local = threading.local()


def _prefetched() -> dict[tuple[str, str], bytes]:
    found: dict[tuple[str, str], bytes] | None = getattr(_local, "found", None)
    if found is None:
        found = _local.found = {}
    return found


def clients() -> ModuleType:
    """`sources.query` (DICOMweb and DIMSE clients), or a `UsageError` saying what to install."""
    try:
        from . import query
    except ImportError as exc:
        raise UsageError(
            f"SERVER inputs need the pacs extra ({exc.name} is missing): "
            "pip install 'dcmexport[pacs]'"
        ) from None
    return query


def configure(server: Server) -> None:
    """Remember `server` (with its credentials and settings) for fetches in this process."""
    _CONFIGURED[server.url] = server


def server_for(url: str) -> Server:
    """The configured server for `url`, else one built from the URL and the environment."""
    server = _CONFIGURED.get(url)
    if server is None:
        aet = os.environ.get(ENV_CALLING_AET, DEFAULT_CALLING_AET)
        server = _CONFIGURED[url] = parse_server(url, calling_aet=aet)
    return server


def list_inputs(item: ServerInput) -> list[InputRef]:
    """The matching instances as refs, in series order; listed once per run (`count_files`
    and `discover` share the listing; `take_inputs` ends it). Raises
    `ServerUnreachableError` / `ServerError` when the server cannot be used."""
    refs = _LISTED.get(item)
    if refs is None:
        query = clients()
        configure(item.server)
        query.check_connection(item.server)
        found = query.list_instances(item.server, item.filters)
        refs = _LISTED[item] = [instance_input(item.server, ref) for ref in found]
    return refs


def take_inputs(item: ServerInput) -> list[InputRef]:
    """`list_inputs`, forgotten afterwards: the next run lists the server again."""
    refs = list_inputs(item)
    _LISTED.pop(item, None)
    return refs


def instance_input(server: Server, ref: InstanceRef) -> InputRef:
    """One server instance as an `InputRef`; UIDs that are not digits and dots make it an
    error row (they would become file names)."""
    uids = (ref.study_uid, ref.series_uid, ref.sop_instance_uid, ref.sop_class_uid)
    problem = "" if ref.valid else "refused: a UID from the server is not digits and dots"
    name = ref.sop_instance_uid if ref.valid else "_"
    return InputRef(Path(name), server=server.url, uids=uids, problem=problem)


#: WADO-RS requests a worker keeps in flight while prefetching a chunk
WEB_CONNECTIONS = 4
_pools: dict[int, ThreadPoolExecutor] = {}


def _prefetch_web(items: Sequence[tuple[str, InstanceRef]]) -> None:
    """DICOMweb: a chunk's instances fetched `WEB_CONNECTIONS` at a time, so that the network
    waits overlap (each thread keeps its keep-alive session across chunks)."""
    from . import dicomweb

    pool = _pools.get(os.getpid())
    if pool is None:  # one per process: a forked worker must not use its parent's threads
        pool = _pools[os.getpid()] = ThreadPoolExecutor(WEB_CONNECTIONS, "dcmexport-wado")

    def fetch(item: tuple[str, InstanceRef]) -> tuple[tuple[str, str], bytes | None]:
        url, instance = item
        try:
            return (url, instance.sop_instance_uid), dicomweb.retrieve_instance(
                server_for(url), instance
            )
        except Exception:  # fetched again, and reported, by `open`
            return (url, instance.sop_instance_uid), None

    found = _prefetched()
    for key, data in pool.map(fetch, items):
        if data is not None:
            found[key] = data


class ServerSource:
    """An instance on a DICOMweb or DIMSE server, fetched (and verified) where it is read."""

    kind = InputKind.SERVER

    def open(self, ref: InputRef) -> bytes | str:
        query = clients()
        from .pull import verify_instance

        server = server_for(ref.server)
        instance = InstanceRef(*ref.uids)
        data = _prefetched().pop((ref.server, instance.sop_instance_uid), None)
        if data is None:
            data = query.fetch_instance(server, instance)
        verify_instance(data, instance)
        return data

    def prefetch(self, refs: Sequence[InputRef]) -> None:
        """Fetch a chunk's instances before they are opened one by one: DICOMweb several
        WADO-RS requests at a time (network waits overlap); DIMSE one C-GET per series and
        SOP class, since Orthanc spends ~50 ms on every C-GET request beyond the transfer
        itself (benchmarks/pacs_speed.py). What does not arrive is fetched (and reported)
        by `open`."""
        by_server: dict[str, list[InstanceRef]] = {}
        web: list[tuple[str, InstanceRef]] = []
        for ref in refs:
            if ref.problem:
                continue
            if server_for(ref.server).kind is ServerKind.DIMSE:
                by_server.setdefault(ref.server, []).append(InstanceRef(*ref.uids))
            else:
                web.append((ref.server, InstanceRef(*ref.uids)))
        if len(web) > 1:
            _prefetch_web(web)
        if not by_server:
            return
        from . import dimse

        for url, instances in by_server.items():
            try:
                found = dimse.get_kept(server_for(url), instances)
            except Exception as exc:  # each instance is tried again, alone, by `open`
                logger.debug("prefetch from %s failed: %s", url, exc)
                continue
            _prefetched().update(((url, uid), data) for uid, data in found.items())

    def release(self, refs: Sequence[InputRef]) -> None:
        """Forget what a chunk's prefetch brought and nobody opened."""
        _prefetched().clear()

    def fingerprint(self, ref: InputRef) -> tuple[int, int] | None:
        """A stable pair from the server URL and SOP Instance UID: the same instance on the
        same server is the same input (an instance's content never changes under its UID)."""
        digest = hashlib.sha256(f"{ref.server}|{ref.uids[2]}".encode()).digest()
        return int.from_bytes(digest[:7], "big"), int.from_bytes(digest[7:14], "big")
