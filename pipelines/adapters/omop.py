"""OMOP CDM 5.3 / 5.4 -> canonical events (tables as CSV, Parquet, or a DuckDB database file).

Tables mapped: observation_period (enrolled/disenrolled), visit_occurrence (admitted/discharged
for inpatient-like visit concepts), condition_occurrence (diagnosed), drug_exposure (event type
from drug_type_concept_id, see omop_drug_types.csv), measurement and observation (measures in
loinc_measures.yaml), death (died). Reference tables used when given: cdm_source (the `source`
name), concept (codes, vocabularies, units) and concept_ancestor (drug -> ingredient roll-up).

Drug -> ingredient: with CONCEPT_ANCESTOR, the RxNorm ingredients that are ancestors of the drug
concept (as OHDSI's DRUG_ERA does); else, with CONCEPT, the drug's RxNorm code (concept_code)
through the shipped rxnorm_ingredients.csv; else the ingredient stays empty and the row keeps a
code (NDC from drug_source_value, or the OMOP concept id as a local code). Concept 0 without an
NDC is quarantined (unmapped_drug_code); vaccines (CVX) are out of scope.

The file name is the table name (drug_exposure.csv, DRUG_EXPOSURE.parquet). A DuckDB database file
(.duckdb, .db) contributes its tables (AdapterOptions.omop_schema selects a schema). Rows are
streamed; the concept lookups are limited to the concept ids the clinical tables use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pipelines.adapters.dates import ParsedDate, parse_date
from pipelines.adapters.model import Mapped, Outcome, OutOfScope, SourceRecord, Unmappable, event
from pipelines.adapters.options import AdapterOptions
from pipelines.adapters.sink import ConversionWriter
from pipelines.adapters.tabular import Table, database_tables, is_table_file, iter_rows, table_name
from pipelines.adapters.vocab import Vocabulary
from pipelines.warehouse import sql_literal

MAPPED = (
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "death",
)
REFERENCE = ("cdm_source", "concept", "concept_ancestor")
IGNORED_WHY = {
    "person": "demographics: no events (patients are identified by person_id)",
    "drug_era": "derived table: the pipeline derives its own eras",
    "condition_era": "derived table",
    "dose_era": "derived table",
    "concept_relationship": "not needed: standard concept ids are used",
    "vocabulary": "not needed",
}
DB_SUFFIXES = (".duckdb", ".db", ".ddb")
_NDC = re.compile(r"^\d{11}$|^\d{4,5}-\d{3,4}-\d{1,2}$")
_LOINC = re.compile(r"^\d{1,7}-\d$")
_ICD10 = re.compile(r"^[A-TV-Z]\d[0-9A-Z](\.?[0-9A-Z]{0,4})$")
Row = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Concept:
    vocabulary: str
    concept_class: str
    code: str
    name: str


@dataclass
class OmopContext:
    vocab: Vocabulary
    options: AdapterOptions
    source: str = "omop"
    concepts: dict[str, Concept] = field(default_factory=dict)
    ancestors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # drug -> ingredients
    has_concept: bool = False
    has_ancestor: bool = False


def run(
    paths: Sequence[Path], out: ConversionWriter, vocab: Vocabulary, options: AdapterOptions
) -> tuple[Path, ...]:
    tables = _discover(paths, out, options)
    ctx = OmopContext(vocab, options)
    by_name = {t.name: t for t in tables}
    _load_reference(by_name, ctx, out)
    mappers = {
        "observation_period": map_observation_period,
        "visit_occurrence": map_visit,
        "condition_occurrence": map_condition,
        "drug_exposure": map_drug_exposure,
        "measurement": map_measurement,
        "observation": map_measurement,
        "death": map_death,
    }
    for name in MAPPED:
        t = by_name.get(name)
        if t is None:
            continue
        mapper = mappers[name]
        for row_no, row in iter_rows(t, keys="lower", batch_rows=options.chunk_rows):
            rec = SourceRecord(t.display, row_no, name, row)
            out.map(rec, lambda row=row, mapper=mapper, name=name: mapper(row, ctx, name))
    return tuple(dict.fromkeys(t.path for t in tables))


def _discover(paths: Sequence[Path], out: ConversionWriter, options: AdapterOptions) -> list[Table]:
    candidates: list[Table] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"input not found: {p}")
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.name.lower().endswith(DB_SUFFIXES):
                candidates += database_tables(f, options.omop_schema)
            elif is_table_file(f):
                candidates.append(Table(name=table_name(f), path=f))
            else:
                out.ignore_file(f, "not a CSV/Parquet table or DuckDB database")
    tables = []
    for t in candidates:
        if t.name in MAPPED or t.name in REFERENCE:
            if any(o.name == t.name for o in tables):
                raise ValueError(f"OMOP table {t.name} given twice ({t.display})")
            tables.append(t)
        else:
            out.ignore_file(t.display, IGNORED_WHY.get(t.name, f"OMOP table {t.name} not used"))
    return tables


# -- reference tables ---------------------------------------------------------------------------
def _relation(t: Table, con: duckdb.DuckDBPyConnection, alias: str) -> str:
    path = sql_literal(t.path)
    if t.db_table:
        db = f"db_{abs(hash(str(t.path)))}"
        con.execute(f"ATTACH IF NOT EXISTS {path} AS {db} (READ_ONLY)")
        return f"{db}.{t.db_table} {alias}"
    if t.path.name.lower().endswith(".parquet"):
        return f"(SELECT COLUMNS(*)::VARCHAR FROM read_parquet({path})) {alias}"
    return f"read_csv({path}, all_varchar=true, header=true) {alias}"


def _load_reference(by_name: dict[str, Table], ctx: OmopContext, out: ConversionWriter) -> None:
    con = duckdb.connect()
    try:
        if "cdm_source" in by_name:
            t = by_name["cdm_source"]
            row = con.execute(
                f"SELECT cdm_source_abbreviation, count(*) OVER () FROM {_relation(t, con, 's')} "
                "LIMIT 1"
            ).fetchone()
            abbr = (row[0] or "").strip() if row else ""
            ctx.source = ctx.options.source or (f"omop:{abbr}" if abbr else "omop")
            out.reference_table(t.display, row[1] if row else 0, "source name")
        else:
            ctx.source = ctx.options.source or "omop"
        if "concept" not in by_name:
            return
        used = _used_concepts(by_name, con)
        con.execute("CREATE TEMP TABLE used AS SELECT unnest(?::VARCHAR[]) AS id", [sorted(used)])
        concept = _relation(by_name["concept"], con, "c")
        rows = con.execute(f"""
            SELECT CAST(c.concept_id AS VARCHAR), c.vocabulary_id, c.concept_class_id,
                   c.concept_code, c.concept_name
            FROM {concept} SEMI JOIN used u ON CAST(c.concept_id AS VARCHAR) = u.id
        """).fetchall()
        ctx.concepts = {r[0]: Concept(r[1] or "", r[2] or "", r[3] or "", r[4] or "") for r in rows}
        ctx.has_concept = True
        n = con.execute(f"SELECT count(*) FROM {concept}").fetchone()[0]
        out.reference_table(by_name["concept"].display, n, "codes, vocabularies and units")
        if "concept_ancestor" in by_name:
            ancestor = _relation(by_name["concept_ancestor"], con, "a")
            concept2 = _relation(by_name["concept"], con, "i")
            rows = con.execute(f"""
                SELECT CAST(a.descendant_concept_id AS VARCHAR) AS drug,
                       list(DISTINCT lower(i.concept_name) ORDER BY lower(i.concept_name))
                FROM {ancestor}
                JOIN {concept2} ON CAST(i.concept_id AS VARCHAR) = CAST(a.ancestor_concept_id
                                                                        AS VARCHAR)
                SEMI JOIN used u ON CAST(a.descendant_concept_id AS VARCHAR) = u.id
                WHERE i.concept_class_id = 'Ingredient'
                  AND i.vocabulary_id IN ('RxNorm', 'RxNorm Extension')
                  AND lower(i.concept_name) <> 'inert ingredients'
                GROUP BY ALL
            """).fetchall()
            ctx.ancestors = {r[0]: tuple(r[1]) for r in rows}
            ctx.has_ancestor = True
            n = con.execute(f"SELECT count(*) FROM {ancestor}").fetchone()[0]
            out.reference_table(
                by_name["concept_ancestor"].display, n, "drug -> ingredient roll-up"
            )
    finally:
        con.close()


def _used_concepts(by_name: dict[str, Table], con: duckdb.DuckDBPyConnection) -> set[str]:
    columns = {
        "drug_exposure": ("drug_concept_id",),
        "condition_occurrence": ("condition_concept_id", "condition_source_concept_id"),
        "measurement": ("measurement_concept_id", "unit_concept_id"),
        "observation": ("observation_concept_id", "unit_concept_id"),
    }
    used: set[str] = set()
    for name, cols in columns.items():
        t = by_name.get(name)
        if t is None:
            continue
        rel = _relation(t, con, "x")
        present = {c.lower() for c in con.sql(f"SELECT * FROM {rel} LIMIT 0").columns}
        for col in cols:
            if col in present:
                used |= {
                    r[0]
                    for r in con.execute(
                        f"SELECT DISTINCT CAST({col} AS VARCHAR) FROM {rel} WHERE {col} IS NOT NULL"
                    ).fetchall()
                }
    return used


# -- helpers ------------------------------------------------------------------------------------
def _person(row: Row) -> str:
    pid = (row.get("person_id") or "").strip()
    if not pid:
        raise Unmappable("missing_subject", detail="no person_id")
    return pid


def _date(row: Row, prefix: str, role: str = "start", required: bool = True) -> ParsedDate | None:
    pd = parse_date(row.get(f"{prefix}_datetime"), role) or parse_date(
        row.get(f"{prefix}_date"), role
    )  # type: ignore[arg-type]
    if pd is None and required:
        raise Unmappable("missing_date", detail=f"no {prefix}_date")
    return pd


def _flag(*dates: ParsedDate | None) -> dict[str, Any]:
    imputed = [d.imputed for d in dates if d is not None and d.imputed]
    return {"date_imputed": "month" if "month" in imputed else imputed[0]} if imputed else {}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _id(row: Row, col: str) -> str | None:
    v = (row.get(col) or "").strip()
    return v or None


# -- mappers ------------------------------------------------------------------------------------
def map_observation_period(row: Row, ctx: OmopContext, table: str) -> Outcome:
    pid = _person(row)
    start = _date(row, "observation_period_start")
    end = _date(row, "observation_period_end", "end", required=False)
    oid = _id(row, "observation_period_id")
    eid = f"observation_period/{oid}" if oid else None
    events = [
        event(
            "enrolled",
            pid,
            start.text,
            f"{eid}#enrolled" if eid else None,
            ctx.source,
            extra=_flag(start),
        )
    ]
    if end is not None:
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="observation period end < start")
        events.append(
            event(
                "disenrolled",
                pid,
                end.text,
                f"{eid}#disenrolled" if eid else None,
                ctx.source,
                extra=_flag(end),
            )
        )
    return Mapped(tuple(events))


def map_visit(row: Row, ctx: OmopContext, table: str) -> Outcome:
    concept = (row.get("visit_concept_id") or "").strip()
    setting = ctx.vocab.omop_visit_types.get(concept)
    if setting is None:
        return OutOfScope("visit concept not an inpatient stay (omop_visit_types.csv)")
    pid = _person(row)
    start = _date(row, "visit_start")
    end = _date(row, "visit_end", "end", required=False)
    vid = _id(row, "visit_occurrence_id")
    eid = f"visit_occurrence/{vid}" if vid else None
    events = [
        event(
            "admitted",
            pid,
            start.text,
            f"{eid}#admitted" if eid else None,
            ctx.source,
            extra=_flag(start),
            setting=setting,
        )
    ]
    if end is not None:
        if end.day < start.day:
            raise Unmappable("end_before_start", detail="visit end < start")
        events.append(
            event(
                "discharged",
                pid,
                end.text,
                f"{eid}#discharged" if eid else None,
                ctx.source,
                extra=_flag(end),
                setting=setting,
            )
        )
    return Mapped(tuple(events))


def _source_code_system(code: str) -> str | None:
    """Code system of a condition_source_value when no concept table says it."""
    c = code.strip().upper()
    if _ICD10.match(c):
        return "icd10"
    digits = c.replace(".", "")
    if digits.isdigit():
        return "icd9cm" if len(digits) <= 5 else "snomed"
    if re.match(r"^[VE]\d{2,4}$", digits):
        return "icd9cm"
    return None


def map_condition(row: Row, ctx: OmopContext, table: str) -> Outcome:
    pid = _person(row)
    start = _date(row, "condition_start")
    concept_id = (row.get("condition_concept_id") or "").strip()
    source_value = (row.get("condition_source_value") or "").strip()
    candidates: list[tuple[str, str]] = []  # (system, code), most authoritative first
    for cid in (concept_id, (row.get("condition_source_concept_id") or "").strip()):
        c = ctx.concepts.get(cid)
        if c is not None:
            system = {
                "SNOMED": "snomed",
                "ICD10": "icd10",
                "ICD10CM": "icd10",
                "ICD9CM": "icd9cm",
            }.get(c.vocabulary)
            if system:
                candidates.append((system, c.code))
    if source_value:
        system = _source_code_system(source_value)
        if system:
            candidates.append((system, source_value))
    if not candidates and (not concept_id or concept_id == "0"):
        raise Unmappable("missing_code", detail="condition_concept_id 0 without a usable code")
    hit = next(
        (ctx.vocab.condition_for(s, c) for s, c in candidates if ctx.vocab.condition_for(s, c)),
        None,
    )
    stored = next(((c, s) for s, c in candidates if s in ("snomed", "icd10")), None)
    if stored is None:
        stored = (concept_id, "local")
    cid = _id(row, "condition_occurrence_id")
    return Mapped(
        (
            event(
                "diagnosed",
                pid,
                start.text,
                f"condition_occurrence/{cid}" if cid else None,
                ctx.source,
                extra={
                    **_flag(start),
                    "omop_concept_id": concept_id or None,
                    "condition_source_value": source_value or None,
                    "condition_source_system": candidates[0][0] if candidates else None,
                },
                condition=hit.condition if hit else None,
                subtype=hit.subtype if hit else None,
                condition_code=stored[0],
                condition_system=stored[1],
            ),
        )
    )


@dataclass(frozen=True, slots=True)
class OmopDrug:
    code: str
    system: str
    ingredients: tuple[str, ...]
    how: str  # how the ingredient was resolved


def _drug(row: Row, ctx: OmopContext) -> OmopDrug | OutOfScope:
    concept_id = (row.get("drug_concept_id") or "").strip()
    source_value = (row.get("drug_source_value") or "").strip()
    c = ctx.concepts.get(concept_id)
    if c is not None and c.vocabulary == "CVX":
        return OutOfScope("vaccine (CVX): immunisations are not treatment history")
    if c is not None and c.vocabulary in ("RxNorm", "RxNorm Extension"):
        if concept_id in ctx.ancestors:
            return OmopDrug(c.code, "rxnorm", ctx.ancestors[concept_id], "concept_ancestor")
        if c.concept_class == "Ingredient":
            return OmopDrug(c.code, "rxnorm", (c.name.lower(),), "concept")
        ingredients = ctx.vocab.ingredients(c.code) if c.vocabulary == "RxNorm" else ()
        return OmopDrug(
            c.code, "rxnorm", ingredients, "rxnorm_ingredients.csv" if ingredients else "unmapped"
        )
    if c is not None and c.vocabulary in ("NDC", "ATC"):
        return OmopDrug(c.code, c.vocabulary.lower(), (), "unmapped")
    if source_value and _NDC.match(source_value):
        return OmopDrug(source_value.replace("-", ""), "ndc", (), "unmapped")
    if concept_id and concept_id != "0":
        return OmopDrug(concept_id, "local", (), "unmapped")
    raise Unmappable(
        "unmapped_drug_code",
        detail=f"drug_concept_id {concept_id or 'empty'}, source {source_value!r}",
    )


def map_drug_exposure(row: Row, ctx: OmopContext, table: str) -> Outcome:
    pid = _person(row)
    drug = _drug(row, ctx)
    if isinstance(drug, OutOfScope):
        return drug
    type_id = (row.get("drug_type_concept_id") or "").strip()
    event_type = ctx.vocab.omop_drug_types.get(type_id)
    extra: dict[str, Any] = {
        "omop_concept_id": row.get("drug_concept_id"),
        "drug_source_value": row.get("drug_source_value"),
        "drug_type_concept_id": type_id or None,
        "ingredient_from": drug.how,
    }
    if event_type is None:
        event_type = "prescribed"
        extra["drug_type_unmapped"] = True
    start = _date(row, "drug_exposure_start")
    end = _date(row, "drug_exposure_end", "end", required=False)
    if end is not None and end.day < start.day:
        raise Unmappable("end_before_start", detail="drug_exposure_end_date < start")
    days = _number(row.get("days_supply"))
    days_supply = int(days) if days is not None and days > 0 else None
    if days is not None and days <= 0:
        extra["days_supply_source"] = row.get("days_supply")  # 0 = unknown in OMOP ETLs
    if event_type == "dispensed" and days_supply is None:
        if end is None:
            raise Unmappable("missing_days_supply", detail="no days_supply and no end date")
        # OMOP convention (drug_era): end = start + days_supply
        days_supply = max(1, (end.day - start.day).days)
        extra["days_supply_imputed"] = "end_date"
    route = ctx.vocab.route(row.get("route_source_value")) or ctx.vocab.route(
        f"OMOP:{(row.get('route_concept_id') or '').strip()}"
    )
    did = _id(row, "drug_exposure_id")
    base = f"drug_exposure/{did}" if did else None
    ingredients: tuple[str | None, ...] = drug.ingredients or (None,)
    multi = len(ingredients) > 1
    events = []
    stop_reason_text = (row.get("stop_reason") or "").strip()
    for ing in ingredients:
        eid = f"{base}#{ing}" if base and multi else base
        events.append(
            event(
                event_type,
                pid,
                start.text,
                eid,
                ctx.source,
                extra={**extra, **_flag(start)},
                drug=ing,
                drug_code=drug.code,
                drug_system=drug.system,
                days_supply=days_supply,
                quantity=_number(row.get("quantity")),
                route=route,
                condition=ctx.options.default_condition,
            )
        )
        if stop_reason_text and end is not None:
            reason = ctx.vocab.stop_reason(stop_reason_text)
            events.append(
                event(
                    "stopped",
                    pid,
                    end.text,
                    f"{eid}#stopped" if eid else None,
                    ctx.source,
                    extra={
                        **_flag(end),
                        "reason_source": stop_reason_text,
                        "reason_unmapped": True if not reason else None,
                    },
                    drug=ing,
                    drug_code=drug.code,
                    drug_system=drug.system,
                    reason=reason or "unknown",
                    condition=ctx.options.default_condition,
                )
            )
    return Mapped(tuple(events))


def map_measurement(row: Row, ctx: OmopContext, table: str) -> Outcome:
    concept_id = (row.get(f"{table}_concept_id") or "").strip()
    source_value = (row.get(f"{table}_source_value") or "").strip()
    c = ctx.concepts.get(concept_id)
    measure = None
    if c is not None and c.vocabulary == "LOINC":
        measure = ctx.vocab.measure_for("loinc", c.code)
    measure = measure or ctx.vocab.measures_by_omop.get(concept_id)
    if measure is None and _LOINC.match(source_value):
        measure = ctx.vocab.measure_for("loinc", source_value)
    if measure is None:
        return OutOfScope(f"{table} concept not in loinc_measures.yaml")
    pid = _person(row)
    when = _date(row, f"{table}")
    value = _number(row.get("value_as_number"))
    if value is None:
        raise Unmappable("missing_value", detail="value_as_number empty")
    unit = (row.get("unit_source_value") or "").strip() or None
    if unit is None:
        uc = ctx.concepts.get((row.get("unit_concept_id") or "").strip())
        unit = uc.code if uc is not None else measure.unit
    if unit and unit.lower() in ("mm[hg]", "mmhg"):
        unit = "mmHg"
    setting = (
        "office"
        if _id(row, "visit_occurrence_id") and measure.measure in ctx.vocab.bp_measures
        else None
    )
    mid = _id(row, f"{table}_id")
    return Mapped(
        (
            event(
                "measurement",
                pid,
                when.text,
                f"{table}/{mid}" if mid else None,
                ctx.source,
                extra={**_flag(when), "omop_concept_id": concept_id or None},
                measure=measure.measure,
                value=value,
                unit=unit,
                setting=setting,
                condition=measure.condition,
            ),
        )
    )


def map_death(row: Row, ctx: OmopContext, table: str) -> Outcome:
    pid = _person(row)
    when = _date(row, "death")
    return Mapped((event("died", pid, when.text, f"death/{pid}", ctx.source, extra=_flag(when)),))
