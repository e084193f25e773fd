"""Line-of-therapy rules (transforms/reference/lines_of_therapy.yaml) as DuckDB tables.

Tables read by transforms/intermediate/treatment_lines.sql:
  ref_lot_parameters(condition, <one typed column per declared parameter>, rule_set_version)
  ref_lot_lists(condition, list_name, item)
  ref_lot_substitutions(condition, ingredient, substitute)      (both directions)
Only the conditions listed in the file get lines. A bad file is a configuration error naming the
file and the problem (exit code 2), like a bad rule pack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

from pipelines.build import reference
from pipelines.config import TRANSFORMS_DIR, Config, ConfigError

LINES_FILE = TRANSFORMS_DIR / "reference" / "lines_of_therapy.yaml"
LIST_NAMES = (
    "maintenance",
    "conditioning",
    "line_advancing_procedures",
    "planned_sequence_procedures",
)
_SQL_TYPES = {"integer": "INTEGER", "number": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR"}


class LinesOfTherapyError(ConfigError):
    pass


def _check(path: Path, where: str, typ: str, value: Any) -> Any:
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
    }[typ]
    if not ok:
        raise LinesOfTherapyError(f"{path.name}: {where} must be a {typ}, got {value!r}")
    return float(value) if typ == "number" else value


def parse_lines_of_therapy(path: Path = LINES_FILE) -> dict[str, Any]:
    """Validated rules: {version, parameters: {name: spec}, conditions: {cond: {...}}}."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LinesOfTherapyError(f"{path}: cannot read line-of-therapy rules: {e}") from e
    if not isinstance(raw, dict):
        raise LinesOfTherapyError(f"{path.name}: expected a mapping")
    for key in ("version", "parameters", "conditions"):
        if key not in raw:
            raise LinesOfTherapyError(f"{path.name}: missing `{key}`")
    specs: dict[str, dict[str, Any]] = {}
    for name, spec in (raw["parameters"] or {}).items():
        if not isinstance(spec, dict):
            raise LinesOfTherapyError(f"{path.name}: parameter {name} must be a mapping")
        for key in ("type", "default", "unit", "doc", "source"):
            if key not in spec:
                raise LinesOfTherapyError(f"{path.name}: parameter {name} lacks `{key}`")
        if spec["type"] not in _SQL_TYPES:
            raise LinesOfTherapyError(
                f"{path.name}: parameter {name}: unknown type {spec['type']!r}"
            )
        _check(path, f"parameters.{name}.default", spec["type"], spec["default"])
        specs[str(name)] = spec
    conditions: dict[str, dict[str, Any]] = {}
    for cond, body in (raw["conditions"] or {}).items():
        body = body or {}
        cname = str(cond).strip().lower()
        where = f"conditions.{cname}"
        unknown = set(body) - {"title", "parameters", "substitutions", "lists"}
        if unknown:
            raise LinesOfTherapyError(f"{path.name}: {where}: unknown key(s) {sorted(unknown)}")
        values = {}
        overrides = body.get("parameters") or {}
        bad = set(overrides) - set(specs)
        if bad:
            raise LinesOfTherapyError(
                f"{path.name}: {where}: undeclared parameter(s) {sorted(bad)}"
            )
        for name, spec in specs.items():
            v = overrides.get(name, spec["default"])
            values[name] = _check(path, f"{where}.parameters.{name}", spec["type"], v)
        subs = []
        for pair in body.get("substitutions") or []:
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise LinesOfTherapyError(
                    f"{path.name}: {where}.substitutions: each entry is [ingredient, substitute], "
                    f"got {pair!r}"
                )
            a, b = (p.strip().lower() for p in pair)
            subs += [(a, b), (b, a)]
        lists: dict[str, list[str]] = {n: [] for n in LIST_NAMES}
        for lname, spec in (body.get("lists") or {}).items():
            if lname not in LIST_NAMES:
                raise LinesOfTherapyError(
                    f"{path.name}: {where}.lists: unknown list {lname!r}; use {', '.join(LIST_NAMES)}"
                )
            if not isinstance(spec, dict) or "items" not in spec or "doc" not in spec:
                raise LinesOfTherapyError(
                    f"{path.name}: {where}.lists.{lname} must be {{doc, items}}"
                )
            lists[lname] = sorted({str(i).strip().lower() for i in spec["items"] or []})
        conditions[cname] = {
            "title": body.get("title", cname),
            "parameters": values,
            "substitutions": sorted(set(subs)),
            "lists": lists,
        }
    return {"version": str(raw["version"]), "parameters": specs, "conditions": conditions}


def load_lines_of_therapy(con: duckdb.DuckDBPyConnection, cfg: Config) -> list[Path]:
    rules = parse_lines_of_therapy(LINES_FILE)
    specs = rules["parameters"]
    cols = ", ".join(f"{n} {_SQL_TYPES[s['type']]}" for n, s in specs.items())
    con.execute(
        f"CREATE OR REPLACE TABLE ref_lot_parameters (condition VARCHAR PRIMARY KEY, "
        f"{cols}, rule_set_version VARCHAR)"
    )
    con.execute(
        "CREATE OR REPLACE TABLE ref_lot_lists (condition VARCHAR, list_name VARCHAR, item VARCHAR)"
    )
    con.execute(
        "CREATE OR REPLACE TABLE ref_lot_substitutions (condition VARCHAR, "
        "ingredient VARCHAR, substitute VARCHAR)"
    )
    params = [
        {"condition": c, **body["parameters"], "rule_set_version": rules["version"]}
        for c, body in sorted(rules["conditions"].items())
    ]
    lists = [
        {"condition": c, "list_name": n, "item": i}
        for c, body in sorted(rules["conditions"].items())
        for n, items in body["lists"].items()
        for i in items
    ]
    subs = [
        {"condition": c, "ingredient": a, "substitute": b}
        for c, body in sorted(rules["conditions"].items())
        for a, b in body["substitutions"]
    ]
    for table, rows in (
        ("ref_lot_parameters", params),
        ("ref_lot_lists", lists),
        ("ref_lot_substitutions", subs),
    ):
        if rows:
            df = pd.DataFrame(rows)  # noqa: F841 - read by DuckDB's replacement scan
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM df")
    return [LINES_FILE]


reference.LOADERS.append(load_lines_of_therapy)
