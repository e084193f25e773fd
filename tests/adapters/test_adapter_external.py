"""Every adapter on the public data in ../shared/external (skipped when absent).

The numbers asserted here are the ones reported in docs/adapters.md (regenerate them with
`python -m pipelines.adapters.validation --ingest --write docs/adapters.md`).
"""

from __future__ import annotations

import pytest
from adapter_testing import EXTERNAL, check_contract, rows_of

from pipelines.adapters.validation import validate_all

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    if not EXTERNAL.exists():
        pytest.skip(f"external validation data not found at {EXTERNAL} (see ../shared/external)")
    return validate_all(EXTERNAL, tmp_path_factory.mktemp("external"))


def _run(validation, name_start: str):
    return next(e for e in validation["runs"] if e["run"].name.startswith(name_start))


def test_every_run_reconciles_and_rows_follow_the_contract(validation):
    assert len(validation["runs"]) == 9
    for e in validation["runs"]:
        assert e["result"].report["reconciled"], e["run"].name
        check_contract(rows_of(e["result"].events_path))


def test_fhir_bulk(validation):
    e = _run(validation, "Synthea FHIR")
    t = e["totals"]
    assert (t["records_read"], t["records_quarantined"], t["events_total"]) == (3689, 0, 2606)
    assert t["events_produced"]["prescribed"] == 1950  # 1745 requests, combinations split
    assert t["out_of_scope_by_why"]["resource type not used: Immunization"] == 161
    events = rows_of(e["result"].events_path)
    htn = [
        x for x in events if x["event_type"] == "prescribed" and x["condition"] == "hypertension"
    ]
    assert len(htn) == 282  # indication from reasonReference -> Condition (essential hypertension)
    assert all(
        x["drug"] for x in events if x["event_type"] == "prescribed"
    )  # every RxNorm code mapped


def test_synthea_csv(validation):
    t = _run(validation, "Synthea CSV")["totals"]
    assert (t["records_read"], t["records_mapped"], t["records_quarantined"]) == (2722, 1169, 0)
    assert t["events_produced"]["started"] == 679
    assert t["events_produced"]["measurement"] == 55  # 27 systolic + 27 diastolic + 1 PHQ-9


def test_omop_gibleed_ingredients_match_drug_era(validation):
    era = validation["omop_era"]["OMOP Eunomia GiBleed (5.3)"]
    assert (era["era_ingredients"], era["ingredients_in_both"], era["equal_counts"]) == (86, 85, 85)
    assert era["only_in_era"] == ["inert ingredients"]  # placebo tablets of contraceptive packs
    assert era["mapped_rows_without_ingredient"] == 0
    t = _run(validation, "OMOP Eunomia GiBleed")["totals"]
    assert (
        t["out_of_scope_by_why"]["vaccine (CVX): immunisations are not treatment history"] == 25710
    )


def test_omop_mimic_unmapped_drugs_are_quarantined(validation):
    t = _run(validation, "OMOP MIMIC")["totals"]
    assert t["quarantined_by_reason"] == {"unmapped_drug_code": 546}
    era = validation["omop_era"]["OMOP MIMIC-IV demo (5.3)"]
    assert era["comparable_ingredients"] == 8
    assert all(d["mapped"] <= d["drug_era"] for d in era["count_differences"])


def test_omop_synthea27nj(validation):
    t = _run(validation, "OMOP Eunomia Synthea27Nj")["totals"]
    assert t["quarantined_by_reason"] == {"missing_value": 15}  # PHQ-9 rows without a value
    assert t["events_produced"]["dispensed"] == 957


def test_sdtm_disposition_reasons(validation):
    table = {r["dsdecod"]: (r["reason"], r["stopped_events"]) for r in validation["ds_reasons"]}
    assert table["ADVERSE EVENT"] == ("adverse_event", 84)
    assert table["COMPLETED"] == ("completed", 52)
    assert table["WITHDRAWAL BY SUBJECT"] == ("patient_choice", 18)
    assert table["LACK OF EFFICACY"] == ("inefficacy", 1)
    assert table["DEATH"] == ("death", 1)
    assert sum(n for _, n in table.values()) == 168  # one per subject on active treatment


def test_best_overall_response_matches_adam(validation):
    bor, cbor = validation["bor"]["BOR"], validation["bor"]["CBOR"]
    assert (bor["subjects"], bor["matches"], bor["assessed_subjects"], bor["assessed_matches"]) == (
        306,
        305,
        8,
        7,
    )
    assert cbor["assessed_matches"] == 7
    # the single mismatch: non-target-only disease, which the contract records as `sd`
    for param in (bor, cbor):
        (m,) = param["mismatches"]
        assert (m["subject"], m["adam"], m["derived"], m["date_match"]) == (
            "01-701-1034",
            "non-cr/non-pd",
            "sd",
            True,
        )
    restored = validation["bor_source"]
    assert restored["BOR"]["matches"] == restored["CBOR"]["matches"] == 306


def test_irecist_and_simulated_oncology(validation):
    t = _run(validation, "SDTM pharmaverse iRECIST")["totals"]
    assert t["events_produced"] == {"response_assessed": 73}
    onco = _run(validation, "SDTM pharmaverse oncology")["totals"]
    assert onco["quarantined_by_reason"] == {"unknown_response_code": 1}  # OVRLRESP = CHECK
    assert onco["events_produced"]["measurement"] == 887  # SUMDIAM of the investigator
