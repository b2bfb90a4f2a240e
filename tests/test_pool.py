"""The resilient process pool: a worker that dies or hangs costs one item, never the run."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from dcmexport.engine.executor import bounded_map
from dcmexport.engine.pool import ResilientPool


def _work(items: list[str]) -> list[str]:
    """A chunk function: 'crash' kills its worker, 'hang' never returns in time."""
    out = []
    for item in items:
        if item == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if item == "hang":
            time.sleep(60)
        out.append(item.upper())
    return out


def _failed(item: str, reason: str) -> str:
    return f"FAILED {item}: {reason}"


def _run(items: list[str], timeout: float | None = 30) -> dict[str, str]:
    pool = ResilientPool(2, timeout)
    try:
        results = {}
        for chunk, out in bounded_map(_work, items, pool, 4, 3, failed=_failed):
            results.update(zip(chunk, out, strict=True))
        return results
    finally:
        pool.shutdown()


def test_a_crashing_item_is_retried_alone_then_failed_and_the_rest_complete() -> None:
    items = [f"f{i}" for i in range(10)] + ["crash"] + [f"g{i}" for i in range(10)]
    results = _run(items)
    assert set(results) == set(items)
    assert results["crash"].startswith("FAILED crash: the worker process died")
    assert all(results[i] == i.upper() for i in items if i != "crash")


def test_a_hanging_item_is_killed_after_the_timeout_and_the_rest_complete() -> None:
    items = ["a", "hang", "b", "c", "d", "e", "f"]
    started = time.monotonic()
    results = _run(items, timeout=1.5)
    assert time.monotonic() - started < 20
    assert results["hang"].startswith("FAILED hang: timed out after 1.5 s")
    assert all(results[i] == i.upper() for i in items if i != "hang")


def test_a_fork_that_fails_while_the_pool_starts_leaves_no_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool forks its workers when it is made; if the second fork fails (a process
    limit, no memory), the first worker is killed, not left idle for the exit to wait on."""
    real_fork, calls = os.fork, [0]

    def fork() -> int:
        calls[0] += 1
        if calls[0] == 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(BlockingIOError):
        ResilientPool(2, 30)
    monkeypatch.undo()
    left = multiprocessing.active_children()
    for process in left:  # never hang the test run on a regression
        process.kill()
    assert calls[0] == 2
    assert left == []


@pytest.mark.parametrize("count", [0, 1, 5, 31, 32, 33, 64, 100, 300, 3001])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_chunks_keep_every_item_in_order_and_shrink_at_the_end(count: int, workers: int) -> None:
    from dcmexport.engine.executor import chunks

    found = list(chunks(iter(range(count)), 32, workers))
    assert [i for chunk in found for i in chunk] == list(range(count))
    sizes = [len(chunk) for chunk in found]
    assert all(0 < size <= 32 for size in sizes)
    assert list(chunks(iter(range(count)), 1, workers)) == [[i] for i in range(count)]
    if workers == 1:
        assert sizes[:-1] == [32] * (len(sizes) - 1)
    elif count >= 2 * workers * 4:
        # the tail is spread: no chunk is larger than a 2 * workers-th of what was left
        left = count
        for size in sizes:
            assert size <= max(4, -(-left // (2 * workers))) or size == 32
            left -= size
        assert sizes[-1] <= 4 and max(sizes[-2 * workers :]) <= 8
