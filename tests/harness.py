"""Scenario-test harness: tiny clinical stories as YAML, run on real in-process DuckDB.

A scenario file (tests/scenarios/<table>/<story_name>.yaml)::

    story: >-                      # what a clinician should read
      A refill 30 days after the supply ran out continues the era.
    table: drug_eras               # the model under test
    as_of: 2024-12-31              # optional (default 2030-01-01)
    params: {persistence_window_days: 30}   # optional overrides of transforms/parameters
    events:                        # canonical events; factories fill everything else
      - {patient_id: P1, event_type: dispensed, occurred_at: 2024-01-01, drug: levetiracetam,
         days_supply: 30, dose: 1000}
    expect:
      where: "ingredient = 'levetiracetam'"   # optional filter on the output
      columns: [patient_id, era_start_date, era_end_date]   # compared columns
      rows:                        # compared as a multiset unless `ordered: true`
        - {patient_id: P1, era_start_date: 2024-01-01, era_end_date: 2024-03-01}

Factory defaults: event_id e<n>, source 'test', recorded_at = occurred_at (so the as-of filter
only bites when a scenario sets recorded_at), dose_unit 'mg' when dose is given, family from the
contract, batch_id 1, ingest_seq = position. Dates compare as ISO strings; floats to 4 decimals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from pipelines.build import reference
from pipelines.build.models import Model, load_models
from pipelines.build.runner import bind_params, provide_previous, run_model
from pipelines.config import Config, load_config
from schemas.contract import load_contract

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DEFAULT_AS_OF = "2030-01-01"


def _to_ts(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    return dt.datetime.fromisoformat(str(v))


def make_log_events(rows: list[dict[str, Any]]) -> pa.Table:
    contract = load_contract()
    fam = contract.family_of
    out = []
    for i, r in enumerate(rows, start=1):
        r = dict(r)
        unknown = set(r) - {c.name for c in contract.storage_columns()}
        if unknown:
            raise ValueError(f"scenario event {i}: unknown column(s) {sorted(unknown)}")
        r.setdefault("event_id", f"e{i}")
        r.setdefault("source", "test")
        r["occurred_at"] = _to_ts(r.get("occurred_at"))
        r["recorded_at"] = _to_ts(r.get("recorded_at")) or r["occurred_at"]
        if r.get("dose") is not None:
            r.setdefault("dose_unit", "mg")
        r.setdefault("family", fam.get(r.get("event_type")))
        r.setdefault("schema_version", contract.schema_version)
        r.setdefault("batch_id", 1)
        r.setdefault("ingest_seq", i)
        r.setdefault("ingested_at", r["recorded_at"])
        r.setdefault("recorded_at_imputed", False)
        r.setdefault("event_id_derived", False)
        r.setdefault("source_file", "scenario.yaml")
        r.setdefault("source_row", i)
        out.append(r)
    schema = contract.storage_schema()
    cols = {f.name: [row.get(f.name) for row in out] for f in schema}
    return pa.table(cols, schema=schema)


def closure(models: list[Model], target: str) -> list[Model]:
    by_name = {m.name: m for m in models}
    if target not in by_name:
        raise KeyError(f"no model named {target}")
    need: set[str] = set()

    def visit(n: str) -> None:
        if n in need or n not in by_name:
            return
        need.add(n)
        for d in by_name[n].depends_on:
            visit(d)

    visit(target)
    return [m for m in models if m.name in need]


def config_with(params: dict[str, Any] | None) -> Config:
    cfg = load_config()
    if params:
        unknown = set(params) - {f.name for f in dataclasses.fields(cfg.params)}
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}")
        cfg = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, **params))
    return cfg


def run_table(
    events: list[dict[str, Any]],
    table: str,
    *,
    as_of: str = DEFAULT_AS_OF,
    params: dict[str, Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Build ``table`` (and what it depends on) from ``events``; return the open connection."""
    cfg = config_with(params)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    bind_params(con, cfg, _to_ts(as_of))
    reference.load_all(con, cfg)
    log_tbl = make_log_events(events)  # noqa: F841 - DuckDB replacement scan
    con.execute("CREATE TABLE log_all AS SELECT * FROM log_tbl")
    con.execute("""CREATE VIEW log_events AS SELECT * FROM log_all
                   WHERE recorded_at <= getvariable('as_of') AND occurred_at <= getvariable('as_of')""")
    for m in closure(load_models(), table):
        provide_previous(con, m, None)
        run_model(con, m)
    return con


def normalise(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    if isinstance(v, list | tuple):
        return [normalise(x) for x in v]
    if isinstance(v, dict):
        return {k: normalise(x) for k, x in v.items()}
    return v


def load_scenario(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text())
    for key in ("story", "table", "events", "expect"):
        if key not in spec:
            raise ValueError(f"{path}: missing `{key}`")
    return spec


def actual_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: list[str],
    where: str | None = None,
    order_by: str | None = None,
) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    if where:
        sql += f" WHERE {where}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    rows = con.execute(sql).fetchall()
    return [{c: normalise(v) for c, v in zip(columns, r, strict=True)} for r in rows]


def run_scenario(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    spec = load_scenario(path)
    exp = spec["expect"]
    con = run_table(
        spec["events"],
        spec["table"],
        as_of=str(spec.get("as_of", DEFAULT_AS_OF)),
        params=spec.get("params"),
    )
    try:
        columns = exp.get("columns") or list((exp.get("rows") or [{}])[0].keys())
        got = actual_rows(con, spec["table"], columns, exp.get("where"), exp.get("order_by"))
    finally:
        con.close()
    want = [{c: normalise(_yaml_value(r.get(c))) for c in columns} for r in exp.get("rows") or []]
    return got, want, spec


def _yaml_value(v: Any) -> Any:
    return v


def sort_key(row: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in row.items()))
