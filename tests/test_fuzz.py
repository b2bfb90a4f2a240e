"""A short, deterministic budget of benchmarks/fuzz.py: mutants of real files through convert,
info, info --json and index, with no traceback, hang, exit code other than 0/1, or 1 GB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import fuzz


@pytest.mark.slow
def test_a_fuzz_budget_finds_no_crash_class(tmp_path: Path, capsys) -> None:
    code = fuzz.main(
        ["--batches", "1", "--batch-size", "60", "--seed", "5", "--out", str(tmp_path)]
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mutants"] == 60
    assert report["crash_classes"] == [], report["crash_classes"]
    assert code == 0


def test_mutations_are_deterministic_for_a_seed() -> None:
    import random

    data = bytes(range(256)) * 8
    mutants = [fuzz.mutate(data, random.Random(seed)) for seed in range(8)]
    assert mutants == [fuzz.mutate(data, random.Random(seed)) for seed in range(8)]
    assert any(m != data for m in mutants)
