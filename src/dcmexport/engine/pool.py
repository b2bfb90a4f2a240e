"""A local process pool in which a worker that dies or hangs costs one file, not the run.

`concurrent.futures.ProcessPoolExecutor` breaks for good when one worker is killed (the OOM
killer, a codec's segfault): every queued chunk then fails with `BrokenProcessPool`. Here each
worker writes on a shared board which item of which chunk it is on and since when, so:

- a dead worker is replaced (the pool is rebuilt), the item it was on is retried once alone
  and, if it kills its worker again, failed; the other unfinished chunks are submitted again;
- a worker on one item for longer than the per-file `timeout` is killed, and that item failed;
- workers ask the kernel to kill them when the main process dies (Linux ``PR_SET_PDEATHSIG``)
  and otherwise notice their parent is gone, so no orphan holds the OUT lock or gigabytes;
- SIGTERM in a worker is the default (exit), SIGINT is left to the main process to handle.

Chunk functions must map a list of items to a list of per-item results (as `convert_many`,
`slice_infos` and `read_headers` do): the pool runs them item by item to know where it is.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

#: Default per-file time limit (``--timeout``), seconds.
DEFAULT_TIMEOUT = 300.0
#: Fields per worker slot on the board: pid, task, item index, start (monotonic seconds).
_FIELDS = 4
_PR_SET_PDEATHSIG = 1

_board: Any = None
_slot = -1


class RunTerminated(KeyboardInterrupt):
    """SIGTERM to the main process: stop as Ctrl-C does (queued work dropped, state kept)."""


_main_pid = 0


def terminate_as_interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler for the main process: raise `RunTerminated`. A forked worker that
    gets SIGTERM before its initializer reset the handler just exits."""
    if os.getpid() != _main_pid:
        os._exit(128 + signum)
    raise RunTerminated()


def install_terminate_handler() -> None:
    """SIGTERM to this (main) process stops the run as Ctrl-C does."""
    global _main_pid
    _main_pid = os.getpid()
    signal.signal(signal.SIGTERM, terminate_as_interrupt)


def _die_with_parent(parent: int) -> None:
    """Exit when the parent process dies: the kernel's signal on Linux, a watchdog elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="dcmexport-parent-watch", daemon=True).start()


def _init_worker(board: Any, slots: Any, parent: int) -> None:
    global _board, _slot
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    with slots.get_lock():
        _slot = slots.value
        slots.value += 1
    _board = board
    _board[_slot * _FIELDS] = os.getpid()


def _mark(task: int, index: int, started: float) -> None:
    if _board is not None and _slot >= 0:
        base = _slot * _FIELDS
        _board[base + 1], _board[base + 2], _board[base + 3] = task, index, started


def _run_chunk(
    function: Callable[..., list[Any]], chunk: list[Any], task: int, *args: Any
) -> list[Any]:
    """In the worker: `function` item by item, each announced on the board."""
    results: list[Any] = []
    for index, item in enumerate(chunk):
        _mark(task, index, time.monotonic())
        results.extend(function([item], *args))
    _mark(0, 0, 0.0)
    return results


class ResilientPool(cf.Executor):
    """A process pool that survives its workers (see the module's docstring).

    As a plain `Executor` (`submit`) it is the process pool; `resilient_map` adds the board.
    """

    def __init__(self, jobs: int, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.jobs = jobs
        self.timeout = timeout
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self._start()

    def _start(self) -> None:
        self.board = self._context.Array("d", self.jobs * _FIELDS, lock=False)
        slots = self._context.Value("i", 0)
        self.executor = cf.ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(self.board, slots, os.getpid()),
        )
        # fork the workers now, not at the first chunk: they start while this process
        # still lists and plans the inputs (about 20 ms sooner on a 300-file run)
        try:
            self.executor.submit(os.getpid)
        except BaseException:  # a fork failed (process limit, memory): none may outlive it
            self.kill()
            raise

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        return self.executor.submit(fn, *args, **kwargs)

    def submit_chunk(
        self, function: Callable[..., Any], chunk: list[Any], task: int, *args: Any
    ) -> cf.Future[Any]:
        """Run `function` over `chunk` item by item, announcing each on the board."""
        return self.executor.submit(_run_chunk, function, chunk, task, *args)

    def _slots(self) -> Iterator[tuple[int, int, int, float]]:
        for slot in range(self.jobs):
            pid, task, index, started = self.board[slot * _FIELDS : (slot + 1) * _FIELDS]
            if pid and started:
                yield int(pid), int(task), int(index), started

    def hung(self) -> dict[int, tuple[int, int]]:
        """{pid: (task, index)} of workers on one item for longer than the timeout."""
        if self.timeout is None:
            return {}
        now = time.monotonic()
        return {pid: (t, i) for pid, t, i, s in self._slots() if now - s > self.timeout}

    def lost(self) -> dict[int, tuple[int, int]]:
        """{pid: (task, index)} of workers that died in the middle of an item."""
        return {pid: (t, i) for pid, t, i, _ in self._slots() if not _alive(pid)}

    def restart(self) -> None:
        """Kill every worker and start a fresh pool (their unfinished chunks are resubmitted)."""
        self.kill()
        self._start()

    def kill(self) -> None:
        processes = dict(getattr(self.executor, "_processes", None) or {})
        for pid in processes:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.join(timeout=5)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not wait:  # an interrupted run: no worker may outlive it
            self.kill()
            return
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead too
    return True


@dataclasses.dataclass
class _Entry:
    """A chunk on its way through `resilient_map`: waiting to be submitted (no `future`, no
    `results`), running (`future`), or done (`results`, maybe a failed item's)."""

    chunk: list[Any]
    deaths: int = 0  # worker deaths its (single) item was part of
    task: int = 0
    future: cf.Future[Any] | None = None
    results: list[Any] | None = None


def resilient_map(
    function: Callable[..., list[Any]],
    chunks: Iterable[list[Any]],
    pool: ResilientPool,
    max_in_flight: int,
    args: tuple[Any, ...],
    failed: Callable[[Any, str], Any],
    ordered: bool = False,
) -> Iterator[tuple[list[Any], list[Any]]]:
    """(chunk, results) as `executor.bounded_map` gives them; an item whose worker died twice
    or hung gets `failed(item, reason)` as its result instead.

    With `ordered`, everything comes in input order, also the items retried alone after a
    worker died (they take the place of the chunk they came from).
    """
    source = iter(chunks)
    tasks = itertools.count(1)
    queue: list[_Entry] = []  # in input order
    exhausted = False
    blind = 0  # restarts in a row without knowing which item was to blame
    while True:
        running = sum(1 for e in queue if e.future is not None)
        for entry in queue:  # resubmitted chunks and items first, in input order
            if running >= max_in_flight:
                break
            if entry.future is None and entry.results is None:
                entry.task = next(tasks)
                entry.future = pool.submit_chunk(function, entry.chunk, entry.task, *args)
                running += 1
        waiting = any(e.future is None and e.results is None for e in queue)
        while running < max_in_flight and not waiting and not exhausted:
            chunk = next(source, None)
            if chunk is None:
                exhausted = True
                break
            entry = _Entry(chunk, task=next(tasks))
            entry.future = pool.submit_chunk(function, chunk, entry.task, *args)
            queue.append(entry)
            running += 1
        if not queue:
            return
        watched = queue[:1] if ordered else queue
        futures = [e.future for e in watched if e.future is not None]
        if futures:
            cf.wait(futures, timeout=1.0, return_when=cf.FIRST_COMPLETED)
        broken = False
        for entry in queue:
            if entry.future is None or not entry.future.done():
                continue
            try:
                entry.results = entry.future.result()
            except BrokenProcessPool:
                broken = True
                continue
            entry.future = None
            blind = 0
        while queue and queue[0].results is not None:  # in order (also when not `ordered`)
            head = queue.pop(0)
            yield head.chunk, head.results or []
        if not ordered:
            for entry in [e for e in queue if e.results is not None]:
                queue.remove(entry)
                yield entry.chunk, entry.results or []
        hung = {} if broken else pool.hung()
        if not broken and not hung:
            continue
        for pid in hung:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        timed_out = set(hung.values())
        dead = set(pool.lost().values()) - timed_out if broken else set()
        if broken and not dead:
            blind += 1
            if blind > 3:
                raise RuntimeError("worker processes keep dying before they start an input")
        log.warning("a worker %s: replacing the pool", "hung" if hung else "died")
        pool.restart()
        queue = list(_after_restart(queue, timed_out, dead, pool.timeout, failed))


def _after_restart(
    queue: list[_Entry],
    timed_out: set[tuple[int, int]],
    dead: set[tuple[int, int]],
    timeout: float | None,
    failed: Callable[[Any, str], Any],
) -> Iterator[_Entry]:
    """The queue after the pool was replaced, in the same order: unfinished chunks to submit
    again, the items of a chunk whose worker died or hung split off (retried alone, or
    failed)."""
    for entry in queue:
        if entry.future is None:  # done, or not submitted yet
            yield entry
            continue
        task, deaths = entry.task, entry.deaths
        if not any(t == task for t, _ in (*timed_out, *dead)):
            yield _Entry(entry.chunk, deaths)
            continue
        for index, item in enumerate(entry.chunk):
            if (task, index) in timed_out:
                reason = f"timed out after {timeout:g} s (raise it with --timeout)"
                yield _Entry([item], results=[failed(item, reason)])
            elif (task, index) in dead and (deaths >= 2 or (deaths and len(dead) == 1)):
                yield _Entry([item], results=[failed(item, _DIED)])
            else:
                yield _Entry([item], deaths + ((task, index) in dead))


_DIED = (
    "the worker process died reading this file, also when retried alone "
    "(out of memory or a decoder crash)"
)
