"""Property: whatever the input, every source record has exactly one outcome and rows are valid."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from adapter_testing import check_contract, rows_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.adapters import convert

dates = st.one_of(
    st.none(),
    st.sampled_from(
        ["2019-04-02", "2019-04", "2019", "2019-04-02T10:00:00+02:00", "04/2019", "2019-02-30", ""]
    ),
)
codes = st.sampled_from(
    [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"},
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "562251"},
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1"},
        {"system": "http://hl7.org/fhir/sid/ndc", "code": "00002751001"},
        {"system": "urn:local", "code": "X"},
    ]
)
resource = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["MedicationRequest", "MedicationDispense", "Patient", "Immunization", "Observation"]
        ),
        "id": st.sampled_from(["a", "b", "c"]),
    },
    optional={
        "status": st.sampled_from(
            ["active", "completed", "stopped", "entered-in-error", "cancelled", "final", "bogus"]
        ),
        "intent": st.sampled_from(["order", "plan"]),
        "subject": st.sampled_from([{"reference": "Patient/p1"}, {"display": "x"}]),
        "authoredOn": dates,
        "whenHandedOver": dates,
        "effectiveDateTime": dates,
        "deceasedDateTime": dates,
        "meta": st.sampled_from([{"versionId": "1"}, {"versionId": "3"}, {}]),
        "medicationCodeableConcept": st.builds(lambda c: {"coding": [c]}, codes),
        "daysSupply": st.sampled_from(
            [{"value": 30}, {"value": 1, "unit": "wk"}, {"value": 2, "unit": "parsec"}]
        ),
        "code": st.sampled_from(
            [
                {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                {"coding": [{"system": "urn:x", "code": "y"}]},
            ]
        ),
        "valueQuantity": st.sampled_from([{"value": 120, "unit": "mm[Hg]"}, {"unit": "x"}]),
    },
)
line = st.one_of(resource.map(lambda r: json.dumps(r)), st.sampled_from(["{", "[]", "42"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=1, max_size=25))
def test_every_line_has_exactly_one_outcome(lines):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "Mixed.000.ndjson"
        src.write_text("\n".join(lines) + "\n")
        res = convert("fhir", [src], Path(tmp) / "out")
        t = res.report["totals"]
        assert t["records_read"] == len(lines)
        assert res.report["reconciled"]
        events, quarantine = rows_of(res.events_path), rows_of(res.quarantine_path)
        check_contract(events)
        mapped_rows = {e["_source_row"] for e in events}
        quarantined_rows = {q["source_row"] for q in quarantine}
        assert not mapped_rows & quarantined_rows
        assert len(mapped_rows) == t["records_mapped"]
        assert len(quarantined_rows) == len(quarantine) == t["records_quarantined"]
        assert all(q["reasons"] for q in quarantine)
