"""Entry points used by `txh report` and the post-build step: resolve the build, check the
options, make the report, write it atomically, say what was written."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.config import Config, ConfigError
from pipelines.logs import get_logger
from pipelines.report.export import resolve_format, write_bytes, write_table
from pipelines.report.patients import check_statuses, patient_report
from pipelines.report.pseudonym import load_key
from pipelines.report.source import BuildRef, check_condition, open_build, resolve_build
from pipelines.report.summary import summary_report

log = get_logger("txh.report")


@dataclass(frozen=True)
class ReportResult:
    kind: str  # patients | cohort_summary | html
    path: str
    format: str
    rows: int | None
    conditions: list[str]
    build_id: str | None
    as_of: str | None
    published_build: bool
    pseudonymized: bool
    suppressed_cells: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finish(result: ReportResult) -> ReportResult:
    # counts and paths only: never an identifier or a key
    log.info(
        "report.written",
        kind=result.kind,
        path=result.path,
        rows=result.rows,
        build_id=result.build_id,
        pseudonymized=result.pseudonymized,
    )
    return result


def write_patient_report(
    cfg: Config,
    *,
    condition: str | None,
    out: Path,
    fmt: str | None = None,
    statuses: list[str] | None = None,
    as_of: datetime | None = None,
    pseudonymize: bool = False,
    ref: BuildRef | None = None,
) -> ReportResult:
    """One row per patient x condition (``condition`` may be ``all``)."""
    if not condition:
        raise ConfigError("--condition is required for a patient report (a condition or `all`)")
    fmt = resolve_format(fmt, out)
    wanted = check_statuses(statuses)
    key = load_key(cfg) if pseudonymize else None  # fail before any work
    ref = ref or resolve_build(cfg, as_of)
    con = open_build(cfg, ref)
    try:
        conds = check_condition(condition, cfg, con)
        table = patient_report(con, ref, conds, wanted, key)
    finally:
        con.close()
    write_table(table, out, fmt)
    return _finish(
        ReportResult(
            "patients",
            str(out),
            fmt,
            table.num_rows,
            conds,
            ref.build_id,
            ref.as_of.isoformat(sep=" "),
            ref.published,
            key is not None,
        )
    )


def write_summary_report(
    cfg: Config,
    *,
    condition: str | None,
    out: Path,
    fmt: str | None = None,
    as_of: datetime | None = None,
    ref: BuildRef | None = None,
) -> ReportResult:
    """cohort_summary + sensitivity of ``condition`` (default all), small cells withheld."""
    fmt = resolve_format(fmt, out)
    ref = ref or resolve_build(cfg, as_of)
    con = open_build(cfg, ref)
    try:
        conds = check_condition(condition or "all", cfg, con)
        table = summary_report(con, ref, conds, cfg.report.small_cell_threshold)
    finally:
        con.close()
    write_table(table, out, fmt)
    n_sup = sum(bool(v) for v in table.column("suppressed").to_pylist())
    return _finish(
        ReportResult(
            "cohort_summary",
            str(out),
            fmt,
            table.num_rows,
            conds,
            ref.build_id,
            ref.as_of.isoformat(sep=" "),
            ref.published,
            False,
            suppressed_cells=n_sup,
        )
    )


def write_html_report(
    cfg: Config,
    *,
    out: Path,
    condition: str | None = None,
    n_patients: int = 20,
    show_ids: bool = False,
    pseudonymize: bool = False,
    as_of: datetime | None = None,
    ref: BuildRef | None = None,
    require_build: bool = True,
) -> ReportResult:
    """The self-contained HTML cohort report."""
    from pipelines.report.html import cohort_report_html, label_policy

    if n_patients < 0:
        raise ConfigError("--patients must be 0 or more")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the HTML report goes to a .html file, not {out.name!r}")
    labels = label_policy(cfg, show_ids=show_ids, pseudonymize=pseudonymize)
    if ref is None and (require_build or as_of is not None):
        ref = resolve_build(cfg, as_of)
    con = open_build(cfg, ref) if ref is not None else None
    try:
        conds = None
        if con is not None and condition and condition != "all":
            conds = check_condition(condition, cfg, con)
        page = cohort_report_html(cfg, con, ref, conds, labels, n_patients)
    finally:
        if con is not None:
            con.close()
    write_bytes(page.encode("utf-8"), out)
    return _finish(
        ReportResult(
            "html",
            str(out),
            "html",
            None,
            conds or ["all"],
            ref.build_id if ref else None,
            ref.as_of.isoformat(sep=" ") if ref else None,
            bool(ref and ref.published),
            labels.mode == "pseudonym",
        )
    )
