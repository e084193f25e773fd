"""Every quality check has a failing and a passing example (tests/quality_cases.yaml).

All cases are ingested together (gate tolerance 0 so no file is rejected, great-expectations on so
its counts are cross-checked against the quarantine). Each failing row must be quarantined with
the check's reason code; each passing row must be accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from pipelines.ingest import ingest
from quality.suites import build_suites
from tests.conftest import FIXED_TIME, make_cfg, write_csv

CASES = yaml.safe_load((Path(__file__).parent / "quality_cases.yaml").read_text())


def _rows() -> tuple[list[dict[str, Any]], dict[str, tuple[str, str, str]]]:
    rows: list[dict[str, Any]] = []
    ids: dict[str, tuple[str, str, str]] = {}
    for n, (key, case) in enumerate(CASES["cases"].items()):
        patient = f"Q{n:03d}"
        for j, ctx in enumerate(case.get("context", [])):
            ctx = dict(ctx)
            base = dict(CASES["bases"][ctx.pop("base")])
            rows.append({**base, **ctx, "patient_id": patient, "event_id": f"{key}:ctx{j}"})
        target = {**CASES["bases"]["dispensed"], "patient_id": patient, "event_id": f"{key}:target"}
        if case["base"] == "amended":
            rows.append(target)
        for kind in ("fail", "pass"):
            eid = f"{key}:{kind}"
            row = {**CASES["bases"][case["base"]], "patient_id": patient, "event_id": eid}
            for col, val in case[kind].items():
                row[col] = {"TARGET": target["event_id"], "SELF": eid}.get(val, val)
            if row.get("target_event_id") == "TARGET":
                row["target_event_id"] = target["event_id"]
            if row.get("patient_id") == "OTHER":
                row["patient_id"] = patient + "-other"
            rows.append(row)
        ids[key] = (f"{key}:fail", f"{key}:pass", case.get("expect_reason", key.split(".")[1]))
    return rows, ids


def test_every_check_has_a_case() -> None:
    checks = {f"{s.name}.{c.reason_code}" for s in build_suites() for c in s.checks}
    assert checks == set(CASES["cases"]), "add a case to tests/quality_cases.yaml for each check"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[str]], set[str]]:
    tmp = tmp_path_factory.mktemp("rules")
    rows, _ = _rows()
    path = write_csv(tmp / "cases.csv", rows)
    cfg = make_cfg(tmp / "wh", gx=True, quality={"mostly": 0.0, "gx_validation": True})
    res = ingest([path], cfg, ingest_time=FIXED_TIME)
    assert res.reconciled
    q = duckdb.sql(
        f"SELECT event_id, reasons FROM read_parquet('{tmp}/wh/quarantine/*.parquet')"
    ).fetchall()
    acc = duckdb.sql(
        f"SELECT event_id FROM read_parquet('{tmp}/wh/log/events/*/*.parquet')"
    ).fetchall()
    return {e: r for e, r in q}, {e for (e,) in acc}


@pytest.mark.parametrize("key", list(CASES["cases"]))
def test_rule_fails_and_passes(key: str, outcome: tuple[dict[str, list[str]], set[str]]) -> None:
    quarantined, accepted = outcome
    _, ids = _rows()
    fail_id, pass_id, reason = ids[key]
    assert fail_id in quarantined, f"{fail_id} should be quarantined"
    assert reason in quarantined[fail_id], f"{fail_id}: reasons {quarantined[fail_id]}"
    assert pass_id in accepted, (
        f"{pass_id} should be accepted (reasons: {quarantined.get(pass_id)})"
    )
