"""Progress on stderr for the command line: a bar on a terminal, periodic lines otherwise.

The library reports through the `Reporter` protocol and never prints; this is the CLI's
implementation. Per-file errors are printed as one line each as they happen.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class ConsoleReporter:
    """Draws progress for `dcmexport convert` (tqdm on a terminal, a line every 10 s if not)."""

    def __init__(
        self, stream: TextIO | None = None, *, verbose: bool = False, bar: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self.bar_enabled = self.stream.isatty() if bar is None else bar
        self._bar = None
        self._total: int | None = None
        self._done = 0
        self._started = time.monotonic()
        self._last_line = self._started

    def start(self, total: int | None) -> None:
        self._total = total
        self._started = self._last_line = time.monotonic()
        if self.bar_enabled:
            import tqdm

            tqdm.tqdm.monitor_interval = 0  # no monitor thread: worker processes are forked
            self._bar = tqdm.tqdm(
                total=total, unit="file", file=self.stream, dynamic_ncols=True, smoothing=0.1
            )

    def result(self, result: Any) -> None:
        """One input's outcome: anything with source, status, reason, detail, up_to_date."""
        self._done += 1
        if result.status == "error":
            self._message(f"dcmexport: {result.source}: {result.reason}")
            if self.verbose and result.detail:
                self._message(result.detail.rstrip())
        elif result.status == "skipped" and self.verbose and not result.up_to_date:
            self._message(f"dcmexport: skipped {result.source}: {result.reason}")
        if self._bar is not None:
            self._bar.update(1)
        elif time.monotonic() - self._last_line >= 10:
            self._last_line = time.monotonic()
            self._message(self._line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _line(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        if self._total:
            left = (self._total - self._done) / rate if rate > 0 else 0.0
            pct = 100 * self._done / self._total
            return (
                f"dcmexport: {self._done}/{self._total} files ({pct:.0f}%), "
                f"{rate:.0f} files/s, about {left:.0f} s left"
            )
        return f"dcmexport: {self._done} files, {rate:.0f} files/s"
