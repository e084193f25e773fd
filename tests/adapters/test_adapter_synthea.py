"""Synthea CSV adapter on a small hand-written export."""

from __future__ import annotations

from collections import defaultdict

import pytest
from adapter_testing import file_tally


@pytest.fixture
def synthea(run, fixtures):
    res, events, quarantine = run("synthea", fixtures / "synthea")
    ids = defaultdict(list)
    for e in events:
        ids[e["event_id"]].append(e)
    return res, events, quarantine, ids


LIS = "medications/P1/2010-01-01T08:00:00Z/314076/E0"


def test_medication_start_stop_and_fills(synthea):
    _, events, _, ids = synthea
    started = ids[f"{LIS}#started"]
    assert len(started) == 2  # two rows share the natural key: identical started events
    assert started[0]["condition"] == "hypertension"  # REASONCODE 59621000
    stop = ids[f"{LIS}/2010-04-01T08:00:00Z#stopped"][0]
    assert (stop["event_type"], stop["drug"], stop["reason"]) == ("stopped", "lisinopril", None)
    fills = [ids[f"{LIS}/2010-04-01T08:00:00Z#dispensed/{k}"][0] for k in (1, 2, 3)]
    # 90 days, 3 dispenses -> fills tile the period: 30 + 30 + 30 days
    assert [(f["occurred_at"], f["days_supply"]) for f in fills] == [
        ("2010-01-01", "30"),
        ("2010-01-31", "30"),
        ("2010-03-02", "30"),
    ]
    assert fills[0]["_extra"]["days_supply_imputed"] == "synthea_duration/dispenses"


def test_same_key_different_stop_does_not_conflict(synthea):
    _, _, _, ids = synthea
    # second lisinopril row (STOP = START, 1 dispense): its stop and fill ids carry STOP
    assert ids[f"{LIS}/2010-01-01T08:00:00Z#stopped"]
    assert ids[f"{LIS}/2010-01-01T08:00:00Z#dispensed/1"][0]["days_supply"] == "1"


def test_more_dispenses_than_days_are_merged(synthea):
    _, _, _, ids = synthea
    base = "medications/P1/2017-01-01T08:00:00Z/314076/E9/2017-01-03T08:00:00Z"
    fills = [e for k, v in ids.items() if k.startswith(f"{base}#dispensed/") for e in v]
    assert sorted((f["occurred_at"], f["days_supply"]) for f in fills) == [
        ("2017-01-01", "1"),
        ("2017-01-02", "1"),
    ]


def test_combination_and_ongoing(synthea):
    _, events, _, ids = synthea
    amox = [e for e in events if e["drug_code"] == "562251"]
    assert sorted((e["event_type"], e["drug"]) for e in amox) == [
        ("dispensed", "amoxicillin"),
        ("dispensed", "clavulanate"),
        ("started", "amoxicillin"),
        ("started", "clavulanate"),
        ("stopped", "amoxicillin"),
        ("stopped", "clavulanate"),
    ]
    ongoing = ids["medications/P2/2015-06-01T08:00:00Z/308971/E7#started"][0]
    assert (ongoing["drug"], ongoing["condition"]) == ("carbamazepine", "epilepsy")
    assert ongoing["_extra"]["dispenses_not_expanded"] == "ongoing (no STOP)"
    assert not [k for k in ids if k.startswith("medications/P2/2015-06-01T08:00:00Z/308971/E7/")]


def test_other_files(synthea):
    res, events, _, ids = synthea
    assert ids["encounters/E1#admitted"][0]["setting"] == "inpatient"
    assert ids["encounters/E3#admitted"][0]["setting"] == "snf"
    assert "encounters/E3#discharged" not in ids
    assert ids["patients/P2#died"][0]["occurred_at"] == "2020-05-06"
    epi = ids["conditions/P2/2013-05-01/84757009"][0]
    assert (epi["condition"], epi["_extra"]["date_imputed"]) == ("epilepsy", "day")
    sbp = ids["observations/P1/2012-03-01T10:00:00Z/8480-6"][0]
    assert (sbp["measure"], sbp["value"], sbp["unit"], sbp["setting"]) == (
        "sbp",
        "150",
        "mmHg",
        "office",
    )
    assert res.report["ignored_files"] == [
        {
            "path": str(res.source_files[0].parent / "allergies.csv"),
            "why": "Synthea file allergies not used by the pipeline",
        }
    ]


def test_quarantine_and_reconciliation(synthea):
    res, _, quarantine, _ = synthea
    assert sorted((q["record_type"], q["source_row"], q["reasons"][0]) for q in quarantine) == [
        ("conditions", 4, "missing_code"),
        ("medications", 5, "end_before_start"),
        ("medications", 6, "missing_subject"),
        ("observations", 5, "missing_value"),
        ("patients", 4, "missing_subject"),
    ]
    meds = file_tally(res, "medications", "medications")
    assert (meds["records_read"], meds["records_mapped"], meds["records_quarantined"]) == (7, 5, 2)
    obs = file_tally(res, "observations", "observations")
    assert obs["out_of_scope_by_why"] == {"observation code not in loinc_measures.yaml": 1}
