"""OMOP CDM adapter on a small hand-written CDM (CSV), and the same tables as Parquet / DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from adapter_testing import by_id

OMOP_FILES = (
    "cdm_source",
    "concept",
    "concept_ancestor",
    "drug_exposure",
    "measurement",
    "observation",
    "condition_occurrence",
    "visit_occurrence",
    "observation_period",
    "death",
)


@pytest.fixture
def omop(run, fixtures):
    return run("omop", fixtures / "omop")


def _files(fixtures: Path, *without: str) -> list[Path]:
    return [fixtures / "omop" / f"{n}.csv" for n in OMOP_FILES if n not in without]


def test_source_and_reconciliation(omop):
    res, events, quarantine = omop
    t = res.report["totals"]
    assert (
        t["records_read"],
        t["records_mapped"],
        t["records_out_of_scope"],
        t["records_quarantined"],
    ) == (28, 19, 3, 6)
    assert {e["source"] for e in events} == {"omop:TESTCDM"}  # cdm_source_abbreviation
    assert sorted(f["why"] for f in res.report["ignored_files"]) == [
        "demographics: no events (patients are identified by person_id)",
        "derived table: the pipeline derives its own eras",
    ]
    assert len(quarantine) == 6


def test_drug_exposure_types_and_days_supply(omop):
    _, events, _ = omop
    ids = by_id(events)
    assert (ids["drug_exposure/1"]["event_type"], ids["drug_exposure/1"]["days_supply"]) == (
        "dispensed",
        "30",
    )  # pharmacy claim
    amox = ids["drug_exposure/2#amoxicillin"]  # days_supply 0 = unknown: end - start
    assert (amox["days_supply"], amox["_extra"]["days_supply_imputed"]) == ("10", "end_date")
    assert ids["drug_exposure/2#clavulanate"]["drug"] == "clavulanate"
    assert (ids["drug_exposure/7"]["event_type"], ids["drug_exposure/7"]["days_supply"]) == (
        "prescribed",
        "90",
    )  # prescription written keeps its supply
    assert (ids["drug_exposure/8"]["event_type"], ids["drug_exposure/8"]["route"]) == (
        "administered",
        "oral",
    )
    assert ids["drug_exposure/10"]["_extra"]["drug_type_unmapped"] is True


def test_stop_reason_gives_a_stopped_event(omop):
    _, events, _ = omop
    stop = by_id(events)["drug_exposure/9#stopped"]
    assert (stop["occurred_at"], stop["reason"], stop["drug"]) == (
        "2016-07-20",
        "adverse_event",
        "lisinopril",
    )


def test_unmapped_concepts(omop):
    _, events, quarantine = omop
    ndc = by_id(events)["drug_exposure/5"]  # concept 0 but an NDC source value
    assert (ndc["drug"], ndc["drug_code"], ndc["drug_system"]) == (None, "00002751001", "ndc")
    reasons = {(q["record_type"], q["source_row"]): q["reasons"] for q in quarantine}
    assert reasons[("drug_exposure", 5)] == ["unmapped_drug_code"]  # concept 0, free text
    assert reasons[("drug_exposure", 4)] == ["missing_days_supply"]  # claim, no supply, no end
    assert reasons[("drug_exposure", 13)] == ["unparseable_date"]
    assert reasons[("condition_occurrence", 5)] == ["missing_code"]
    assert reasons[("measurement", 4)] == ["missing_value"]


def test_concept_ancestor_rolls_up_products(run, fixtures):
    _, with_ancestor, _ = run("omop", *_files(fixtures))
    _, without, _ = run("omop", *_files(fixtures, "concept_ancestor"))
    a, b = by_id(with_ancestor), by_id(without)
    assert a["drug_exposure/13"]["drug"] == "lisinopril"  # only the ancestor table knows it
    assert b["drug_exposure/13"]["drug"] is None
    assert b["drug_exposure/1"]["drug"] == "lisinopril"  # RxNorm code 314076 -> shipped table
    assert b["drug_exposure/1"]["_extra"]["ingredient_from"] == "rxnorm_ingredients.csv"


def test_without_concept_table_codes_fall_back_to_source_values(run, fixtures):
    _, events, _ = run("omop", *_files(fixtures, "concept", "concept_ancestor", "cdm_source"))
    ids = by_id(events)
    assert ids["drug_exposure/1"]["drug"] is None
    assert (ids["drug_exposure/1"]["drug_code"], ids["drug_exposure/1"]["drug_system"]) == (
        "19080128",
        "local",
    )  # the OMOP concept id, kept as a local code
    c1 = ids["condition_occurrence/1"]  # SNOMED source value
    assert (c1["condition"], c1["condition_code"], c1["condition_system"]) == (
        "hypertension",
        "59621000",
        "snomed",
    )
    assert ids["measurement/1"]["measure"] == "sbp"  # shipped OMOP concept id of LOINC 8480-6
    assert {e["source"] for e in events} == {"omop"}


def test_conditions_visits_periods_measurements(omop):
    _, events, _ = omop
    ids = by_id(events)
    assert (
        ids["condition_occurrence/2"]["condition"],
        ids["condition_occurrence/2"]["subtype"],
        ids["condition_occurrence/2"]["condition_system"],
    ) == ("epilepsy", "generalized", "icd10")
    c3 = ids["condition_occurrence/3"]  # unknown concept, ICD-9-CM source 401.9
    assert (c3["condition"], c3["condition_system"]) == ("hypertension", "local")
    assert ids["visit_occurrence/11#admitted"]["setting"] == "inpatient"
    assert ids["observation_period/1#disenrolled"]["occurred_at"] == "2019-12-31"
    sbp = ids["measurement/1"]
    assert (sbp["measure"], sbp["value"], sbp["unit"], sbp["setting"]) == (
        "sbp",
        "142",
        "mmHg",
        "office",
    )
    assert ids["measurement/5"]["measure"] == "sbp"  # concept 0, LOINC source value
    assert (ids["observation/1"]["measure"], ids["observation/1"]["value"]) == ("phq9", "12")
    assert ids["death/2"]["event_type"] == "died"


def _same_events(a: list[dict], b: list[dict]) -> None:
    strip = [{k: v for k, v in e.items() if k not in ("_source_file", "_source_row")} for e in a]
    strip_b = [{k: v for k, v in e.items() if k not in ("_source_file", "_source_row")} for e in b]
    key = lambda e: e["event_id"]  # noqa: E731
    assert sorted(strip, key=key) == sorted(strip_b, key=key)


def test_parquet_and_duckdb_database_give_the_same_events(run, fixtures, tmp_path):
    _, csv_events, _ = run("omop", *_files(fixtures))
    pq_dir = tmp_path / "parquet"
    pq_dir.mkdir()
    db = tmp_path / "cdm.duckdb"
    con = duckdb.connect(str(db))
    for f in _files(fixtures):
        rel = f"read_csv('{f}', header=true, auto_detect=true)"
        duckdb.execute(f"COPY (SELECT * FROM {rel}) TO '{pq_dir / (f.stem + '.parquet')}'")
        con.execute(f"CREATE TABLE {f.stem} AS SELECT * FROM {rel}")
    con.close()
    _, pq_events, _ = run("omop", pq_dir)
    res, db_events, _ = run("omop", db)
    _same_events(csv_events, pq_events)
    _same_events(csv_events, db_events)
    assert res.source_files == (db,)
    assert db_events[0]["_source_file"].startswith(f"{db}#")
