"""Synthea CSV export -> canonical events.

Files used (others are listed in the report as ignored): patients, encounters, conditions,
medications, observations (CSV, CSV.gz or Parquet with the same columns).

  medications   START -> started; STOP -> stopped (reason unknown); DISPENSES fills spread evenly
                over START..STOP -> dispensed with an imputed days' supply (flagged); an ongoing
                medication (no STOP) gives `started` only: its fills cannot be placed
  conditions    START -> diagnosed (SNOMED CT; condition id from condition_codes.csv)
  encounters    inpatient / snf / hospice classes -> admitted (START) + discharged (STOP)
  patients      DEATHDATE -> died
  observations  LOINC codes listed in loinc_measures.yaml -> measurement
Synthea has no record ids for medications, conditions and observations; event ids are built from
the natural key (patient, start, code, encounter; STOP too for stop and fill events), so
re-exports of the same data give the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipelines.adapters.dates import ParsedDate, parse_date
from pipelines.adapters.model import Mapped, Outcome, OutOfScope, SourceRecord, Unmappable, event
from pipelines.adapters.options import AdapterOptions
from pipelines.adapters.sink import ConversionWriter
from pipelines.adapters.tabular import Table, is_table_file, iter_rows, table_name
from pipelines.adapters.vocab import Vocabulary

FILES = ("patients", "encounters", "conditions", "medications", "observations")
SETTINGS = {"inpatient": "inpatient", "snf": "snf", "hospice": "hospice"}
Row = dict[str, str | None]


def run(
    paths: Sequence[Path], out: ConversionWriter, vocab: Vocabulary, options: AdapterOptions
) -> tuple[Path, ...]:
    tables = _discover(paths, out)
    source = options.source or "synthea"
    mappers = {
        "patients": _patient,
        "encounters": _encounter,
        "conditions": _condition,
        "medications": _medication,
        "observations": _observation,
    }
    for t in tables:
        mapper = mappers[t.name]
        for row_no, row in iter_rows(t, keys="upper", batch_rows=options.chunk_rows):
            rec = SourceRecord(t.display, row_no, t.name, row)
            out.map(rec, lambda row=row, mapper=mapper: mapper(row, vocab, options, source))
    return tuple(t.path for t in tables)


def _discover(paths: Sequence[Path], out: ConversionWriter) -> list[Table]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += [f for f in sorted(p.iterdir()) if f.is_file()]
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    tables = []
    for f in files:
        name = table_name(f)
        if not is_table_file(f):
            out.ignore_file(f, "not a CSV/Parquet table")
        elif name not in FILES:
            out.ignore_file(f, f"Synthea file {name} not used by the pipeline")
        else:
            tables.append(Table(name=name, path=f))
    return sorted(tables, key=lambda t: (FILES.index(t.name), str(t.path)))


def _pid(row: Row) -> str:
    pid = (row.get("PATIENT") or "").strip()
    if not pid:
        raise Unmappable("missing_subject")
    return pid


def _date(value: str | None, what: str, role: str = "start") -> ParsedDate:
    pd = parse_date(value, role)  # type: ignore[arg-type]
    if pd is None:
        raise Unmappable("missing_date", detail=f"no {what}")
    return pd


def _flag(*dates: ParsedDate | None) -> dict[str, Any]:
    imputed = [d.imputed for d in dates if d is not None and d.imputed]
    return {"date_imputed": "month" if "month" in imputed else imputed[0]} if imputed else {}


def _patient(row: Row, vocab: Vocabulary, options: AdapterOptions, source: str) -> Outcome:
    pid = (row.get("ID") or "").strip()
    if not pid:
        raise Unmappable("missing_subject", detail="patients row without Id")
    death = parse_date(row.get("DEATHDATE"))
    if death is None:
        return OutOfScope("patient not recorded as deceased")
    return Mapped(
        (event("died", pid, death.text, f"patients/{pid}#died", source, extra=_flag(death)),)
    )


def _encounter(row: Row, vocab: Vocabulary, options: AdapterOptions, source: str) -> Outcome:
    klass = (row.get("ENCOUNTERCLASS") or "").strip().lower()
    setting = SETTINGS.get(klass)
    if setting is None:
        return OutOfScope(f"encounter class {klass or 'missing'} is not an inpatient stay")
    pid = _pid(row)
    start = _date(row.get("START"), "START")
    end = parse_date(row.get("STOP"), "end")
    eid = f"encounters/{row.get('ID')}" if row.get("ID") else None
    events = [
        event(
            "admitted",
            pid,
            start.text,
            f"{eid}#admitted" if eid else None,
            source,
            extra=_flag(start),
            setting=setting,
        )
    ]
    if end is not None:
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="STOP < START")
        events.append(
            event(
                "discharged",
                pid,
                end.text,
                f"{eid}#discharged" if eid else None,
                source,
                extra=_flag(end),
                setting=setting,
            )
        )
    return Mapped(tuple(events))


def _condition(row: Row, vocab: Vocabulary, options: AdapterOptions, source: str) -> Outcome:
    pid = _pid(row)
    code = (row.get("CODE") or "").strip()
    if not code:
        raise Unmappable("missing_code", detail="condition without CODE")
    system_text = (row.get("SYSTEM") or "SNOMED-CT").strip().upper()
    if "SNOMED" in system_text:
        system = "snomed"
    elif "ICD-10" in system_text or "ICD10" in system_text:
        system = "icd10"
    else:
        raise Unmappable("unknown_code_system", detail=f"SYSTEM {system_text}")
    start = _date(row.get("START"), "START")
    hit = vocab.condition_for(system, code)
    eid = f"conditions/{pid}/{start.text}/{code}"
    return Mapped(
        (
            event(
                "diagnosed",
                pid,
                start.text,
                eid,
                source,
                extra={
                    **_flag(start),
                    "condition_display": row.get("DESCRIPTION"),
                    "encounter": row.get("ENCOUNTER"),
                },
                condition=hit.condition if hit else None,
                subtype=hit.subtype if hit else None,
                condition_code=code,
                condition_system=system,
            ),
        )
    )


def _medication(row: Row, vocab: Vocabulary, options: AdapterOptions, source: str) -> Outcome:
    pid = _pid(row)
    code = (row.get("CODE") or "").strip()
    if not code:
        raise Unmappable("missing_code", detail="medication without CODE")
    start = _date(row.get("START"), "START")
    stop = parse_date(row.get("STOP"), "end")
    if stop is not None and stop.day < start.day:
        raise Unmappable("end_before_start", detail="STOP < START")
    ingredients: tuple[str | None, ...] = vocab.ingredients(code) or (None,)
    reason = vocab.condition_for("snomed", row.get("REASONCODE"))
    condition = reason.condition if reason else options.default_condition
    base = f"medications/{pid}/{start.text}/{code}/{row.get('ENCOUNTER') or ''}"
    common_extra: dict[str, Any] = {"drug_display": row.get("DESCRIPTION")}
    if ingredients == (None,):
        common_extra["drug_unmapped"] = True
    multi = len(ingredients) > 1

    def eid(kind: str, ing: str | None) -> str:
        # Two rows may share patient, start, code and encounter but differ in STOP (seen in the
        # external data): their identical `started` events share an id (ingest: duplicate),
        # while stop and fills carry STOP in the id so the rows do not conflict.
        key = base if kind == "started" else f"{base}/{stop.text if stop else ''}"
        return f"{key}#{kind}" + (f"#{ing}" if multi else "")

    def drug_event(
        kind: str, when: str, ing: str | None, extra: dict[str, Any], **cols: Any
    ) -> dict[str, Any]:
        return event(
            kind,
            pid,
            when,
            eid(cols.pop("id_kind", kind), ing),
            source,
            extra={**common_extra, **extra},
            drug=ing,
            drug_code=code,
            drug_system="rxnorm",
            condition=condition,
            **cols,
        )

    events = []
    for ing in ingredients:
        events.append(drug_event("started", start.text, ing, _flag(start)))
        if stop is not None:
            events.append(drug_event("stopped", stop.text, ing, _flag(stop)))
    fills = _fills(row, start, stop) if options.synthea_expand_dispenses else []
    for k, (fill_day, days, n) in enumerate(fills, start=1):
        for ing in ingredients:
            events.append(
                drug_event(
                    "dispensed",
                    fill_day.isoformat(),
                    ing,
                    {
                        "days_supply_imputed": "synthea_duration/dispenses",
                        "fill": k,
                        "fills": n,
                        "dispenses": row.get("DISPENSES"),
                    },
                    days_supply=days,
                    id_kind=f"dispensed/{k}",
                )
            )
    if stop is None and row.get("DISPENSES"):
        for ev in events:
            ev["_extra"]["dispenses_not_expanded"] = "ongoing (no STOP)"
    return Mapped(tuple(events))


def _fills(row: Row, start: ParsedDate, stop: ParsedDate | None) -> list[tuple[Any, int, int]]:
    """DISPENSES fills tiling START..STOP: (fill date, days' supply, number of fills).

    Fill k (0-based) of n starts on START + round(k * D / n) with D = STOP - START in days
    (at least 1), so the supplies tile the period exactly; when n > D, fills that would cover
    zero days are merged into their neighbours (fewer, 1-day fills).
    """
    if stop is None:
        return []
    try:
        n = int(float(row.get("DISPENSES") or 0))
    except ValueError:
        return []
    if n <= 0:
        return []
    duration = max(1, (stop.day - start.day).days)
    bounds = sorted({round(k * duration / n) for k in range(n + 1)})
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        out.append((start.day + timedelta(days=a), b - a))
    return [(d, days, len(out)) for d, days in out]


def _observation(row: Row, vocab: Vocabulary, options: AdapterOptions, source: str) -> Outcome:
    code = (row.get("CODE") or "").strip()
    if not code:
        raise Unmappable("missing_code", detail="observation without CODE")
    m = vocab.measure_for("loinc", code)
    if m is None:
        return OutOfScope("observation code not in loinc_measures.yaml")
    pid = _pid(row)
    when = _date(row.get("DATE"), "DATE")
    try:
        value = float(row.get("VALUE") or "")
    except ValueError:
        raise Unmappable("missing_value", detail=f"VALUE {row.get('VALUE')!r}") from None
    setting = "office" if row.get("ENCOUNTER") and m.measure in vocab.bp_measures else None
    unit = row.get("UNITS") or m.unit
    unit = "mmHg" if unit and unit.strip().lower() == "mm[hg]" else unit
    eid = f"observations/{pid}/{when.text}/{code}"
    return Mapped(
        (
            event(
                "measurement",
                pid,
                when.text,
                eid,
                source,
                extra={**_flag(when), "loinc": code, "encounter": row.get("ENCOUNTER")},
                measure=m.measure,
                value=value,
                unit=unit,
                setting=setting,
                condition=m.condition,
            ),
        )
    )
