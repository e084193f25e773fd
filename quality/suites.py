"""Quality suites: one per event family plus `events` (the envelope), built from the contract.

A suite is a list of :class:`Check`. Each check is both
  - a great-expectations expectation (``gx_json``), which GX validates by SQL push-down, and
  - a DuckDB predicate that is TRUE for a failing row (``predicate``), which the ingest evaluates
    in one pass to quarantine rows with machine-readable reason codes.
The two must agree; the runner cross-checks GX's unexpected counts against the quarantine counts.

Sources of checks:
  contract  - required columns (not null), value domains (in set), types (parse), from
              schemas/events/v1.yaml
  clinical  - hand-written rules with rationale in quality/rules.yaml (thresholds are named
              parameters or cited constants)

``render_default_suites()`` gives the committed JSON in quality/suites/ (default configuration);
at run time suites are rebuilt with the run's configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import Config
from pipelines.warehouse import sql_literal
from schemas.contract import Contract, load_contract

QUALITY_DIR = Path(__file__).resolve().parent
RULES_PATH = QUALITY_DIR / "rules.yaml"
SUITES_DIR = QUALITY_DIR / "suites"
ENVELOPE_SUITE = "events"
# GX lists a few unexpected rows per check: their input file and line (no identifiers or values,
# and DuckDB reads two columns of the failing rows instead of every column of every row: the
# `SELECT *` form took 13 of great-expectations' 29 s on a 10M-event batch)
_QUERY_PREFIX = "SELECT source_file, source_row FROM {batch} WHERE "


class SuiteError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    suite: str
    reason_code: str
    gx_type: str
    kwargs: dict[str, Any]
    predicate: str  # DuckDB SQL: TRUE for a failing row (within scope)
    rationale: str
    origin: str  # contract | clinical
    mostly: float
    reason_codes_sql: str | None = None  # SQL yielding a VARCHAR[] of detailed codes (parse errors)
    meta: dict[str, Any] = field(default_factory=dict)

    def gx_json(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if self.gx_type != "unexpected_rows_expectation":
            kwargs["mostly"] = self.mostly
        return {
            "type": self.gx_type,
            "kwargs": kwargs,
            "meta": {
                "reason_code": self.reason_code,
                "rationale": self.rationale,
                "origin": self.origin,
                "mostly": self.mostly,
                **self.meta,
            },
        }


@dataclass(frozen=True)
class Suite:
    name: str
    scope: str  # SQL predicate selecting the rows the suite applies to
    checks: tuple[Check, ...]

    def gx_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "meta": {"scope": self.scope, "generated_by": "quality/suites.py"},
            "expectations": [c.gx_json() for c in self.checks],
        }


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(sql_literal(v) for v in values)


def _scope(family: str | None) -> str:
    return "TRUE" if family is None else f"family = '{family}'"


def _domain_check(suite: str, column: str, domain: tuple[str, ...], mostly: float) -> Check:
    """A value outside the contract's domain for ``column``."""
    return Check(
        suite=suite,
        reason_code=f"unknown_{column}",
        gx_type="expect_column_values_to_be_in_set",
        kwargs={"column": column, "value_set": list(domain)},
        predicate=f"{column} IS NOT NULL AND {column} NOT IN ({_sql_list(domain)})",
        rationale=f"`{column}` must be one of the contract's values.",
        origin="contract",
        mostly=mostly,
    )


def _contract_checks(contract: Contract, mostly: float) -> dict[str, list[Check]]:
    out: dict[str, list[Check]] = {ENVELOPE_SUITE: []}
    env = out[ENVELOPE_SUITE]
    for col in contract.envelope:
        if "all" in col.required_for:
            env.append(
                Check(
                    suite=ENVELOPE_SUITE,
                    reason_code=f"missing_{col.name}",
                    gx_type="expect_column_values_to_not_be_null",
                    kwargs={"column": col.name},
                    predicate=f"{col.name} IS NULL",
                    rationale=f"`{col.name}` is required for every event (contract v{contract.schema_version}).",
                    origin="contract",
                    mostly=mostly,
                )
            )
        if col.domain:
            env.append(_domain_check(ENVELOPE_SUITE, col.name, col.domain, mostly))
    env.append(
        Check(
            suite=ENVELOPE_SUITE,
            reason_code="unparseable_value",
            gx_type="unexpected_rows_expectation",
            kwargs={
                "unexpected_rows_query": _QUERY_PREFIX + "len(_parse_errors) > 0",
                "description": "Every typed column parses as its contract type.",
            },
            predicate="len(_parse_errors) > 0",
            rationale="Values must parse as their contract types (ISO 8601 timestamps, numbers, integers).",
            origin="contract",
            mostly=mostly,
            reason_codes_sql="_parse_errors",
        )
    )

    for fam in contract.families:
        checks: list[Check] = []
        for col in contract.columns:
            if fam not in col.families:
                continue
            req = [et for et in col.required_for if contract.family_of.get(et) == fam]
            if req:
                pred = f"event_type IN ({_sql_list(req)}) AND {col.name} IS NULL"
                checks.append(
                    Check(
                        suite=fam,
                        reason_code=f"missing_{col.name}",
                        gx_type="unexpected_rows_expectation",
                        kwargs={
                            "unexpected_rows_query": _QUERY_PREFIX + pred,
                            "description": f"`{col.name}` is required for {', '.join(req)}.",
                        },
                        predicate=pred,
                        rationale=f"`{col.name}` is required for {', '.join(req)} (contract).",
                        origin="contract",
                        mostly=mostly,
                    )
                )
            if col.domain:
                checks.append(_domain_check(fam, col.name, col.domain, mostly))
        out[fam] = checks
    return out


def _response_codes_predicate(contract: Contract) -> str:
    arms = [
        f"(criteria = '{crit}' AND response NOT IN ({_sql_list(codes)}))"
        for crit, codes in contract.response_codes.items()
    ]
    return "response IS NOT NULL AND (" + " OR ".join(arms) + ")"


_PLACEHOLDER = re.compile(r"\{(param|const|generated):([a-z0-9_.]+)\}")


def _substitute(text: str, cfg: Config, constants: dict[str, Any], contract: Contract) -> str:
    def repl(m: re.Match[str]) -> str:
        kind, name = m.group(1), m.group(2)
        if kind == "param":
            obj: Any = cfg
            for part in name.split("."):
                if not hasattr(obj, part):
                    raise SuiteError(f"rules.yaml: unknown parameter {name}")
                obj = getattr(obj, part)
            return str(obj)
        if kind == "const":
            if name not in constants:
                raise SuiteError(f"rules.yaml: unknown constant {name}")
            return str(constants[name]["value"])
        if name == "response_codes_predicate":
            return _response_codes_predicate(contract)
        raise SuiteError(f"rules.yaml: unknown generated predicate {name}")

    return _PLACEHOLDER.sub(repl, " ".join(text.split()))


def _clinical_checks(cfg: Config, contract: Contract, mostly: float) -> dict[str, list[Check]]:
    raw = yaml.safe_load(RULES_PATH.read_text())
    constants = raw.get("constants", {})
    out: dict[str, list[Check]] = {}
    for suite, rules in raw["suites"].items():
        if suite != ENVELOPE_SUITE and suite not in contract.families:
            raise SuiteError(f"rules.yaml: unknown suite {suite}")
        for rule in rules:
            pred = _substitute(rule["where"], cfg, constants, contract)
            out.setdefault(suite, []).append(
                Check(
                    suite=suite,
                    reason_code=rule["reason_code"],
                    gx_type="unexpected_rows_expectation",
                    kwargs={
                        "unexpected_rows_query": _QUERY_PREFIX + pred,
                        "description": " ".join(rule["rationale"].split()),
                    },
                    predicate=pred,
                    rationale=" ".join(rule["rationale"].split()),
                    origin="clinical",
                    mostly=float(rule.get("mostly", mostly)),
                    meta={"template": " ".join(rule["where"].split())},
                )
            )
    return out


def build_suites(cfg: Config | None = None, contract: Contract | None = None) -> list[Suite]:
    cfg = cfg or Config()
    contract = contract or load_contract()
    mostly = cfg.quality.mostly
    base = _contract_checks(contract, mostly)
    clinical = _clinical_checks(cfg, contract, mostly)
    suites = []
    for name in [ENVELOPE_SUITE, *contract.families]:
        checks = tuple(base.get(name, []) + clinical.get(name, []))
        codes = [c.reason_code for c in checks]
        if len(set(codes)) != len(codes):
            raise SuiteError(f"suite {name}: duplicate reason codes")
        suites.append(
            Suite(name=name, scope=_scope(None if name == ENVELOPE_SUITE else name), checks=checks)
        )
    return suites


def render_default_suites() -> dict[str, str]:
    """The committed JSON files of quality/suites/ (default configuration)."""
    return {
        f"{s.name}.json": json.dumps(s.gx_json(), indent=2, sort_keys=False) + "\n"
        for s in build_suites()
    }


def write_default_suites(directory: Path = SUITES_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_default_suites().items():
        p = directory / name
        p.write_text(text)
        written.append(p)
    return written


def load_committed_suite(name: str, directory: Path = SUITES_DIR) -> dict[str, Any]:
    return json.loads((directory / f"{name}.json").read_text())
