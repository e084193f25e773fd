"""Stored events are never rewritten: older versions are read through upcasters.

tests/fixtures/events_v1.parquet is a committed v1 log file; it must always read as the current
contract. When v2 arrives, add upcast_v1_v2 and extend this test with the expected v2 values.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from schemas.contract import CURRENT_SCHEMA_VERSION, load_contract
from schemas.upcasters import upcast_sql

FIXTURE = Path(__file__).parent / "fixtures" / "events_v1.parquet"


def test_v1_fixture_reads_as_current_contract() -> None:
    sql = upcast_sql(f"SELECT * FROM read_parquet('{FIXTURE}')", 1)
    con = duckdb.connect()
    rows = con.execute(sql).fetchall()
    names = [d[0] for d in con.description]
    assert names == [c.name for c in load_contract(CURRENT_SCHEMA_VERSION).storage_columns()]
    assert len(rows) == 3
    by_id = {r[names.index("event_id")]: dict(zip(names, r, strict=True)) for r in rows}
    assert by_id["d1"]["days_supply"] == 30 and by_id["d1"]["drug"] == "levetiracetam"


def test_missing_upcaster_is_an_error() -> None:
    with pytest.raises(ValueError, match="no upcaster"):
        upcast_sql("SELECT 1", 1, to_version=CURRENT_SCHEMA_VERSION + 1)
