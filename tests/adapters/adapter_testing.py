"""Helpers for the adapter tests: run a conversion, read its rows, check them against the contract.

Imported by conftest.py (fixtures) and by the test modules (helpers).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.adapters import AdapterOptions, AdapterResult, convert
from pipelines.adapters.dates import parse_date
from schemas.contract import load_contract

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXTERNAL = Path(__file__).resolve().parents[2].parent / "shared" / "external"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def external() -> Path:
    if not EXTERNAL.exists():
        pytest.skip(f"external validation data not found at {EXTERNAL} (see ../shared/external)")
    return EXTERNAL


def rows_of(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        if "_extra" in r:
            r["_extra"] = json.loads(r["_extra"]) if r["_extra"] else {}
    return rows


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., tuple[AdapterResult, list[dict], list[dict]]]:
    """run(fmt, *paths, **options) -> (result, events, quarantine), contract-checked."""

    def _run(fmt: str, *paths: Path, **options: Any):
        res = convert(fmt, list(paths), tmp_path / fmt, options=AdapterOptions(**options))
        events = rows_of(res.events_path)
        check_contract(events)
        assert res.report["reconciled"]
        return res, events, rows_of(res.quarantine_path)

    return _run


def check_contract(rows: list[dict[str, Any]]) -> None:
    """Every row is a valid canonical event: types, domains, required columns, families."""
    c = load_contract()
    columns = {col.name: col for col in c.contract_columns}
    for r in rows:
        assert set(columns) <= set(r), f"missing contract columns: {set(columns) - set(r)}"
        et = r["event_type"]
        assert et in c.event_types, r
        family = c.family_of[et]
        for name, col in columns.items():
            v = r[name]
            if v is None:
                assert et not in col.required_event_types(c), f"{name} required for {et}: {r}"
                continue
            assert col.envelope or family in col.families, f"{name} not a {family} column: {r}"
            if col.domain:
                assert v.strip().lower() in col.domain, f"{name}={v!r} outside domain: {r}"
            if col.type == "number":
                float(v)
            elif col.type == "integer":
                assert float(v).is_integer(), (name, v)
            elif col.type == "timestamp":
                assert parse_date(v).imputed is None, (
                    name,
                    v,
                )  # adapters impute, never leave partial
        if family == "therapy":
            assert r["drug"] or r["drug_code"], r
            if r["drug_code"]:
                assert r["drug_system"], r
        if et == "response_assessed":
            allowed = c.response_codes[r["criteria"] or "clinician"]
            assert r["response"] in allowed, r


def by_id(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for e in events:
        assert e["event_id"] not in out, f"duplicate event_id {e['event_id']}"
        out[e["event_id"]] = e
    return out


def file_tally(res: AdapterResult, name_part: str, record_type: str) -> dict[str, Any]:
    hits = [
        f
        for f in res.report["files"]
        if name_part in f["source_file"] and f["record_type"] == record_type
    ]
    assert len(hits) == 1, [(f["source_file"], f["record_type"]) for f in res.report["files"]]
    return hits[0]
