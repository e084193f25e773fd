"""Reports: patient and summary exports, pseudonyms, small-cell suppression, the HTML report,
the CLI's exit codes and the `txh run` post-build step.

Most tests publish a small hand-made build (``publish_fake_build``: Parquet files shaped like
the marts and timelines in builds/<id>/ plus the CURRENT pointer and two ingest manifests), so
they do not depend on the transforms or the generator. One end-to-end test goes through
`txh run` on a generated cohort and skips while pipelines.generate is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from datetime import date, datetime, timedelta
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import ConfigError
from pipelines.report import api
from pipelines.report.export import read_report
from pipelines.report.patients import PATIENT_COLUMNS, PSEUDONYM_COLUMN, columns
from pipelines.report.pseudonym import pseudonym
from pipelines.report.source import OUTCOME_CLASSES, STATUSES
from pipelines.report.summary import SUMMARY_COLUMNS
from pipelines.report.suppress import Group, determined, suppress
from pipelines.warehouse import Warehouse
from tests.conftest import REPO, make_cfg

KEY_A = "a-test-key-that-is-long-enough-1"
KEY_B = "another-test-key-long-enough-222"
AS_OF = datetime(2025, 1, 15, 23, 59, 59)

# -- a fake published build ----------------------------------------------------------------------
REGIMENS = {
    "epilepsy": [
        "levetiracetam",
        "lamotrigine",
        "valproate",
        "carbamazepine",
        "lacosamide",
        "lamotrigine+levetiracetam",
        "topiramate",
        "zonisamide",
    ],
    "depression": [
        "sertraline",
        "escitalopram",
        "venlafaxine",
        "duloxetine",
        "mirtazapine",
        "bupropion+sertraline",
        "nortriptyline",
        "aripiprazole+escitalopram",
    ],
    "hypertension": [
        "amlodipine",
        "lisinopril",
        "amlodipine+lisinopril",
        "amlodipine+chlorthalidone+lisinopril",
        "spironolactone",
        "losartan",
    ],
    "lbcl": [
        "cyclophosphamide+doxorubicin+prednisone+rituximab+vincristine",
        "carboplatin+etoposide+ifosfamide+rituximab",
        "gemcitabine+oxaliplatin+rituximab",
        "axicabtagene_ciloleucel",
        "polatuzumab+bendamustine+rituximab",
    ],
    "multiple_myeloma": [
        "bortezomib+dexamethasone+lenalidomide",
        "daratumumab+dexamethasone+lenalidomide",
        "carfilzomib+dexamethasone",
        "dexamethasone+pomalidomide",
        "daratumumab+dexamethasone+pomalidomide",
    ],
    "sle": ["hydroxychloroquine", "mycophenolate", "azathioprine", "belimumab", "anifrolumab"],
}
ONCOLOGY = ("lbcl", "multiple_myeloma")
WEIGHTS = {
    "response": 22,
    "partial_response": 10,
    "non_response": 30,
    "relapse_after_response": 6,
    "intolerant": 9,
    "non_adherent": 10,
    "inadequate_trial": 7,
    "insufficient_followup": 4,
    "inappropriate": 2,
}
LOOK_ALIKE = ("intolerant", "non_adherent", "inadequate_trial")
REFRACTORY_COLUMNS = [  # the sidecar's columns, in its order (checked in a test)
    "patient_id",
    "condition",
    "as_of_date",
    "status",
    "pseudo_reason",
    "pack_id",
    "pack_version",
    "required_failures",
    "n_trials",
    "n_failures",
    "n_look_alike",
    "n_response",
    "n_partial_response",
    "n_non_response",
    "n_relapse_after_response",
    "n_intolerant",
    "n_non_adherent",
    "n_inadequate_trial",
    "n_insufficient_followup",
    "n_inappropriate",
    "first_trial_start_date",
    "last_failure_end_date",
    "subtype",
    "misdiagnosis_suspected",
    "diagnosis_change",
    "primary_refractory_first_line",
    "asct_relapse_date",
    "prior_lines",
    "eligible_after_two_lines",
    "relapsed_and_refractory",
    "primary_refractory_myeloma",
    "refractory_drugs",
    "refractory_classes",
    "triple_class_exposed",
    "triple_class_refractory",
    "penta_refractory",
    "partially_responsive",
    "thase_rush_stage",
    "mgh_score",
    "white_coat",
    "controlled_resistant",
    "refractory_htn",
    "apparent_only",
    "current_n_classes",
    "drug_responsive_again",
    "active_disease",
    "evidence",
]


def _patient_story(rng: random.Random, pid: str, cond: str, as_of: date) -> dict[str, Any]:
    required = 1 if cond in ONCOLOGY else 2
    n = rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5])
    start = as_of - timedelta(days=rng.randint(500, 2200))
    trials, responses, lines = [], [], []
    for seq in range(1, n + 1):
        usual = REGIMENS[cond][(seq - 1) % len(REGIMENS[cond])]  # the common sequence
        reg = usual if rng.random() < 0.55 else rng.choice(REGIMENS[cond][: 3 + seq])
        dur = rng.randint(60, 150) if cond in ONCOLOGY else rng.randint(40, 330)
        end = min(start + timedelta(days=dur), as_of)
        outcome = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        ongoing = seq == n and rng.random() < 0.3
        prog = (
            end + timedelta(days=rng.randint(-20, 40))
            if outcome in ("non_response", "relapse_after_response") and cond in ONCOLOGY
            else None
        )
        trials.append(
            {
                "patient_id": pid,
                "condition": cond,
                "trial_id": f"{pid}-{cond}-{seq}",
                "trial_seq": seq,
                "line_number": seq,
                "regimen_key": reg,
                "start_date": start,
                "end_date": end,
                "is_ongoing": ongoing,
                "outcome_class": outcome,
                "counts_as_failure": outcome == "non_response",
                "is_informative": outcome
                in ("response", "partial_response", "non_response", "relapse_after_response"),
                "is_counted": True,
                "rule_fired": f"{outcome}: best response and exposure as the pack requires "
                f"(adequate {dur} days at dose; PDC threshold 0.80)",
                "pdc": round(rng.uniform(0.4, 1.0), 2),
                "best_response_original": {
                    "response": "cr",
                    "partial_response": "pr",
                    "non_response": "sd",
                    "relapse_after_response": "pr",
                }.get(outcome),
                "progression_date": prog,
                "pack_id": f"{cond}-pack",
                "pack_version": "1.0.0",
            }
        )
        if cond in ONCOLOGY:
            lines.append(
                {
                    "line_id": f"{pid}-L{seq}",
                    "patient_id": pid,
                    "condition": cond,
                    "line_number": seq,
                    "start_date": start,
                    "end_date": end,
                    "regimen_key": reg,
                    "n_cycles": max(1, dur // 21),
                }
            )
        cat = {
            "response": "complete",
            "partial_response": "partial",
            "non_response": "stable",
            "relapse_after_response": "partial",
        }.get(outcome)
        if cat:
            for k, when in enumerate((start + (end - start) / 2, end)):
                responses.append(
                    {
                        "response_id": f"{pid}-{cond}-{seq}-{k}",
                        "patient_id": pid,
                        "condition": cond,
                        "assessment_date": when,
                        "criteria": "test",
                        "original_response": cat[:2],
                        "response_category": cat,
                        "response_rank": 1,
                    }
                )
        if prog:
            responses.append(
                {
                    "response_id": f"{pid}-{cond}-{seq}-p",
                    "patient_id": pid,
                    "condition": cond,
                    "assessment_date": min(prog, as_of),
                    "criteria": "test",
                    "original_response": "pd",
                    "response_category": "progression",
                    "response_rank": 4,
                }
            )
        start = end + timedelta(days=rng.randint(5, 90))
        if start >= as_of:
            break
    outcomes = [t["outcome_class"] for t in trials]
    fails = outcomes.count("non_response")
    looks = sum(o in LOOK_ALIKE for o in outcomes)
    if fails >= required:
        status, reason = "refractory", None
    elif fails + looks >= required:
        status = "pseudo_refractory"
        reason = (
            "white_coat"
            if cond == "hypertension" and rng.random() < 0.3
            else ("non_adherent" if "non_adherent" in outcomes else "look_alike_trials_counted")
        )
    elif fails == required - 1:
        status, reason = "at_risk", None
    elif outcomes[-1] == "response":
        status, reason = "responder", None
    elif outcomes[-1] == "partial_response":
        status, reason = "partial_responder", None
    else:
        status, reason = "undetermined", None
    row: dict[str, Any] = dict.fromkeys(REFRACTORY_COLUMNS)
    row.update(
        {
            "patient_id": pid,
            "condition": cond,
            "as_of_date": as_of,
            "status": status,
            "pseudo_reason": reason,
            "pack_id": f"{cond}-pack",
            "pack_version": "1.0.0",
            "required_failures": required,
            "n_trials": len(trials),
            "n_failures": fails,
            "n_look_alike": looks,
            "first_trial_start_date": trials[0]["start_date"],
            "last_failure_end_date": max(
                (t["end_date"] for t in trials if t["counts_as_failure"]), default=None
            ),
            "misdiagnosis_suspected": False,
            "prior_lines": len(lines) if lines else 0,
            "drug_responsive_again": False,
            "evidence": " | ".join(
                f"#{t['trial_seq']} {t['regimen_key']} {t['start_date']}.."
                f"{t['end_date']}: {t['rule_fired']}"
                for t in trials
            ),
        }
    )
    for oc in OUTCOME_CLASSES:
        row[f"n_{oc}"] = outcomes.count(oc)
    if cond == "multiple_myeloma":
        failed = sorted(
            {d for t in trials if t["counts_as_failure"] for d in t["regimen_key"].split("+")}
        )
        row.update(
            refractory_drugs=failed,
            refractory_classes=[],
            triple_class_exposed=False,
            triple_class_refractory=False,
            penta_refractory=False,
        )
    if cond == "depression":
        row.update(
            thase_rush_stage=min(fails, 5),
            mgh_score=float(fails),
            partially_responsive=outcomes[-1] == "partial_response",
        )
    return {"status": row, "trials": trials, "responses": responses, "lines": lines}


_TYPES = {
    "refractory_status": {
        "as_of_date": "DATE",
        "first_trial_start_date": "DATE",
        "last_failure_end_date": "DATE",
        "asct_relapse_date": "DATE",
        "refractory_drugs": "VARCHAR[]",
        "refractory_classes": "VARCHAR[]",
        "mgh_score": "DOUBLE",
        "thase_rush_stage": "INTEGER",
        "current_n_classes": "BIGINT",
        "subtype": "VARCHAR",
        "pseudo_reason": "VARCHAR",
        "diagnosis_change": "VARCHAR",
    },
}


def publish_fake_build(
    wh_root: Path,
    n_patients: int = 60,
    seed: int = 7,
    conditions: tuple[str, ...] = tuple(REGIMENS),
    as_of: datetime = AS_OF,
    build_id: str = "000001",
    id_prefix: str = "PT-",
    publish: bool = True,
    manifests: bool = True,
) -> Path:
    """A build directory shaped like the marts and timelines, published via CURRENT."""
    rng = random.Random(seed)
    status, trials, responses, lines, events, scenarios = [], [], [], [], [], []
    for i in range(1, n_patients + 1):
        pid = f"{id_prefix}{i:04d}"
        cond = conditions[(i - 1) % len(conditions)]
        story = _patient_story(rng, pid, cond, as_of.date())
        status.append(story["status"])
        trials += story["trials"]
        responses += story["responses"]
        lines += story["lines"]
        if cond in ONCOLOGY and rng.random() < 0.25:
            events.append(
                {
                    "patient_id": pid,
                    "condition": cond,
                    "event_type": "transplanted",
                    "event_id": f"e{i}",
                    "procedure": "autologous_sct",
                    "revised_to": None,
                    "occurred_date": story["trials"][0]["end_date"] + timedelta(days=30),
                }
            )
        if rng.random() < 0.08:
            events.append(
                {
                    "patient_id": pid,
                    "condition": cond,
                    "event_type": "diagnosis_revised",
                    "event_id": f"r{i}",
                    "procedure": None,
                    "revised_to": "other",
                    "occurred_date": story["trials"][-1]["start_date"],
                }
            )
        for sc in (
            "base",
            "adh=0.70;dur=x1.0",
            "adh=0.90;dur=x1.0",
            "adh=0.80;dur=x0.5",
            "adh=0.80;dur=x1.5",
        ):
            st_ = story["status"]["status"]
            if sc != "base" and rng.random() < 0.15:
                st_ = rng.choice(STATUSES)
            scenarios.append(
                {"patient_id": pid, "condition": cond, "scenario_id": sc, "status": st_}
            )
    build_dir = wh_root / "builds" / build_id
    build_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET VARIABLE as_of_date = DATE '{as_of.date()}'")

    def save(name: str, rows: list[dict[str, Any]], types: dict[str, str] | None = None) -> None:
        keys = list(rows[0]) if rows else ["patient_id"]
        types = types or {}
        cols = []
        for k in keys:
            vals = [r.get(k) for r in rows]
            t = types.get(k)
            if t is None:
                sample = next((v for v in vals if v is not None), "")
                t = (
                    "BOOLEAN"
                    if isinstance(sample, bool)
                    else "BIGINT"
                    if isinstance(sample, int)
                    else "DOUBLE"
                    if isinstance(sample, float)
                    else "DATE"
                    if isinstance(sample, date)
                    else "VARCHAR[]"
                    if isinstance(sample, list)
                    else "VARCHAR"
                )
            arrow = {
                "BOOLEAN": pa.bool_(),
                "BIGINT": pa.int64(),
                "INTEGER": pa.int32(),
                "DOUBLE": pa.float64(),
                "DATE": pa.date32(),
                "VARCHAR": pa.string(),
                "VARCHAR[]": pa.list_(pa.string()),
            }[t]
            cols.append(pa.array(vals, arrow))
        pq.write_table(pa.table(dict(zip(keys, cols, strict=True))), build_dir / f"{name}.parquet")
        con.register(f"_{name}", pq.read_table(build_dir / f"{name}.parquet"))
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}")

    save("refractory_status", status, _TYPES["refractory_status"])
    save("trial_outcomes", trials)
    save("treatment_lines", lines)
    save("responses", responses)
    save("events_current", events, {"procedure": "VARCHAR", "revised_to": "VARCHAR"})
    save("patient_status_scenarios", scenarios)
    con.execute(f"COPY ({COHORT_SUMMARY_SQL}) TO '{build_dir / 'cohort_summary.parquet'}'")
    con.execute(f"COPY ({SENSITIVITY_SQL}) TO '{build_dir / 'sensitivity.parquet'}'")
    con.close()
    (build_dir / "build.json").write_text(
        json.dumps(
            {
                "build_id": build_id,
                "as_of": as_of.isoformat(sep=" "),
                "as_of_date": as_of.date().isoformat(),
            }
        )
    )
    if publish:
        (wh_root / "CURRENT").write_text(json.dumps({"build_id": build_id}))
    if manifests:
        write_manifests(wh_root)
    return build_dir


COHORT_SUMMARY_SQL = """
WITH s AS (SELECT condition, 'status' AS dimension, status AS category, count(*) AS n
           FROM refractory_status GROUP BY ALL),
o AS (SELECT condition, 'trial_outcome', outcome_class, count(*) FROM trial_outcomes GROUP BY ALL),
e AS (SELECT condition, 'non_response_explained_by',
             CASE WHEN status = 'refractory' THEN 'true_non_response'
                  WHEN pseudo_reason = 'white_coat' THEN 'measurement_artefact'
                  WHEN n_non_adherent > 0 THEN 'non_adherence'
                  WHEN n_intolerant > 0 THEN 'intolerance' ELSE 'inadequate_trial' END, count(*)
      FROM refractory_status WHERE status IN ('refractory', 'pseudo_refractory') GROUP BY ALL),
u AS (SELECT * FROM s UNION ALL SELECT * FROM o UNION ALL SELECT * FROM e)
SELECT condition, dimension, category, n,
       sum(n) OVER (PARTITION BY condition, dimension)::BIGINT AS denominator,
       round(n / denominator, 4) AS proportion, getvariable('as_of_date') AS as_of_date
FROM u ORDER BY ALL"""

SENSITIVITY_SQL = """
SELECT condition, scenario_id, scenario_id = 'base' AS is_base,
       try_cast(regexp_extract(scenario_id, 'adh=([0-9.]+)', 1) AS DOUBLE) AS adherence_threshold,
       try_cast(regexp_extract(scenario_id, 'dur=x([0-9.]+)', 1) AS DOUBLE) AS min_duration_factor,
       count(*) AS n_patients,
       count(*) FILTER (WHERE status = 'refractory') AS n_refractory,
       count(*) FILTER (WHERE status = 'pseudo_refractory') AS n_pseudo_refractory,
       count(*) FILTER (WHERE status = 'at_risk') AS n_at_risk,
       count(*) FILTER (WHERE status = 'partial_responder') AS n_partial_responder,
       count(*) FILTER (WHERE status = 'responder') AS n_responder,
       count(*) FILTER (WHERE status = 'undetermined') AS n_undetermined,
       round(n_refractory / n_patients, 4) AS pct_refractory,
       round(n_pseudo_refractory / n_patients, 4) AS pct_pseudo_refractory,
       getvariable('as_of_date') AS as_of_date
FROM patient_status_scenarios GROUP BY ALL ORDER BY ALL"""


def write_manifests(wh_root: Path) -> None:
    d = wh_root / "log" / "manifests"
    d.mkdir(parents=True, exist_ok=True)
    for b, (read, q, dup, reasons) in enumerate(
        [
            (1200, 14, 0, {"negative_days_supply": 9, "unknown_drug_system": 5}),
            (300, 3, 20, {"occurred_after_recorded": 3}),
        ],
        start=1,
    ):
        files = [
            {
                "path": f"/incoming/delivery_{b:02d}.csv",
                "status": "accepted",
                "rows_read": read,
                "accepted": read - q - dup,
                "quarantined": q,
                "duplicates": dup,
                "reasons": reasons,
            }
        ]
        (d / f"{b:06d}.json").write_text(
            json.dumps(
                {
                    "batch_id": b,
                    "ingested_at": f"2025-01-1{b}T08:00:00",
                    "event_files": [],
                    "files": files,
                    "reconciled": True,
                    "gate_passed": True,
                    "data_docs": f"quality/batch={b:06d}/data_docs.html",
                    "totals": {
                        "rows_read": read,
                        "accepted": read - q - dup,
                        "quarantined": q,
                        "duplicates": dup,
                        "conflicts": 0,
                        "files_rejected": 0,
                        "files_gate_failed": 0,
                    },
                }
            )
        )


@pytest.fixture
def fake_wh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TXH_PSEUDONYM_KEY", raising=False)
    root = tmp_path / "wh"
    publish_fake_build(root)
    return root


@pytest.fixture
def rcfg(fake_wh: Path):
    return make_cfg(fake_wh)


def _ids(root: Path) -> list[str]:
    return (
        pq.read_table(root / "builds" / "000001" / "refractory_status.parquet")
        .column("patient_id")
        .to_pylist()
    )


# -- the fake build is shaped like the marts ------------------------------------------------------
def test_fake_build_has_the_sidecar_columns(fake_wh: Path) -> None:
    """Guards the hand-made build against drift from the marts' contracts (when present)."""
    for name in ("refractory_status", "cohort_summary", "sensitivity"):
        sidecars = sorted(REPO.glob(f"transforms/*/{name}.yml"))
        if not sidecars:
            continue
        documented = list(yaml.safe_load(sidecars[0].read_text())["columns"])
        have = pq.read_schema(fake_wh / "builds" / "000001" / f"{name}.parquet").names
        assert set(documented) <= set(have), (name, set(documented) - set(have))


# -- patient report -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_patient_report_round_trips(rcfg, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"epilepsy.{fmt}"
    res = api.write_patient_report(rcfg, condition="epilepsy", out=out)
    back = read_report(out, PATIENT_COLUMNS)
    con = duckdb.connect()
    expected = con.execute(
        "SELECT patient_id, status, n_non_response FROM read_parquet(?) WHERE condition = "
        "'epilepsy' ORDER BY patient_id",
        [str(rcfg.warehouse_path / "builds" / "000001" / "refractory_status.parquet")],
    ).fetchall()
    assert res.rows == back.num_rows == len(expected) > 0
    assert back.schema.names == [c.name for c in PATIENT_COLUMNS]
    assert [f.type for f in back.schema] == [c.arrow_type for c in PATIENT_COLUMNS]
    assert [
        (r["patient_id"], r["status"], r["n_non_response"]) for r in back.to_pylist()
    ] == expected
    other = tmp_path / ("again.parquet" if fmt == "csv" else "again.csv")
    api.write_patient_report(rcfg, condition="epilepsy", out=other)
    assert read_report(other, PATIENT_COLUMNS).to_pylist() == back.to_pylist()
    row = back.to_pylist()[0]
    assert isinstance(row["first_trial_start_date"], date) and row["as_of_date"] == AS_OF.date()
    assert row["build_id"] == "000001" and row["pack_id"] == "epilepsy-pack"


def test_patient_report_filters_status_and_flattens_lists(rcfg, tmp_path: Path) -> None:
    out = tmp_path / "mm.csv"
    api.write_patient_report(
        rcfg, condition="multiple_myeloma", out=out, statuses=["refractory,pseudo_refractory"]
    )
    rows = read_report(out, PATIENT_COLUMNS).to_pylist()
    assert rows and {r["status"] for r in rows} <= {"refractory", "pseudo_refractory"}
    refractory = [r for r in rows if r["status"] == "refractory"]
    assert refractory and all(
        ";" in r["refractory_drugs"] or r["refractory_drugs"] for r in refractory
    )
    everyone = api.write_patient_report(rcfg, condition="all", out=tmp_path / "all.parquet")
    assert everyone.rows == 60 and len(everyone.conditions) >= 6


def test_reports_are_byte_identical_for_the_same_build(
    rcfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TXH_PSEUDONYM_KEY", KEY_A)
    for kind, kw in (("p.csv", {}), ("p.parquet", {"pseudonymize": True})):
        a, b = tmp_path / f"a{kind}", tmp_path / f"b{kind}"
        api.write_patient_report(rcfg, condition="all", out=a, **kw)
        api.write_patient_report(rcfg, condition="all", out=b, **kw)
        assert a.read_bytes() == b.read_bytes()
    for name in ("s.csv", "s.parquet"):
        api.write_summary_report(rcfg, condition="all", out=tmp_path / f"a{name}")
        api.write_summary_report(rcfg, condition="all", out=tmp_path / f"b{name}")
        assert (tmp_path / f"a{name}").read_bytes() == (tmp_path / f"b{name}").read_bytes()
    api.write_html_report(rcfg, out=tmp_path / "a.html")
    api.write_html_report(rcfg, out=tmp_path / "b.html")
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave nothing behind


# -- pseudonymisation -----------------------------------------------------------------------------
def test_pseudonyms_are_stable_per_key_and_differ_across_keys(
    rcfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = set(_ids(rcfg.warehouse_path))

    def export(key: str, name: str) -> list[dict[str, Any]]:
        monkeypatch.setenv("TXH_PSEUDONYM_KEY", key)
        out = tmp_path / name
        api.write_patient_report(rcfg, condition="all", out=out, pseudonymize=True)
        assert not any(pid in out.read_text() for pid in raw)  # no raw id anywhere in the file
        assert key not in out.read_text()
        return read_report(out, columns(pseudonymized=True)).to_pylist()

    a1, a2, b = export(KEY_A, "a1.csv"), export(KEY_A, "a2.csv"), export(KEY_B, "b.csv")
    pa1 = [(r[PSEUDONYM_COLUMN], r["condition"]) for r in a1]
    assert pa1 == [(r[PSEUDONYM_COLUMN], r["condition"]) for r in a2]
    assert "patient_id" not in a1[0]
    ps_a, ps_b = {p for p, _ in pa1}, {r[PSEUDONYM_COLUMN] for r in b}
    assert len(ps_a) == len(raw) and not ps_a & ps_b and not ps_a & raw
    assert all(p.startswith("px_") and len(p) == 23 for p in ps_a)
    assert pa1 == sorted(pa1)  # sorted by pseudonym: row order does not leak the real ids
    assert pseudonym("PT-0001", KEY_A.encode()) in ps_a


def test_pseudonymize_without_key_is_a_config_error(rcfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TXH_PSEUDONYM_KEY"):
        api.write_patient_report(rcfg, condition="all", out=tmp_path / "x.csv", pseudonymize=True)
    assert not (tmp_path / "x.csv").exists()


# -- small-cell suppression -----------------------------------------------------------------------
def _groups_ok(values: dict, groups: list[Group], withheld: set, t: int) -> None:
    """The documented rule, checked independently of the implementation."""
    for k, v in values.items():
        if 0 < v < t:
            assert k in withheld, ("small count published", k, v)
        if v == 0:
            assert k not in withheld, ("zero withheld", k)
    for g in groups:
        if g.total in withheld:
            continue
        hidden = [values[c] for c in set(g.cells) if c in withheld]
        assert len(hidden) != 1, ("a single withheld cell is the total minus the rest", g.name)
        if hidden:
            assert sum(hidden) - (len(hidden) - 1) >= t - 1, (g.name, hidden)
    # no withheld quantity follows from the published ones (numpy rank, not the implementation)
    hidden = sorted((k for k in withheld), key=repr)
    if not hidden:
        return
    col = {k: i for i, k in enumerate(hidden)}
    a = np.zeros((len(groups), len(hidden)))
    for i, g in enumerate(groups):
        for c in g.cells:
            if c in col:
                a[i, col[c]] += 1
        if g.total in col:
            a[i, col[g.total]] -= 1
    full = np.linalg.matrix_rank(a) if a.any() else 0
    for k, j in col.items():
        rest = np.delete(a, j, axis=1)
        rank = np.linalg.matrix_rank(rest) if rest.size and rest.any() else 0
        assert rank == full, ("recoverable from the published numbers", k)


def _status_groups(counts: list[int]) -> tuple[dict, list[Group]]:
    values = {("s", i): n for i, n in enumerate(counts)} | {("s", "T"): sum(counts)}
    return values, [Group("status", tuple(("s", i) for i in range(len(counts))), ("s", "T"))]


@pytest.mark.parametrize(
    ("counts", "expect_hidden"),
    [
        ([40, 3, 10, 0], {1, 2}),  # one small cell: the next smallest joins it
        ([1, 1, 50, 20], {0, 1, 3}),  # two 1s add up to 2: a third cell is needed
        ([2, 3, 100], {0, 1}),  # 2 + 3 = 5: either could be anything from 1 to 4
        ([12, 30, 0, 0], set()),  # nothing small; zeros are published
    ],
)
def test_complementary_suppression_examples(counts, expect_hidden) -> None:
    values, groups = _status_groups(counts)
    withheld = suppress(values, groups, 5)
    assert {k[1] for k in withheld} == expect_hidden
    _groups_ok(values, groups, withheld, 5)


def test_a_small_group_total_is_withheld_too() -> None:
    values, groups = _status_groups([1, 2, 0])
    withheld = suppress(values, groups, 5)
    assert ("s", "T") in withheld and {("s", 0), ("s", 1)} <= withheld
    assert suppress(values, groups, 0) == set() == suppress(values, groups, 1)


def test_linked_tables_cannot_be_differenced() -> None:
    """refractory is both a status cell and the true_non_response explanation; the other
    explanations add up to pseudo_refractory. Publishing the explanation total must not give
    away a status cell withheld in the status table."""
    st_ = {"ref": 3, "pseudo": 12, "risk": 2, "resp": 40}
    ex = {"na": 9, "int": 3}
    values = {**st_, **ex, "N": 57, "T_e": 15}
    groups = [
        Group("status", ("ref", "pseudo", "risk", "resp"), "N"),
        Group("explained", ("ref", "na", "int"), "T_e"),
        Group("breakdown", ("na", "int"), "pseudo"),
    ]
    withheld = suppress(values, groups, 5)
    _groups_ok(values, groups, withheld, 5)
    assert {"ref", "risk", "int"} <= withheld


def test_leak_through_a_linked_table_withholds_that_tables_total() -> None:
    """Found by the property test below: pseudo_refractory (2) and another status (1) are
    withheld in the status table, whose other cells are 0, so the total goes too; the two
    explanations of pseudo_refractory (1 and 1) are withheld, but with refractory = 0 published
    the explained total (2) still gave pseudo_refractory away. Every neighbour of it was already
    withheld; the explained total, one table further, is withheld instead of failing."""
    values = {("st", i): n for i, n in enumerate([0, 2, 0, 0, 0, 1])}
    values |= {("ex", i): n for i, n in enumerate([0, 0, 1, 1])}
    values |= {"N": 3, "T_e": 2}
    groups = [
        Group("status", tuple(("st", i) for i in range(6)), "N"),
        Group("explained", (("st", 0), *[("ex", i) for i in range(4)]), "T_e"),
        Group("breakdown", tuple(("ex", i) for i in range(4)), ("st", 1)),
    ]
    withheld = suppress(values, groups, 2)
    _groups_ok(values, groups, withheld, 2)
    assert "T_e" in withheld and ("st", 0) not in withheld


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.lists(st.integers(0, 30), min_size=6, max_size=6),
    split=st.lists(st.integers(0, 30), min_size=4, max_size=4),
    outcomes=st.lists(st.integers(0, 12), min_size=3, max_size=9),
    t=st.integers(0, 11),
)
def test_suppression_rule_holds_for_any_counts(status, split, outcomes, t) -> None:
    """Any counts: every small cell withheld and marked, zeros shown, no withheld cell alone in
    a group, and no withheld quantity recoverable from all the published numbers together."""
    status = [status[0], sum(split), *status[2:]]  # pseudo_refractory = the explanations' sum
    values = {("st", i): n for i, n in enumerate(status)}
    values |= {("ex", i): n for i, n in enumerate(split)}
    values |= {("oc", i): n for i, n in enumerate(outcomes)}
    values |= {"N": sum(status), "T_e": status[0] + sum(split), "N_trials": sum(outcomes)}
    groups = [
        Group("status", tuple(("st", i) for i in range(6)), "N"),
        Group("explained", (("st", 0), *[("ex", i) for i in range(4)]), "T_e"),
        Group("breakdown", tuple(("ex", i) for i in range(4)), ("st", 1)),
        Group("outcomes", tuple(("oc", i) for i in range(len(outcomes))), "N_trials"),
    ]
    withheld = suppress(values, groups, t)
    if t > 1:
        _groups_ok(values, groups, withheld, t)
    else:
        assert withheld == set()


def test_determined_finds_exactly_the_fixed_unknowns() -> None:
    f = Fraction
    # x0 + x1 = a, x1 = b  -> both fixed; x2 + x3 = c -> neither
    rows = [[f(1), f(1), f(0), f(0)], [f(0), f(1), f(0), f(0)], [f(0), f(0), f(1), f(1)]]
    assert determined(rows, 4) == [0, 1]


def test_summary_report_suppresses_and_marks_small_cells(rcfg, tmp_path: Path) -> None:
    out = tmp_path / "summary.csv"
    res = api.write_summary_report(rcfg, condition="all", out=out)
    rows = read_report(out, SUMMARY_COLUMNS).to_pylist()
    assert res.suppressed_cells and res.suppressed_cells > 0
    exact = (
        duckdb.connect()
        .execute(
            "SELECT condition, dimension, category, n FROM read_parquet(?)",
            [str(rcfg.warehouse_path / "builds/000001/cohort_summary.parquet")],
        )
        .fetchall()
    )
    exact_n = {(c, d, k): n for c, d, k, n in exact}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["condition"], r["dimension"], r["scenario_id"]), []).append(r)
        key = (r["condition"], r["dimension"], r["category"])
        if r["suppressed"]:
            assert r["n"] is None and r["proportion"] is None
        else:
            assert r["n"] is not None and not 0 < r["n"] < 5
            if r["dimension"] != "sensitivity":
                assert r["n"] == exact_n.get(key, 0)  # published counts are the exact ones
    for (cond, dim, _sc), g in groups.items():
        assert {r["category"] for r in g} >= set(
            STATUSES if dim in ("status", "sensitivity") else ()
        )
        hidden = [r for r in g if r["suppressed"]]
        if g[0]["denominator_suppressed"]:
            assert all(r["proportion"] is None for r in g)
            continue
        # the total cannot single out a withheld cell: none, or several sharing a sum of at
        # least threshold - 1 + (k - 1)
        assert len(hidden) != 1, (cond, dim)
        rest = g[0]["denominator"] - sum(r["n"] for r in g if not r["suppressed"])
        assert not hidden or rest - (len(hidden) - 1) >= 4, (cond, dim, rest)
    # the warehouse keeps exact values
    assert any(0 < n < 5 for n in exact_n.values())


def test_summary_round_trips_and_columns_are_documented(rcfg, tmp_path: Path) -> None:
    api.write_summary_report(rcfg, condition="lbcl", out=tmp_path / "s.csv")
    api.write_summary_report(rcfg, condition="lbcl", out=tmp_path / "s.parquet")
    csv_rows = read_report(tmp_path / "s.csv", SUMMARY_COLUMNS)
    pq_rows = read_report(tmp_path / "s.parquet")
    assert csv_rows.schema.names == pq_rows.schema.names == [c.name for c in SUMMARY_COLUMNS]
    assert csv_rows.to_pylist() == pq_rows.to_pylist()
    assert {r["condition"] for r in csv_rows.to_pylist()} == {"lbcl"}
    docs = (REPO / "docs" / "reports.md").read_text()
    for c in [*PATIENT_COLUMNS, *SUMMARY_COLUMNS, *columns(pseudonymized=True)]:
        assert f"`{c.name}`" in docs, c.name


def test_threshold_comes_from_the_config(fake_wh: Path, tmp_path: Path) -> None:
    cfg = make_cfg(fake_wh, report={"small_cell_threshold": 0})
    api.write_summary_report(cfg, condition="all", out=tmp_path / "s.parquet")
    assert not any(pq.read_table(tmp_path / "s.parquet").column("suppressed").to_pylist())


# -- HTML -----------------------------------------------------------------------------------------
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href", "action", "poster", "data") and v is not None:
                self.refs.append((tag, k, v))
            if k == "id" and v:
                self.ids.add(v)
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text())
    return p


def test_html_report_is_self_contained_with_its_sections(rcfg, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    api.write_html_report(rcfg, out=out)
    text = out.read_text()
    p = _parse(out)
    external = [r for r in p.refs if r[2].lower().startswith(("http:", "https:", "//", "ftp:"))]
    assert external == []
    assert all(r[2].startswith("#") for r in p.refs)  # only in-page anchors
    assert not any("@import" in s or "url(" in s for s in p.styles)
    assert {"status", "sensitivity", "pathways", "timelines", "quality"} <= p.ids
    assert {"fig-status", "fig-ingest", "fig-sankey-epilepsy", "fig-swimmer-lbcl"} <= p.ids
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js is inline
    for needle in ("Sankey", "pseudo refractory", "negative_days_supply", "delivery_02.csv"):
        assert needle in text
    assert "/incoming/" not in text  # file names only, no paths
    # no key, no --show-ids: patients are numbered, ids never appear
    assert "#1" in text and not any(pid in text for pid in _ids(rcfg.warehouse_path))


def test_html_labels_follow_the_key_and_show_ids(
    rcfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ids(rcfg.warehouse_path)
    api.write_html_report(rcfg, out=tmp_path / "ids.html", condition="lbcl", show_ids=True)
    assert any(pid in (tmp_path / "ids.html").read_text() for pid in ids)
    monkeypatch.setenv("TXH_PSEUDONYM_KEY", KEY_A)
    api.write_html_report(rcfg, out=tmp_path / "px.html", condition="lbcl", n_patients=5)
    text = (tmp_path / "px.html").read_text()
    assert "px_" in text and not any(pid in text for pid in ids) and KEY_A not in text
    assert "fig-swimmer-lbcl" in text and "fig-swimmer-epilepsy" not in text
    with pytest.raises(ConfigError):
        api.write_html_report(rcfg, out=tmp_path / "x.html", show_ids=True, pseudonymize=True)


def test_html_report_without_marts_still_shows_data_quality(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    build = publish_fake_build(root, n_patients=6)
    for f in build.glob("*.parquet"):
        f.unlink()
    api.write_html_report(make_cfg(root), out=tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert "no refractory_status table" in text and "Top quarantine reasons" in text


# -- as of a date ----------------------------------------------------------------------------------
def test_as_of_another_date_builds_unpublished(
    rcfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.build.runner as runner

    calls: list[dict[str, Any]] = []

    def fake_build(cfg, *, as_of=None, publish=True, **kw):
        calls.append({"as_of": as_of, "publish": publish})
        d = publish_fake_build(
            cfg.warehouse_path,
            n_patients=12,
            seed=99,
            as_of=as_of,
            build_id="000002",
            id_prefix="AS-",
            publish=publish,
        )
        return runner.BuildResult(
            build_id="000002", as_of=as_of, mode="full", reason="test", output_dir=d, steps=[]
        )

    monkeypatch.setattr(runner, "build", fake_build)
    out = tmp_path / "p.csv"
    api.write_patient_report(rcfg, condition="all", out=out, as_of=AS_OF.replace(hour=1))
    assert calls == []  # same date as the published build: read it
    res = api.write_patient_report(rcfg, condition="all", out=out, as_of=datetime(2024, 6, 30))
    assert calls == [{"as_of": datetime(2024, 6, 30), "publish": False}]
    assert res.build_id == "000002" and not res.published_build
    rows = read_report(out, PATIENT_COLUMNS).to_pylist()
    assert {r["as_of_date"] for r in rows} == {date(2024, 6, 30)}
    assert all(r["patient_id"].startswith("AS-") for r in rows)
    assert json.loads((rcfg.warehouse_path / "CURRENT").read_text())["build_id"] == "000001"


# -- CLI ------------------------------------------------------------------------------------------
def txh(*args: str, wh: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "TXH_PSEUDONYM_KEY"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--warehouse", str(wh), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=e,
    )


def test_cli_exit_codes(fake_wh: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    ok = txh("report", "--condition", "epilepsy", "--out", str(out), wh=fake_wh)
    assert ok.returncode == 0, ok.stderr
    assert out.exists() and "wrote" in ok.stdout
    usage = [
        ("report", "--condition", "no_such_condition", "--out", str(out)),
        ("report", "--out", str(out)),  # no --condition
        ("report", "--condition", "lbcl", "--out", str(tmp_path / "r.txt")),
        ("report", "--condition", "lbcl", "--format", "xlsx", "--out", str(out)),
        ("report", "--condition", "lbcl", "--status", "cured", "--out", str(out)),
        ("report", "--summary", "--html", "--out", str(tmp_path / "r.html")),
        ("report", "--condition", "lbcl", "--patients", "3", "--out", str(out)),
        ("report", "--condition", "lbcl", "--as-of", "yesterday", "--out", str(out)),
        ("report", "--condition", "lbcl"),  # no --out
    ]
    for args in usage:
        r = txh(*args, wh=fake_wh)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
    r = txh("report", "--condition", "lbcl", "--out", str(out), wh=tmp_path / "empty")
    assert r.returncode == 2 and "no published build" in r.stderr
    with Warehouse(fake_wh).lock():  # an --as-of build needs the lock: busy -> 75
        r = txh(
            "report", "--condition", "lbcl", "--as-of", "2024-01-01", "--out", str(out), wh=fake_wh
        )
    assert r.returncode == 75, r.stderr


def test_cli_pseudonymize_needs_the_key_and_never_prints_it(fake_wh: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    r = txh("report", "--condition", "all", "--pseudonymize", "--out", str(out), wh=fake_wh)
    assert r.returncode == 2 and "TXH_PSEUDONYM_KEY" in r.stderr and not out.exists()
    r = txh(
        "report",
        "--condition",
        "all",
        "--pseudonymize",
        "--out",
        str(out),
        wh=fake_wh,
        env={"TXH_PSEUDONYM_KEY": "short"},
    )
    assert r.returncode == 2 and "short" not in r.stderr.replace("too short", "")
    r = txh(
        "report",
        "--condition",
        "all",
        "--pseudonymize",
        "--json",
        "--out",
        str(out),
        wh=fake_wh,
        env={"TXH_PSEUDONYM_KEY": KEY_A},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pseudonymized"] is True
    assert KEY_A not in r.stdout + r.stderr and KEY_A.encode() not in out.read_bytes()
    assert PSEUDONYM_COLUMN in pq.read_schema(out).names
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("report: {pseudonymize_key_env: MY_KEY}\n")
    r = txh(
        "--config",
        str(cfg_file),
        "report",
        "--condition",
        "all",
        "--pseudonymize",
        "--out",
        str(out),
        wh=fake_wh,
        env={"MY_KEY": KEY_B},
    )
    assert r.returncode == 0, r.stderr


def test_cli_summary_and_html(fake_wh: Path, tmp_path: Path) -> None:
    r = txh(
        "report",
        "--summary",
        "--condition",
        "all",
        "--out",
        str(tmp_path / "s.parquet"),
        wh=fake_wh,
    )
    assert r.returncode == 0 and "cells suppressed" in r.stdout, r.stderr
    r = txh(
        "report",
        "--html",
        "--condition",
        "depression",
        "--patients",
        "4",
        "--out",
        str(tmp_path / "r.html"),
        wh=fake_wh,
    )
    assert r.returncode == 0, r.stderr
    assert "fig-swimmer-depression" in (tmp_path / "r.html").read_text()


# -- the post-build step --------------------------------------------------------------------------
def test_post_build_step_is_registered_and_writes_the_reports(
    rcfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.run as run
    from pipelines.report.post_build import reports_step

    assert [n for n, _ in run.POST_BUILD_STEPS].count("reports") == 1
    wh = Warehouse.from_config(rcfg)
    out = wh.root / "reports"
    out.mkdir()
    (out / "patients_gone.parquet").write_bytes(b"stale")
    (out / ".tmp-crashed.csv").write_bytes(b"half")
    res = reports_step(rcfg, wh, None)  # the step reads CURRENT, not the BuildResult
    assert res["status"] == "ok" and res["build_id"] == "000001"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["cohort_summary.csv", "cohort_report.html", *[f"patients_{c}.parquet" for c in REGIMENS]]
    )
    assert set(res["files"]) == set(names) and "summary" in res
    summary = read_report(out / "cohort_summary.csv", SUMMARY_COLUMNS).to_pylist()
    assert any(r["suppressed"] for r in summary)
    assert "patient_id" in pq.read_schema(out / "patients_lbcl.parquet").names  # internal
    assert "#1" in (out / "cohort_report.html").read_text()
    # a failing report is recorded, the others are still written
    monkeypatch.setenv("TXH_PSEUDONYM_KEY", "short")
    res = reports_step(rcfg, wh, None)
    assert res["status"] == "failed" and list(res["failed"]) == ["cohort_report.html"]
    assert "cohort_summary.csv" in res["files"] and "short" not in json.dumps(res).replace(
        "too short", ""
    )


def test_run_records_the_reports_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`txh run` (in process, with the build replaced by a hand-made one) calls the registered
    step after publishing and keeps its summary in the run record."""
    import pipelines.run as run
    from tests.conftest import dispensing, write_csv

    monkeypatch.delenv("TXH_PSEUDONYM_KEY", raising=False)

    def fake_build(cfg, *, as_of=None, full=False, progress=None, **kw):
        d = publish_fake_build(cfg.warehouse_path, n_patients=24, as_of=as_of, manifests=False)
        return run.BuildResult(
            build_id="000001", as_of=as_of, mode="full", reason="test", output_dir=d, steps=[]
        )

    monkeypatch.setattr(run, "build", fake_build)
    cfg = make_cfg(tmp_path / "wh")
    src = write_csv(
        tmp_path / "in" / "a.csv", [dispensing(i, recorded_at="2024-12-01") for i in range(1, 11)]
    )
    res = run.run(cfg, inputs=[str(src)], as_of=AS_OF)
    step = res.summary()["post_build"]["reports"]
    assert res.exit_code == 0 and step["status"] == "ok" and step["build_id"] == "000001"
    reports = tmp_path / "wh" / "reports"
    assert {"cohort_summary.csv", "cohort_report.html", "patients_sle.parquet"} <= {
        p.name for p in reports.iterdir()
    }
    html = (reports / "cohort_report.html").read_text()
    assert "a.csv" in html and str(tmp_path) not in html  # the real manifest, names only


def test_txh_run_end_to_end_on_a_generated_cohort(tmp_path: Path) -> None:
    """End to end in folders whose names hold a quote and a space (paths reach DuckDB as SQL
    string literals: the warehouse's spill folder, the inputs, the published files)."""
    if importlib.util.find_spec("pipelines.generate") is None:
        pytest.skip("pipelines.generate has not landed yet")
    tmp_path = tmp_path / "o'neil data"
    gen = tmp_path / "gen"
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(gen), "--patients", "120"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    wh = tmp_path / "wh"
    r = txh("run", "--json", str(gen / "deliveries"), wh=wh)
    assert r.returncode in (0, 1), r.stderr
    record = json.loads(r.stdout)
    assert record["published"], "the generated cohort did not pass the quality gate"
    step = record["post_build"]["reports"]
    assert step["status"] == "ok", step
    reports = wh / "reports"
    assert (reports / "cohort_report.html").exists()
    if step["conditions"]:
        assert (reports / "cohort_summary.csv").exists()
        cond = step["conditions"][0]
        assert (reports / f"patients_{cond}.parquet").exists()
        out = tmp_path / "p.csv"
        r = txh("report", "--condition", cond, "--out", str(out), wh=wh)
        assert r.returncode == 0, r.stderr
        assert (
            read_report(out, PATIENT_COLUMNS).num_rows
            == pq.read_metadata(reports / f"patients_{cond}.parquet").num_rows
        )
