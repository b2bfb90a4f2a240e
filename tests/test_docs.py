"""docs/cli.md documents every command and every option the program accepts."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from dcmexport.cli import build_parser

DOCS = Path(__file__).parents[1] / "docs" / "cli.md"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


COMMANDS = _subparsers(build_parser())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_option_is_documented(command: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert f"## `{command}`" in text, f"docs/cli.md has no section for {command}"
    options = [
        opt
        for action in COMMANDS[command]._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    ]
    missing = [
        opt for opt in options if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)
    ]
    assert missing == [], f"undocumented options of {command}: {missing}"


def test_code_cites_only_documents_in_the_repository() -> None:
    root = Path(__file__).parents[1]
    cited = [
        str(p.relative_to(root))
        for folder in ("src", "tests", "benchmarks")
        for p in (root / folder).rglob("*.py")
        if "CONTRACT.md" in p.read_text(encoding="utf-8") and p.name != "test_docs.py"
    ]
    assert cited == []


def test_every_burned_in_policy_is_documented() -> None:
    from dcmexport.options import BurnedInPolicy

    text = DOCS.read_text(encoding="utf-8")
    assert [p.value for p in BurnedInPolicy if f"`{p.value}`" not in text] == []
