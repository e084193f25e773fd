"""External validation of the adapters on the public datasets in ../shared/external.

Checks a clinician or a data engineer recognises:
  - per source: records read / mapped / out of scope / quarantined, events by type, reasons
  - SDTM DS disposition terms -> `stopped` reasons (counts per DSDECOD)
  - RS (RECIST 1.1) -> best overall response per subject, derived from the mapped events with the
    admiralonco ADRS template rules, compared with pharmaverse ADaM adrs_onco BOR and CBOR
  - OMOP drug_exposure rows per ingredient vs the source's own DRUG_ERA ingredient counts

    python -m pipelines.adapters.validation [--external DIR] [--write docs/adapters.md] [--ingest]

``--write`` replaces the block between the `external-results` markers in the given Markdown file;
``--ingest`` also ingests every conversion into a temporary warehouse (quality gate included).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from pipelines.adapters.base import AdapterResult, convert
from pipelines.adapters.options import AdapterOptions
from pipelines.warehouse import sql_literal

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EXTERNAL = REPO_ROOT.parent / "shared" / "external"
BEGIN, END = "<!-- BEGIN external-results -->", "<!-- END external-results -->"


@dataclass(frozen=True)
class ExternalRun:
    name: str
    fmt: str
    paths: tuple[str, ...]  # relative to the external directory
    options: AdapterOptions = field(default_factory=AdapterOptions)
    note: str = ""


PHARMAVERSE = "pharmaverse_sdtm"
RUNS: tuple[ExternalRun, ...] = (
    ExternalRun("Synthea FHIR bulk (10 pts)", "fhir", ("synthea_fhir_bulk10",)),
    ExternalRun("Synthea CSV (27 pts)", "synthea", ("synthea_csv_dbt27",)),
    ExternalRun("OMOP Eunomia Synthea27Nj (5.4)", "omop", ("eunomia_synthea27nj",)),
    ExternalRun(
        "OMOP Eunomia GiBleed (5.3)",
        "omop",
        ("eunomia_gibleed",),
        AdapterOptions(source="omop:gibleed"),
        "no CDM_SOURCE table: source given",
    ),
    ExternalRun("OMOP MIMIC-IV demo (5.3)", "omop", ("eunomia_mimic_iv_demo",)),
    ExternalRun(
        "SDTM pharmaverse DM/EX/DS + RS/TR RECIST example",
        "sdtm",
        tuple(
            f"{PHARMAVERSE}/{f}"
            for f in ("dm.csv", "ex.csv", "ds.csv", "rs_onco_recist.csv", "tr_onco_recist.csv")
        ),
        note="the RS data set from which pharmaverse ADaM adrs_onco was derived",
    ),
    ExternalRun(
        "SDTM pharmaverse oncology RS/TR (simulated)",
        "sdtm",
        tuple(f"{PHARMAVERSE}/{f}" for f in ("rs_onco.csv", "tr_onco.parquet")),
    ),
    ExternalRun("SDTM pharmaverse iRECIST", "sdtm", (f"{PHARMAVERSE}/rs_onco_irecist.csv",)),
    ExternalRun("SDTM CDISC pilot 01", "sdtm", ("cdisc_pilot01/sdtm",)),
)


def convert_run(run: ExternalRun, external: Path, work_dir: Path) -> AdapterResult:
    paths = [external / p for p in run.paths]
    return convert(run.fmt, paths, work_dir / _slug(run.name), options=run.options)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


# -- best overall response (admiralonco ADRS template rules) ------------------------------------
RANK = {"cr": 1, "pr": 2, "sd": 3, "non-cr/non-pd": 4, "pd": 5, "ne": 6}
SD_MIN_DAYS = 42  # bor_sd / bor_non_crpd: ADT >= RANDDT + 42 (admiralonco event objects)
CONFIRM_DAYS = 28  # confirmation of CR/PR: a later assessment >= 28 days after (ref_confirm)
MAX_NE_BETWEEN = 1


@dataclass(frozen=True)
class Assessment:
    day: date
    response: str  # cr, pr, sd, non-cr/non-pd, pd, ne


def overall_responses(assessments: list[Assessment], reference: date) -> list[Assessment]:
    """ADRS `ovr`: on/after the reference date, worst per date, up to and including first PD."""
    by_day: dict[date, Assessment] = {}
    for a in assessments:
        if a.day < reference:
            continue
        kept = by_day.get(a.day)
        if kept is None or RANK[a.response] > RANK[kept.response]:
            by_day[a.day] = a
    out = []
    for a in sorted(by_day.values(), key=lambda x: x.day):
        out.append(a)
        if a.response == "pd":
            break
    return out


def best_overall_response(
    ovr: list[Assessment], reference: date, *, confirmed: bool
) -> tuple[str, date | None]:
    """BOR (confirmed=False) or CBOR (True): first matching event type in priority order."""
    sd_from = reference + timedelta(days=SD_MIN_DAYS)
    events: list[Callable[[int, Assessment], str | None]] = []
    if confirmed:
        events += [
            lambda i, a: "cr" if a.response == "cr" and _confirmed(ovr, i, "cr") else None,
            lambda i, a: "pr" if a.response == "pr" and _confirmed(ovr, i, "pr") else None,
        ]
    else:
        events += [
            lambda i, a: "cr" if a.response == "cr" else None,
            lambda i, a: "pr" if a.response == "pr" else None,
        ]
    events += [
        lambda i, a: "sd" if a.response in ("cr", "pr", "sd") and a.day >= sd_from else None,
        lambda i, a: (
            "non-cr/non-pd" if a.response == "non-cr/non-pd" and a.day >= sd_from else None
        ),
        lambda i, a: "pd" if a.response == "pd" else None,
        lambda i, a: "ne" if a.response in ("sd", "non-cr/non-pd", "ne") else None,
    ]
    for ev in events:
        for i, a in enumerate(ovr):
            hit = ev(i, a)
            if hit:
                return hit, a.day
    return "missing", None


def _confirmed(ovr: list[Assessment], i: int, level: str) -> bool:
    """admiralonco cbor_cr / cbor_pr (event_joined, join_type 'after', first_cond_upper)."""
    first = ovr[i]
    ok_upper = ("cr",) if level == "cr" else ("cr", "pr")
    window: list[Assessment] = []
    for a in ovr[i + 1 :]:
        window.append(a)
        if a.response in ok_upper and a.day >= first.day + timedelta(days=CONFIRM_DAYS):
            break
    else:
        return False
    allowed = {"cr", "ne"} if level == "cr" else {"cr", "pr", "ne"}
    if any(a.response not in allowed for a in window):
        return False
    if sum(a.response == "ne" for a in window) > MAX_NE_BETWEEN:
        return False
    if level == "pr":
        cr_days = [a.day for a in window if a.response == "cr"]
        pr_days = [a.day for a in window if a.response == "pr"]
        if cr_days and pr_days and not min(cr_days) > max(pr_days):
            return False
    return True


def bor_comparison(events_path: Path, adrs_csv: Path, *, source_categories: bool) -> dict[str, Any]:
    """BOR/CBOR from mapped response_assessed events vs ADaM adrs_onco, per subject.

    source_categories=False uses the canonical responses only (NON-CR/NON-PD is `sd` in the
    contract); True restores the source category kept in _extra.response_source.
    """
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT patient_id, event_type, CAST(occurred_at AS DATE), response,
               json_extract_string(_extra, '$.response_source')
        FROM read_parquet({sql_literal(events_path)})
        WHERE event_type IN ('response_assessed', 'enrolled')
    """).fetchall()
    reference: dict[str, date] = {}
    assessments: dict[str, list[Assessment]] = {}
    for pid, etype, day, response, source_cat in rows:
        if etype == "enrolled":
            reference[pid] = day
            continue
        resp = response
        if source_categories and source_cat and source_cat.upper() == "NON-CR/NON-PD":
            resp = "non-cr/non-pd"
        assessments.setdefault(pid, []).append(Assessment(day, resp))
    adam = con.execute(f"""
        SELECT USUBJID, PARAMCD, AVALC, ADT FROM read_csv({sql_literal(adrs_csv)}, all_varchar=true)
        WHERE PARAMCD IN ('BOR', 'CBOR')
    """).fetchall()
    expected: dict[tuple[str, str], tuple[str, str | None]] = {
        (s, p): (a.lower(), adt or None) for s, p, a, adt in adam
    }
    subjects = sorted({s for s, _ in expected})
    result: dict[str, Any] = {}
    for param, confirmed in (("BOR", False), ("CBOR", True)):
        details = []
        for s in subjects:
            ref = reference.get(s)
            ovr = overall_responses(assessments.get(s, []), ref) if ref else []
            got, got_day = (
                best_overall_response(ovr, ref, confirmed=confirmed) if ref else ("missing", None)
            )
            exp, exp_day = expected[(s, param)]
            details.append(
                {
                    "subject": s,
                    "adam": exp,
                    "adam_date": exp_day,
                    "derived": got,
                    "derived_date": got_day.isoformat() if got_day else None,
                    "match": got == exp,
                    "date_match": (got_day.isoformat() if got_day else None) == exp_day,
                    "assessed": s in assessments,
                }
            )
        assessed = [d for d in details if d["assessed"]]
        result[param] = {
            "subjects": len(details),
            "matches": sum(d["match"] for d in details),
            "assessed_subjects": len(assessed),
            "assessed_matches": sum(d["match"] for d in assessed),
            "assessed_date_matches": sum(d["match"] and d["date_match"] for d in assessed),
            "mismatches": [d for d in details if not d["match"]],
            "assessed_detail": assessed,
        }
    return result


# -- SDTM DS reasons ----------------------------------------------------------------------------
def ds_reason_table(result: AdapterResult) -> list[dict[str, Any]]:
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT json_extract_string(_extra, '$.dsdecod') AS dsdecod, reason,
               count(*) AS stopped_events, count(DISTINCT patient_id) AS subjects
        FROM read_parquet({sql_literal(result.events_path)}) WHERE event_type = 'stopped'
        GROUP BY ALL ORDER BY stopped_events DESC, dsdecod
    """).fetchall()
    return [
        dict(zip(("dsdecod", "reason", "stopped_events", "subjects"), r, strict=True)) for r in rows
    ]


# -- OMOP drug_era --------------------------------------------------------------------------------
def omop_era_comparison(result: AdapterResult, omop_dir: Path) -> dict[str, Any]:
    """Exposure rows per ingredient (from mapped events) vs DRUG_ERA's drug_exposure_count."""
    era = next((f for f in omop_dir.iterdir() if f.name.lower().startswith("drug_era.")), None)
    concept = next((f for f in omop_dir.iterdir() if f.name.lower().startswith("concept.")), None)
    if era is None:
        return {"status": "no DRUG_ERA table"}
    con = duckdb.connect()
    era_rel = _rel(era)
    n_era = con.execute(f"SELECT count(*) FROM {era_rel}").fetchone()[0]
    if n_era == 0:
        return {"status": "DRUG_ERA is empty (no reference)"}
    # mapped exposures: one per source drug_exposure row and ingredient (stopped excluded)
    con.execute(f"""
        CREATE TABLE mapped AS
        SELECT drug, json_extract_string(_extra, '$.omop_concept_id') AS concept_id,
               _source_row
        FROM read_parquet({sql_literal(result.events_path)})
        WHERE _source_file LIKE '%drug_exposure%' AND event_type <> 'stopped'
    """)
    names_ok = False
    if concept is not None:
        con.execute(f"""
            CREATE TABLE era AS
            SELECT lower(c.concept_name) AS ingredient, sum(CAST(e.drug_exposure_count AS BIGINT))
                   AS era_exposures, count(*) AS eras
            FROM {era_rel} e JOIN {_rel(concept)} c
              ON CAST(c.concept_id AS VARCHAR) = CAST(e.drug_concept_id AS VARCHAR)
            GROUP BY ALL
        """)
        names_ok = con.execute("SELECT count(*) FROM era").fetchone()[0] > 0
    if names_ok:
        rows = con.execute("""
            WITH ours AS (SELECT drug AS ingredient, count(*) AS exposures FROM mapped
                          WHERE drug IS NOT NULL GROUP BY ALL)
            SELECT coalesce(o.ingredient, e.ingredient), o.exposures, e.era_exposures
            FROM ours o FULL JOIN era e ON o.ingredient = e.ingredient ORDER BY 1
        """).fetchall()
        both = [r for r in rows if r[1] is not None and r[2] is not None]
        return {
            "status": "compared by ingredient name",
            "era_ingredients": sum(r[2] is not None for r in rows),
            "mapped_ingredients": sum(r[1] is not None for r in rows),
            "ingredients_in_both": len(both),
            "equal_counts": sum(r[1] == r[2] for r in both),
            "only_in_era": [r[0] for r in rows if r[1] is None],
            "only_mapped": [r[0] for r in rows if r[2] is None],
            "count_differences": [
                {"ingredient": r[0], "mapped": r[1], "drug_era": r[2]} for r in both if r[1] != r[2]
            ],
            "mapped_rows_without_ingredient": con.execute(
                "SELECT count(*) FROM mapped WHERE drug IS NULL"
            ).fetchone()[0],
        }
    # no ingredient names: compare the concept ids that already are era ingredients
    rows = con.execute(f"""
        WITH era AS (SELECT CAST(drug_concept_id AS VARCHAR) AS id,
                            sum(CAST(drug_exposure_count AS BIGINT)) AS n
                     FROM {era_rel} GROUP BY ALL),
             ours AS (SELECT concept_id AS id, count(*) AS n FROM mapped GROUP BY ALL)
        SELECT e.id, o.n, e.n FROM era e JOIN ours o USING (id) ORDER BY 1
    """).fetchall()
    return {
        "status": "ingredients not resolvable (no RxNorm concepts shipped): compared the drug "
        "concept ids that are themselves DRUG_ERA ingredients",
        "era_ingredients": con.execute(
            f"SELECT count(DISTINCT drug_concept_id) FROM {era_rel}"
        ).fetchone()[0],
        "comparable_ingredients": len(rows),
        "comparable_mapped_rows": sum(r[1] for r in rows),
        "equal_counts": sum(r[1] == r[2] for r in rows),
        "count_differences": [
            {"concept_id": r[0], "mapped": r[1], "drug_era": r[2]} for r in rows if r[1] != r[2]
        ],
        "mapped_rows_without_ingredient": con.execute(
            "SELECT count(*) FROM mapped WHERE drug IS NULL"
        ).fetchone()[0],
    }


def _rel(path: Path) -> str:
    if path.name.lower().endswith(".parquet"):
        return f"read_parquet({sql_literal(path)})"
    return f"read_csv({sql_literal(path)}, all_varchar=true, header=true)"


# -- ingest (optional) ----------------------------------------------------------------------------
def ingest_result(result: AdapterResult, warehouse: Path) -> dict[str, Any]:
    from pipelines.adapters.base import to_converted_input
    from pipelines.config import load_config
    from pipelines.ingest import ingest

    cfg = load_config(None, warehouse=str(warehouse))
    res = ingest([], cfg, converted=[to_converted_input(result)])
    f = res.files[0]
    return {
        "status": f.status,
        "rows": f.rows_read,
        "accepted": f.accepted,
        "quarantined": f.quarantined,
        "duplicates": f.duplicates,
        "reasons": {k: v for k, v in f.reasons.items() if k not in _adapter_reasons(result)},
        "failed_checks": f.failed_checks,
    }


def _adapter_reasons(result: AdapterResult) -> set[str]:
    return set(result.report["totals"]["quarantined_by_reason"])


# -- run everything -------------------------------------------------------------------------------
def validate_all(external: Path, work_dir: Path, *, with_ingest: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": []}
    for run in RUNS:
        if not all((external / p).exists() for p in run.paths):
            continue
        res = convert_run(run, external, work_dir)
        entry: dict[str, Any] = {"run": run, "result": res, "totals": res.report["totals"]}
        if with_ingest:
            entry["ingest"] = ingest_result(res, work_dir / "warehouses" / _slug(run.name))
        out["runs"].append(entry)
        if run.name.startswith("SDTM pharmaverse DM/EX/DS"):
            out["ds_reasons"] = ds_reason_table(res)
            adrs = external / "pharmaverse_adam" / "adrs_onco.csv"
            if adrs.exists():
                out["bor"] = bor_comparison(res.events_path, adrs, source_categories=False)
                out["bor_source"] = bor_comparison(res.events_path, adrs, source_categories=True)
        if run.fmt == "omop":
            out.setdefault("omop_era", {})[run.name] = omop_era_comparison(
                res, external / run.paths[0]
            )
    return out


def render_markdown(v: dict[str, Any]) -> str:
    lines = [
        "### Per source",
        "",
        "| source | format | records read | mapped | out of scope | quarantined | events "
        "| events by type | quarantined by reason | imputed dates |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for e in v["runs"]:
        t = e["totals"]
        lines.append(
            f"| {e['run'].name} | {e['run'].fmt} | {t['records_read']} | {t['records_mapped']} "
            f"| {t['records_out_of_scope']} | {t['records_quarantined']} | {t['events_total']} "
            f"| {_kv(t['events_produced'])} | {_kv(t['quarantined_by_reason']) or '-'} "
            f"| {_kv(t['dates_imputed']) or '-'} |"
        )
    lines += ["", "Out of scope, by why:", "", "| source | why | records |", "|---|---|---:|"]
    for e in v["runs"]:
        for why, n in e["totals"]["out_of_scope_by_why"].items():
            lines.append(f"| {e['run'].name} | {why} | {n} |")
    if any("ingest" in e for e in v["runs"]):
        lines += [
            "",
            "Through the canonical ingest (quality gate) into an empty warehouse:",
            "",
            "| source | status | canonical rows | accepted | quarantined by ingest "
            "| ingest reasons |",
            "|---|---|---:|---:|---:|---|",
        ]
        for e in v["runs"]:
            i = e.get("ingest")
            if i:
                lines.append(
                    f"| {e['run'].name} | {i['status']} | {i['rows']} | {i['accepted']} "
                    f"| {i['quarantined']} | {_kv(i['reasons']) or '-'} |"
                )
    if "ds_reasons" in v:
        lines += [
            "",
            "### SDTM disposition (DS) -> `stopped` reason (pharmaverse DS, active arms)",
            "",
            "| DSDECOD | reason | stopped events | subjects |",
            "|---|---|---:|---:|",
        ]
        for r in v["ds_reasons"]:
            lines.append(
                f"| {r['dsdecod']} | {r['reason']} | {r['stopped_events']} | {r['subjects']} |"
            )
    if "bor" in v:
        lines += [
            "",
            "### Best overall response vs pharmaverse ADaM adrs_onco",
            "",
            "| parameter | responses used | subjects | match | subjects with assessments "
            "| match | same date |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for label, key in (
            ("canonical (NON-CR/NON-PD = sd)", "bor"),
            ("source category restored", "bor_source"),
        ):
            for param in ("BOR", "CBOR"):
                b = v[key][param]
                lines.append(
                    f"| {param} | {label} | {b['subjects']} | {b['matches']} "
                    f"| {b['assessed_subjects']} | {b['assessed_matches']} "
                    f"| {b['assessed_date_matches']} |"
                )
        lines += [
            "",
            "Subjects with assessments (canonical responses):",
            "",
            "| subject | ADaM BOR | derived BOR | ADaM CBOR | derived CBOR |",
            "|---|---|---|---|---|",
        ]
        cbor = {d["subject"]: d for d in v["bor"]["CBOR"]["assessed_detail"]}
        for d in v["bor"]["BOR"]["assessed_detail"]:
            c = cbor[d["subject"]]
            lines.append(
                f"| {d['subject']} | {d['adam']} ({d['adam_date']}) "
                f"| {d['derived']} ({d['derived_date']}) | {c['adam']} ({c['adam_date']}) "
                f"| {c['derived']} ({c['derived_date']}) |"
            )
    for name, era in v.get("omop_era", {}).items():
        lines += [
            "",
            f"### {name}: drug_exposure by ingredient vs DRUG_ERA",
            "",
            "```json",
            json.dumps(era, indent=1, default=str)[:3000],
            "```",
        ]
    return "\n".join(lines) + "\n"


def _kv(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(d.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL)
    ap.add_argument("--write", type=Path, help="Markdown file with external-results markers")
    ap.add_argument("--ingest", action="store_true", help="also ingest into temp warehouses")
    args = ap.parse_args(argv)
    if not args.external.exists():
        print(f"external data not found: {args.external}")
        return 2
    with tempfile.TemporaryDirectory(prefix="txh-validate-") as tmp:
        v = validate_all(args.external, Path(tmp), with_ingest=args.ingest)
        md = render_markdown(v)
    if args.write:
        text = args.write.read_text()
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        args.write.write_text(f"{head}{BEGIN}\n{md}{END}{tail}")
    else:
        print(md)
    mismatches = {
        f"{k}.{p}": v[k][p]["mismatches"]
        for k in ("bor", "bor_source")
        if k in v
        for p in ("BOR", "CBOR")
    }
    print(json.dumps({"bor_mismatches": mismatches}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
