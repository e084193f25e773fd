"""The quality gate runner: row-level reasons, the per-file gate, and the GX cross-check.

1. ``apply_checks`` evaluates every suite's checks on the staged batch in one DuckDB pass and
   adds ``reasons`` (VARCHAR[]) to each row. Rows with reasons are quarantined.
2. ``check_counts`` counts failing rows per file, suite and check; ``gate`` compares each
   failure fraction with the check's ``mostly`` (the fraction that must pass).
3. ``gx_validate`` runs the same suites through great-expectations (SQL push-down on the staged
   Parquet) and ``crosscheck`` requires GX's unexpected counts to equal ours.
4. ``render_data_docs`` writes a self-contained HTML page of what passed and failed (GX's own
   Data Docs link CDN assets and a tracking logo, see tooling-notes.md, so we render our own
   from the GX result JSON).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from quality.suites import Suite


@dataclass(frozen=True)
class CheckCount:
    file_idx: int
    suite: str
    reason_code: str
    in_scope: int
    failed: int
    mostly: float

    @property
    def fail_fraction(self) -> float:
        return self.failed / self.in_scope if self.in_scope else 0.0

    @property
    def passed(self) -> bool:
        # mostly = fraction that must pass; compare in integers to avoid float edge effects
        return (
            self.in_scope == 0
            or (self.in_scope - self.failed) >= self.mostly * self.in_scope - 1e-9
        )


@dataclass
class GateResult:
    passed_files: set[int] = field(default_factory=set)
    failed_files: dict[int, list[CheckCount]] = field(default_factory=dict)

    def file_passed(self, file_idx: int) -> bool:
        return file_idx not in self.failed_files


def _cond(suite: Suite, check: Any) -> str:
    return check.predicate if suite.scope == "TRUE" else f"({suite.scope}) AND ({check.predicate})"


def reasons_expr(suites: list[Suite]) -> str:
    """SQL for a row's reasons: the sorted codes of every failing check.

    One list of scalar CASE arms (in code order) filtered for NULLs: cheap per row. Checks that
    report detailed codes (type parsing: ``unparseable_<column>``) are merged, and the list
    re-sorted, only for the rare rows that have them."""
    simple = sorted(
        ((c.reason_code, _cond(s, c)) for s in suites for c in s.checks if not c.reason_codes_sql),
        key=lambda x: x[0],
    )
    detailed = [(s, c) for s in suites for c in s.checks if c.reason_codes_sql]
    # the list is built only for rows failing some check: almost every row passes them all,
    # and building and filtering a list of every check per row was most of this expression's
    # cost (2.2 s of CPU per 2M rows)
    any_failed = " OR ".join(f"({cond})" for _code, cond in simple)
    base = (
        f"CASE WHEN {any_failed} THEN {_failing_codes(simple)} ELSE CAST([] AS VARCHAR[]) END"
        if simple
        else "CAST([] AS VARCHAR[])"
    )
    for s, c in detailed:
        cond = _cond(s, c)
        base = (
            f"CASE WHEN {cond} THEN list_sort(list_distinct(list_concat({base}, "
            f"{c.reason_codes_sql}))) ELSE {base} END"
        )
    return base


def recheck_expr(suites: list[Suite], columns: tuple[str, ...]) -> str | None:
    """SQL for a row's reasons after the values of ``columns`` changed: its old ``reasons``
    (as ``reasons_expr`` made them: sorted, distinct) with the verdicts of the checks that read
    those columns redone, and nothing else. It reads only those checks' columns, not the whole
    row, so re-checking a few rows of a wide batch does not scan all of it.

    None when the old list cannot tell which check put a code there: a code of a re-done check
    that another check gives too, or a re-done check with detailed codes. Then re-evaluate the
    whole row with ``reasons_expr``."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(c) for c in columns) + r")\b")
    redo: list[tuple[str, str]] = []
    others: set[str] = set()
    for s in suites:
        for c in s.checks:
            cond = _cond(s, c)
            if not pattern.search(cond + " " + (c.reason_codes_sql or "")):
                others.add(c.reason_code)
            elif c.reason_codes_sql:
                return None
            else:
                redo.append((c.reason_code, cond))
    if not redo:
        return "reasons"
    codes = sorted({code for code, _ in redo})
    if others & set(codes) or any(code.startswith("unparseable_") for code in codes):
        return None
    kept = "list_filter(reasons, lambda x: x NOT IN (" + ", ".join(f"'{c}'" for c in codes) + "))"
    return f"list_sort(list_distinct(list_concat({kept}, {_failing_codes(sorted(redo))})))"


def _failing_codes(checks: list[tuple[str, str]]) -> str:
    """SQL for the codes of the (code, condition) checks that fail on a row, in list order."""
    arms = ", ".join(f"CASE WHEN {cond} THEN '{code}' END" for code, cond in checks)
    return f"list_filter([{arms}], lambda x: x IS NOT NULL)"


def apply_checks(
    con: duckdb.DuckDBPyConnection, source: str, target: str, suites: list[Suite]
) -> None:
    """CREATE TABLE target AS source + ``reasons`` (sorted, distinct codes)."""
    con.execute(
        f"CREATE TABLE {target} AS SELECT *, {reasons_expr(suites)} AS reasons FROM {source}"
    )


def check_counts(
    con: duckdb.DuckDBPyConnection, table: str, suites: list[Suite]
) -> list[CheckCount]:
    """Failing rows per file, suite and check, read back from the rows' reasons.

    A row belongs to one family, so (family, code) names the check, except for the envelope
    suite (`events`), which applies to every row; detailed parse codes belong to the parse
    check. Only rows with reasons are unnested, so this costs one light pass."""
    envelope = next(s for s in suites if s.scope == "TRUE")
    env_codes = {c.reason_code for c in envelope.checks if not c.reason_codes_sql}
    parse_check = next((c for c in envelope.checks if c.reason_codes_sql), None)
    scope_rows = con.execute(
        f"SELECT _file_idx, family, count(*) FROM {table} GROUP BY ALL"
    ).fetchall()
    in_scope: dict[tuple[int, str], int] = {}
    for idx, fam, n in scope_rows:
        in_scope[(idx, envelope.name)] = in_scope.get((idx, envelope.name), 0) + n
        if fam is not None:
            in_scope[(idx, fam)] = in_scope.get((idx, fam), 0) + n
    failed: dict[tuple[int, str, str], int] = {}
    parse_prefix = "unparseable_"
    for idx, fam, code, n in con.execute(f"""
        SELECT _file_idx, family, code, count(DISTINCT _row) FROM (
            SELECT _file_idx, family, _row,
                   CASE WHEN starts_with(r, '{parse_prefix}') THEN '{parse_prefix}*' ELSE r END AS code
            FROM (SELECT _file_idx, family, _row, unnest(reasons) AS r FROM {table}
                  WHERE len(reasons) > 0))
        GROUP BY ALL
    """).fetchall():
        if code == f"{parse_prefix}*" and parse_check is not None:
            key = (idx, envelope.name, parse_check.reason_code)
        elif code in env_codes:
            key = (idx, envelope.name, code)
        else:
            key = (idx, fam, code)
        failed[key] = failed.get(key, 0) + n
    files = sorted({k[0] for k in in_scope})
    out: list[CheckCount] = []
    for idx in files:
        for s in suites:
            for c in s.checks:
                out.append(
                    CheckCount(
                        file_idx=idx,
                        suite=s.name,
                        reason_code=c.reason_code,
                        in_scope=in_scope.get((idx, s.name), 0),
                        failed=failed.get((idx, s.name, c.reason_code), 0),
                        mostly=c.mostly,
                    )
                )
    return out


def gate(counts: list[CheckCount]) -> GateResult:
    res = GateResult()
    for c in counts:
        if not c.passed:
            res.failed_files.setdefault(c.file_idx, []).append(c)
        else:
            res.passed_files.add(c.file_idx)
    res.passed_files -= set(res.failed_files)
    return res


def totals_by_check(counts: list[CheckCount]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for c in counts:
        out[(c.suite, c.reason_code)] = out.get((c.suite, c.reason_code), 0) + c.failed
    return out


def gx_validate(
    con: duckdb.DuckDBPyConnection, table: str, suites: list[Suite]
) -> dict[str, dict[str, Any]]:
    from quality.gx_duckdb import validate_table

    return validate_table(con, table, suites)


class CrossCheckError(RuntimeError):
    """GX and the quarantine pass disagree: a bug in a check's predicate, never a data problem."""


def crosscheck(gx_results: dict[str, dict[str, Any]], counts: list[CheckCount]) -> None:
    from quality.gx_duckdb import unexpected_counts

    ours = totals_by_check(counts)
    problems = []
    for suite, result in gx_results.items():
        for code, n in unexpected_counts(result).items():
            if ours.get((suite, code), 0) != n:
                problems.append(
                    f"{suite}.{code}: great-expectations {n}, quarantine pass "
                    f"{ours.get((suite, code), 0)}"
                )
    if problems:
        raise CrossCheckError("quality cross-check failed: " + "; ".join(problems))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#176d2c;font-weight:600}.bad{color:#b00020;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777;font-size:.85rem}
"""


def render_data_docs(
    path: Path,
    *,
    batch_id: int,
    files: list[dict[str, Any]],
    counts: list[CheckCount],
    suites: list[Suite],
    gx_results: dict[str, dict[str, Any]] | None,
) -> None:
    """One self-contained HTML page: files and their reconciliation, then every check."""
    e = html.escape
    rows_files = "".join(
        f"<tr><td>{e(f['path'])}</td><td>{e(f['status'])}</td>"
        f"<td class=num>{f.get('rows_read', 0)}</td><td class=num>{f.get('accepted', 0)}</td>"
        f"<td class=num>{f.get('quarantined', 0)}</td><td class=num>{f.get('duplicates', 0)}</td>"
        f"<td class={'ok' if f.get('reconciled', True) else 'bad'}>"
        f"{'yes' if f.get('reconciled', True) else 'NO'}</td><td>{e(f.get('message', ''))}</td></tr>"
        for f in files
    )
    by_file: dict[int, str] = {i: f["path"] for i, f in enumerate(files)}
    gx_success: dict[tuple[str, str], bool] = {}
    for sname, res in (gx_results or {}).items():
        for r in res["results"]:
            gx_success[(sname, r["expectation_config"]["meta"]["reason_code"])] = r["success"]
    sections = []
    for s in suites:
        rows = []
        for c in s.checks:
            mine = [x for x in counts if x.suite == s.name and x.reason_code == c.reason_code]
            failed = sum(x.failed for x in mine)
            scope = sum(x.in_scope for x in mine)
            ok = all(x.passed for x in mine)
            worst = [by_file.get(x.file_idx, "?") for x in mine if not x.passed]
            gx = gx_success.get((s.name, c.reason_code))
            rows.append(
                f"<tr><td><code>{e(c.reason_code)}</code></td><td>{e(c.rationale)}</td>"
                f"<td>{e(c.origin)}</td><td class=num>{scope}</td><td class=num>{failed}</td>"
                f"<td class=num>{(failed / scope * 100 if scope else 0):.2f}%</td>"
                f"<td class=num>{c.mostly:.2f}</td>"
                f"<td class={'ok' if ok else 'bad'}>{'pass' if ok else 'FAIL'}</td>"
                f"<td>{'' if gx is None else ('success' if gx else 'unexpected rows')}</td>"
                f"<td>{e(', '.join(worst))}</td></tr>"
            )
        sections.append(
            f"<h2>Suite <code>{e(s.name)}</code> <span class=muted>scope: {e(s.scope)}</span></h2>"
            "<table><tr><th>reason code</th><th>rule</th><th>origin</th><th>rows in scope</th>"
            "<th>failed</th><th>failed %</th><th>mostly</th><th>gate</th><th>GX</th>"
            "<th>files failing the gate</th></tr>" + "".join(rows) + "</table>"
        )
    doc = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>txh data docs: batch {batch_id}</title><style>{_CSS}</style></head><body>"
        f"<h1>Data quality: batch {batch_id:06d}</h1>"
        "<p class=muted>Rows failing a check are quarantined with its reason code. A file fails "
        "the gate when a check's failure fraction exceeds 1 - mostly. Counts come from the "
        "quarantine pass and are cross-checked against great-expectations.</p>"
        "<h2>Files</h2><table><tr><th>file</th><th>status</th><th>read</th><th>accepted</th>"
        "<th>quarantined</th><th>duplicates</th><th>reconciled</th><th>message</th></tr>"
        + rows_files
        + "</table>"
        + "".join(sections)
        + "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)


def dump_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
