"""The cohort-summary report: cohort_summary and sensitivity, long format, small cells withheld.

One row per condition x dimension x scenario x category (SUMMARY_COLUMNS). Dimensions:
``status`` (patients by status), ``non_response_explained_by`` (apparent non-responders by
explanation), ``trial_outcome`` (trials by outcome class) and ``sensitivity`` (patients by
status under each scenario of the sensitivity grid; ``scenario_id`` names it). Every category
of a dimension's domain is listed, zeros included, so a missing row never hides a count.

Counts are withheld by pipelines/report/suppress.py; the groups it protects, per condition:

- status cells add up to the condition's patients; trial_outcome cells to its trials; each
  sensitivity scenario's cells to its patients;
- non_response_explained_by cells add up to the apparent non-responders, where
  ``true_non_response`` *is* the status ``refractory`` count and the other explanations add up
  to ``pseudo_refractory`` (linked when the numbers agree, so a count withheld in one table
  cannot be read off the other).

Warehouse tables keep exact counts; only this export withholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.config import ConfigError
from pipelines.report.export import Column, arrow_schema
from pipelines.report.source import (
    EXPLANATIONS,
    OUTCOME_CLASSES,
    STATUSES,
    BuildRef,
    columns_of,
)
from pipelines.report.suppress import Group, suppress
from pipelines.warehouse import sql_list

DIMENSIONS = ("status", "non_response_explained_by", "trial_outcome", "sensitivity")
TOTAL = "_total"

_C = Column
SUMMARY_COLUMNS: list[Column] = [
    _C("condition", "VARCHAR", "Condition (rule pack)."),
    _C("dimension", "VARCHAR", "status, non_response_explained_by, trial_outcome or sensitivity."),
    _C(
        "scenario_id",
        "VARCHAR",
        "`base` (each pack's own parameters) or the sensitivity "
        "scenario `adh=<threshold>;dur=x<factor>`.",
    ),
    _C(
        "adherence_threshold",
        "DOUBLE",
        "Sensitivity: PDC threshold of the scenario (NULL = the pack's).",
    ),
    _C(
        "min_duration_factor",
        "DOUBLE",
        "Sensitivity: multiple of the pack's minimum duration (NULL = 1).",
    ),
    _C("category", "VARCHAR", "A status, an outcome class or an explanation."),
    _C("unit", "VARCHAR", "What n counts: patients or trials."),
    _C("n", "BIGINT", "Count; NULL when suppressed."),
    _C(
        "denominator",
        "BIGINT",
        "Total of the dimension (and scenario) for the condition; NULL when suppressed.",
    ),
    _C(
        "proportion",
        "DOUBLE",
        "n / denominator (4 decimals); NULL when either is suppressed or the denominator is 0.",
    ),
    _C(
        "suppressed",
        "BOOLEAN",
        "n (and proportion) withheld: a small count, or withheld so "
        "that a small count cannot be recovered (not said which).",
    ),
    _C(
        "denominator_suppressed",
        "BOOLEAN",
        "denominator withheld (a small total, or needed to protect a cell).",
    ),
    _C("pack_id", "VARCHAR", "Rule pack of the condition."),
    _C("pack_version", "VARCHAR", "Rule pack version."),
    _C("as_of_date", "DATE", "Evaluation date of the build."),
    _C("build_id", "VARCHAR", "Build the report was read from."),
]


@dataclass(frozen=True)
class _Row:
    dimension: str
    scenario_id: str
    adherence_threshold: float | None
    min_duration_factor: float | None
    category: str
    unit: str
    key: tuple[str, ...]
    total: tuple[str, ...]


def _domain(known: tuple[str, ...], seen: set[str]) -> list[str]:
    return [*known, *sorted(seen - set(known))]


def _condition_cells(
    cs: list[dict[str, Any]], sens: list[dict[str, Any]]
) -> tuple[list[_Row], dict[tuple[str, ...], int], list[Group]]:
    """Rows, values (cells and totals by key) and groups of one condition."""
    rows: list[_Row] = []
    values: dict[tuple[str, ...], int] = {}
    groups: list[Group] = []

    def table(
        dimension: str,
        scenario: str,
        counts: dict[str, int],
        domain: tuple[str, ...],
        unit: str,
        adh: float | None = None,
        dur: float | None = None,
        alias: dict[str, tuple[str, ...]] | None = None,
    ) -> Group:
        total = (dimension, scenario, TOTAL)
        values[total] = sum(counts.values())
        cells = []
        for cat in _domain(domain, set(counts)):
            key = (alias or {}).get(cat, (dimension, scenario, cat))
            values.setdefault(key, counts.get(cat, 0))
            cells.append(key)
            rows.append(_Row(dimension, scenario, adh, dur, cat, unit, key, total))
        g = Group(f"{dimension}:{scenario}", tuple(cells), total)
        groups.append(g)
        return g

    by_dim: dict[str, dict[str, int]] = {d: {} for d in DIMENSIONS[:3]}
    for r in cs:
        if r["dimension"] in by_dim:
            by_dim[r["dimension"]][r["category"]] = int(r["n"])
    status = by_dim["status"]
    table("status", "base", status, STATUSES, "patients")
    explained = by_dim["non_response_explained_by"]
    others = [e for e in _domain(EXPLANATIONS, set(explained)) if e != "true_non_response"]
    linked = explained.get("true_non_response", 0) == status.get("refractory", 0) and sum(
        explained.get(e, 0) for e in others
    ) == status.get("pseudo_refractory", 0)
    alias = {"true_non_response": ("status", "base", "refractory")} if linked else None
    table("non_response_explained_by", "base", explained, EXPLANATIONS, "patients", alias=alias)
    if linked:
        groups.append(
            Group(
                "pseudo_refractory_breakdown",
                tuple(("non_response_explained_by", "base", e) for e in others),
                ("status", "base", "pseudo_refractory"),
            )
        )
    table("trial_outcome", "base", by_dim["trial_outcome"], OUTCOME_CLASSES, "trials")
    for s in sorted(
        sens,
        key=lambda s: (
            not s["is_base"],
            s["adherence_threshold"] or 0.0,
            s["min_duration_factor"] or 0.0,
            s["scenario_id"],
        ),
    ):
        counts = {st: int(s.get(f"n_{st}") or 0) for st in STATUSES}
        table(
            "sensitivity",
            s["scenario_id"],
            counts,
            STATUSES,
            "patients",
            s["adherence_threshold"],
            s["min_duration_factor"],
        )
    return rows, values, groups


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rel = con.sql(sql)
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def summary_report(
    con: duckdb.DuckDBPyConnection, ref: BuildRef, conditions: list[str], threshold: int
) -> pa.Table:
    """The suppressed cohort summary of ``conditions`` (rows sorted)."""
    if not columns_of(con, "cohort_summary"):
        raise ConfigError(
            f"build {ref.build_id} has no cohort_summary table; the marts have "
            "not been built (see `txh build`)"
        )
    conds = sql_list(conditions)
    cs = _fetch(
        con,
        f"SELECT condition, dimension, category, n FROM cohort_summary "
        f"WHERE condition IN (SELECT unnest({conds})) ORDER BY ALL",
    )
    sens: list[dict[str, Any]] = []
    if columns_of(con, "sensitivity"):
        sens = _fetch(
            con,
            f"SELECT * FROM sensitivity WHERE condition IN "
            f"(SELECT unnest({conds})) ORDER BY condition, scenario_id",
        )
    packs: dict[str, tuple[str, str]] = {}
    if {"pack_id", "pack_version"} <= set(columns_of(con, "refractory_status")):
        packs = {
            r[0]: (r[1], r[2])
            for r in con.sql(
                f"SELECT condition, min(pack_id), min(pack_version) FROM refractory_status "
                f"WHERE condition IN (SELECT unnest({conds})) GROUP BY ALL"
            ).fetchall()
        }
    out: dict[str, list[Any]] = {c.name: [] for c in SUMMARY_COLUMNS}
    for cond in conditions:
        rows, values, groups = _condition_cells(
            [r for r in cs if r["condition"] == cond], [s for s in sens if s["condition"] == cond]
        )
        order = {}
        for r in rows:
            order.setdefault(r.key, len(order))
        withheld = suppress(values, groups, threshold, order)
        pack_id, pack_version = packs.get(cond, (None, None))
        for r in rows:
            n, d = values[r.key], values[r.total]
            hide_n, hide_d = r.key in withheld, r.total in withheld
            shown = not hide_n and not hide_d and d > 0
            for name, v in (
                ("condition", cond),
                ("dimension", r.dimension),
                ("scenario_id", r.scenario_id),
                ("adherence_threshold", r.adherence_threshold),
                ("min_duration_factor", r.min_duration_factor),
                ("category", r.category),
                ("unit", r.unit),
                ("n", None if hide_n else n),
                ("denominator", None if hide_d else d),
                ("proportion", round(n / d, 4) if shown else None),
                ("suppressed", hide_n),
                ("denominator_suppressed", hide_d),
                ("pack_id", pack_id),
                ("pack_version", pack_version),
                ("as_of_date", ref.as_of_date),
                ("build_id", ref.build_id),
            ):
                out[name].append(v)
    meta = {
        "txh.report": "cohort_summary",
        "txh.build_id": ref.build_id,
        "txh.as_of": ref.as_of.isoformat(sep=" "),
        "txh.conditions": ",".join(conditions),
        "txh.small_cell_threshold": str(threshold),
    }
    schema = arrow_schema(SUMMARY_COLUMNS, meta)
    return pa.table(
        {c.name: pa.array(out[c.name], c.arrow_type) for c in SUMMARY_COLUMNS}, schema=schema
    )
