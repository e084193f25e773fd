"""The patient report: one row per patient x condition, from refractory_status and its evidence.

The columns (PATIENT_COLUMNS) are fixed whatever the build holds: a column the build does not
have (a condition-specific sub-flag of another condition, a table not built yet) is NULL, so
scripts can rely on the layout. Lists (refractory drugs and classes) are joined with ``;``.
Rows are sorted by patient (or pseudonym) and condition.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.config import ConfigError
from pipelines.report.export import Column, arrow_schema
from pipelines.report.pseudonym import pseudonyms
from pipelines.report.source import STATUSES, BuildRef, columns_of
from pipelines.warehouse import sql_list, sql_literal

PSEUDONYM_COLUMN = "patient_pseudonym"

_C = Column
PATIENT_COLUMNS: list[Column] = [
    _C(
        "patient_id",
        "VARCHAR",
        "Patient identifier (patient_pseudonym, `px_...`, when pseudonymised).",
    ),
    _C("condition", "VARCHAR", "Condition (rule pack)."),
    _C(
        "status",
        "VARCHAR",
        "refractory, pseudo_refractory, at_risk, partial_responder, responder or undetermined.",
    ),
    _C(
        "pseudo_reason",
        "VARCHAR",
        "Why pseudo_refractory (look_alike_trials_counted, "
        "non_adherent, white_coat, suboptimal_regimen).",
    ),
    _C(
        "misdiagnosis_suspected",
        "BOOLEAN",
        "The diagnosis was revised or refuted by the as-of date.",
    ),
    _C("required_failures", "BIGINT", "Informative failures the rule pack requires."),
    _C("n_trials", "BIGINT", "Treatment trials judged for the condition."),
    _C("n_failures", "BIGINT", "Counted trials that count as failures."),
    _C(
        "n_look_alike", "BIGINT", "Counted trials that were intolerant, non-adherent or inadequate."
    ),
    *[
        _C(f"n_{c}", "BIGINT", f"Trials with outcome {c}.")
        for c in (
            "response",
            "partial_response",
            "non_response",
            "relapse_after_response",
            "intolerant",
            "non_adherent",
            "inadequate_trial",
            "insufficient_followup",
            "inappropriate",
        )
    ],
    _C("first_trial_start_date", "DATE", "Start of the first trial for the condition."),
    _C("last_trial_start_date", "DATE", "Start of the latest trial for the condition."),
    _C("last_failure_end_date", "DATE", "End of the latest trial that counts as a failure."),
    _C("last_progression_date", "DATE", "Latest progression recorded against a trial."),
    _C("diagnosis_changed_date", "DATE", "First diagnosis revision or refutation."),
    _C("diagnosis_change", "VARCHAR", "The revisions/refutations, with dates."),
    _C(
        "asct_relapse_date",
        "DATE",
        "LBCL: progression within the window after an autologous SCT (refractory by SCHOLAR-1).",
    ),
    _C("subtype", "VARCHAR", "Latest diagnosed subtype."),
    _C("primary_refractory_first_line", "BOOLEAN", "LBCL: the first line counts as a failure."),
    _C("prior_lines", "BIGINT", "Lines of therapy so far (oncology)."),
    _C(
        "eligible_after_two_lines",
        "BOOLEAN",
        "LBCL: two or more prior lines (label eligibility, not refractoriness).",
    ),
    _C("relapsed_and_refractory", "BOOLEAN", "Myeloma: refractory after reaching at least MR."),
    _C("primary_refractory_myeloma", "BOOLEAN", "Myeloma: refractory, never reached MR."),
    _C("refractory_drugs", "VARCHAR", "Myeloma: drugs of failed lines, sorted, `;`-separated."),
    _C("refractory_classes", "VARCHAR", "Myeloma: classes with a refractory drug, `;`-separated."),
    _C("triple_class_exposed", "BOOLEAN", "Myeloma: exposed to an IMiD, a PI and an anti-CD38."),
    _C(
        "triple_class_refractory",
        "BOOLEAN",
        "Myeloma: refractory to an IMiD, a PI and an anti-CD38.",
    ),
    _C("penta_refractory", "BOOLEAN", "Myeloma: penta-refractory."),
    _C(
        "partially_responsive",
        "BOOLEAN",
        "Depression: latest informative trial was a partial response (PRD).",
    ),
    _C("thase_rush_stage", "BIGINT", "Depression: Thase-Rush stage 0-5."),
    _C("mgh_score", "DOUBLE", "Depression: MGH staging score."),
    _C("white_coat", "BOOLEAN", "Hypertension: office BP above goal, out-of-office at goal."),
    _C(
        "controlled_resistant",
        "BOOLEAN",
        "Hypertension: at goal on the pack's number of agents or more.",
    ),
    _C(
        "refractory_htn",
        "BOOLEAN",
        "Hypertension: uncontrolled on >= 5 agents incl. a thiazide-like diuretic and an MRA.",
    ),
    _C(
        "apparent_only", "BOOLEAN", "Hypertension: resistant by office BP with no out-of-office BP."
    ),
    _C(
        "current_n_classes",
        "BIGINT",
        "Hypertension: antihypertensive classes in the current regimen.",
    ),
    _C("drug_responsive_again", "BOOLEAN", "Had the failures for refractoriness, now responding."),
    _C("active_disease", "BOOLEAN", "SLE: latest SLEDAI-2K at or above the activity threshold."),
    _C(
        "evidence",
        "VARCHAR",
        "The trials that decided it: '#seq regimen start..end: rule; PDC; "
        "best response', separated by ' | '.",
    ),
    _C("pack_id", "VARCHAR", "Rule pack that decided it."),
    _C("pack_version", "VARCHAR", "Rule pack version."),
    _C("as_of_date", "DATE", "Evaluation date of the build."),
    _C("build_id", "VARCHAR", "Build the report was read from."),
]

# columns computed here when refractory_status does not carry them
_DERIVED = {
    "last_trial_start_date": "td.last_trial_start_date",
    "last_progression_date": "td.last_progression_date",
    "diagnosis_changed_date": "dx.diagnosis_changed_date",
}


def columns(pseudonymized: bool) -> list[Column]:
    """The report's columns; the first is ``patient_pseudonym`` when pseudonymised."""
    if not pseudonymized:
        return list(PATIENT_COLUMNS)
    first = Column(
        PSEUDONYM_COLUMN,
        "VARCHAR",
        "Keyed pseudonym of the patient (px_ + 20 hex digits of HMAC-SHA256); replaces patient_id.",
    )
    return [first, *PATIENT_COLUMNS[1:]]


def check_statuses(statuses: list[str] | None) -> list[str]:
    """--status values (repeatable or comma-separated), validated against the status domain."""
    out: list[str] = []
    for s in statuses or []:
        out += [x.strip() for x in s.split(",") if x.strip()]
    bad = [s for s in out if s not in STATUSES]
    if bad:
        raise ConfigError(f"unknown status {', '.join(bad)}; one of {', '.join(STATUSES)}")
    return sorted(set(out), key=STATUSES.index)


def patient_report(
    con: duckdb.DuckDBPyConnection,
    ref: BuildRef,
    conditions: list[str],
    statuses: list[str] | None = None,
    key: bytes | None = None,
) -> pa.Table:
    """One row per patient x condition of ``conditions`` (optionally only ``statuses``),
    pseudonymised with ``key`` when given."""
    rs_cols = columns_of(con, "refractory_status")
    if not rs_cols:
        raise ConfigError(
            f"build {ref.build_id} has no refractory_status table; the marts have "
            "not been built (see `txh build`)"
        )
    to_cols = columns_of(con, "trial_outcomes")
    ev_cols = columns_of(con, "events_current")
    ctes = []
    if {"start_date", "progression_date"} <= set(to_cols):
        ctes.append("""td AS (
            SELECT patient_id, condition, max(start_date) AS last_trial_start_date,
                   max(progression_date) AS last_progression_date
            FROM trial_outcomes GROUP BY ALL)""")
    else:
        ctes.append(
            "td AS (SELECT NULL::VARCHAR AS patient_id, NULL::VARCHAR AS condition, "
            "NULL::DATE AS last_trial_start_date, NULL::DATE AS last_progression_date "
            "WHERE false)"
        )
    if {"event_type", "occurred_date", "condition"} <= set(ev_cols):
        ctes.append("""dx AS (
            SELECT patient_id, condition, min(occurred_date) AS diagnosis_changed_date
            FROM events_current
            WHERE event_type IN ('diagnosis_revised', 'diagnosis_refuted')
            GROUP BY ALL)""")
    else:
        ctes.append(
            "dx AS (SELECT NULL::VARCHAR AS patient_id, NULL::VARCHAR AS condition, "
            "NULL::DATE AS diagnosis_changed_date WHERE false)"
        )

    def expr(c: Column) -> str:
        if c.name == "build_id":
            return f"{sql_literal(ref.build_id)} AS build_id"
        if c.name in rs_cols:
            if rs_cols[c.name].endswith("[]"):
                return f"array_to_string(list_sort(rs.{c.name}), ';') AS {c.name}"
            return f"CAST(rs.{c.name} AS {c.type}) AS {c.name}"
        if c.name in _DERIVED:
            return f"CAST({_DERIVED[c.name]} AS {c.type}) AS {c.name}"
        return f"CAST(NULL AS {c.type}) AS {c.name}"

    where = [f"rs.condition IN (SELECT unnest({sql_list(conditions)}))"]
    if statuses:
        where.append(f"rs.status IN (SELECT unnest({sql_list(statuses)}))")
    sql = (
        f"WITH {', '.join(ctes)}\n"
        f"SELECT {', '.join(expr(c) for c in PATIENT_COLUMNS)}\n"
        "FROM refractory_status AS rs\n"
        "LEFT JOIN td ON td.patient_id = rs.patient_id AND td.condition = rs.condition\n"
        "LEFT JOIN dx ON dx.patient_id = rs.patient_id AND dx.condition = rs.condition\n"
        f"WHERE {' AND '.join(where)}\n"
        "ORDER BY rs.patient_id, rs.condition"
    )
    table = con.sql(sql).to_arrow_table()
    meta = {
        "txh.report": "patients",
        "txh.build_id": ref.build_id,
        "txh.as_of": ref.as_of.isoformat(sep=" "),
        "txh.conditions": ",".join(conditions),
        "txh.statuses": ",".join(statuses or []),
        "txh.pseudonymized": "true" if key else "false",
    }
    table = table.cast(arrow_schema(PATIENT_COLUMNS))
    if key is not None:
        ids = table.column("patient_id").to_pylist()
        mapping = pseudonyms(sorted(set(ids)), key)
        table = table.set_column(
            0, PSEUDONYM_COLUMN, pa.array([mapping[i] for i in ids], pa.string())
        )
        # sorted by pseudonym: the row order must not reveal the order of the real ids
        table = table.sort_by([(PSEUDONYM_COLUMN, "ascending"), ("condition", "ascending")])
    return table.replace_schema_metadata(meta).cast(arrow_schema(columns(key is not None), meta))
