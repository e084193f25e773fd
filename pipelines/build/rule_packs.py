"""Condition rule packs: declarative, versioned, cited YAML compiled to SQL parameters and
predicates (transforms/rule_packs/<condition>.yaml; format in docs/rule-packs.md).

A pack gives, for one condition:
  - standard parameters (typed, bounded, documented: STANDARD_PARAMETERS below), loaded into the
    table ``rule_packs`` (one row per condition) that the SQL joins;
  - condition-specific parameters and lists (``rule_pack_parameters``, ``rule_pack_lists``);
  - efficacy predicates: SQL boolean expressions over the trial evidence vocabulary
    (EVIDENCE below) deciding response / partial_response / non_response / undetermined.
    They compile into one DuckDB macro ``rule_pack_efficacy(condition, <evidence...>)`` that
    returns ``{outcome, rule}``; transforms/marts/trial_outcomes.sql calls it.
Users add a condition by adding a YAML file (no Python). A bad pack is a configuration error
naming the file and the problem (exit code 2).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pipelines.build import reference
from pipelines.config import REPO_ROOT, TRANSFORMS_DIR, Config, ConfigError
from pipelines.warehouse import sql_literal

PACKS_DIR = TRANSFORMS_DIR / "rule_packs"
OUTCOMES = ("response", "partial_response", "non_response", "undetermined")

# name: (type, default, bounds/choices, documentation)
STANDARD_PARAMETERS: dict[str, tuple[str, Any, Any, str]] = {
    "required_failures": (
        "integer",
        2,
        (1, 20),
        "Informative failed trials (non_response, or partial_response when it "
        "counts) needed for the condition to be refractory.",
    ),
    "adherence_threshold": (
        "number",
        0.80,
        (0.0, 1.0),
        "A trial with PDC in its assessment window below this is non_adherent.",
    ),
    "min_adequate_days": (
        "integer",
        28,
        (0, 3650),
        "Minimum days at adequate dose for an adequate trial (shorter = inadequate).",
    ),
    "intolerance_window_days": (
        "integer",
        28,
        (0, 3650),
        "A stop for an adverse event before adequate_dose_date (or start) "
        "+ this many days is intolerance, not failure.",
    ),
    "min_cycles_first_line": (
        "integer",
        None,
        (0, 100),
        "Oncology: cycles of first-line therapy before SD/PD can count.",
    ),
    "min_cycles_later_line": (
        "integer",
        None,
        (0, 100),
        "Oncology: cycles of a later line before SD/PD can count.",
    ),
    "pd_overrides_min_exposure": (
        "boolean",
        False,
        None,
        "Progression as best response counts whatever the exposure (ZUMA-1 convention).",
    ),
    "progression_window_days": (
        "integer",
        None,
        (0, 3650),
        "Progression within this many days after the last dose counts as "
        "non-response (IMWG 60 d); later progression after a response is "
        "relapse_after_response.",
    ),
    "partial_counts_as_failure": (
        "boolean",
        False,
        None,
        "Whether a partial_response trial counts toward refractoriness.",
    ),
    "response_resets_refractory": (
        "boolean",
        True,
        None,
        "A later trial meeting the response definition makes the "
        "patient a responder again (ILAE: drug-responsive).",
    ),
    "status_rule": (
        "string",
        "count_failures",
        ("count_failures", "current_regimen"),
        "count_failures: refractory after `required_failures` informative failures; "
        "current_regimen: judged on the current regimen (resistant hypertension).",
    ),
    "strict_indication": (
        "boolean",
        False,
        None,
        "A trial drug without this condition among its indications makes the trial inappropriate.",
    ),
}

# Evidence a predicate may use (columns of trial evidence in trial_outcomes.sql), with types.
EVIDENCE: dict[str, str] = {
    "best_response_category": "VARCHAR",
    "best_response_rank": "INTEGER",
    "best_response_original": "VARCHAR",
    "assessed": "BOOLEAN",
    "n_assessments": "BIGINT",
    "progression_date": "DATE",
    "progression_on_therapy": "BOOLEAN",
    "progression_within_window": "BOOLEAN",
    "ilae_outcome": "VARCHAR",
    "pct_improvement": "DOUBLE",
    "remission": "BOOLEAN",
    "office_at_goal": "BOOLEAN",
    "out_of_office_at_goal": "BOOLEAN",
    "baseline_sledai": "DOUBLE",
    "latest_sledai": "DOUBLE",
    "n_cycles": "BIGINT",
    "days_at_adequate_dose": "BIGINT",
    "is_ongoing": "BOOLEAN",
    "n_classes": "BIGINT",
}


@dataclass(frozen=True)
class RulePack:
    path: Path
    id: str
    version: str
    condition: str
    title: str
    parameters: dict[str, Any]  # standard, resolved with defaults
    extra_parameters: dict[str, Any]
    lists: dict[str, list[str]]
    efficacy: dict[str, str]  # outcome -> predicate (parameters substituted)
    efficacy_source: dict[str, str]  # outcome -> predicate as written
    sources: list[dict[str, str]]


class RulePackError(ConfigError):
    pass


_PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


def _check_standard(path: Path, name: str, value: Any) -> Any:
    typ, _default, bounds, _doc = STANDARD_PARAMETERS[name]
    if value is None:
        return None
    if typ == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise RulePackError(f"{path.name}: parameter {name} must be an integer, got {value!r}")
    if typ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RulePackError(f"{path.name}: parameter {name} must be a number, got {value!r}")
        value = float(value)
    if typ == "boolean" and not isinstance(value, bool):
        raise RulePackError(f"{path.name}: parameter {name} must be true/false, got {value!r}")
    if typ == "string" and value not in bounds:
        raise RulePackError(f"{path.name}: parameter {name} must be one of {bounds}, got {value!r}")
    if typ in ("integer", "number") and bounds and not bounds[0] <= value <= bounds[1]:
        raise RulePackError(f"{path.name}: parameter {name}={value} outside {bounds}")
    return value


def _param_value(spec: Any) -> Any:
    return spec.get("value") if isinstance(spec, dict) else spec


def load_pack(path: Path) -> RulePack:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RulePackError(f"{path.name}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise RulePackError(f"{path.name}: a rule pack is a mapping")
    for key in ("id", "version", "condition", "title", "sources", "parameters", "efficacy"):
        if key not in raw:
            raise RulePackError(f"{path.name}: missing `{key}`")
    if not raw["sources"]:
        raise RulePackError(f"{path.name}: cite at least one source (guideline, year)")
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, spec in (raw["parameters"] or {}).items():
        if isinstance(spec, dict) and "doc" not in spec:
            raise RulePackError(f"{path.name}: parameter {name} lacks `doc`")
        if not isinstance(spec, dict):
            raise RulePackError(f"{path.name}: parameter {name} must be {{value, doc, source}}")
        if name in STANDARD_PARAMETERS:
            params[name] = _check_standard(path, name, _param_value(spec))
        else:
            v = _param_value(spec)
            if not isinstance(v, int | float | str | bool) or v is None:
                raise RulePackError(f"{path.name}: parameter {name} must be a scalar")
            extra[name] = v
    resolved = {n: params.get(n, d[1]) for n, d in STANDARD_PARAMETERS.items()}
    values = {**resolved, **extra}
    lists = {}
    for name, items in (raw.get("lists") or {}).items():
        if not isinstance(items, dict) or "items" not in items or "doc" not in items:
            raise RulePackError(f"{path.name}: list {name} must be {{doc, items}}")
        lists[name] = [str(i).lower() for i in items["items"]]
    eff_src = raw["efficacy"] or {}
    unknown = set(eff_src) - set(OUTCOMES)
    if unknown:
        raise RulePackError(
            f"{path.name}: unknown efficacy outcome(s) {sorted(unknown)}; use {', '.join(OUTCOMES)}"
        )
    efficacy = {}
    for outcome, pred in eff_src.items():
        text = " ".join(str(pred).split())

        def sub(m: re.Match[str], _o: str = outcome) -> str:
            if m.group(1) not in values:
                raise RulePackError(
                    f"{path.name}: efficacy.{_o} uses unknown parameter {{{m.group(1)}}}"
                )
            v = values[m.group(1)]
            if v is None:
                raise RulePackError(
                    f"{path.name}: efficacy.{_o} uses {{{m.group(1)}}}, which is unset"
                )
            return str(v).lower() if isinstance(v, bool) else str(v)

        efficacy[outcome] = _PLACEHOLDER.sub(sub, text)
    pack = RulePack(
        path=path,
        id=str(raw["id"]),
        version=str(raw["version"]),
        condition=str(raw["condition"]).lower(),
        title=str(raw["title"]),
        parameters=resolved,
        extra_parameters=extra,
        lists=lists,
        efficacy=efficacy,
        efficacy_source={k: " ".join(str(v).split()) for k, v in eff_src.items()},
        sources=list(raw["sources"]),
    )
    _bind_check(path.name, tuple(pack.efficacy.items()))
    return pack


@functools.lru_cache(maxsize=256)
def _bind_check(file_name: str, predicates: tuple[tuple[str, str], ...]) -> None:
    """Every predicate must bind against the evidence vocabulary (typos fail here, clearly).
    Binding costs ~20 ms a pack and a run loads the packs several times (build, then each
    report); a predicate that bound once binds again, so it is checked once per process (a
    failure raises, and is not cached)."""
    con = duckdb.connect()
    cols = ", ".join(f"CAST(NULL AS {t}) AS {n}" for n, t in EVIDENCE.items())
    try:
        for outcome, pred in predicates:
            try:
                con.execute(f"SELECT CAST(({pred}) AS BOOLEAN) FROM (SELECT {cols})").fetchall()
            except duckdb.Error as e:
                msg = str(e).splitlines()[0]
                raise RulePackError(
                    f"{file_name}: efficacy.{outcome} `{pred}` is not a valid "
                    f"predicate over the evidence columns ({msg})"
                ) from e
    finally:
        con.close()


def pack_dirs(cfg: Config) -> list[Path]:
    dirs = [PACKS_DIR]
    for d in cfg.build.rule_pack_dirs:
        p = Path(d)
        dirs.append(p if p.is_absolute() else REPO_ROOT / p)
    return dirs


def load_packs(cfg: Config) -> list[RulePack]:
    packs: dict[str, RulePack] = {}
    for d in pack_dirs(cfg):
        if not d.exists():
            raise RulePackError(f"rule pack directory not found: {d}")
        for path in sorted(d.glob("*.yaml")):
            pack = load_pack(path)
            if pack.condition == "generic":
                continue  # the template users copy; it judges no condition
            if pack.condition in packs and packs[pack.condition].path.parent == path.parent:
                raise RulePackError(
                    f"two rule packs for condition {pack.condition}: "
                    f"{packs[pack.condition].path.name}, {path.name}"
                )
            packs[pack.condition] = pack  # a user directory overrides a shipped pack
    return [packs[c] for c in sorted(packs)]


def efficacy_macro(packs: list[RulePack]) -> str:
    args = ", ".join(EVIDENCE)
    arms = []
    for p in packs:
        inner = " ".join(
            f"WHEN ({p.efficacy[o]}) THEN {{'outcome': '{o}', "
            f"'rule': {sql_literal(f'{p.id} {p.version} efficacy.{o}: {p.efficacy_source[o]}')}}}"
            for o in OUTCOMES
            if o in p.efficacy
        )
        none = f"{{'outcome': 'undetermined', 'rule': {sql_literal(f'{p.id} {p.version}: no efficacy rule matched')}}}"
        arms.append(
            f"WHEN condition = {sql_literal(p.condition)} THEN CASE {inner} ELSE {none} END"
        )
    body = "CASE " + " ".join(arms) + " END" if arms else "NULL"
    return f"CREATE OR REPLACE MACRO rule_pack_efficacy(condition, {args}) AS {body}"


def load_rule_packs(con: duckdb.DuckDBPyConnection, cfg: Config) -> list[Path]:
    import pandas as pd

    packs = load_packs(cfg)
    rows = []
    for p in packs:
        rows.append(
            {
                "condition": p.condition,
                "pack_id": p.id,
                "pack_version": p.version,
                "title": p.title,
                **p.parameters,
            }
        )
    cols = ", ".join(
        f"{n} {dict(integer='INTEGER', number='DOUBLE', boolean='BOOLEAN', string='VARCHAR')[t[0]]}"
        for n, t in STANDARD_PARAMETERS.items()
    )
    con.execute(
        f"CREATE OR REPLACE TABLE rule_packs (condition VARCHAR PRIMARY KEY, pack_id VARCHAR, "
        f"pack_version VARCHAR, title VARCHAR, {cols})"
    )
    con.execute(
        "CREATE OR REPLACE TABLE rule_pack_parameters (condition VARCHAR, name VARCHAR, "
        "value_text VARCHAR, value_number DOUBLE)"
    )
    con.execute(
        "CREATE OR REPLACE TABLE rule_pack_lists (condition VARCHAR, list_name VARCHAR, item VARCHAR)"
    )
    if rows:
        df = pd.DataFrame(rows)  # noqa: F841
        con.execute("INSERT INTO rule_packs BY NAME SELECT * FROM df")
    extra = [
        {
            "condition": p.condition,
            "name": k,
            "value_text": str(v),
            "value_number": float(v)
            if isinstance(v, int | float) and not isinstance(v, bool)
            else None,
        }
        for p in packs
        for k, v in sorted(p.extra_parameters.items())
    ]
    if extra:
        df_e = pd.DataFrame(extra)  # noqa: F841
        con.execute("INSERT INTO rule_pack_parameters BY NAME SELECT * FROM df_e")
    lists = [
        {"condition": p.condition, "list_name": k, "item": i}
        for p in packs
        for k, items in sorted(p.lists.items())
        for i in items
    ]
    if lists:
        df_l = pd.DataFrame(lists)  # noqa: F841
        con.execute("INSERT INTO rule_pack_lists BY NAME SELECT * FROM df_l")
    con.execute(efficacy_macro(packs))
    return [p.path for p in packs]


reference.LOADERS.append(load_rule_packs)
