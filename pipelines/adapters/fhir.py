"""FHIR R4 -> canonical events: bulk-export NDJSON (streamed line by line) and Bundle JSON.

Resources mapped (docs/adapters.md has the field-level table):
  MedicationRequest        prescribed (days_supply from dispenseRequest.expectedSupplyDuration)
  MedicationDispense       dispensed (daysSupply; else quantity / daily units, flagged; else quarantine)
  MedicationAdministration administered (dose per administration)
  MedicationStatement      started (+ stopped when the effective period has an end)
  Observation              measurement (loinc_measures.yaml; panels give one event per component)
                           or response_assessed (coded response value)
  Condition                diagnosed / diagnosis_refuted (verificationStatus)
  Encounter                admitted + discharged for inpatient classes
  Patient                  died (deceasedDateTime)
  Medication               reference data for medicationReference (no event)
Corrections: status (or Condition.verificationStatus) `entered-in-error` -> `retracted` targeting
the events the resource would have produced; meta.versionId > 1 -> `amended` events targeting
them (event_id + /_history/<versionId>). meta.lastUpdated is the event's `recorded_at`.

NDJSON files are processed in bulk-export type order (Patient, Medication, Condition, Encounter,
then the rest) so that medicationReference and reasonReference can be resolved; only the
Medication codes and the ids of Conditions that map to a known condition are kept in memory.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pipelines.adapters.dates import ParsedDate, Role, parse_date
from pipelines.adapters.model import (
    Mapped,
    Outcome,
    OutOfScope,
    Quarantined,
    SourceRecord,
    Unmappable,
    event,
)
from pipelines.adapters.options import AdapterOptions
from pipelines.adapters.sink import ConversionWriter
from pipelines.adapters.vocab import Vocabulary

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
JSON_SUFFIXES = (".json", ".json.gz")
TYPE_ORDER = ("Patient", "Medication", "Condition", "Encounter")
INPATIENT_CLASSES = {"IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient"}
DRUG_SYSTEMS = ("rxnorm", "ndc", "atc")
CONDITION_SYSTEMS = ("snomed", "icd10", "icd9cm")
MASS_UNITS = {
    "mg",
    "g",
    "mcg",
    "ug",
    "µg",
    "ng",
    "ml",
    "l",
    "[iu]",
    "iu",
    "u",
    "unit",
    "units",
    "meq",
    "mmol",
    "mg/m2",
    "mg/kg",
}
_PERIOD_DAYS = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
_DURATION_DAYS = {
    "d": 1,
    "day": 1,
    "days": 1,
    "wk": 7,
    "week": 7,
    "weeks": 7,
    "mo": 30,
    "month": 30,
    "months": 30,
}


@dataclass
class FhirContext:
    vocab: Vocabulary
    options: AdapterOptions
    source: str
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)  # Medication id -> code
    conditions: dict[str, str] = field(default_factory=dict)  # Condition id -> condition id


@dataclass(frozen=True, slots=True)
class DrugCoding:
    code: str
    system: str
    ingredients: tuple[str, ...]
    display: str | None


Mapper = Callable[[dict[str, Any], FhirContext, bool], Outcome]


# -- entry point --------------------------------------------------------------------------------
def run(
    paths: Sequence[Path], out: ConversionWriter, vocab: Vocabulary, options: AdapterOptions
) -> tuple[Path, ...]:
    files = discover(paths, out)
    ctx = FhirContext(vocab=vocab, options=options, source=options.source or "fhir")
    for f in files:
        name = f.name.lower()
        if name.endswith(NDJSON_SUFFIXES):
            _convert_ndjson(f, ctx, out)
        else:
            _convert_json(f, ctx, out)
    return tuple(files)


def discover(paths: Sequence[Path], out: ConversionWriter) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if f.name.lower().endswith(NDJSON_SUFFIXES + JSON_SUFFIXES):
                    found.append(f)
                else:
                    out.ignore_file(f, "not FHIR JSON / NDJSON")
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return sorted(set(found), key=_file_order)


def _file_order(f: Path) -> tuple[int, str]:
    prefix = f.name.split(".")[0]
    rank = TYPE_ORDER.index(prefix) if prefix in TYPE_ORDER else len(TYPE_ORDER)
    return rank, str(f)


def _open_text(path: Path) -> TextIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _convert_ndjson(path: Path, ctx: FhirContext, out: ConversionWriter) -> None:
    guess = path.name.split(".")[0]
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                res = json.loads(line)
            except ValueError as e:
                out.add(
                    SourceRecord(str(path), line_no, guess, line.rstrip("\n")),
                    Quarantined(("invalid_json",), str(e)[:200]),
                )
                continue
            _convert_resource(res, str(path), line_no, line.rstrip("\n"), ctx, out)


def _convert_json(path: Path, ctx: FhirContext, out: ConversionWriter) -> None:
    with _open_text(path) as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
    except ValueError as e:
        out.add(
            SourceRecord(str(path), 1, "Bundle", text[:100_000]),
            Quarantined(("invalid_json",), str(e)[:200]),
        )
        return
    if not (isinstance(doc, dict) and doc.get("resourceType") == "Bundle"):
        _convert_resource(doc, str(path), 1, text, ctx, out)
        return
    entries = doc.get("entry") or []
    for entry in entries:  # reference data first, as for NDJSON files
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            _register_reference_data(res, ctx)
    for i, entry in enumerate(entries, start=1):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if res is None:
            out.add(
                SourceRecord(str(path), i, "BundleEntry", json.dumps(entry)),
                OutOfScope("bundle entry without a resource"),
            )
            continue
        _convert_resource(res, str(path), i, None, ctx, out)


def _convert_resource(
    res: Any, source_file: str, row: int, raw: str | None, ctx: FhirContext, out: ConversionWriter
) -> None:
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        out.add(
            SourceRecord(source_file, row, "unknown", raw or json.dumps(res)),
            Quarantined(("invalid_json",), "not a FHIR resource (no resourceType)"),
        )
        return
    rtype = res["resourceType"]
    rec = SourceRecord(source_file, row, rtype, raw if raw is not None else json.dumps(res))
    out.map(rec, lambda: map_resource(res, ctx))


# -- dispatch, corrections, versions ------------------------------------------------------------
def map_resource(res: dict[str, Any], ctx: FhirContext) -> Outcome:
    rtype = res["resourceType"]
    if rtype == "Medication":
        _register_reference_data(res, ctx)
        return OutOfScope("reference data: resolves medicationReference")
    mapper = MAPPERS.get(rtype)
    if mapper is None:
        return OutOfScope(f"resource type not used: {rtype}")
    if _entered_in_error(res):
        return _retraction(res, ctx, mapper)
    outcome = mapper(res, ctx, False)
    if isinstance(outcome, Mapped):
        outcome = _apply_version(res, outcome)
    return outcome


def _entered_in_error(res: dict[str, Any]) -> bool:
    if res.get("status") == "entered-in-error":
        return True
    return "entered-in-error" in _codes(res.get("verificationStatus"))


def _version(res: dict[str, Any]) -> str | None:
    vid = (res.get("meta") or {}).get("versionId")
    return str(vid).strip() if vid not in (None, "") else None


def _base_id(res: dict[str, Any]) -> str | None:
    rid = res.get("id")
    return f"{res['resourceType']}/{rid}" if rid else None


def _apply_version(res: dict[str, Any], mapped: Mapped) -> Mapped:
    """versionId > 1: the events become `amended` corrections of the first version's events."""
    vid = _version(res)
    if not (vid and vid.isdigit() and int(vid) > 1) or not _base_id(res):
        return mapped
    amended = []
    for ev in mapped.events:
        row = dict(ev)
        row["_extra"] = {**ev["_extra"], "amends_event_type": ev["event_type"], "fhir_version": vid}
        row["event_type"] = "amended"
        row["target_event_id"] = ev["event_id"]
        row["event_id"] = f"{ev['event_id']}/_history/{vid}"
        amended.append(row)
    return Mapped(tuple(amended))


def _retraction(res: dict[str, Any], ctx: FhirContext, mapper: Mapper) -> Outcome:
    """entered-in-error: retract the events the resource produced (computed as if it were valid)."""
    base = _base_id(res)
    targets: list[dict[str, Any]] = []
    try:
        outcome = mapper(res, ctx, True)
    except Unmappable:
        outcome = None
    if isinstance(outcome, OutOfScope):
        return OutOfScope(f"entered-in-error, never an event: {outcome.why}")
    if isinstance(outcome, Mapped):
        targets = list(outcome.events)
    vid = _version(res)
    suffix = f"/_history/{vid}" if vid else "/retracted"
    recorded = _recorded_at(res)
    if not targets:  # the resource could not be mapped: retract its base id
        if not base:
            raise Unmappable("missing_id", detail="entered-in-error resource without id")
        pid = _patient(res)
        when = _parse((res.get("meta") or {}).get("lastUpdated"))
        if when is None:
            raise Unmappable("missing_date", detail="entered-in-error resource without dates")
        targets = [
            {
                "event_id": base,
                "patient_id": pid,
                "occurred_at": when.text,
                "event_type": None,
                "_extra": {},
            }
        ]
    events = []
    for t in targets:
        events.append(
            event(
                "retracted",
                t["patient_id"],
                t["occurred_at"],
                f"{t['event_id']}{suffix}",
                ctx.source,
                target_event_id=t["event_id"],
                recorded_at=recorded,
                extra={
                    "retracts_event_type": t.get("event_type"),
                    "fhir_status": "entered-in-error",
                },
            )
        )
    return Mapped(tuple(events))


def _register_reference_data(res: dict[str, Any], ctx: FhirContext) -> None:
    rtype, rid = res.get("resourceType"), res.get("id")
    if not rid:
        return
    if rtype == "Medication" and isinstance(res.get("code"), dict):
        ctx.medications[str(rid)] = res["code"]
    elif rtype == "Condition":
        coding = _condition_coding(res.get("code"), ctx.vocab, strict=False)
        if coding and coding[2]:
            ctx.conditions[str(rid)] = coding[2]


# -- shared field helpers -----------------------------------------------------------------------
def ref_id(ref: Any, expected_type: str | None = None) -> str | None:
    """Id of a Reference: 'Patient/1', 'urn:uuid:1', 'http://x/fhir/Patient/1/_history/2' -> '1'."""
    if not isinstance(ref, dict):
        return None
    text = str(ref.get("reference") or "").strip()
    if not text:
        return None
    if text.startswith("urn:uuid:"):
        return text[len("urn:uuid:") :] or None
    parts = [p for p in text.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and (expected_type is None or parts[-2] == expected_type):
        return parts[-1]
    return None


def _patient(res: dict[str, Any]) -> str:
    pid = ref_id(res.get("subject"), "Patient") or ref_id(res.get("patient"), "Patient")
    if not pid:
        raise Unmappable("missing_subject")
    return pid


def _codings(cc: Any) -> list[dict[str, Any]]:
    if not isinstance(cc, dict):
        return []
    return [c for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code")]


def _codes(cc: Any) -> set[str]:
    return {str(c["code"]) for c in _codings(cc)}


def _parse(value: Any, role: Role = "start") -> ParsedDate | None:
    return parse_date(value, role)


def _require(pd: ParsedDate | None, what: str) -> ParsedDate:
    if pd is None:
        raise Unmappable("missing_date", detail=f"no {what}")
    return pd


def _date_extra(*dates: ParsedDate | None) -> dict[str, Any]:
    imputed = [d.imputed for d in dates if d is not None and d.imputed]
    return {"date_imputed": "month" if "month" in imputed else imputed[0]} if imputed else {}


def _recorded_at(res: dict[str, Any]) -> str | None:
    try:
        pd = _parse((res.get("meta") or {}).get("lastUpdated"))
    except ValueError:
        return None
    return pd.text if pd else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _text_of(cc: Any) -> str | None:
    """Display of the first coding that has one, else the CodeableConcept's text."""
    if not isinstance(cc, dict):
        return None
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and c.get("display"):
            return str(c["display"])
    return cc.get("text")


# -- drugs ---------------------------------------------------------------------------------------
def _drug(res: dict[str, Any], ctx: FhirContext) -> DrugCoding:
    cc = res.get("medicationCodeableConcept")
    if cc is None and isinstance(res.get("medicationReference"), dict):
        ref = str(res["medicationReference"].get("reference") or "")
        if ref.startswith("#"):
            contained = {
                str(c.get("id")): c for c in res.get("contained") or [] if isinstance(c, dict)
            }
            cc = (contained.get(ref[1:]) or {}).get("code")
        else:
            cc = ctx.medications.get(ref_id(res["medicationReference"], "Medication") or "")
        if cc is None:
            raise Unmappable("unresolved_reference", detail=f"medicationReference {ref}")
    codings = _codings(cc)
    if not codings:
        raise Unmappable("missing_code", detail="medication without a code")
    known = [(ctx.vocab.system_of(c.get("system")), c) for c in codings]
    known = [(s, c) for s, c in known if s in DRUG_SYSTEMS]
    if not known:
        systems = sorted({str(c.get("system")) for c in codings})
        raise Unmappable("unknown_code_system", detail=f"medication coded in {systems}")
    for system, c in known:  # prefer a code whose ingredients are known
        ingredients = ctx.vocab.ingredients(c["code"]) if system == "rxnorm" else ()
        if ingredients:
            return DrugCoding(str(c["code"]), system, ingredients, c.get("display"))
    system, c = min(known, key=lambda sc: DRUG_SYSTEMS.index(sc[0]))
    return DrugCoding(str(c["code"]), system, (), c.get("display") or cc.get("text"))


def _drug_events(
    event_type: str,
    base_id: str | None,
    pid: str,
    when: ParsedDate,
    drug: DrugCoding,
    ctx: FhirContext,
    recorded_at: str | None,
    extra: dict[str, Any],
    **cols: Any,
) -> list[dict[str, Any]]:
    """One event per ingredient (combination products), or one with drug empty when unmapped."""
    ingredients: tuple[str | None, ...] = drug.ingredients or (None,)
    events = []
    for ing in ingredients:
        eid = base_id
        if base_id and len(ingredients) > 1:
            eid = f"{base_id}#{ing}"
        ex = {**extra, **_date_extra(when)}
        if not drug.ingredients:
            ex["drug_unmapped"] = True
            ex["drug_display"] = drug.display
        events.append(
            event(
                event_type,
                pid,
                when.text,
                eid,
                ctx.source,
                extra=ex,
                recorded_at=recorded_at,
                drug=ing,
                drug_code=drug.code,
                drug_system=drug.system,
                **cols,
            )
        )
    return events


def _indication(res: dict[str, Any], ctx: FhirContext) -> str | None:
    for cc in res.get("reasonCode") or []:
        hit = _condition_coding(cc, ctx.vocab, strict=False)
        if hit and hit[2]:
            return hit[2]
    for ref in res.get("reasonReference") or []:
        cid = ref_id(ref, "Condition")
        if cid and cid in ctx.conditions:
            return ctx.conditions[cid]
    return ctx.options.default_condition


@dataclass(frozen=True, slots=True)
class Dosage:
    daily_dose: float | None  # in dose_unit (mass-like units only)
    dose_unit: str | None
    units_per_day: float | None  # unitless doses (tablets): product units per day
    dose_per_administration: float | None


def _dosage(instructions: Any) -> Dosage:
    if not isinstance(instructions, list) or not instructions:
        return Dosage(None, None, None, None)
    d = instructions[0] if isinstance(instructions[0], dict) else {}
    dose_and_rate = (d.get("doseAndRate") or [{}])[0] or {}
    q = dose_and_rate.get("doseQuantity") or d.get("dose") or {}
    value = _number(q.get("value"))
    unit = (q.get("unit") or q.get("code") or None) if isinstance(q, dict) else None
    repeat = ((d.get("timing") or {}).get("repeat") or {}) if isinstance(d, dict) else {}
    per_day = None
    if value is not None and repeat:
        freq = _number(repeat.get("frequency")) or 1.0
        period = _number(repeat.get("period")) or 1.0
        period_days = _PERIOD_DAYS.get(str(repeat.get("periodUnit") or "d"))
        if period_days:
            per_day = value * freq / (period * period_days)
    mass = unit is not None and str(unit).strip().lower() in MASS_UNITS
    return Dosage(
        daily_dose=per_day if mass else None,
        dose_unit=str(unit).strip().lower() if mass else None,
        units_per_day=per_day if not mass else None,
        dose_per_administration=value,
    )


def _duration_days(q: Any) -> tuple[int | None, bool]:
    """A FHIR Duration/Quantity in days: (days, converted from weeks/months)."""
    if not isinstance(q, dict) or q.get("value") is None:
        return None, False
    value = _number(q.get("value"))
    unit = str(q.get("code") or q.get("unit") or "d").strip().lower()
    factor = _DURATION_DAYS.get(unit)
    if value is None or factor is None or value < 0:
        raise Unmappable("unparseable_days_supply", detail=f"{q.get('value')} {unit}")
    return int(round(value * factor)), factor != 1


def _route(dosage_list: Any, vocab: Vocabulary) -> str | None:
    d = dosage_list[0] if isinstance(dosage_list, list) and dosage_list else dosage_list
    if not isinstance(d, dict):
        return None
    route = d.get("route")
    codings = (route or {}).get("coding") or [] if isinstance(route, dict) else []
    for c in codings:
        if not isinstance(c, dict):
            continue
        r = vocab.route(c.get("display")) or vocab.route(c.get("code"))
        if r:
            return r
    return vocab.route((route or {}).get("text")) if isinstance(route, dict) else None


# -- resource mappers ---------------------------------------------------------------------------
def map_medication_request(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    status, intent = res.get("status"), res.get("intent")
    if not retracting:
        if status in ("draft", "cancelled"):
            return OutOfScope(f"MedicationRequest status {status}")
        if status not in ("active", "completed", "stopped", "on-hold", "unknown"):
            raise Unmappable("unknown_status", detail=f"status {status!r}")
        if intent in ("proposal", "plan"):
            return OutOfScope(f"MedicationRequest intent {intent} (not an order)")
    pid = _patient(res)
    when = _require(_parse(res.get("authoredOn")), "authoredOn")
    drug = _drug(res, ctx)
    dosage = _dosage(res.get("dosageInstruction"))
    dispense = res.get("dispenseRequest") or {}
    days, converted = _duration_days(dispense.get("expectedSupplyDuration"))
    extra = {
        "fhir_status": status,
        "units_per_day": dosage.units_per_day,
        "days_supply_converted": converted or None,
    }
    events = _drug_events(
        "prescribed",
        _base_id(res),
        pid,
        when,
        drug,
        ctx,
        _recorded_at(res),
        extra,
        days_supply=days,
        dose=dosage.daily_dose,
        dose_unit=dosage.dose_unit,
        quantity=_number((dispense.get("quantity") or {}).get("value")),
        route=_route(res.get("dosageInstruction"), ctx.vocab),
        condition=_indication(res, ctx),
    )
    return Mapped(tuple(events))


def map_medication_dispense(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    status = res.get("status")
    if not retracting and status != "completed":
        if status in (
            "preparation",
            "in-progress",
            "cancelled",
            "on-hold",
            "stopped",
            "declined",
            "unknown",
        ):
            return OutOfScope(f"MedicationDispense status {status} (not handed over)")
        raise Unmappable("unknown_status", detail=f"status {status!r}")
    pid = _patient(res)
    when = _require(_parse(res.get("whenHandedOver") or res.get("whenPrepared")), "whenHandedOver")
    drug = _drug(res, ctx)
    dosage = _dosage(res.get("dosageInstruction"))
    quantity = _number((res.get("quantity") or {}).get("value"))
    days, converted = _duration_days(res.get("daysSupply"))
    extra: dict[str, Any] = {"fhir_status": status, "days_supply_converted": converted or None}
    if days is None:
        if quantity is not None and dosage.units_per_day:
            days = max(1, int(round(quantity / dosage.units_per_day)))
            extra["days_supply_imputed"] = "quantity/units_per_day"
        elif not retracting:
            raise Unmappable(
                "missing_days_supply", detail="no daysSupply and no quantity with a daily dose"
            )
    events = _drug_events(
        "dispensed",
        _base_id(res),
        pid,
        when,
        drug,
        ctx,
        _recorded_at(res),
        extra,
        days_supply=days,
        dose=dosage.daily_dose,
        dose_unit=dosage.dose_unit,
        quantity=quantity,
        route=_route(res.get("dosageInstruction"), ctx.vocab),
        condition=_indication(res, ctx),
    )
    return Mapped(tuple(events))


def map_medication_administration(
    res: dict[str, Any], ctx: FhirContext, retracting: bool
) -> Outcome:
    status = res.get("status")
    if not retracting and status not in ("completed", "in-progress", "stopped"):
        if status in ("not-done", "on-hold", "unknown"):
            return OutOfScope(f"MedicationAdministration status {status} (not given)")
        raise Unmappable("unknown_status", detail=f"status {status!r}")
    pid = _patient(res)
    period = res.get("effectivePeriod") or {}
    when = _require(_parse(res.get("effectiveDateTime") or period.get("start")), "effective")
    drug = _drug(res, ctx)
    dosage = res.get("dosage") or {}
    dose_q = dosage.get("dose") or {}
    unit = dose_q.get("unit") or dose_q.get("code")
    events = _drug_events(
        "administered",
        _base_id(res),
        pid,
        when,
        drug,
        ctx,
        _recorded_at(res),
        {"fhir_status": status},
        dose=_number(dose_q.get("value")),
        dose_unit=str(unit).lower() if unit else None,
        route=_route(dosage, ctx.vocab),
        condition=_indication(res, ctx),
    )
    return Mapped(tuple(events))


def map_medication_statement(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    status = res.get("status")
    if not retracting and status not in ("active", "completed", "stopped", "on-hold"):
        if status in ("intended", "not-taken", "unknown"):
            return OutOfScope(f"MedicationStatement status {status} (not taken)")
        raise Unmappable("unknown_status", detail=f"status {status!r}")
    pid = _patient(res)
    period = res.get("effectivePeriod") or {}
    start = _require(_parse(res.get("effectiveDateTime") or period.get("start")), "effective")
    end = _parse(period.get("end"), role="end")
    drug = _drug(res, ctx)
    dosage = _dosage(res.get("dosage"))
    base = _base_id(res)
    condition = _indication(res, ctx)
    recorded = _recorded_at(res)
    events = _drug_events(
        "started",
        f"{base}#started" if base else None,
        pid,
        start,
        drug,
        ctx,
        recorded,
        {"fhir_status": status},
        dose=dosage.daily_dose,
        dose_unit=dosage.dose_unit,
        condition=condition,
    )
    if end is not None:
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="effectivePeriod.end < start")
        reason_text = None
        for cc in res.get("statusReason") or []:
            reason_text = _text_of(cc)
            if reason_text:
                break
        reason = ctx.vocab.stop_reason(reason_text)
        extra = {
            "fhir_status": status,
            "reason_source": reason_text,
            "reason_unmapped": True if reason_text and not reason else None,
        }
        events += _drug_events(
            "stopped",
            f"{base}#stopped" if base else None,
            pid,
            end,
            drug,
            ctx,
            recorded,
            extra,
            reason=reason or ("unknown" if reason_text else None),
            condition=condition,
        )
    return Mapped(tuple(events))


def _condition_coding(
    cc: Any, vocab: Vocabulary, *, strict: bool = True
) -> tuple[str, str, str | None, str | None, str] | None:
    """(condition_code, condition_system, condition id, subtype, code system) of a diagnosis."""
    codings = _codings(cc)
    if not codings:
        if strict:
            raise Unmappable("missing_code", detail="diagnosis without a code")
        return None
    known = [(vocab.system_of(c.get("system")), c) for c in codings]
    known = [(s, c) for s, c in known if s in CONDITION_SYSTEMS]
    if not known:
        if strict:
            systems = sorted({str(c.get("system")) for c in codings})
            raise Unmappable("unknown_code_system", detail=f"diagnosis coded in {systems}")
        return None
    for system, c in known:
        hit = vocab.condition_for(system, str(c["code"]))
        if hit:
            return _stored_condition_code(system, c["code"]) + (hit.condition, hit.subtype, system)
    system, c = known[0]
    return _stored_condition_code(system, c["code"]) + (None, None, system)


def _stored_condition_code(system: str, code: Any) -> tuple[str, str]:
    # icd9cm is not a contract condition_system: kept as a local code, the system in _extra
    return str(code), (system if system in ("snomed", "icd10") else "local")


def map_condition(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    verification = _codes(res.get("verificationStatus"))
    event_type = "diagnosed"
    if not retracting:
        if verification & {"unconfirmed", "provisional", "differential"}:
            return OutOfScope("diagnosis not confirmed (unconfirmed/provisional/differential)")
        if "refuted" in verification:
            event_type = "diagnosis_refuted"
    pid = _patient(res)
    onset = res.get("onsetDateTime") or (res.get("onsetPeriod") or {}).get("start")
    when = _require(_parse(onset or res.get("recordedDate")), "onset or recordedDate")
    code, system, condition, subtype, code_system = _condition_coding(res.get("code"), ctx.vocab)
    if condition and res.get("id") and event_type == "diagnosed":
        ctx.conditions[str(res["id"])] = condition
    recorded = _recorded_at(res)
    if recorded is None and res.get("recordedDate"):
        recorded = _require(_parse(res.get("recordedDate")), "recordedDate").text
    ev = event(
        event_type,
        pid,
        when.text,
        _base_id(res),
        ctx.source,
        extra={
            **_date_extra(when),
            "condition_code_system": code_system,
            "condition_display": _text_of(res.get("code")),
        },
        recorded_at=recorded,
        condition=condition,
        condition_code=code,
        condition_system=system,
        subtype=subtype,
    )
    return Mapped((ev,))


def map_encounter(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    status = res.get("status")
    klass = res.get("class") or {}
    code = str(klass.get("code") or "") if isinstance(klass, dict) else ""
    setting = INPATIENT_CLASSES.get(code.upper())
    if setting is None:
        return OutOfScope(f"encounter class {code or 'missing'} is not an inpatient stay")
    if not retracting and status in ("planned", "cancelled"):
        return OutOfScope(f"Encounter status {status} (did not happen)")
    pid = _patient(res)
    period = res.get("period") or {}
    start = _require(_parse(period.get("start")), "period.start")
    end = _parse(period.get("end"), role="end")
    base = _base_id(res)
    recorded = _recorded_at(res)
    events = [
        event(
            "admitted",
            pid,
            start.text,
            f"{base}#admitted" if base else None,
            ctx.source,
            extra=_date_extra(start),
            recorded_at=recorded,
            setting=setting,
        )
    ]
    if end is not None:
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="period.end < period.start")
        events.append(
            event(
                "discharged",
                pid,
                end.text,
                f"{base}#discharged" if base else None,
                ctx.source,
                extra=_date_extra(end),
                recorded_at=recorded,
                setting=setting,
            )
        )
    return Mapped(tuple(events))


def map_patient(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    pid = res.get("id")
    if not pid:
        raise Unmappable("missing_subject", detail="Patient without id")
    when = _parse(res.get("deceasedDateTime"))
    if when is None:
        if res.get("deceasedBoolean") is True:
            raise Unmappable("missing_date", detail="deceasedBoolean without a date")
        return OutOfScope("patient not recorded as deceased")
    ev = event(
        "died",
        str(pid),
        when.text,
        f"Patient/{pid}#died",
        ctx.source,
        extra=_date_extra(when),
        recorded_at=_recorded_at(res),
    )
    return Mapped((ev,))


def _observation_value(obj: dict[str, Any]) -> tuple[float | None, str | None]:
    q = obj.get("valueQuantity")
    if isinstance(q, dict):
        return _number(q.get("value")), (q.get("unit") or q.get("code"))
    if "valueInteger" in obj:
        return _number(obj.get("valueInteger")), None
    return None, None


def _criteria(res: dict[str, Any]) -> tuple[str, str | None]:
    method = res.get("method")
    words = " ".join(
        [str(c.get("display") or c.get("code") or "") for c in _codings(method)]
        + [str((method or {}).get("text") or "")]
    ).lower()
    if "irecist" in words:
        return "recist_1_1", "iRECIST"
    for key, criteria in (
        ("recist", "recist_1_1"),
        ("lugano", "lugano_2014"),
        ("imwg", "imwg"),
        ("iwcll", "iwcll"),
    ):
        if key in words:
            return criteria, None
    return "clinician", None


def map_observation(res: dict[str, Any], ctx: FhirContext, retracting: bool) -> Outcome:
    status = res.get("status")
    if not retracting and status not in ("final", "amended", "corrected", "preliminary"):
        if status in ("registered", "cancelled", "unknown"):
            return OutOfScope(f"Observation status {status} (no result)")
        raise Unmappable("unknown_status", detail=f"status {status!r}")
    vocab = ctx.vocab
    codings = [(vocab.system_of(c.get("system")), c) for c in _codings(res.get("code"))]
    if not codings:
        raise Unmappable("missing_code", detail="observation without a code")
    kind, key, measure = None, None, None
    for system, c in codings:
        k = (system or "", str(c["code"]))
        if k in vocab.panels:
            kind, key = "panel", k
            break
        if vocab.measure_for(system, str(c["code"])):
            kind, key, measure = "measure", k, vocab.measure_for(system, str(c["code"]))
            break
        if k in vocab.response_observations:
            kind, key = "response", k
            break
    if kind is None:
        if all(system is None for system, _ in codings):
            systems = sorted({str(c.get("system")) for _, c in codings})
            raise Unmappable("unknown_code_system", detail=f"observation coded in {systems}")
        return OutOfScope("observation code not in loinc_measures.yaml")
    pid = _patient(res)
    period = res.get("effectivePeriod") or {}
    when = _require(
        _parse(
            res.get("effectiveDateTime")
            or res.get("effectiveInstant")
            or period.get("end")
            or period.get("start")
            or res.get("issued")
        ),
        "effective[x]",
    )
    base = _base_id(res)
    recorded = _recorded_at(res)
    common = {"recorded_at": recorded}
    extra = {**_date_extra(when), "loinc": key[1] if key[0] == "loinc" else None}

    if kind == "response":
        value = res.get("valueCodeableConcept")
        terms = [str(c.get("code")) for c in _codings(value)]
        terms += [str(c.get("display")) for c in _codings(value) if c.get("display")]
        terms += [str((value or {}).get("text") or "")]
        hit = next((vocab.response_for(t) for t in terms if vocab.response_for(t)), None)
        if hit is None:
            raise Unmappable("unknown_response_code", detail=f"value {terms}")
        criteria, criteria_flag = _criteria(res)
        ev = event(
            "response_assessed",
            pid,
            when.text,
            base,
            ctx.source,
            extra={**extra, "response_source": hit.flag, "criteria_source": criteria_flag},
            criteria=criteria,
            response=hit.response,
            condition=ctx.options.default_condition,
            **common,
        )
        return Mapped((ev,))

    setting = "office" if ref_id(res.get("encounter"), "Encounter") else None
    period_days = None
    if period.get("start") and period.get("end"):
        start = _require(_parse(period["start"]), "effectivePeriod.start")
        end = _require(_parse(period["end"], role="end"), "effectivePeriod.end")
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="effectivePeriod.end < start")
        period_days = (end.day - start.day).days + 1
    if kind == "measure":
        parts = [(measure, res, base)]
    else:
        panel = vocab.panels[key]
        parts = []
        for comp in res.get("component") or []:
            for c in _codings(comp.get("code")):
                m = vocab.measure_for(vocab.system_of(c.get("system")), str(c["code"]))
                if m and str(c["code"]) in panel.components:
                    parts.append((m, comp, f"{base}#{m.measure}" if base else None))
                    break
    events = []
    for m, obj, eid in parts:
        value, unit = _observation_value(obj)
        if value is None:
            if obj.get("dataAbsentReason") and kind == "measure":
                return OutOfScope("value absent (dataAbsentReason)")
            continue
        events.append(
            event(
                "measurement",
                pid,
                when.text,
                eid,
                ctx.source,
                extra=extra,
                measure=m.measure,
                value=value,
                unit=_unit(unit or m.unit),
                setting=setting if m.measure in vocab.bp_measures else None,
                period_days=period_days,
                condition=m.condition,
                **common,
            )
        )
    if not events:
        raise Unmappable("missing_value", detail="no numeric value")
    return Mapped(tuple(events))


_UNIT_SYNONYMS = {"mm[hg]": "mmHg", "mmhg": "mmHg"}


def _unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return _UNIT_SYNONYMS.get(str(unit).strip().lower(), str(unit).strip())


MAPPERS: dict[str, Mapper] = {
    "MedicationRequest": map_medication_request,
    "MedicationDispense": map_medication_dispense,
    "MedicationAdministration": map_medication_administration,
    "MedicationStatement": map_medication_statement,
    "Observation": map_observation,
    "Condition": map_condition,
    "Encounter": map_encounter,
    "Patient": map_patient,
}
