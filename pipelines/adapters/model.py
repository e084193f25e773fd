"""What a mapper returns for one source record, and how canonical event rows are built.

Every source record has exactly one outcome, which is what makes the adapter report reconcile
(records_read = records_mapped + records_out_of_scope + records_quarantined):

- :class:`Mapped`: one or more canonical events (a blood-pressure panel gives sbp and dbp, a
  combination product one event per ingredient, an encounter admitted and discharged);
- :class:`OutOfScope`: a valid record the pipeline does not use, with a short reason
  (``why``) that is counted in the report (e.g. "resource type not used: Immunization");
- :class:`Quarantined`: a record that should have been mapped but cannot be; its reasons are
  machine-readable codes from :data:`QUARANTINE_REASONS` and the original record goes to the
  quarantine file. Nothing is dropped silently.

Mappers raise :class:`Unmappable` for the quarantine case; the driver turns it into the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.contract import load_contract

CONTRACT_COLUMNS: tuple[str, ...] = load_contract().contract_column_names
_CONTRACT_SET = frozenset(CONTRACT_COLUMNS)

# Machine-readable quarantine reasons (documented in docs/adapters.md).
QUARANTINE_REASONS: dict[str, str] = {
    "invalid_json": "The line is not a JSON object (NDJSON) or the file is not valid JSON.",
    "missing_subject": "No patient reference / person_id / USUBJID.",
    "missing_id": "A correction (entered-in-error) of a resource without an id: nothing to target.",
    "missing_date": "The date that anchors the event is absent.",
    "unparseable_date": "A date that is not ISO 8601 (full or partial) or not a calendar date.",
    "end_before_start": "An end date before its start date (no duration can be derived).",
    "missing_code": "No code at all where one is needed (medication, diagnosis, observation).",
    "unknown_code_system": "Codes are present but none is in a recognised code system.",
    "unmapped_drug_code": "The source could not code the drug (OMOP concept 0 without an NDC).",
    "unresolved_reference": "A reference (e.g. medicationReference) that cannot be resolved.",
    "missing_days_supply": "A dispensing whose days' supply is absent and cannot be derived.",
    "unparseable_days_supply": "A days' supply that is not a number of days.",
    "missing_value": "A measurement without a numeric value.",
    "unknown_response_code": "A response value not in schemas/mappings/response_codes.csv.",
    "unknown_status": "A status value the mapping does not know.",
}


class Unmappable(Exception):
    """Raised by a mapper: the record goes to quarantine with these reasons."""

    def __init__(self, *reasons: str, detail: str = ""):
        unknown = [r for r in reasons if r not in QUARANTINE_REASONS]
        if unknown or not reasons:
            raise ValueError(f"undocumented quarantine reason(s): {unknown or reasons}")
        super().__init__(", ".join(reasons) + (f": {detail}" if detail else ""))
        self.reasons = tuple(reasons)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Mapped:
    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class OutOfScope:
    why: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    reasons: tuple[str, ...]
    detail: str = ""


Outcome = Mapped | OutOfScope | Quarantined


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of a source file, as the driver sees it."""

    source_file: str  # the original file path as given (or db#table)
    row: int  # 1-based line (NDJSON), record (CSV: record number + 1 for the header) or entry
    record_type: str  # FHIR resource type, OMOP table, SDTM domain, Synthea file
    original: Any  # str (raw JSON line) or dict (tabular row): written to quarantine as JSON


def event(
    event_type: str,
    patient_id: str,
    occurred_at: str,
    event_id: str,
    source: str,
    extra: dict[str, Any] | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """A canonical event row: contract columns (strings or None) plus ``_extra`` (a dict).

    Unknown column names are a programming error and raise immediately.
    """
    unknown = set(columns) - _CONTRACT_SET
    if unknown:
        raise KeyError(f"not contract columns: {sorted(unknown)}")
    row: dict[str, Any] = {
        "event_id": event_id,
        "patient_id": patient_id,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "source": source,
    }
    for k, v in columns.items():
        if v is not None:
            row[k] = _text(v)
    row["_extra"] = {k: v for k, v in (extra or {}).items() if v is not None}
    return row


def _text(v: Any) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


@dataclass
class Tally:
    """Counts for one (source file, record type)."""

    records_read: int = 0
    records_mapped: int = 0
    records_out_of_scope: int = 0
    records_quarantined: int = 0
    out_of_scope_by_why: dict[str, int] = field(default_factory=dict)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    events_produced: dict[str, int] = field(default_factory=dict)
    dates_imputed: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.records_read += 1
        if isinstance(outcome, Mapped):
            self.records_mapped += 1
            for ev in outcome.events:
                _inc(self.events_produced, ev["event_type"])
                imputed = ev["_extra"].get("date_imputed")
                if imputed:
                    _inc(self.dates_imputed, imputed)
        elif isinstance(outcome, OutOfScope):
            self.records_out_of_scope += 1
            _inc(self.out_of_scope_by_why, outcome.why)
        else:
            self.records_quarantined += 1
            for r in outcome.reasons:
                _inc(self.quarantined_by_reason, r)

    def merge(self, other: Tally) -> None:
        self.records_read += other.records_read
        self.records_mapped += other.records_mapped
        self.records_out_of_scope += other.records_out_of_scope
        self.records_quarantined += other.records_quarantined
        for mine, theirs in (
            (self.out_of_scope_by_why, other.out_of_scope_by_why),
            (self.quarantined_by_reason, other.quarantined_by_reason),
            (self.events_produced, other.events_produced),
            (self.dates_imputed, other.dates_imputed),
        ):
            for k, n in theirs.items():
                _inc(mine, k, n)

    @property
    def reconciled(self) -> bool:
        return self.records_read == (
            self.records_mapped + self.records_out_of_scope + self.records_quarantined
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "records_mapped": self.records_mapped,
            "records_out_of_scope": self.records_out_of_scope,
            "out_of_scope_by_why": dict(sorted(self.out_of_scope_by_why.items())),
            "records_quarantined": self.records_quarantined,
            "quarantined_by_reason": dict(sorted(self.quarantined_by_reason.items())),
            "events_produced": dict(sorted(self.events_produced.items())),
            "events_total": sum(self.events_produced.values()),
            "dates_imputed": dict(sorted(self.dates_imputed.items())),
            "reconciled": self.reconciled,
        }


def _inc(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n
