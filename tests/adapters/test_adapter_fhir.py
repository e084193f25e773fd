"""FHIR R4 adapter on small hand-written fixtures (one file per resource type, plus a Bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapter_testing import by_id, file_tally

from pipelines.adapters import AdapterError, AdapterOptions, convert
from pipelines.adapters.fhir import FhirContext, map_resource
from pipelines.adapters.model import Mapped, OutOfScope, Unmappable
from pipelines.adapters.vocab import load_vocabulary


@pytest.fixture
def fhir(run, fixtures):
    return run("fhir", fixtures / "fhir")


def test_every_record_is_accounted_for(fhir, fixtures):
    res, events, quarantine = fhir
    t = res.report["totals"]
    # 44 NDJSON lines (one blank, not a record) + 4 bundle entries
    assert t["records_read"] == 43 + 4
    assert t["records_read"] == (
        t["records_mapped"] + t["records_out_of_scope"] + t["records_quarantined"]
    )
    assert len(quarantine) == t["records_quarantined"] == 11
    assert res.report["events_written"] == len(events) == t["events_total"]
    assert {Path(f) for f in res.report["source_files"]} == {
        *(fixtures / "fhir" / "bulk").glob("*.ndjson"),
        fixtures / "fhir" / "bundle.json",
    }


def test_medication_request_with_reason_reference_and_supply(fhir):
    _, events, _ = fhir
    mr1 = by_id(events)["MedicationRequest/mr1"]
    assert mr1["event_type"] == "prescribed"
    assert (mr1["drug"], mr1["drug_code"], mr1["drug_system"]) == ("lisinopril", "314076", "rxnorm")
    assert mr1["condition"] == "hypertension"  # reasonReference -> Condition/c1 (SNOMED 59621000)
    assert mr1["days_supply"] == "30"  # dispenseRequest.expectedSupplyDuration
    assert (mr1["dose"], mr1["dose_unit"], mr1["route"]) == ("10", "mg", "oral")
    assert mr1["source"] == "fhir"


def test_combination_product_gives_one_event_per_ingredient(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    assert ids["MedicationRequest/mr2#amoxicillin"]["drug"] == "amoxicillin"
    assert ids["MedicationRequest/mr2#clavulanate"]["drug"] == "clavulanate"
    assert "MedicationRequest/mr2" not in ids


def test_medication_reference_resolved_from_medication_resource(fhir):
    _, events, _ = fhir
    assert by_id(events)["MedicationRequest/mr3"]["drug"] == "lisinopril"


def test_entered_in_error_becomes_retraction_of_the_original_event(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    r = ids["MedicationRequest/mr4/_history/2"]
    assert r["event_type"] == "retracted"
    assert r["target_event_id"] == "MedicationRequest/mr4"
    assert r["patient_id"] == "p1"
    assert r["recorded_at"] == "2016-01-16T09:00:00Z"  # meta.lastUpdated
    c4 = ids["Condition/c4/retracted"]  # verificationStatus entered-in-error, no versionId
    assert (c4["event_type"], c4["target_event_id"]) == ("retracted", "Condition/c4")


def test_new_version_becomes_amended_event(fhir):
    _, events, _ = fhir
    a = by_id(events)["MedicationRequest/mr1/_history/2"]
    assert a["event_type"] == "amended"
    assert a["target_event_id"] == "MedicationRequest/mr1"
    assert a["drug_code"] == "314077"  # the corrected value
    assert a["_extra"]["amends_event_type"] == "prescribed"


def test_unmapped_rxnorm_code_is_kept_with_code_only(fhir):
    _, events, _ = fhir
    e = by_id(events)["MedicationRequest/mr7"]
    assert e["drug"] is None and e["drug_code"] == "999999" and e["drug_system"] == "rxnorm"
    assert e["_extra"]["drug_unmapped"] is True


def test_partial_date_is_imputed_and_flagged(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    assert ids["MedicationRequest/mr9"]["occurred_at"] == "2013-05-01"
    assert ids["MedicationRequest/mr9"]["_extra"]["date_imputed"] == "day"
    assert ids["Condition/c6"]["occurred_at"] == "2013-05-01"


def test_quarantine_reasons(fhir):
    _, _, quarantine = fhir
    got = {(Path(q["source_file"]).name, q["source_row"]): q["reasons"] for q in quarantine}
    assert got == {
        ("Patient.000.ndjson", 3): ["missing_date"],  # deceasedBoolean without date
        ("Patient.000.ndjson", 4): ["missing_subject"],  # Patient without id
        ("Condition.000.ndjson", 5): ["unknown_code_system"],
        ("MedicationDispense.000.ndjson", 3): ["missing_days_supply"],
        ("MedicationRequest.000.ndjson", 6): ["unknown_code_system"],
        ("MedicationRequest.000.ndjson", 8): ["missing_subject"],
        ("MedicationRequest.000.ndjson", 10): ["unparseable_date"],
        ("MedicationRequest.000.ndjson", 12): ["invalid_json"],
        ("Observation.000.ndjson", 6): ["unknown_code_system"],
        ("Observation.000.ndjson", 7): ["missing_value"],
        ("Observation.000.ndjson", 8): ["unknown_response_code"],
    }
    q = next(q for q in quarantine if q["source_row"] == 10)
    assert json.loads(q["original"])["authoredOn"] == "05/2013"  # the source record, verbatim


def test_dispense_days_supply_given_derived_or_converted(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    assert ids["MedicationDispense/md1"]["days_supply"] == "30"
    md2 = ids["MedicationDispense/md2"]  # 60 units, 2 per day
    assert md2["days_supply"] == "30"
    assert md2["_extra"]["days_supply_imputed"] == "quantity/units_per_day"
    assert ids["MedicationDispense/md5"]["days_supply"] == "28"  # 4 wk


def test_administration_statement_encounter_patient(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    ma = ids["MedicationAdministration/ma1"]
    assert (ma["event_type"], ma["drug"], ma["dose"], ma["dose_unit"], ma["route"]) == (
        "administered",
        "paclitaxel",
        "175",
        "mg/m2",
        "iv",
    )
    assert ids["MedicationStatement/ms1#started"]["occurred_at"] == "2017-01-01"
    stop = ids["MedicationStatement/ms1#stopped"]
    assert (stop["event_type"], stop["reason"], stop["occurred_at"]) == (
        "stopped",
        "adverse_event",
        "2017-03-10",
    )
    assert ids["Encounter/e1#admitted"]["setting"] == "inpatient"
    assert ids["Encounter/e1#discharged"]["occurred_at"] == "2016-02-05T12:00:00Z"
    assert "Encounter/e3#discharged" not in ids  # still in hospital
    assert ids["Patient/p2#died"]["occurred_at"] == "2020-03-04T10:00:00+01:00"


def test_conditions_diagnosed_and_refuted(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    c1 = ids["Condition/c1"]
    assert (c1["event_type"], c1["condition"], c1["condition_code"], c1["condition_system"]) == (
        "diagnosed",
        "hypertension",
        "59621000",
        "snomed",
    )
    c2 = ids["Condition/c2"]
    assert (c2["event_type"], c2["condition"], c2["subtype"], c2["condition_system"]) == (
        "diagnosis_refuted",
        "epilepsy",
        "generalized",
        "icd10",
    )


def test_observations_bp_panel_scores_counts_and_response(fhir):
    _, events, _ = fhir
    ids = by_id(events)
    sbp, dbp = ids["Observation/o1#sbp"], ids["Observation/o1#dbp"]
    assert (sbp["measure"], sbp["value"], sbp["unit"], sbp["setting"]) == (
        "sbp",
        "152",
        "mmHg",
        "office",
    )
    assert (dbp["measure"], dbp["value"]) == ("dbp", "94")
    phq = ids["Observation/o2"]
    assert (phq["measure"], phq["value"], phq["condition"]) == ("phq9", "14", "depression")
    seizures = ids["Observation/o5"]
    assert (seizures["measure"], seizures["value"], seizures["period_days"]) == (
        "seizure_count",
        "3",
        "30",
    )
    resp = ids["Observation/o4"]
    assert (resp["event_type"], resp["criteria"], resp["response"]) == (
        "response_assessed",
        "recist_1_1",
        "pr",
    )


def test_out_of_scope_reasons_are_counted(fhir):
    res, _, _ = fhir
    why = res.report["totals"]["out_of_scope_by_why"]
    assert why["resource type not used: Immunization"] == 1
    assert why["encounter class AMB is not an inpatient stay"] == 1
    assert why["observation code not in loinc_measures.yaml"] == 1  # heart rate
    assert why["MedicationRequest intent plan (not an order)"] == 1
    mr = file_tally(res, "MedicationRequest", "MedicationRequest")
    assert mr["records_read"] == 12 and mr["reconciled"]


def test_bundle_urn_uuid_and_contained_medication(fhir):
    _, events, _ = fhir
    b = by_id(events)["MedicationRequest/mrb"]
    assert (b["patient_id"], b["drug"], b["condition"]) == ("pat-b", "amoxicillin", "depression")


def test_user_mapping_extends_the_shipped_rxnorm_table(run, fixtures, tmp_path):
    extra = tmp_path / "site"
    extra.mkdir()
    (extra / "rxnorm_ingredients.csv").write_text(
        "rxcui,ingredient,note\n999999,levetiracetam,site\n"
    )
    _, events, _ = run(
        "fhir", fixtures / "fhir" / "bulk" / "MedicationRequest.000.ndjson", mappings_dirs=(extra,)
    )
    assert by_id(events)["MedicationRequest/mr7"]["drug"] == "levetiracetam"


def test_unknown_format_and_missing_input(tmp_path):
    with pytest.raises(AdapterError):
        convert("hl7v2", [tmp_path], tmp_path / "w")
    with pytest.raises(FileNotFoundError):
        convert("fhir", [tmp_path / "nope.ndjson"], tmp_path / "w")


def _ctx() -> FhirContext:
    return FhirContext(vocab=load_vocabulary(), options=AdapterOptions(), source="fhir")


def test_retraction_edge_cases():
    amb = {
        "resourceType": "Encounter",
        "id": "x",
        "status": "entered-in-error",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p"},
    }
    assert isinstance(map_resource(amb, _ctx()), OutOfScope)  # it never became an event

    local = {
        "resourceType": "MedicationRequest",
        "id": "y",
        "status": "entered-in-error",
        "subject": {"reference": "Patient/p"},
        "meta": {"lastUpdated": "2020-01-02"},
        "medicationCodeableConcept": {"coding": [{"system": "urn:x", "code": "1"}]},
    }
    out = map_resource(local, _ctx())  # unmappable content: retract the base id
    assert isinstance(out, Mapped)
    (r,) = out.events
    assert (r["event_type"], r["target_event_id"], r["occurred_at"]) == (
        "retracted",
        "MedicationRequest/y",
        "2020-01-02",
    )

    no_id = {k: v for k, v in local.items() if k != "id"}
    with pytest.raises(Unmappable) as e:
        map_resource(no_id, _ctx())
    assert e.value.reasons == ("missing_id",)
