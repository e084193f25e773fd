"""Which build a report reads, and a DuckDB connection over its Parquet.

Reports read the published build (the one ``CURRENT`` points to). ``--as-of T`` whose date
differs from the published build's evaluation date replays the log as of T into a new,
unpublished build (``build(cfg, as_of=T, publish=False)``: it takes the warehouse lock, leaves
``CURRENT`` and the analysts' DuckDB file alone, and is pruned like any old build) and reads
that. Tables are read straight from the build's Parquet, never from the warehouse DuckDB file,
so a report is consistent with one build even while another is being published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.build import layout
from pipelines.config import Config, ConfigError
from pipelines.logs import get_logger
from pipelines.warehouse import Warehouse, connect

log = get_logger("txh.report")

STATUSES = (
    "refractory",
    "pseudo_refractory",
    "at_risk",
    "partial_responder",
    "responder",
    "undetermined",
)
OUTCOME_CLASSES = (
    "inappropriate",
    "intolerant",
    "non_adherent",
    "inadequate_trial",
    "insufficient_followup",
    "response",
    "partial_response",
    "non_response",
    "relapse_after_response",
)
EXPLANATIONS = (
    "true_non_response",
    "non_adherence",
    "intolerance",
    "inadequate_trial",
    "measurement_artefact",
)


@dataclass(frozen=True)
class BuildRef:
    """One build's outputs: id, evaluation moment and directory of Parquet files."""

    build_id: str
    as_of: datetime
    build_dir: Path
    published: bool

    @property
    def as_of_date(self) -> date:
        return self.as_of.date()


def published_build(wh: Warehouse) -> BuildRef | None:
    if not wh.current_pointer.exists():
        return None
    build_id = json.loads(wh.current_pointer.read_text())["build_id"]
    manifest = wh.builds_dir / build_id / "build.json"
    if not manifest.exists():
        return None
    m = json.loads(manifest.read_text())
    return BuildRef(
        build_id=build_id,
        as_of=datetime.fromisoformat(m["as_of"]),
        build_dir=wh.builds_dir / build_id,
        published=True,
    )


def resolve_build(cfg: Config, as_of: datetime | None = None) -> BuildRef:
    """The published build, or (``as_of`` on another date) a fresh unpublished build as of it."""
    wh = Warehouse.from_config(cfg)
    current = published_build(wh)
    if as_of is None or (current is not None and current.as_of_date == as_of.date()):
        if current is None:
            raise ConfigError(
                f"no published build in {wh.root}; run `txh run` (or `txh build`) "
                "first, or pass --as-of to build one for the report"
            )
        return current
    from pipelines.build.runner import build

    log.info("report.build_as_of", as_of=as_of.isoformat(sep=" "))
    res = build(cfg, as_of=as_of, publish=False)
    return BuildRef(
        build_id=res.build_id, as_of=res.as_of, build_dir=res.output_dir, published=False
    )


def open_build(cfg: Config, ref: BuildRef) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per Parquet table of the build."""
    con = connect(cfg, wh=Warehouse.from_config(cfg))
    manifest = layout.read_manifest(ref.build_dir)
    for name in layout.table_names(ref.build_dir, manifest):
        rel = layout.table_relation(ref.build_dir, name, manifest)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {rel}")
    return con


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a view (empty if the build has no such table)."""
    try:
        rows = con.execute(f"DESCRIBE {table}").fetchall()
    except duckdb.CatalogException:
        return {}
    return {r[0]: r[1] for r in rows}


def known_conditions(cfg: Config, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """Conditions with a rule pack (shipped or configured), plus any the build judged."""
    from pipelines.build.rule_packs import load_packs

    found = {p.condition for p in load_packs(cfg)}
    if con is not None and columns_of(con, "refractory_status"):
        found |= {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT condition FROM refractory_status WHERE condition IS NOT NULL"
            ).fetchall()
        }
    return sorted(found)


def check_condition(condition: str, cfg: Config, con: duckdb.DuckDBPyConnection) -> list[str]:
    """The conditions a --condition value selects (``all`` = every known one); unknown = exit 2."""
    known = known_conditions(cfg, con)
    if condition == "all":
        return known
    if condition not in known:
        raise ConfigError(f"unknown condition {condition!r}; known: {', '.join(known)} (or all)")
    return [condition]
