"""The shipped mapping tables (schemas/mappings/) loaded into lookups.

Users extend them without editing the shipped files: a directory passed in
``AdapterOptions.mappings_dirs`` may hold files with the same names; their rows are read after
the shipped ones. For RxNorm a code listed in a user file replaces the shipped ingredient list of
that code; for one-value tables (reasons, routes, types) the later row wins; condition codes,
measures and response terms are added (later rows win on the same key).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "mappings"

# Measures that imply the condition whose rule pack reads them (the `condition` of a measurement).
_MEASURE_CONDITION = {
    "sbp": "hypertension",
    "dbp": "hypertension",
    "phq9": "depression",
    "madrs": "depression",
    "hamd17": "depression",
    "seizure_count": "epilepsy",
    "sledai2k": "sle",
    "serum_m_protein": "multiple_myeloma",
    "urine_m_protein": "multiple_myeloma",
}
CANONICAL_MEASURES = (
    "seizure_count",
    "phq9",
    "madrs",
    "hamd17",
    "sbp",
    "dbp",
    "sledai2k",
    "serum_m_protein",
    "urine_m_protein",
    "sum_of_diameters",
)


@dataclass(frozen=True, slots=True)
class ConditionCode:
    condition: str
    subtype: str | None


@dataclass(frozen=True, slots=True)
class MeasureCode:
    measure: str
    unit: str | None
    condition: str | None


@dataclass(frozen=True, slots=True)
class Panel:
    components: tuple[str, ...]  # LOINC codes of component measures


@dataclass(frozen=True, slots=True)
class ResponseCode:
    response: str
    flag: str | None  # original category kept in _extra when the mapping collapses it


@dataclass(frozen=True)
class Vocabulary:
    rxnorm: dict[str, tuple[str, ...]]
    code_systems: dict[str, str]
    condition_exact: dict[tuple[str, str], ConditionCode]
    condition_prefix: dict[str, tuple[tuple[str, ConditionCode], ...]]
    measures: dict[tuple[str, str], MeasureCode]
    measures_by_omop: dict[str, MeasureCode]
    panels: dict[tuple[str, str], Panel]
    panels_by_omop: dict[str, tuple[str, str]]
    response_observations: frozenset[tuple[str, str]]
    responses: dict[str, ResponseCode]
    stop_reasons: dict[str, str]
    routes: dict[str, str]
    omop_drug_types: dict[str, str]
    omop_visit_types: dict[str, str]
    bp_measures: frozenset[str]

    # -- lookups -------------------------------------------------------------------------------
    def ingredients(self, rxcui: str | None) -> tuple[str, ...]:
        return self.rxnorm.get(str(rxcui).strip(), ()) if rxcui else ()

    def system_of(self, uri: str | None) -> str | None:
        return self.code_systems.get(uri.strip()) if uri else None

    def condition_for(self, system: str | None, code: str | None) -> ConditionCode | None:
        if not system or not code:
            return None
        key = code.strip().upper().replace(".", "")
        hit = self.condition_exact.get((system, key))
        if hit:
            return hit
        for prefix, cc in self.condition_prefix.get(system, ()):
            if key.startswith(prefix):
                return cc
        return None

    def measure_for(self, system: str | None, code: str | None) -> MeasureCode | None:
        if not system or not code:
            return None
        return self.measures.get((system, code.strip()))

    def response_for(self, term: object) -> ResponseCode | None:
        return self.responses.get(_key(term)) if term else None

    def stop_reason(self, term: object) -> str | None:
        return self.stop_reasons.get(_key(term)) if term else None

    def route(self, term: object) -> str | None:
        return self.routes.get(_key(term)) if term else None


def _key(term: object) -> str:
    return " ".join(str(term).upper().split())


def load_vocabulary(extra_dirs: tuple[Path, ...] = ()) -> Vocabulary:
    return _load(tuple(Path(d).resolve() for d in extra_dirs))


@cache
def _load(extra_dirs: tuple[Path, ...]) -> Vocabulary:
    dirs = (MAPPINGS_DIR, *extra_dirs)

    rxnorm: dict[str, list[str]] = {}
    for d in dirs:
        seen_here: set[str] = set()
        for row in _csv_rows(d / "rxnorm_ingredients.csv"):
            code, ing = row["rxcui"].strip(), row["ingredient"].strip().lower()
            if code not in seen_here:  # a user file replaces the shipped list of that code
                rxnorm[code] = []
                seen_here.add(code)
            if ing not in rxnorm[code]:
                rxnorm[code].append(ing)

    code_systems = _kv(dirs, "code_systems.csv", "uri", "system", key_upper=False)

    exact: dict[tuple[str, str], ConditionCode] = {}
    prefix: dict[str, dict[str, ConditionCode]] = {}
    for d in dirs:
        for row in _csv_rows(d / "condition_codes.csv"):
            system = row["system"].strip().lower()
            code = row["code"].strip().upper().replace(".", "")
            cc = ConditionCode(row["condition"].strip().lower(), row["subtype"].strip() or None)
            if row["match"].strip() == "prefix":
                prefix.setdefault(system, {})[code] = cc
            else:
                exact[(system, code)] = cc
    condition_prefix = {
        s: tuple(sorted(p.items(), key=lambda kv: -len(kv[0]))) for s, p in prefix.items()
    }

    measures: dict[tuple[str, str], MeasureCode] = {}
    measures_by_omop: dict[str, MeasureCode] = {}
    panels: dict[tuple[str, str], Panel] = {}
    panels_by_omop: dict[str, tuple[str, str]] = {}
    responses_obs: set[tuple[str, str]] = set()
    bp: set[str] = set()
    for m in CANONICAL_MEASURES:
        measures[("txh", m)] = MeasureCode(m, None, _MEASURE_CONDITION.get(m))
    for d in dirs:
        path = d / "loinc_measures.yaml"
        if not path.exists():
            continue
        spec = yaml.safe_load(path.read_text()) or {}
        for m in spec.get("measures", []):
            mc = MeasureCode(
                str(m["measure"]).lower(),
                m.get("unit"),
                m.get("condition", _MEASURE_CONDITION.get(str(m["measure"]).lower())),
            )
            measures[(m["system"], str(m["code"]))] = mc
            if m.get("omop_concept_id"):
                measures_by_omop[str(m["omop_concept_id"])] = mc
        for p in spec.get("panels", []):
            key = (p["system"], str(p["code"]))
            panels[key] = Panel(tuple(str(c) for c in p["components"]))
            if p.get("omop_concept_id"):
                panels_by_omop[str(p["omop_concept_id"])] = key
        for r in spec.get("responses", []):
            responses_obs.add((r["system"], str(r["code"])))
        bp.update(spec.get("bp_measures", []))

    responses = {
        row["term"].strip().upper(): ResponseCode(
            row["response"].strip().lower(), row["flag"].strip() or None
        )
        for d in dirs
        for row in _csv_rows(d / "response_codes.csv")
    }
    stop_reasons = _kv(dirs, "stop_reasons.csv", "term", "reason")
    routes = _kv(dirs, "routes.csv", "term", "route")
    omop_drug_types = _kv(dirs, "omop_drug_types.csv", "concept_id", "event_type")
    omop_visit_types = _kv(dirs, "omop_visit_types.csv", "concept_id", "setting")
    return Vocabulary(
        rxnorm={k: tuple(v) for k, v in rxnorm.items()},
        code_systems=code_systems,
        condition_exact=exact,
        condition_prefix=condition_prefix,
        measures=measures,
        measures_by_omop=measures_by_omop,
        panels=panels,
        panels_by_omop=panels_by_omop,
        response_observations=frozenset(responses_obs),
        responses=responses,
        stop_reasons=stop_reasons,
        routes=routes,
        omop_drug_types=omop_drug_types,
        omop_visit_types=omop_visit_types,
        bp_measures=frozenset(bp),
    )


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a mapping CSV; lines starting with '#' are comments."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        lines = (line for line in f if not line.lstrip().startswith("#"))
        for row in csv.DictReader(lines):
            yield {k: (v or "") for k, v in row.items()}


def _kv(
    dirs: tuple[Path, ...], name: str, key: str, value: str, *, key_upper: bool = True
) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in dirs:
        for row in _csv_rows(d / name):
            k = " ".join(row[key].split())
            out[k.upper() if key_upper else k] = row[value].strip().lower()
    return out
