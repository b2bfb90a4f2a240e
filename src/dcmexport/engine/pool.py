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

import collections
import concurrent.futures as cf
import contextlib
import ctypes
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

    Items retried alone may come after later chunks, even when `ordered`.
    """
    source = iter(chunks)
    tasks = itertools.count(1)
    #: chunks to submit again, with how many worker deaths their (single) item was part of
    retries: collections.deque[tuple[list[Any], int]] = collections.deque()
    pending: collections.OrderedDict[cf.Future[Any], tuple[int, list[Any], int]] = (
        collections.OrderedDict()
    )
    exhausted = False
    blind = 0  # restarts in a row without knowing which item was to blame
    while True:
        while len(pending) < max_in_flight and (retries or not exhausted):
            if retries:
                chunk, deaths = retries.popleft()
            else:
                next_chunk = next(source, None)
                if next_chunk is None:
                    exhausted = True
                    continue
                chunk, deaths = next_chunk, 0
            task = next(tasks)
            pending[pool.submit_chunk(function, chunk, task, *args)] = (task, chunk, deaths)
        if not pending:
            return
        waiting = [next(iter(pending))] if ordered else list(pending)
        done, _ = cf.wait(waiting, timeout=1.0, return_when=cf.FIRST_COMPLETED)
        broken = False
        for future in done:
            try:
                results = future.result()
            except BrokenProcessPool:
                broken = True
                continue
            _, chunk, _ = pending.pop(future)
            blind = 0
            yield chunk, results
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
        unfinished = list(pending.values())
        pending.clear()
        pool.restart()
        for task, chunk, deaths in unfinished:
            if not any(t == task for t, _ in (*timed_out, *dead)):
                retries.append((chunk, deaths))
                continue
            for index, item in enumerate(chunk):
                if (task, index) in timed_out:
                    reason = f"timed out after {pool.timeout:g} s (raise it with --timeout)"
                    yield [item], [failed(item, reason)]
                elif (task, index) in dead and (deaths >= 2 or (deaths and len(dead) == 1)):
                    yield [item], [failed(item, _DIED)]
                else:
                    retries.append(([item], deaths + ((task, index) in dead)))


_DIED = (
    "the worker process died reading this file, also when retried alone "
    "(out of memory or a decoder crash)"
)
