"""Every scenario under tests/scenarios/ (see tests/harness.py for the format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import SCENARIO_DIR, run_scenario, sort_key

SCENARIOS = sorted(SCENARIO_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[f"{p.parent.name}/{p.stem}" for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    got, want, spec = run_scenario(path)
    if spec["expect"].get("ordered"):
        assert got == want, spec["story"]
    else:
        assert sorted(got, key=sort_key) == sorted(want, key=sort_key), spec["story"]
