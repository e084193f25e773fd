"""The `txh run` post-build step: refresh <warehouse>/reports/ from the published build.

Importing this module registers the step in ``pipelines.run.POST_BUILD_STEPS`` (pipelines/run.py
imports it once, right after the list is defined). After every published build it writes,
each file atomically:

- ``reports/cohort_summary.csv``: the cohort summary of every condition, small cells withheld
  (the release-safe table);
- ``reports/patients_<condition>.parquet``: one patient report per condition the build judged,
  with real patient ids: the reports directory sits beside warehouse tables that hold them
  anyway, so it is internal; pseudonymise at export (``txh report --pseudonymize``). Files of
  conditions the build no longer judges are removed;
- ``reports/cohort_report.html``: the HTML cohort report, patients labelled by keyed pseudonym
  when the key is set, else by number (never by id).

A report that fails does not fail the run (the build is already published and the run record
must still be written): the failure is logged and recorded in the run record's ``post_build``
entry, and the other reports are still written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipelines.build.runner import BuildResult
from pipelines.config import Config, ConfigError
from pipelines.logs import get_logger
from pipelines.report.source import published_build
from pipelines.run import POST_BUILD_STEPS
from pipelines.warehouse import Warehouse

log = get_logger("txh.report")
STEP_NAME = "reports"


def reports_dir(wh: Warehouse) -> Path:
    return wh.root / "reports"


def patients_file(condition: str) -> str:
    """``patients_<condition>.parquet``, with anything but letters, digits, - and _ as _."""
    return "patients_" + re.sub(r"[^A-Za-z0-9_-]", "_", condition) + ".parquet"


def reports_step(cfg: Config, wh: Warehouse, result: BuildResult) -> dict[str, Any]:
    """Write the scheduled reports; returns the run record's summary of them."""
    from pipelines.report.api import (
        write_html_report,
        write_patient_report,
        write_summary_report,
    )
    from pipelines.report.source import columns_of, open_build

    out = reports_dir(wh)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".tmp-*"):  # leftovers of a crash mid-write
        stale.unlink(missing_ok=True)
    ref = published_build(wh)
    written: list[str] = []
    failed: dict[str, str] = {}

    def attempt(name: str, fn: Any, **kw: Any) -> None:
        try:
            fn(cfg, out=out / name, ref=ref, **kw)
            written.append(name)
        except Exception as e:  # recorded, see the module docstring
            # our own configuration messages name settings, never data; other errors (an
            # engine message may quote a value) are recorded by type only
            msg = str(e).splitlines()[0] if isinstance(e, ConfigError) and str(e) else ""
            failed[name] = type(e).__name__ + (f": {msg}" if msg else "")
            log.error("report.failed", report=name, error_type=type(e).__name__)

    conditions: list[str] = []
    if ref is not None:
        con = open_build(cfg, ref)
        try:
            if columns_of(con, "refractory_status"):
                conditions = [
                    r[0]
                    for r in con.sql(
                        "SELECT DISTINCT condition FROM refractory_status ORDER BY 1"
                    ).fetchall()
                ]
            has_summary = bool(columns_of(con, "cohort_summary"))
        finally:
            con.close()
        if has_summary:
            attempt("cohort_summary.csv", write_summary_report, condition="all", fmt="csv")
        for cond in conditions:
            attempt(patients_file(cond), write_patient_report, condition=cond, fmt="parquet")
        keep = {patients_file(c) for c in conditions}
        for old in sorted(out.glob("patients_*.parquet")):
            if old.name not in keep:
                old.unlink(missing_ok=True)
    attempt("cohort_report.html", write_html_report, require_build=False)
    build = ref.build_id if ref else None
    summary = (
        f"{len(written)} file(s) in {out}"
        + (f" from build {build}" if build else " (no published build)")
        + (f"; FAILED: {', '.join(sorted(failed))}" if failed else "")
    )
    return {
        "summary": summary,
        "status": "failed" if failed else "ok",
        "build_id": build,
        "directory": str(out),
        "files": written,
        "conditions": conditions,
        "failed": failed,
    }


if STEP_NAME not in {name for name, _ in POST_BUILD_STEPS}:
    POST_BUILD_STEPS.append((STEP_NAME, reports_step))
