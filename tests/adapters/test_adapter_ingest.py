"""End to end: adapter -> canonical ingest (quality gate, event log, quarantine) in a tmp warehouse."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.adapters import ingest_source
from pipelines.config import load_config


@pytest.fixture
def cfg(tmp_path):
    return load_config(None, warehouse=str(tmp_path / "warehouse"))


def test_fhir_fixture_ingests_and_reingest_is_a_noop(cfg, fixtures, tmp_path):
    result = ingest_source("fhir", [fixtures / "fhir"], cfg)
    f = result.files[0]
    assert (result.batch_id, f.status, f.rows_read, f.accepted) == (1, "accepted", 28, 28)
    assert result.gate_passed and result.reconciled
    assert f.adapter["totals"]["records_quarantined"] == 11  # the adapter report travels along
    log = str(tmp_path / "warehouse" / "log" / "events" / "*" / "*.parquet")
    rows = duckdb.sql(f"""
        SELECT event_id, event_type, source_file, source_row, extra FROM read_parquet('{log}')
        WHERE event_id = 'MedicationRequest/mr9'""").fetchall()
    ((event_id, event_type, source_file, source_row, extra),) = rows
    assert event_type == "prescribed"
    assert source_file.endswith("MedicationRequest.000.ndjson") and source_row == 9
    assert '"date_imputed":"day"' in extra.replace(" ", "")
    q = str(tmp_path / "warehouse" / "quarantine" / "*.parquet")
    reasons = duckdb.sql(
        f"SELECT reasons FROM read_parquet('{q}') WHERE source_row = 10 "
        "AND source_file LIKE '%MedicationRequest%'"
    ).fetchall()
    assert reasons == [(["unparseable_date"],)]  # adapter quarantine merged into the batch's

    again = ingest_source("fhir", [fixtures / "fhir"], cfg)
    assert again.noop and again.files[0].status == "already_ingested"


@pytest.mark.parametrize("fmt", ["omop", "sdtm", "synthea"])
def test_tabular_fixtures_pass_the_quality_gate(cfg, fixtures, fmt):
    result = ingest_source(fmt, [fixtures / fmt], cfg)
    f = result.files[0]
    assert f.status == "accepted" and result.gate_passed and result.reconciled
    assert f.accepted + f.duplicates == f.rows_read  # nothing quarantined by ingest itself
