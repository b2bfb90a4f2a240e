"""Agreement of `dcmexport info FILE --json` with DCMTK's ``dcm2json`` on any files or folders.

For every file: ``info FILE --json --bulk`` through the CLI in-process, against ``dcm2json -fc
FILE``, element by element with `tests.test_metadata.compare_models` (the same normalisation as
the test over pydicom's bundled files: numbers within 1e-6, strings stripped, UN re-read with
the other side's VR, Specific Character Set left out). Prints elements compared and agreed per
file and overall; ``--exact`` adds the share of elements whose JSON values are equal without
any normalisation (an int is not a float, a space is a space).

dcm2json 3.6.7 refuses encapsulated pixel data (compared without Pixel Data, removed with
``dcmodify``) and FL/FD NaN or infinity (compared from its ``-ee`` output, which Python's json
reads). Two consistency checks of our own output go along, per file:

- ``--tag PatientName``, ``--tag 0010,0010`` and ``--tag 0x00100010`` print the same (plain
  and with ``--json``), exit status and messages included;
- ``--json`` without ``--bulk`` is the ``--bulk`` model without its InlineBinary values.

Run it from the repository root (it imports ``tests.test_metadata``)::

    python benchmarks/json_agreement.py /tmp/json_corpus --exact --show 20
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcmexport.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `tests` is a package of the repository, not installed
    sys.path.insert(0, str(REPO))

from tests.test_metadata import DELIBERATE, Comparison, compare_models  # noqa: E402

TAG_FORMS = ("PatientName", "0010,0010", "0x00100010")
#: Left out of our model when dcm2json could only read the file without its pixel data.
STRIPPED_KEYS = ("7FE00010", "FFFCFFFC")


@dataclass
class FileResult:
    path: Path
    comparison: Comparison = field(default_factory=Comparison)
    exact: int = 0  # elements equal without normalisation
    note: str = ""  # how dcm2json was run when not plainly
    tag_forms: list[str] = field(default_factory=list)  # --tag inconsistencies
    bulk: list[str] = field(default_factory=list)  # --json vs --json --bulk inconsistencies


def run_cli(*args: str) -> tuple[int, str, str]:
    """``dcmexport ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(list(args))
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def _dcm2json(path: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["dcm2json", "-fc", *options, str(path)], capture_output=True, timeout=120
    )


def run_dcm2json(path: Path) -> tuple[dict[str, Any] | None, str, bool]:
    """dcm2json's model: (model or None, a note or why not, pixel data stripped)."""
    note, stripped = "", False
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        result = _dcm2json(source)
        if result.returncode and b"compressed pixel data" in result.stderr:
            if shutil.which("dcmodify") is None:
                return None, "dcm2json refuses compressed pixel data and dcmodify is missing", False
            source = Path(tmp) / "copy.dcm"
            shutil.copyfile(path, source)
            subprocess.run(
                ["dcmodify", "-q", "-nb", "-ea", "(7fe0,0010)", str(source)], check=False
            )
            result = _dcm2json(source)
            note, stripped = "without pixel data", True
        if result.returncode and b"'nan' or 'inf'" in result.stderr:
            result = _dcm2json(source, "-ee")
            note = "; ".join(filter(None, [note, "dcm2json -ee (NaN/Infinity literals)"]))
    if result.returncode:
        reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        reason = [line.replace(str(source), "FILE") for line in reason]
        return None, f"dcm2json cannot read it: {reason[-1][:150]}", stripped
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None, "dcm2json wrote invalid UTF-8 (no character set conversion)", stripped
    model, repairs = _loads_repaired(text)
    if model is None:
        return None, "dcm2json wrote invalid JSON", stripped
    if repairs:
        note = "; ".join(filter(None, [note, f"{repairs} invalid JSON numbers repaired"]))
    return model, note, stripped


def _loads_repaired(text: str) -> tuple[dict[str, Any] | None, int]:
    """dcm2json 3.6.7 copies a DS ``5.`` as it is, not a JSON number: read it as ``5.0``.

    Its ``-ee`` output writes ``nan``, ``inf`` and ``-inf``, read as Python's json would
    read ``NaN`` and ``Infinity``.
    """
    constants = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
    for repairs in range(1000):
        try:
            return json.loads(text, parse_constant=float), repairs
        except json.JSONDecodeError as exc:
            pos = exc.pos
            if pos >= 1 and text[pos] == "." and text[pos - 1].isdigit():
                text = f"{text[: pos + 1]}0{text[pos + 1 :]}"
                continue
            word = next((w for w in ("-inf", "nan", "inf") if text.startswith(w, pos)), None)
            if word is None:
                return None, repairs
            text = f"{text[:pos]}{json.dumps(constants[word])}{text[pos + len(word) :]}"
    return None, 1000


def _exact_agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> int:
    """Elements (at every depth, as `compare_models` counts) equal as parsed JSON, types too."""
    agreed = 0
    for key in set(ours) & set(theirs):
        mine, other = ours[key], theirs[key]
        if key in DELIBERATE or mine.get("vr") != other.get("vr"):
            continue
        if mine["vr"] == "SQ":
            items, their_items = mine.get("Value", []), other.get("Value", [])
            if len(items) == len(their_items):
                agreed += 1
                for item, their_item in zip(items, their_items, strict=True):
                    agreed += _exact_agreement(item, their_item)
        elif _strictly_equal(mine, other):
            agreed += 1
    return agreed


def _strictly_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # NaN equals NaN here


def _without_inline_binary(model: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, element in model.items():
        element = {k: v for k, v in element.items() if k != "InlineBinary"}
        if element["vr"] == "SQ" and "Value" in element:
            element["Value"] = [_without_inline_binary(item) for item in element["Value"]]
        out[key] = element
    return out


def _check_tag_forms(path: Path) -> list[str]:
    problems = []
    for extra in ((), ("--json",)):
        printed = {form: run_cli("info", str(path), "--tag", form, *extra) for form in TAG_FORMS}
        if len(set(printed.values())) > 1:
            shown = "; ".join(f"{form}: {printed[form]!r:.100}" for form in TAG_FORMS)
            problems.append(f"--tag forms{' with --json' if extra else ''} differ: {shown}")
    return problems


def _check_bulk(path: Path, with_bulk: dict[str, Any]) -> list[str]:
    status, out, err = run_cli("info", str(path), "--json")
    if status:
        return [f"--json without --bulk fails: {err.strip()[:150]}"]
    without, expected = json.loads(out), _without_inline_binary(with_bulk)
    return [
        f"{key}: --json {without.get(key)} vs --json --bulk {expected.get(key)}"[:200]
        for key in sorted(set(without) | set(expected))
        if without.get(key) != expected.get(key)
    ]


def compare_path(path: Path) -> FileResult:
    result = FileResult(path)
    theirs, note, stripped = run_dcm2json(path)
    status, out, err = run_cli("info", str(path), "--json", "--bulk")
    if theirs is None:
        result.comparison.skipped = note
    else:
        result.note = note
        if status:
            ours: dict[str, Any] = {}
            result.note = f"ours failed: {err.strip()[:150]}"
        else:
            ours = json.loads(out)  # invalid JSON from us is a bug: let it raise
            for key in STRIPPED_KEYS if stripped else ():
                ours.pop(key, None)
        compare_models(ours, theirs, result.comparison)
        result.exact = _exact_agreement(ours, theirs)
    if status == 0:
        result.bulk = _check_bulk(path, json.loads(out))
    result.tag_forms = _check_tag_forms(path)
    return result


def _files(inputs: list[Path]) -> list[Path]:
    found: list[Path] = []
    for item in inputs:
        found += sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
    return found


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:6.2f} %" if whole else "   n/a  "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="DICOM files or folders")
    parser.add_argument("--exact", action="store_true", help="also the unnormalised agreement")
    parser.add_argument(
        "--show", type=int, default=5, metavar="N", help="differences listed per file (default 5)"
    )
    parser.add_argument("--quiet", action="store_true", help="the overall figures only")
    args = parser.parse_args(argv)
    if shutil.which("dcm2json") is None:
        parser.error("dcm2json (DCMTK) is not on PATH")

    total, exact, skipped = Comparison(), 0, Counter()
    tag_problems = bulk_problems = compared_files = 0
    for path in _files(args.inputs):
        result = compare_path(path)
        c = result.comparison
        tag_problems += bool(result.tag_forms)
        bulk_problems += bool(result.bulk)
        if c.skipped is not None:
            skipped[c.skipped] += 1
        else:
            compared_files += 1
            total.add(c)
            exact += result.exact
        if args.quiet:
            continue
        if c.skipped is not None:
            line = f"{path}: skipped ({c.skipped})"
        else:
            line = f"{path}: {c.agreed}/{c.compared} {_pct(c.agreed, c.compared)}"
            if args.exact:
                line += f", exact {result.exact}/{c.compared} {_pct(result.exact, c.compared)}"
            if result.note:
                line += f" [{result.note}]"
        print(line)
        for text in (c.differences[: args.show] if c.skipped is None else []) + [
            *result.tag_forms,
            *result.bulk[: args.show],
        ]:
            print(f"    {text}")

    print(
        f"\noverall: {total.agreed}/{total.compared} elements agree "
        f"({_pct(total.agreed, total.compared).strip()}) over {compared_files} files; "
        f"{total.un_reread} UN elements re-read with the other side's VR; "
        f"{len(total.deliberate)} deliberate differences left out ({', '.join(DELIBERATE)})"
    )
    if args.exact:
        print(f"exact (no normalisation): {exact}/{total.compared} ({_pct(exact, total.compared)})")
    for reason, count in skipped.most_common():
        print(f"skipped: {count} files ({reason})")
    print(f"--tag forms differ on {tag_problems} files; --json vs --bulk differ on {bulk_problems}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
