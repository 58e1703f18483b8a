"""The fault suite at CI's sizes (benchmarks/faults.py --short): each scenario against the real cofferd (and, for the
cluster's, a real PostgreSQL), every answer a client received checked. benchmarks/faults.py runs them at full size
on the release build and prints the figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import faults  # noqa: E402


@pytest.mark.parametrize("scenario", list(faults.SCENARIOS))
def test_fault_scenario_holds_its_guarantee(scenario):
    rows = faults.run([scenario], short=True)
    assert rows and all(row.ok for row in rows), "\n".join(
        f"{'ok' if row.ok else 'NOT MET'}: {row.what}: {row.figure} (target {row.target})" for row in rows)
