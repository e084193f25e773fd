"""CDISC SDTM adapter on a small hand-written study (DM, EX, DS, RS, TR; CM is ignored)."""

from __future__ import annotations

import pytest
from adapter_testing import by_id, file_tally


@pytest.fixture
def sdtm(run, fixtures):
    return run("sdtm", fixtures / "sdtm")


def test_reconciliation_and_source(sdtm):
    res, events, quarantine = sdtm
    t = res.report["totals"]
    assert (
        t["records_read"],
        t["records_mapped"],
        t["records_out_of_scope"],
        t["records_quarantined"],
    ) == (29, 16, 9, 4)
    assert {e["source"] for e in events} == {"sdtm:TXHTEST01"}
    assert [f["path"].rsplit("/", 1)[-1] for f in res.report["ignored_files"]] == ["cm.csv"]


def test_dm_reference_dates_and_death(sdtm):
    _, events, quarantine = sdtm
    ids = by_id(events)
    assert ids["S-001/DM#enrolled"]["occurred_at"] == "2020-01-05"  # RFICDTC before RFSTDTC
    assert ids["S-001/DM#disenrolled"]["occurred_at"] == "2020-07-15"  # RFPENDTC
    end = ids["S-002/DM#disenrolled"]  # RFENDTC 2020-03: an end date -> last day of month
    assert (end["occurred_at"], end["_extra"]["date_imputed"]) == ("2020-03-31", "day")
    assert ids["S-002/DM#died"]["occurred_at"] == "2020-03-15"
    assert not [e for e in events if e["patient_id"] == "S-003"]  # screen failure
    assert ("DM", 5, ["missing_date"]) in [
        (q["record_type"], q["source_row"], q["reasons"]) for q in quarantine
    ]


def test_ex_exposure_dose_changes_and_administrations(sdtm):
    _, events, _ = sdtm
    ids = by_id(events)
    first = ids["S-001/EX/1"]
    assert (
        first["event_type"],
        first["drug"],
        first["dose"],
        first["dose_unit"],
        first["days_supply"],
        first["route"],
    ) == ("dispensed", "drugx", "50", "mg", "22", "oral")
    change = ids["S-001/EX/2#dose_changed"]
    assert (change["occurred_at"], change["dose"]) == ("2020-02-01", "100")
    assert ids["S-001/EX/2"]["days_supply"] == "151"  # 2020-02-01..2020-06-30 inclusive
    # 50 mg BID = 100 mg/day: same daily dose, no dose change
    assert ids["S-001/EX/3"]["dose"] == "100" and "S-001/EX/3#dose_changed" not in ids
    ritux = ids["S-002/EX/1"]
    assert (ritux["event_type"], ritux["dose"], ritux["dose_unit"], ritux["route"]) == (
        "administered",
        "375",
        "mg/m2",
        "iv",
    )
    assert ids["S-002/EX/3"]["event_type"] == "started"  # daily dosing without an end date
    assert not [
        e
        for e in events
        if e["patient_id"] == "S-005" and e["event_type"] in ("dispensed", "stopped")
    ]  # placebo


def test_ds_disposition_reasons(sdtm):
    _, events, _ = sdtm
    ids = by_id(events)
    assert ids["S-001/DS/2"]["reason"] == "inefficacy"  # LACK OF EFFICACY
    unknown = ids["S-001/DS/3"]
    assert (unknown["reason"], unknown["_extra"]["reason_unmapped"]) == ("unknown", True)
    # death stops every active treatment of the subject
    assert {
        (ids[k]["drug"], ids[k]["reason"]) for k in ("S-002/DS/1#drugx", "S-002/DS/1#rituximab")
    } == {("drugx", "death"), ("rituximab", "death")}


def test_rs_overall_responses(sdtm):
    res, events, quarantine = sdtm
    ids = by_id(events)
    assert (ids["S-001/RS/1"]["criteria"], ids["S-001/RS/1"]["response"]) == ("recist_1_1", "pr")
    nonpd = ids["S-001/RS/4"]
    assert (nonpd["response"], nonpd["_extra"]["response_source"], nonpd["occurred_at"]) == (
        "sd",
        "NON-CR/NON-PD",
        "2020-04-01",
    )
    iupd = ids["S-002/RS/1"]
    assert (iupd["criteria"], iupd["response"], iupd["_extra"]["response_source"]) == (
        "recist_1_1",
        "pd",
        "iUPD",
    )
    rs = file_tally(res, "rs.csv", "RS")
    assert rs["out_of_scope_by_why"] == {
        "RS TRGRESP: not an overall response": 1,
        "assessment not done": 1,
        "evaluator INDEPENDENT ASSESSOR (kept: INVESTIGATOR)": 1,
    }
    assert rs["quarantined_by_reason"] == {"unknown_response_code": 2}  # CHECK, RSCAT RANO


def test_all_evaluators_and_default_condition(run, fixtures):
    _, events, _ = run("sdtm", fixtures / "sdtm", sdtm_rs_evaluator=None, default_condition="lbcl")
    ids = by_id(events)
    assert ids["S-001/RS/2"]["response"] == "sd"  # independent assessor kept
    assert ids["S-001/RS/1"]["condition"] == "lbcl"
    assert ids["S-001/EX/1"]["condition"] == "lbcl"


def test_tr_sum_of_diameters(sdtm):
    _, events, _ = sdtm
    m = by_id(events)["S-001/TR/1"]
    assert (m["measure"], m["value"], m["unit"]) == ("sum_of_diameters", "55", "mm")
