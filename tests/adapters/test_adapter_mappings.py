"""The shipped mapping tables are consistent with the contract and documented."""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.adapters.model import QUARANTINE_REASONS
from pipelines.adapters.vocab import MAPPINGS_DIR, load_vocabulary
from schemas.contract import load_contract

DOCS = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


def _rows(name: str) -> list[dict[str, str]]:
    with open(MAPPINGS_DIR / name, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def test_values_are_in_the_contract_domains():
    c = load_contract()
    v = load_vocabulary()
    reasons = set(c.column("reason").domain)
    assert set(v.stop_reasons.values()) <= reasons
    assert {r.response for r in v.responses.values()} <= set(c.column("response").domain)
    assert set(v.omop_drug_types.values()) <= set(c.families["therapy"].event_types)
    assert set(v.omop_visit_types.values()) <= set(c.column("setting").domain)
    conditions = {"epilepsy", "lbcl", "multiple_myeloma", "depression", "hypertension", "sle"}
    assert {cc.condition for cc in v.condition_exact.values()} <= conditions
    assert {cc.condition for p in v.condition_prefix.values() for _, cc in p} <= conditions


def test_rxnorm_table_has_no_duplicate_rows_and_lower_case_ingredients():
    rows = _rows("rxnorm_ingredients.csv")
    pairs = [(r["rxcui"], r["ingredient"]) for r in rows]
    assert len(pairs) == len(set(pairs))
    assert all(ing == ing.lower().strip() and code.isdigit() for code, ing in pairs)
    v = load_vocabulary()
    assert v.ingredients("562251") == ("amoxicillin", "clavulanate")


def test_prefix_matching_prefers_the_longest_code():
    v = load_vocabulary()
    assert v.condition_for("icd10", "G40.A09").subtype == "absence"
    assert v.condition_for("icd10", "G40.909").subtype is None
    assert v.condition_for("icd9cm", "34550").subtype == "focal"
    assert v.condition_for("icd10", "I50.9") is None


def test_docs_cover_every_quarantine_reason_and_mapping_file():
    text = DOCS.read_text()
    for reason in QUARANTINE_REASONS:
        assert f"`{reason}`" in text, reason
    for f in MAPPINGS_DIR.iterdir():
        assert f.name in text, f.name
