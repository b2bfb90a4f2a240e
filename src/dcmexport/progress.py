"""Progress on stderr for the command line: a bar on a terminal, periodic lines otherwise.

The library reports through the `Reporter` protocol and never prints; this is the CLI's
implementation. Per-file errors are printed as one line each as they happen.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .store import is_url


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
        if self._total is not None and self._done > self._total:
            # inputs found beyond the count (records of a DICOMDIR whose files are missing):
            # the total grows with them, so progress never passes 100 %
            self._total = self._done
            if self._bar is not None:
                self._bar.total = self._done
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


#: failure reasons printed at the end of a run
TOP_REASONS = 10
_MISSING = re.compile(r"^DICOMDIR .*: referenced file (?P<name>.+) is missing$")


@dataclasses.dataclass
class RunOutcome:
    """What the end of a `convert` run says, read back from its manifest: failures grouped by
    reason, and files a DICOMDIR references that are not on the CD (counted apart)."""

    manifest: Path | str
    reasons: collections.Counter[str]
    missing: int = 0
    referenced: int = 0
    first_missing: str = ""

    def lines(self) -> list[str]:
        out = []
        if self.missing:
            total = max(self.referenced, self.missing)
            out.append(
                f"dcmexport: the CD is incomplete: {self.missing} of {total} referenced files "
                f"are missing (first: {self.first_missing})"
            )
        if self.reasons:
            failed = sum(self.reasons.values())
            out.append(f"dcmexport: {failed} input(s) failed; by reason:")
            for reason, count in self.reasons.most_common(TOP_REASONS):
                out.append(f"  {count:>6}  {reason}")
            if len(self.reasons) > TOP_REASONS:
                rest = sum(c for _, c in self.reasons.most_common()[TOP_REASONS:])
                out.append(f"  {rest:>6}  (other reasons)")
            out.append(f"dcmexport: every input's outcome is in {self.manifest}")
        return out

    def print_before_summary(self, stream: TextIO | None = None) -> None:
        for line in self.lines():
            print(line, file=stream if stream is not None else sys.stderr)


def _reason_group(error: str) -> str:
    """A failure reason without what is specific to one file (paths, frame numbers, sizes),
    so that files failing the same way are counted together."""
    text = re.sub(r"\d+ of \d+|\bframes? \d+|\b\d{5,}\b", "N", error)
    return text[:160]


def read_outcome(
    manifest: Path | str, inputs: list[str], storage_options: dict[str, Any] | None = None
) -> RunOutcome:
    """The outcome of the run whose manifest is `manifest` (OSError if it is not there);
    an object-store OUT's manifest (a URL) is read back with fsspec `storage_options`."""
    reasons: collections.Counter[str] = collections.Counter()
    missing: list[str] = []
    with _open_manifest(manifest, storage_options) as f:
        for row in csv.DictReader(f):
            if row.get("status") != "error":
                continue
            found = _MISSING.match(row.get("error", ""))
            if found:
                missing.append(found.group("name"))
            else:
                reasons[_reason_group(row.get("error", ""))] += 1
    outcome = RunOutcome(manifest, reasons, len(missing))
    if missing:
        outcome.first_missing = missing[0]
        outcome.referenced = _referenced_count(inputs)
    return outcome


def _open_manifest(manifest: Path | str, storage_options: dict[str, Any] | None) -> Any:
    """The manifest opened as text, from OUT on disk or from an object store."""
    kwargs: dict[str, Any] = {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"}
    if isinstance(manifest, str) and is_url(manifest):
        import fsspec

        return fsspec.open(manifest, "rt", **kwargs, **(storage_options or {}))
    return open(manifest, **kwargs)


def _referenced_count(inputs: list[str]) -> int:
    """How many files the DICOMDIRs among `inputs` reference (read only when some are missing)."""
    from .sources import dicomdir
    from .sources.discovery import walk

    total = 0
    for item in inputs:
        path = Path(item)
        candidates = [path] if path.is_file() else walk(path, set()) if path.is_dir() else []
        for candidate in candidates:
            if candidate.name.casefold() == "dicomdir":
                try:
                    total += len(dicomdir.references(candidate))
                except Exception:  # an unreadable DICOMDIR was reported during the run
                    continue
    return total
