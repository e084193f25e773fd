"""CDISC SDTM -> canonical events (CSV, Parquet or SAS XPORT datasets).

Domains used (others are listed in the report as ignored):
  DM  enrolled (RFICDTC, else RFSTDTC), disenrolled (RFPENDTC, else RFENDTC), died (DTHDTC)
  EX  daily-frequency exposure with an end date -> dispensed (days' supply = EXSTDTC..EXENDTC,
      daily dose = EXDOSE x doses per day); without an end date -> started; other frequencies
      (ONCE, Q3W, ...) -> administered; a new daily dose for the same treatment -> dose_changed.
      Placebo records are out of scope (no active ingredient).
  DS  disposition events -> stopped, one per active treatment of the subject, reason from
      schemas/mappings/stop_reasons.csv (DSDECOD)
  RS  overall response (RSTESTCD = OVRLRESP) of one evaluator (default INVESTIGATOR, as ADaM ADRS)
      -> response_assessed; criteria from RSCAT (RECIST 1.1, iRECIST mapped onto RECIST 1.1)
  TR  sum of diameters (TRTESTCD = SUMDIAM) -> measurement sum_of_diameters
The domain of a file is the prefix of its name before the first underscore (ex.xpt, rs_onco.csv).
SDTM datasets are read whole per domain (they are per study and small); DM and EX are read before
DS because a disposition stops the subject's treatments found in EX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.adapters.dates import ParsedDate, parse_date
from pipelines.adapters.model import Mapped, Outcome, OutOfScope, SourceRecord, Unmappable, event
from pipelines.adapters.options import AdapterOptions
from pipelines.adapters.sink import ConversionWriter
from pipelines.adapters.tabular import Table, is_table_file, iter_rows, table_name
from pipelines.adapters.vocab import Vocabulary

DOMAINS = ("DM", "EX", "DS", "RS", "TR")
IGNORED_WHY = {
    "TU": "tumour identification: lesions are not events (TR carries the measurements)",
    "CM": "concomitant medications are not study treatment (CMDECOD often uncoded)",
}
# EXDOSFRQ -> administrations per day for continuous (daily) dosing
DAILY_FREQUENCY = {
    "QD": 1.0,
    "BID": 2.0,
    "TID": 3.0,
    "QID": 4.0,
    "Q24H": 1.0,
    "Q12H": 2.0,
    "Q8H": 3.0,
    "Q6H": 4.0,
    "QOD": 0.5,
    "QAM": 1.0,
    "QPM": 1.0,
    "QHS": 1.0,
}
CRITERIA = {
    "RECIST 1.1": "recist_1_1",
    "RECIST": "recist_1_1",
    "IRECIST": "recist_1_1",
    "LUGANO": "lugano_2014",
    "LUGANO 2014": "lugano_2014",
    "IMWG": "imwg",
    "IWCLL": "iwcll",
    "IWCLL 2018": "iwcll",
}
Row = dict[str, str | None]


@dataclass
class SubjectTreatment:
    drugs: list[str] = field(default_factory=list)  # active treatments in EX, first-seen order
    last_dose: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SdtmContext:
    vocab: Vocabulary
    options: AdapterOptions
    treatments: dict[str, SubjectTreatment] = field(default_factory=dict)

    def source(self, row: Row) -> str:
        if self.options.source:
            return self.options.source
        study = (row.get("STUDYID") or "").strip()
        return f"sdtm:{study}" if study else "sdtm"


def run(
    paths: Sequence[Path], out: ConversionWriter, vocab: Vocabulary, options: AdapterOptions
) -> tuple[Path, ...]:
    tables = _discover(paths, out)
    ctx = SdtmContext(vocab, options)
    per_domain: dict[str, int] = {}
    for domain, t in tables:
        per_domain[domain] = per_domain.get(domain, 0) + 1
        rows = list(iter_rows(t, keys="upper", batch_rows=options.chunk_rows))
        if domain == "EX":  # dose changes need each subject's records in time order
            rows.sort(
                key=lambda r: (
                    r[1].get("USUBJID") or "",
                    _drug_name(r[1]),
                    r[1].get("EXSTDTC") or "",
                    _seq(r[1].get("EXSEQ")),
                )
            )
        mapper = MAPPERS[domain]
        for row_no, row in rows:
            rec = SourceRecord(t.display, row_no, domain, row)
            out.map(rec, lambda row=row, mapper=mapper: mapper(row, ctx))
    for domain, n in per_domain.items():
        if n > 1:
            out.notes.append(
                f"{n} {domain} datasets were given: their event ids ({domain} + --SEQ) are unique "
                "only within one dataset, so alternative versions of a domain belong in separate "
                "conversions"
            )
    return tuple(t.path for _, t in tables)


def _discover(paths: Sequence[Path], out: ConversionWriter) -> list[tuple[str, Table]]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += [f for f in sorted(p.iterdir()) if f.is_file()]
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    found = []
    for f in files:
        if not is_table_file(f):
            out.ignore_file(f, "not a CSV/Parquet/XPT dataset")
            continue
        domain = table_name(f).split("_")[0].upper()
        if domain in DOMAINS:
            found.append((domain, Table(name=domain.lower(), path=f)))
        else:
            out.ignore_file(f, IGNORED_WHY.get(domain, f"SDTM domain {domain} not used"))
    return sorted(found, key=lambda dt: (DOMAINS.index(dt[0]), str(dt[1].path)))


def _seq(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def _subject(row: Row) -> str:
    sid = (row.get("USUBJID") or "").strip()
    if not sid:
        raise Unmappable("missing_subject", detail="no USUBJID")
    return sid


def _event_id(row: Row, domain: str, seq_col: str) -> str:
    seq = (row.get(seq_col) or "").strip()
    seq = seq[:-2] if seq.endswith(".0") else seq
    return f"{row.get('USUBJID')}/{domain}/{seq}"


def _flag(*dates: ParsedDate | None) -> dict[str, Any]:
    imputed = [d.imputed for d in dates if d is not None and d.imputed]
    return {"date_imputed": "month" if "month" in imputed else imputed[0]} if imputed else {}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _drug_name(row: Row) -> str:
    return " ".join((row.get("EXTRT") or "").lower().split())


# -- DM -----------------------------------------------------------------------------------------
def map_dm(row: Row, ctx: SdtmContext) -> Outcome:
    sid = _subject(row)
    source = ctx.source(row)
    start = parse_date(row.get("RFICDTC")) or parse_date(row.get("RFSTDTC"))
    end = parse_date(row.get("RFPENDTC"), "end") or parse_date(row.get("RFENDTC"), "end")
    death = parse_date(row.get("DTHDTC"))
    if death is None and (row.get("DTHFL") or "").strip().upper() == "Y":
        raise Unmappable("missing_date", detail="DTHFL = Y without DTHDTC")
    events = []
    if start is not None:
        events.append(
            event("enrolled", sid, start.text, f"{sid}/DM#enrolled", source, extra=_flag(start))
        )
        if end is not None:
            if end.day < start.day:
                raise Unmappable("end_before_start", detail="end of participation < start")
            events.append(
                event(
                    "disenrolled", sid, end.text, f"{sid}/DM#disenrolled", source, extra=_flag(end)
                )
            )
    if death is not None:
        events.append(event("died", sid, death.text, f"{sid}/DM#died", source, extra=_flag(death)))
    if not events:
        return OutOfScope("no reference dates (screen failure or never treated)")
    return Mapped(tuple(events))


# -- EX -----------------------------------------------------------------------------------------
def map_ex(row: Row, ctx: SdtmContext) -> Outcome:
    sid = _subject(row)
    drug = _drug_name(row)
    if not drug:
        raise Unmappable("missing_code", detail="no EXTRT")
    if "placebo" in drug:
        return OutOfScope("placebo (no active ingredient)")
    start = parse_date(row.get("EXSTDTC"))
    if start is None:
        raise Unmappable("missing_date", detail="no EXSTDTC")
    end = parse_date(row.get("EXENDTC"), "end")
    if end is not None and end.day < start.day:
        raise Unmappable("end_before_start", detail="EXENDTC < EXSTDTC")
    dose = _number(row.get("EXDOSE"))
    unit = (row.get("EXDOSU") or "").strip().lower() or None
    freq = (row.get("EXDOSFRQ") or "").strip().upper()
    per_day = DAILY_FREQUENCY.get(freq)
    source = ctx.source(row)
    eid = _event_id(row, "EX", "EXSEQ")
    common = {
        "drug": drug,
        "dose_unit": unit,
        "route": ctx.vocab.route(row.get("EXROUTE")),
        "condition": ctx.options.default_condition,
    }
    extra = {**_flag(start, end), "exdosfrq": freq or None, "visit": row.get("VISIT")}
    events = []
    treatment = ctx.treatments.setdefault(sid, SubjectTreatment())
    if per_day is None:  # single or cyclic administrations
        events.append(
            event("administered", sid, start.text, eid, source, extra=extra, dose=dose, **common)
        )
    else:
        daily = dose * per_day if dose is not None else None
        previous = treatment.last_dose.get(drug)
        if drug in treatment.last_dose and daily is not None and previous != daily:
            events.append(
                event(
                    "dose_changed",
                    sid,
                    start.text,
                    f"{eid}#dose_changed",
                    source,
                    extra={**extra, "previous_dose": previous},
                    dose=daily,
                    **common,
                )
            )
        if end is not None:
            days = (end.day - start.day).days + 1  # SDTM end dates are inclusive
            events.append(
                event(
                    "dispensed",
                    sid,
                    start.text,
                    eid,
                    source,
                    extra={**extra, "days_supply_imputed": "exposure_interval"},
                    dose=daily,
                    days_supply=days,
                    **common,
                )
            )
        else:
            events.append(
                event(
                    "started",
                    sid,
                    start.text,
                    eid,
                    source,
                    extra={**extra, "open_ended_exposure": True},
                    dose=daily,
                    **common,
                )
            )
        treatment.last_dose[drug] = daily
    if drug not in treatment.drugs:
        treatment.drugs.append(drug)
    treatment.last_dose.setdefault(drug, None)
    return Mapped(tuple(events))


# -- DS -----------------------------------------------------------------------------------------
def map_ds(row: Row, ctx: SdtmContext) -> Outcome:
    category = (row.get("DSCAT") or "DISPOSITION EVENT").strip().upper()
    if category != "DISPOSITION EVENT":
        return OutOfScope(f"DS category {category} (not a disposition event)")
    decod = " ".join((row.get("DSDECOD") or "").upper().split())
    if decod == "SCREEN FAILURE" or (row.get("EPOCH") or "").strip().upper() == "SCREENING":
        return OutOfScope("screen failure / screening disposition (never treated)")
    sid = _subject(row)
    treatment = ctx.treatments.get(sid)
    if treatment is None or not treatment.drugs:
        return OutOfScope("no active treatment in EX (placebo or never dosed)")
    when = parse_date(row.get("DSSTDTC") or row.get("DSDTC"), "end")
    if when is None:
        raise Unmappable("missing_date", detail="no DSSTDTC")
    reason = ctx.vocab.stop_reason(decod)
    extra = {
        **_flag(when),
        "dsdecod": decod or None,
        "dsterm": row.get("DSTERM"),
        "reason_unmapped": True if not reason else None,
    }
    eid = _event_id(row, "DS", "DSSEQ")
    multi = len(treatment.drugs) > 1
    events = [
        event(
            "stopped",
            sid,
            when.text,
            f"{eid}#{drug}" if multi else eid,
            ctx.source(row),
            extra=extra,
            drug=drug,
            reason=reason or "unknown",
            condition=ctx.options.default_condition,
        )
        for drug in treatment.drugs
    ]
    return Mapped(tuple(events))


# -- RS / TR ------------------------------------------------------------------------------------
def _evaluator_filter(row: Row, column: str, ctx: SdtmContext) -> OutOfScope | None:
    wanted = ctx.options.sdtm_rs_evaluator
    evaluator = (row.get(column) or "").strip().upper()
    if wanted and evaluator and evaluator != wanted.upper():
        return OutOfScope(f"evaluator {evaluator} (kept: {wanted.upper()})")
    return None


def map_rs(row: Row, ctx: SdtmContext) -> Outcome:
    test = (row.get("RSTESTCD") or "").strip().upper()
    if test != "OVRLRESP":
        return OutOfScope(f"RS {test or 'without RSTESTCD'}: not an overall response")
    skip = _evaluator_filter(row, "RSEVAL", ctx)
    if skip:
        return skip
    value = (row.get("RSSTRESC") or row.get("RSORRES") or "").strip()
    if not value or (row.get("RSSTAT") or "").strip().upper() == "NOT DONE":
        return OutOfScope("assessment not done")
    sid = _subject(row)
    category = " ".join((row.get("RSCAT") or "").upper().split())
    extra: dict[str, Any] = {}
    if category:
        criteria = CRITERIA.get(category)
        if criteria is None:
            raise Unmappable("unknown_response_code", detail=f"criteria RSCAT={category}")
        if category == "IRECIST":
            extra["criteria_source"] = "iRECIST"
    else:
        criteria = ctx.options.sdtm_default_criteria
        extra["criteria_assumed"] = True
    hit = ctx.vocab.response_for(value)
    if hit is None:
        raise Unmappable("unknown_response_code", detail=f"{value!r}")
    when = parse_date(row.get("RSDTC"))
    if when is None:
        raise Unmappable("missing_date", detail="no RSDTC")
    extra.update(
        _flag(when), response_source=hit.flag, rseval=row.get("RSEVAL"), visit=row.get("VISIT")
    )
    return Mapped(
        (
            event(
                "response_assessed",
                sid,
                when.text,
                _event_id(row, "RS", "RSSEQ"),
                ctx.source(row),
                extra=extra,
                criteria=criteria,
                response=hit.response,
                condition=ctx.options.default_condition,
            ),
        )
    )


def map_tr(row: Row, ctx: SdtmContext) -> Outcome:
    test = (row.get("TRTESTCD") or "").strip().upper()
    if test != "SUMDIAM":
        return OutOfScope(f"TR {test or 'without TRTESTCD'}: lesion-level result (SUMDIAM is used)")
    skip = _evaluator_filter(row, "TREVAL", ctx)
    if skip:
        return skip
    sid = _subject(row)
    value = _number(row.get("TRSTRESN"))
    if value is None:
        value = _number(row.get("TRORRES"))
    if value is None:
        raise Unmappable("missing_value", detail="no TRSTRESN")
    when = parse_date(row.get("TRDTC"))
    if when is None:
        raise Unmappable("missing_date", detail="no TRDTC")
    unit = row.get("TRSTRESU") or row.get("TRORRESU") or "mm"
    return Mapped(
        (
            event(
                "measurement",
                sid,
                when.text,
                _event_id(row, "TR", "TRSEQ"),
                ctx.source(row),
                extra={**_flag(when), "treval": row.get("TREVAL"), "visit": row.get("VISIT")},
                measure="sum_of_diameters",
                value=value,
                unit=unit,
                condition=ctx.options.default_condition,
            ),
        )
    )


MAPPERS = {"DM": map_dm, "EX": map_ex, "DS": map_ds, "RS": map_rs, "TR": map_tr}
