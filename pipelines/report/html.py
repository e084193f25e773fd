"""The HTML cohort report: one self-contained file (plotly.js, CSS and data inline; no network).

Sections: status split (with the explanation of apparent non-response), sensitivity table,
treatment pathways (Sankey per condition), patient timelines (swimmer plot per condition) and
data quality of the latest ingest batches. A section whose tables the build lacks says so
instead of failing.

Patient labels (LabelPolicy): ``--show-ids`` shows patient ids; otherwise patients carry their
keyed pseudonym (``px_...``, the same as in pseudonymised exports) when the key is set (or
``--pseudonymize`` demands it), else a per-report number ``#1..#N`` that links to nothing.
Swimmer plots show days since the patient's first treatment, and calendar dates only with
--show-ids. Counts in the report are exact: the report shows patient-level timelines and is
meant for the clinical and analysis team; the release-safe table is the suppressed
cohort-summary export.

The same build, options and labels give the same bytes (no generation timestamp, fixed
figure ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import duckdb

from pipelines.config import Config, ConfigError
from pipelines.report import figures
from pipelines.report.ingest_quality import latest_batches, top_reasons
from pipelines.report.pseudonym import has_key, load_key, pseudonym
from pipelines.report.source import (
    EXPLANATIONS,
    STATUSES,
    BuildRef,
    columns_of,
)
from pipelines.warehouse import Warehouse, sql_list, sql_literal

DEFAULT_PATIENTS = 20
SWIMMER_STATUSES = ("refractory", "pseudo_refractory")


@dataclass
class LabelPolicy:
    """How patients are named in the HTML report: ``id``, ``pseudonym`` or ``index``."""

    mode: str
    key: bytes | None = None
    _index: dict[str, int] = field(default_factory=dict)

    def label(self, patient_id: str) -> str:
        if self.mode == "id":
            return patient_id
        if self.mode == "pseudonym":
            assert self.key is not None
            return pseudonym(patient_id, self.key)
        n = self._index.setdefault(patient_id, len(self._index) + 1)
        return f"#{n}"

    def describe(self) -> str:
        return {
            "id": "patient ids (--show-ids)",
            "pseudonym": "keyed pseudonyms (px_..., as in pseudonymised exports)",
            "index": "numbers #1..#N for this report only (no key set; --show-ids shows ids)",
        }[self.mode]


def label_policy(cfg: Config, show_ids: bool = False, pseudonymize: bool = False) -> LabelPolicy:
    if show_ids and pseudonymize:
        raise ConfigError("--show-ids and --pseudonymize exclude each other")
    if show_ids:
        return LabelPolicy("id")
    if pseudonymize or has_key(cfg):
        return LabelPolicy("pseudonym", load_key(cfg))
    return LabelPolicy("index")


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rel = con.sql(sql)
    names = rel.columns
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def _has(con: duckdb.DuckDBPyConnection, table: str, *cols: str) -> bool:
    have = columns_of(con, table)
    return bool(have) and set(cols) <= set(have)


# -- data ---------------------------------------------------------------------------------------
def _status_counts(con: duckdb.DuckDBPyConnection, conds: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {c: {} for c in conds}
    for r in _rows(
        con,
        f"SELECT condition, status, count(*) AS n FROM refractory_status WHERE "
        f"condition IN (SELECT unnest({sql_list(conds)})) GROUP BY ALL",
    ):
        out[r["condition"]][r["status"]] = r["n"]
    return out


def _explained(con: duckdb.DuckDBPyConnection, conds: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {c: {} for c in conds}
    if _has(con, "cohort_summary", "dimension", "category", "n"):
        for r in _rows(
            con,
            "SELECT condition, category, n FROM cohort_summary WHERE dimension = "
            f"'non_response_explained_by' AND condition IN "
            f"(SELECT unnest({sql_list(conds)}))",
        ):
            out[r["condition"]][r["category"]] = r["n"]
    return out


def _pathways(
    con: duckdb.DuckDBPyConnection, cond: str, max_steps: int = 4
) -> tuple[list[dict[str, Any]], str]:
    """Distinct pathways (first ``max_steps`` regimens with their outcomes, and the status)
    with their numbers of patients, aggregated in SQL; and the unit (trial or line)."""
    c = sql_literal(cond)
    use_lines = (
        _has(con, "treatment_lines", "line_number", "regimen_key")
        and con.execute(f"SELECT count(*) FROM treatment_lines WHERE condition = {c}").fetchone()[0]
        > 0
    )
    has_outcomes = _has(con, "trial_outcomes", "trial_seq", "regimen_key", "outcome_class")
    if use_lines:
        outcome = (
            "(SELECT arg_min(o.outcome_class, o.trial_seq) FROM trial_outcomes o "
            "WHERE o.patient_id = l.patient_id AND o.condition = l.condition "
            "AND o.line_number = l.line_number)"
            if has_outcomes and _has(con, "trial_outcomes", "line_number")
            else "NULL"
        )
        steps = (
            f"SELECT l.patient_id, l.line_number AS seq, l.regimen_key, {outcome} AS "
            f"outcome_class FROM treatment_lines l WHERE l.condition = {c}"
        )
    elif has_outcomes:
        steps = (
            "SELECT patient_id, trial_seq AS seq, regimen_key, outcome_class "
            f"FROM trial_outcomes WHERE condition = {c}"
        )
    elif _has(con, "treatment_trials", "trial_seq", "regimen_key"):
        steps = (
            "SELECT patient_id, trial_seq AS seq, regimen_key, NULL::VARCHAR AS "
            f"outcome_class FROM treatment_trials WHERE condition = {c}"
        )
    else:
        return [], "trial"
    rows = _rows(
        con,
        f"""
        WITH steps AS ({steps}),
        numbered AS (
            SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY seq) AS step
            FROM steps
        ),
        per_patient AS (
            SELECT patient_id,
                   list(coalesce(regimen_key, 'unknown') ORDER BY step) AS regimens,
                   list(outcome_class ORDER BY step) AS outcomes
            FROM numbered WHERE step <= {int(max_steps)}
            GROUP BY patient_id
        )
        SELECT p.regimens, p.outcomes, coalesce(s.status, 'undetermined') AS status,
               count(*) AS n
        FROM per_patient AS p
        LEFT JOIN refractory_status AS s ON s.patient_id = p.patient_id AND s.condition = {c}
        GROUP BY ALL
        ORDER BY ALL""",
    )
    return rows, "line" if use_lines else "trial"


def _swimmer_lanes(
    con: duckdb.DuckDBPyConnection, cond: str, n: int, labels: LabelPolicy
) -> list[dict[str, Any]]:
    c = sql_literal(cond)
    chosen = _rows(
        con,
        f"""
        WITH c AS (
            SELECT patient_id, status, md5(patient_id) AS h,
                   row_number() OVER (PARTITION BY status ORDER BY md5(patient_id)) AS rn
            FROM refractory_status
            WHERE condition = {c} AND status IN (SELECT unnest({sql_list(list(SWIMMER_STATUSES))}))
        )
        SELECT patient_id, status FROM c
        ORDER BY rn, status = 'pseudo_refractory', h
        LIMIT {int(n)}""",
    )
    if not chosen:
        return []
    ids = sql_list([r["patient_id"] for r in chosen])
    in_ids = f"patient_id IN (SELECT unnest({ids}))"
    lanes = {
        r["patient_id"]: {**r, "trials": [], "lines": [], "responses": [], "events": []}
        for r in chosen
    }
    if _has(con, "trial_outcomes", "start_date", "end_date", "outcome_class"):
        want = [
            "trial_seq",
            "regimen_key",
            "start_date",
            "end_date",
            "is_ongoing",
            "outcome_class",
            "rule_fired",
            "pdc",
            "best_response_original",
        ]
        have = columns_of(con, "trial_outcomes")
        cols = ", ".join(w if w in have else f"NULL AS {w}" for w in want)
        for r in _rows(
            con,
            f"SELECT patient_id, {cols} FROM trial_outcomes WHERE "
            f"condition = {c} AND {in_ids} ORDER BY patient_id, trial_seq",
        ):
            lanes[r["patient_id"]]["trials"].append(r)
    elif _has(con, "treatment_trials", "start_date", "end_date"):
        for r in _rows(
            con,
            "SELECT patient_id, trial_seq, regimen_key, start_date, end_date, "
            "is_ongoing, NULL AS outcome_class, NULL AS rule_fired, NULL AS pdc, "
            "NULL AS best_response_original FROM treatment_trials WHERE "
            f"condition = {c} AND {in_ids} ORDER BY patient_id, trial_seq",
        ):
            lanes[r["patient_id"]]["trials"].append(r)
    if _has(con, "treatment_lines", "line_number", "start_date", "end_date", "regimen_key"):
        for r in _rows(
            con,
            "SELECT patient_id, line_number, start_date, end_date, regimen_key "
            f"FROM treatment_lines WHERE condition = {c} AND {in_ids} "
            "ORDER BY patient_id, line_number",
        ):
            lanes[r["patient_id"]]["lines"].append(r)
    if _has(con, "responses", "assessment_date", "response_category"):
        have = columns_of(con, "responses")
        orig = "original_response" if "original_response" in have else "NULL"
        crit = "criteria" if "criteria" in have else "NULL"
        for r in _rows(
            con,
            f"SELECT patient_id, assessment_date, response_category, {orig} AS "
            f"original_response, {crit} AS criteria FROM responses WHERE "
            f"condition = {c} AND {in_ids} ORDER BY ALL",
        ):
            lanes[r["patient_id"]]["responses"].append(r)
    if _has(con, "events_current", "event_type", "occurred_date"):
        have = columns_of(con, "events_current")
        proc = "procedure" if "procedure" in have else "NULL"
        rev = "revised_to" if "revised_to" in have else "NULL"
        cond_col = "condition" if "condition" in have else "NULL"
        for r in _rows(
            con,
            f"""
                SELECT patient_id, occurred_date, event_type, {proc} AS procedure,
                       {rev} AS revised_to
                FROM events_current
                WHERE {in_ids} AND (event_type IN ('transplanted', 'died')
                    OR (event_type IN ('diagnosis_revised', 'diagnosis_refuted')
                        AND coalesce({cond_col}, {c}) = {c}))
                ORDER BY ALL""",
        ):
            kind = {"transplanted": "transplant", "died": "death"}.get(
                r["event_type"], "diagnosis_change"
            )
            what = {
                "transplant": f"transplant ({r['procedure'] or 'procedure not given'})",
                "death": "death",
            }.get(kind) or (
                r["event_type"].replace("_", " ")
                + (f" to {r['revised_to']}" if r["revised_to"] else "")
            )
            lanes[r["patient_id"]]["events"].append(
                {"date": r["occurred_date"], "kind": kind, "what": what}
            )
    out = []
    for lane in lanes.values():
        starts = [t["start_date"] for t in lane["trials"] if t["start_date"]]
        starts += [ln["start_date"] for ln in lane["lines"] if ln["start_date"]]
        if not starts:
            continue
        ends = [t["end_date"] or t["start_date"] for t in lane["trials"]]
        lane["origin"] = min(starts)
        lane["span"] = (max(ends + starts) - lane["origin"]).days
        out.append(lane)
    out.sort(key=lambda ln: (SWIMMER_STATUSES.index(ln["status"]), -ln["span"], ln["patient_id"]))
    for lane in out:
        lane["label"] = labels.label(lane["patient_id"])
    return out


# -- HTML -----------------------------------------------------------------------------------------
CSS = """
:root { --ink:#1c2833; --muted:#5d6d7e; --line:#e5e8e8; --bg:#f7f9f9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1c2833; color:#fff; padding:18px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .meta { color:#d5dbdb; font-size:13px; }
nav { padding:8px 32px; background:#fff; border-bottom:1px solid var(--line);
      position:sticky; top:0; z-index:10; }
nav a { margin-right:18px; color:#2e86c1; text-decoration:none; font-weight:500; }
main { max-width:1360px; margin:0 auto; padding:8px 24px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; margin:18px 0;
          padding:14px 20px 18px; }
h2 { font-size:18px; margin:4px 0 6px; }
h3 { font-size:15px; margin:16px 0 4px; }
p.note, .note { color:var(--muted); font-size:12.5px; margin:2px 0 8px; }
.banner { background:#fef5e7; border:1px solid #f5cba7; color:#784212; padding:8px 14px;
          border-radius:6px; margin:14px 0 0; font-size:13px; }
table { border-collapse:collapse; font-size:12.5px; margin:6px 0 10px; }
th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:right;
         white-space:nowrap; }
th { background:#f4f6f6; font-weight:600; white-space:normal; vertical-align:bottom; }
td.l, th.l { text-align:left; }
tr.base td { font-weight:600; }
.ok { color:#1e8449; font-weight:600; } .bad { color:#b03a2e; font-weight:600; }
.flow { display:flex; flex-wrap:wrap; gap:0 28px; }
.compact { flex:1 1 520px; max-width:600px; } .compact table { width:100%; }
.compact th, .compact td { padding:3px 6px; }
.grid2 { display:grid; grid-template-columns: minmax(0,1fr) minmax(0,1fr); gap:18px; }
.legend-dot { display:inline-block; width:10px; height:10px; border-radius:2px;
              margin:0 4px 0 10px; vertical-align:middle; }
"""


def _table(
    header: list[str], rows: list[list[str]], left: int = 1, row_class: list[str] | None = None
) -> str:
    h = "".join(
        f"<th class='l'>{escape(x)}</th>" if i < left else f"<th>{escape(x)}</th>"
        for i, x in enumerate(header)
    )
    body = []
    for j, r in enumerate(rows):
        cls = f" class='{row_class[j]}'" if row_class and row_class[j] else ""
        body.append(
            f"<tr{cls}>"
            + "".join(
                f"<td class='l'>{x}</td>" if i < left else f"<td>{x}</td>" for i, x in enumerate(r)
            )
            + "</tr>"
        )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fig(fig: Any, div_id: str) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config=figures.PLOT_CONFIG
    )


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s.lower())


def _pct(n: int, d: int) -> str:
    return f"{n} <span class='note'>({n / d:.0%})</span>" if d else str(n)


def _status_section(con: duckdb.DuckDBPyConnection, conds: list[str]) -> str:
    counts = _status_counts(con, conds)
    explained = _explained(con, conds)
    rows = []
    for c in conds:
        tot = sum(counts[c].values())
        rows.append(
            [escape(figures.nice(c)), str(tot)] + [_pct(counts[c].get(s, 0), tot) for s in STATUSES]
        )
    head = ["condition", "patients", *[figures.nice(s) for s in STATUSES]]
    expl_rows = []
    for c in conds:
        tot = sum(explained[c].values())
        if tot:
            expl_rows.append(
                [escape(figures.nice(c)), str(tot)]
                + [_pct(explained[c].get(e, 0), tot) for e in EXPLANATIONS]
            )
    expl = (
        (
            "<h3>Apparent non-responders (refractory or pseudo-refractory) explained by</h3>"
            + _table(["condition", "patients", *[figures.nice(e) for e in EXPLANATIONS]], expl_rows)
        )
        if expl_rows
        else ""
    )
    return f"""
<section id="status"><h2>Status split</h2>
<p class="note">Patients by status under each condition's rule pack as of the build date, and
why apparent non-responders look refractory: true non-response, or non-adherence, intolerance,
inadequate trials or a measurement artefact (pseudo-refractory). Hover for counts.</p>
{_fig(figures.status_split(counts, explained), "fig-status")}
{_table(head, rows)}{expl}
</section>"""


def _sensitivity_section(con: duckdb.DuckDBPyConnection, conds: list[str]) -> str:
    if not _has(con, "sensitivity", "scenario_id", "n_patients"):
        return (
            "<section id='sensitivity'><h2>Sensitivity</h2><p class='note'>This build has "
            "no sensitivity table.</p></section>"
        )
    sens = _rows(
        con,
        f"SELECT * FROM sensitivity WHERE condition IN "
        f"(SELECT unnest({sql_list(conds)})) ORDER BY condition, NOT is_base, "
        "adherence_threshold, min_duration_factor, scenario_id",
    )
    parts = []
    for c in conds:
        rows, classes, n_patients = [], [], 0
        for s in (s for s in sens if s["condition"] == c):
            tot = s["n_patients"] or 0
            cells = []
            for st in STATUSES:
                n = s.get(f"n_{st}") or 0
                pct = f"{n / tot:.0%}" if tot else "-"
                style = "padding:1px 5px;border-radius:3px"
                if st in ("refractory", "pseudo_refractory") and tot:
                    shade = figures.rgba(figures.STATUS_COLOURS[st], round(0.85 * n / tot, 3))
                    style += f";background:{shade}"
                cells.append(f"<span title='{n} of {tot} patients' style='{style}'>{pct}</span>")
            adh = s.get("adherence_threshold")
            dur = s.get("min_duration_factor")
            name = (
                "base (pack)"
                if s.get("is_base")
                else f"&ge;{adh:.2f} &middot; &times;{dur:g}"
                if adh is not None and dur is not None
                else escape(s["scenario_id"])
            )
            rows.append([name, *cells])
            classes.append("base" if s.get("is_base") else "")
            n_patients = max(n_patients, tot)
        if rows:
            parts.append(
                f"<div class='compact'><h3>{escape(figures.nice(c))} <span "
                f"class='note'>({n_patients} patients)</span></h3>"
                + _table(
                    ["PDC · duration", *[figures.nice(s) for s in STATUSES]],
                    rows,
                    row_class=classes,
                )
                + "</div>"
            )
    return f"""
<section id="sensitivity"><h2>Sensitivity</h2>
<p class="note">How the status split moves when the adherence threshold (PDC) and the minimum
trial duration (multiple of each pack's minimum) vary. The first row is each rule pack's own
parameters; the others are "&ge;PDC threshold &middot; &times;minimum-duration factor". Cells are
shares of the condition's patients (hover for counts); shading grows with the share of
refractory and pseudo-refractory patients.</p>
<div class="flow">{"".join(parts)}</div>
{"" if parts else "<p class='note'>No sensitivity rows for these conditions.</p>"}
</section>"""


def _pathways_section(con: duckdb.DuckDBPyConnection, conds: list[str]) -> str:
    parts = []
    legend = "".join(
        f"<span class='legend-dot' style='background:{figures.OUTCOME_COLOURS[o]}'>"
        f"</span>{escape(figures.nice(o))}"
        for o in figures.OUTCOME_ORDER
    )
    for c in conds:
        paths, unit = _pathways(con, c)
        if not paths:
            parts.append(
                f"<h3>{escape(figures.nice(c))}</h3><p class='note'>No treatment "
                "trials in this build.</p>"
            )
            continue
        n = sum(p["n"] for p in paths)
        parts.append(
            f"<h3>{escape(figures.nice(c))} <span class='note'>({n} patients; first "
            f"4 {'lines of therapy' if unit == 'line' else 'trials'} &rarr; status)"
            "</span></h3>" + _fig(figures.pathways_sankey(paths, unit), f"fig-sankey-{_slug(c)}")
        )
    return f"""
<section id="pathways"><h2>Treatment pathways</h2>
<p class="note">Regimen of each patient's first four treatment trials (lines of therapy for
oncology conditions), ending in the patient's status. Links are coloured by the outcome class of
the trial they leave:{legend}. Per step, regimens outside the five most frequent are pooled as
"other". Hover a node or a link for the full regimen and the number of patients.</p>
{"".join(parts)}
</section>"""


def _swimmer_section(
    con: duckdb.DuckDBPyConnection, conds: list[str], n: int, labels: LabelPolicy
) -> str:
    status_key = "".join(
        f"<span class='legend-dot' style='background:"
        f"{figures.STATUS_COLOURS[s]}'></span>{figures.nice(s)}"
        for s in SWIMMER_STATUSES
    )
    parts = []
    for c in conds:
        lanes = _swimmer_lanes(con, c, n, labels)
        if not lanes:
            parts.append(
                f"<h3>{escape(figures.nice(c))}</h3><p class='note'>No refractory or "
                "pseudo-refractory patients.</p>"
            )
            continue
        parts.append(
            f"<h3>{escape(figures.nice(c))} <span class='note'>({len(lanes)} "
            "refractory / pseudo-refractory patients)</span></h3>"
            + _fig(
                figures.swimmer(lanes, show_dates=labels.mode == "id"), f"fig-swimmer-{_slug(c)}"
            )
        )
    return f"""
<section id="timelines"><h2>Patient timelines</h2>
<p class="note">Up to {n} refractory and pseudo-refractory patients per condition (alternating
between the two, in a fixed pseudo-random order). Bars are treatment trials coloured by outcome
class (overlapping trials side by side), grey bands are lines of therapy, markers are response
assessments, transplants, diagnosis changes and deaths; x is days since the patient's first
treatment. The square after a label is the patient's status:{status_key}. Hover a bar for the
rule that decided the trial.</p>
{"".join(parts)}
</section>"""


def _quality_section(wh: Warehouse, n_batches: int = 10) -> str:
    batches = latest_batches(wh, n_batches)
    if not batches:
        return (
            "<section id='quality'><h2>Data quality</h2><p class='note'>No ingest batches "
            "in this warehouse.</p></section>"
        )
    rows = []
    for b in reversed(batches):
        share = f"{b.quarantined / b.rows_read:.1%}" if b.rows_read else ""
        rows.append(
            [
                str(b.batch_id),
                escape(b.ingested_at),
                str(b.n_files),
                str(b.rows_read),
                str(b.accepted),
                str(b.quarantined),
                share,
                str(b.duplicates),
                str(b.conflicts),
                str(b.files_rejected + b.files_gate_failed),
                "<span class='ok'>yes</span>" if b.reconciled else "<span class='bad'>NO</span>",
                "<span class='ok'>pass</span>"
                if b.gate_passed
                else "<span class='bad'>FAIL</span>",
            ]
        )
    reasons = top_reasons(batches)
    reason_rows = [[escape(r), str(n), str(k)] for r, n, k in reasons]
    last = batches[-1]
    file_rows = [
        [
            escape(f["file"]),
            escape(f["status"]),
            str(f["rows_read"]),
            str(f["accepted"]),
            str(f["quarantined"]),
            str(f["duplicates"]),
        ]
        for f in last.files
    ]
    docs = (
        (
            f"<p class='note'>Per-batch data docs (in the warehouse, not linked): "
            f"<code>{escape(last.data_docs)}</code> and the other batches' "
            "<code>quality/batch=N/data_docs.html</code>.</p>"
        )
        if last.data_docs
        else ""
    )
    return f"""
<section id="quality"><h2>Data quality of the latest ingest batches</h2>
<p class="note">From the batch manifests: every batch reconciles rows read = accepted +
quarantined + duplicates. Latest {len(batches)} batch(es), newest first.</p>
<div class="grid2"><div>{_fig(figures.ingest_bars(batches), "fig-ingest")}</div>
<div><h3>Top quarantine reasons</h3>
{
        _table(["reason", "rows", "batches"], reason_rows)
        if reason_rows
        else "<p class='note'>Nothing quarantined.</p>"
    }</div></div>
{
        _table(
            [
                "batch",
                "ingested at",
                "files",
                "read",
                "accepted",
                "quarantined",
                "quarantined %",
                "duplicates",
                "conflicts",
                "files failed",
                "reconciled",
                "gate",
            ],
            rows,
        )
    }
<h3>Files of batch {last.batch_id}</h3>
{_table(["file", "status", "read", "accepted", "quarantined", "duplicates"], file_rows)}
{docs}
</section>"""


def cohort_report_html(
    cfg: Config,
    con: duckdb.DuckDBPyConnection | None,
    ref: BuildRef | None,
    conditions: list[str] | None,
    labels: LabelPolicy,
    n_patients: int = DEFAULT_PATIENTS,
) -> str:
    """The report page. ``conditions`` None = every condition the build judged. Without a
    build (or without refractory_status) only the data-quality section has content."""
    from plotly.offline import get_plotlyjs

    wh = Warehouse.from_config(cfg)
    have_status = con is not None and _has(con, "refractory_status", "condition", "status")
    if have_status:
        assert con is not None
        judged = [
            r[0]
            for r in con.sql(
                "SELECT DISTINCT condition FROM refractory_status ORDER BY 1"
            ).fetchall()
        ]
        conds = [c for c in judged if conditions is None or c in conditions]
        sections = (
            (
                _status_section(con, conds)
                + _sensitivity_section(con, conds)
                + _pathways_section(con, conds)
                + _swimmer_section(con, conds, n_patients, labels)
            )
            if conds
            else (
                "<section><h2>Cohort</h2><p class='note'>No patients judged for "
                f"{escape(', '.join(conditions or []))} in this build.</p></section>"
            )
        )
    else:
        conds = conditions or []
        sections = (
            "<section id='status'><h2>Cohort</h2><p class='note'>This build has no "
            "refractory_status table (the marts have not been built): only data quality "
            "is shown.</p></section>"
        )
    sections += _quality_section(wh)
    build = (
        f"build {escape(ref.build_id)} &middot; as of {ref.as_of:%Y-%m-%d %H:%M:%S} UTC"
        f"{'' if ref.published else ' (unpublished, built for this report)'}"
        if ref
        else "no published build"
    )
    title = "Cohort report" + (
        f": {', '.join(figures.nice(c) for c in conds)}" if conditions and len(conds) <= 3 else ""
    )
    nav = "".join(
        f"<a href='#{i}'>{t}</a>"
        for i, t in (
            ("status", "Status split"),
            ("sensitivity", "Sensitivity"),
            ("pathways", "Pathways"),
            ("timelines", "Timelines"),
            ("quality", "Data quality"),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} (txh)</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<header><h1>{escape(title)}</h1>
<div class="meta">treatment-history &middot; {build} &middot; patients labelled by
{escape(labels.describe())}</div></header>
<nav>{nav}</nav>
<main>
<div class="banner">Patient-level report for the clinical and analysis team: exact counts and
individual timelines. For release outside the team use the suppressed summary
(<code>txh report --summary</code>) and pseudonymised patient exports.</div>
{sections}
</main></body></html>
"""
