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


# ---- re-checking rows after the helper columns are filled (runner.recheck_expr) ----------------

HELPERS = ("_first_drug_event_at", "_target_patient_id")


def _batch_with_reasons(con: duckdb.DuckDBPyConnection, suites: list[Any]) -> None:
    """A typed batch of stops and corrections, some failing other checks too (and one with a
    parse error, whose detailed codes are merged differently), checked with NULL helpers."""
    from pipelines.ingest.core import _empty_stage
    from pipelines.ingest.normalise import family_case
    from quality.runner import reasons_expr
    from schemas.contract import load_contract

    contract = load_contract()
    con.execute(f"CREATE TABLE stage AS {_empty_stage(contract)}")
    con.execute("""
        INSERT INTO stage BY NAME SELECT * FROM (VALUES
          (1, 'stopped', TIMESTAMP '2023-12-01', 'levetiracetam', NULL::INTEGER, 'p1', NULL, []),
          (2, 'stopped', TIMESTAMP '2024-02-01', 'levetiracetam', NULL, 'p1', NULL, []),
          (3, 'stopped', TIMESTAMP '2023-12-01', 'levetiracetam', -3, 'p1', NULL, []),
          (4, 'stopped', TIMESTAMP '2023-12-01', NULL, -3, 'p1', NULL, ['unparseable_dose']),
          (5, 'amended', TIMESTAMP '2024-01-01', NULL, NULL, 'p2', 'e1', []),
          (6, 'amended', TIMESTAMP '2024-01-01', NULL, NULL, 'p3', 'e1', []),
          (7, 'retracted', TIMESTAMP '2024-01-01', NULL, NULL, 'p2', NULL, []),
          (8, 'dispensed', TIMESTAMP '2024-01-01', 'levetiracetam', 30, 'p1', NULL, [])
        ) v(_row, event_type, occurred_at, drug, days_supply, patient_id, target_event_id,
            _parse_errors)
    """)
    con.execute(f"""
        CREATE TABLE checked AS
        SELECT *, {reasons_expr(suites)} AS reasons FROM (
            SELECT *, {family_case(contract)} AS family, TIMESTAMP '2025-01-15' AS ingested_at,
                   CAST(NULL AS TIMESTAMP) AS _first_drug_event_at,
                   CAST(NULL AS VARCHAR) AS _target_patient_id
            FROM stage)
    """)
    con.execute("UPDATE checked SET _first_drug_event_at = TIMESTAMP '2024-01-01' WHERE _row <= 4")
    con.execute("UPDATE checked SET _target_patient_id = 'p2' WHERE _row IN (5, 6)")


def test_recheck_of_helper_rules_equals_checking_the_whole_row_again() -> None:
    from quality.runner import reasons_expr, recheck_expr

    suites = build_suites()
    con = duckdb.connect()
    _batch_with_reasons(con, suites)
    quick = recheck_expr(suites, HELPERS)
    assert quick is not None and "reasons" in quick
    rows = con.execute(f"""
        SELECT _row, reasons AS before, {reasons_expr(suites)} AS whole_row, {quick} AS quick
        FROM checked ORDER BY _row
    """).fetchall()
    assert [r[2] for r in rows] == [r[3] for r in rows]
    changed = {r[0]: r[2] for r in rows if r[1] != r[2]}
    # the stops dated before the drug's first event, and the correction of another patient
    assert set(changed) == {1, 3, 4, 6}
    assert all(("stopped_before_first_event" in changed[n]) == (n != 6) for n in changed), changed
    assert "negative_days_supply" in changed[3] and "unparseable_dose" in changed[4]
    assert "correction_patient_mismatch" in changed[6]


def test_recheck_falls_back_when_a_code_could_come_from_another_check() -> None:
    import dataclasses

    from quality.runner import recheck_expr

    suites = build_suites()
    assert recheck_expr(suites, ("no_such_column",)) == "reasons"
    therapy = next(s for s in suites if s.name == "therapy")
    helper_check = next(c for c in therapy.checks if c.reason_code == "stopped_before_first_event")
    # the same code given by a check that does not read the helper: the old list is ambiguous
    twin = dataclasses.replace(helper_check, predicate="dose > 1000")
    shared = [
        dataclasses.replace(s, checks=(*s.checks, twin)) if s.name == "therapy" else s
        for s in suites
    ]
    assert recheck_expr(shared, HELPERS) is None
    # a re-done check reporting detailed codes cannot be told apart in the list either
    events = next(s for s in suites if s.name == "events")
    parse = next(c for c in events.checks if c.reason_codes_sql)
    detailed = dataclasses.replace(parse, predicate=parse.predicate + " OR _target_patient_id = ''")
    with_detailed = [
        dataclasses.replace(s, checks=tuple(detailed if c is parse else c for c in s.checks))
        if s.name == "events"
        else s
        for s in suites
    ]
    assert recheck_expr(with_detailed, HELPERS) is None
