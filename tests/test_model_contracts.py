"""Generic contract checks for every model in transforms/, on a small multi-patient event set.

For each model (tests/harness.py builds them exactly as the runner does):
  - the sidecar's key columns are unique and not null;
  - every output column is documented in the sidecar, and every documented column exists;
  - per-patient models give a patient the same rows whether the patient is built alone or
    together with everybody else (the per-patient principle behind incremental builds).
The event set mixes hand-written clinical stories (every therapy origin, dose changes, stops,
combinations, prescriptions never filled, stays, enrolment, death, oncology lines with
transplants) with seeded random patients.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from functools import cache
from typing import Any

import duckdb
import pytest

from pipelines.build import reference
from pipelines.build.models import Model, load_models
from pipelines.build.runner import bind_params, provide_previous, run_model
from tests.harness import _to_ts, config_with, make_log_events, normalise

AS_OF = "2025-06-30"
MODELS = load_models()


def _d(day: date, n: int = 0) -> str:
    return (day + timedelta(days=n)).isoformat()


def story_events() -> list[dict[str, Any]]:
    """Hand-written patients, one per clinical pattern the timelines handle."""
    ev: list[dict[str, Any]] = []

    def add(pid: str, day: date, n: int, **kw: Any) -> None:
        ev.append({"patient_id": pid, "occurred_at": _d(day, n), **kw})

    s = date(2023, 1, 10)
    # epilepsy: dose titration, add-on, stop for AE, unfilled prescription, inpatient stay
    add("EPI", s, -30, event_type="enrolled")
    add("EPI", s, 0, event_type="diagnosed", condition="epilepsy", subtype="focal")
    for k in range(6):
        add(
            "EPI",
            s,
            30 * k,
            event_type="dispensed",
            drug="levetiracetam",
            days_supply=30,
            dose=500 if k < 2 else 1500,
            condition="epilepsy",
        )
    add("EPI", s, 45, event_type="dose_changed", drug="levetiracetam", dose=1000)
    add("EPI", s, 60, event_type="dispensed", drug="lamotrigine", days_supply=90, dose=100)
    add("EPI", s, 100, event_type="stopped", drug="lamotrigine", reason="adverse_event")
    add("EPI", s, 200, event_type="prescribed", drug="valproate", dose=1000, condition="epilepsy")
    add("EPI", s, 120, event_type="admitted", setting="inpatient")
    add("EPI", s, 126, event_type="discharged", setting="inpatient")
    add(
        "EPI",
        s,
        300,
        event_type="measurement",
        measure="seizure_count",
        value=2,
        period_days=30,
        setting="home",
        condition="epilepsy",
    )
    # depression: started/stopped, short overlap switch, open-ended start
    add("DEP", s, 0, event_type="diagnosed", condition="depression")
    add("DEP", s, 5, event_type="started", drug="sertraline", dose=25, condition="depression")
    add("DEP", s, 40, event_type="dose_changed", drug="sertraline", dose=100)
    add(
        "DEP",
        s,
        120,
        event_type="dispensed",
        drug="venlafaxine",
        days_supply=90,
        dose=150,
        condition="depression",
    )
    add("DEP", s, 130, event_type="stopped", drug="sertraline", reason="inefficacy")
    add("DEP", s, 400, event_type="started", drug="bupropion", dose=300)
    add("DEP", s, 410, event_type="admitted", setting="snf")
    # hypertension without conditions on therapy: inferred; combination build-up; death
    add("HTN", s, 0, event_type="diagnosed", condition="hypertension")
    for k in range(8):
        add("HTN", s, 30 * k, event_type="dispensed", drug="amlodipine", days_supply=30, dose=5)
    for k in range(5):
        add(
            "HTN",
            s,
            60 + 30 * k,
            event_type="dispensed",
            drug="lisinopril",
            days_supply=30,
            dose=20,
        )
    add("HTN", s, 150, event_type="dispensed", drug="hydrochlorothiazide", days_supply=90, dose=25)
    add("HTN", s, 250, event_type="died")
    add("HTN", s, 251, event_type="dispensed", drug="amlodipine", days_supply=30, dose=5)
    # lbcl: R-CHOP x6, gap, R-ICE with a platinum switch, ASCT with BEAM, then CAR-T
    add("LYM", s, 0, event_type="diagnosed", condition="lbcl", subtype="dlbcl")
    for c in range(6):
        for drug in ("rituximab", "cyclophosphamide", "doxorubicin", "vincristine"):
            add(
                "LYM",
                s,
                21 * c,
                event_type="administered",
                drug=drug,
                dose=1,
                cycle=c + 1,
                regimen="r-chop",
                condition="lbcl",
            )
        add(
            "LYM",
            s,
            21 * c,
            event_type="dispensed",
            drug="prednisone",
            days_supply=5,
            dose=100,
            condition="lbcl",
        )
    for c in range(3):
        for drug in (
            "rituximab",
            "ifosfamide",
            "etoposide",
            "cisplatin" if c == 0 else "carboplatin",
        ):
            add(
                "LYM",
                s,
                400 + 21 * c,
                event_type="administered",
                drug=drug,
                dose=1,
                cycle=c + 1,
                condition="lbcl",
            )
    add("LYM", s, 480, event_type="administered", drug="carmustine", dose=300, condition="lbcl")
    add("LYM", s, 486, event_type="transplanted", procedure="autologous_sct")
    add("LYM", s, 600, event_type="transplanted", procedure="car_t")
    # myeloma: VRd, ASCT, lenalidomide maintenance, then daratumumab (new line)
    add("MM", s, 0, event_type="diagnosed", condition="multiple_myeloma")
    for c in range(4):
        for k in (0, 3, 7, 10):
            add(
                "MM",
                s,
                21 * c + k,
                event_type="administered",
                drug="bortezomib",
                dose=1.3,
                dose_unit="mg/m2",
                cycle=c + 1,
                condition="multiple_myeloma",
            )
        add(
            "MM",
            s,
            21 * c,
            event_type="dispensed",
            drug="lenalidomide",
            days_supply=14,
            dose=25,
            condition="multiple_myeloma",
        )
        add(
            "MM",
            s,
            21 * c,
            event_type="dispensed",
            drug="dexamethasone",
            days_supply=21,
            dose=40,
            condition="multiple_myeloma",
        )
    add(
        "MM",
        s,
        118,
        event_type="administered",
        drug="melphalan",
        dose=200,
        condition="multiple_myeloma",
    )
    add("MM", s, 120, event_type="transplanted", procedure="autologous_sct")
    for k in range(6):
        add(
            "MM",
            s,
            210 + 28 * k,
            event_type="dispensed",
            drug="lenalidomide",
            days_supply=28,
            dose=10,
            condition="multiple_myeloma",
        )
    add(
        "MM",
        s,
        500,
        event_type="administered",
        drug="daratumumab",
        dose=16,
        dose_unit="mg/kg",
        condition="multiple_myeloma",
    )
    add("MM", s, 500, event_type="disenrolled")
    for i, e in enumerate(ev):
        e.setdefault("event_id", f"s{i:04d}")
    return ev


CONDITION_DRUGS = {
    "epilepsy": ["levetiracetam", "lamotrigine", "valproate"],
    "depression": ["sertraline", "escitalopram", "venlafaxine"],
    "hypertension": ["amlodipine", "lisinopril", "hydrochlorothiazide"],
    "multiple_myeloma": ["bortezomib", "lenalidomide", "daratumumab", "dexamethasone"],
    "lbcl": ["rituximab", "cyclophosphamide", "doxorubicin", "carboplatin"],
}


def random_events(n_patients: int = 8, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ev: list[dict[str, Any]] = []
    for p in range(n_patients):
        pid = f"R{p:02d}"
        cond = rng.choice(sorted(CONDITION_DRUGS))
        day = date(2023, 1, 1) + timedelta(days=rng.randint(0, 200))
        ev.append(
            {
                "patient_id": pid,
                "event_type": "diagnosed",
                "occurred_at": _d(day),
                "condition": cond,
            }
        )
        for _ in range(rng.randint(3, 14)):
            drug = rng.choice(CONDITION_DRUGS[cond])
            kind = rng.choice(
                [
                    "dispensed",
                    "dispensed",
                    "administered",
                    "started",
                    "stopped",
                    "dose_changed",
                    "prescribed",
                ]
            )
            row: dict[str, Any] = {
                "patient_id": pid,
                "event_type": kind,
                "occurred_at": _d(day),
                "drug": drug,
                "condition": rng.choice([cond, None]),
            }
            if kind == "dispensed":
                row.update(days_supply=rng.choice([7, 28, 30, 90]), dose=rng.choice([5, 50, 500]))
            elif kind in ("started", "dose_changed", "prescribed"):
                row.update(dose=rng.choice([10, 100, 1000]))
            elif kind == "administered":
                row.update(dose=1, cycle=rng.choice([1, 2, None]))
            elif kind == "stopped":
                row.update(reason=rng.choice(["adverse_event", "inefficacy", None]))
            ev.append(row)
            day += timedelta(days=rng.choice([0, 10, 25, 31, 45, 130]))
        if rng.random() < 0.4:
            ev.append(
                {
                    "patient_id": pid,
                    "event_type": "admitted",
                    "occurred_at": _d(day, 3),
                    "setting": "inpatient",
                }
            )
        if rng.random() < 0.3:
            ev.append(
                {
                    "patient_id": pid,
                    "event_type": "transplanted",
                    "occurred_at": _d(day, 5),
                    "procedure": "autologous_sct",
                }
            )
    for i, e in enumerate(ev):
        e["event_id"] = f"r{i:04d}"
    return ev


def build_all(events: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    cfg = config_with(None)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    bind_params(con, cfg, _to_ts(AS_OF))
    reference.load_all(con, cfg)
    log_tbl = make_log_events(events)  # noqa: F841 - DuckDB replacement scan
    con.execute("CREATE TABLE log_all AS SELECT * FROM log_tbl")
    con.execute("""CREATE VIEW log_events AS SELECT * FROM log_all
                   WHERE recorded_at <= getvariable('as_of') AND occurred_at <= getvariable('as_of')""")
    for m in MODELS:
        provide_previous(con, m, None)
        run_model(con, m)
    return con


@cache
def events() -> tuple[dict[str, Any], ...]:
    """Every event with a fixed ingest position, so a patient's events look the same alone."""
    evs = story_events() + random_events()
    return tuple({**e, "ingest_seq": i, "source_row": i} for i, e in enumerate(evs, start=1))


@cache
def full_build() -> duckdb.DuckDBPyConnection:
    return build_all(list(events()))


def rows_of(con: duckdb.DuckDBPyConnection, model: Model, patient: str | None = None) -> Counter:
    cols = [r[0] for r in con.execute(f"DESCRIBE {model.name}").fetchall()]
    sql = f"SELECT {', '.join(cols)} FROM {model.name}"
    if patient is not None:
        sql += " WHERE patient_id = ?"
    data = con.execute(sql, [patient] if patient is not None else []).fetchall()
    return Counter(repr(tuple(normalise(v) for v in r)) for r in data)


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_keys_unique_and_not_null(model: Model) -> None:
    con = full_build()
    keys = ", ".join(model.keys)
    nulls = " OR ".join(f"{k} IS NULL" for k in model.keys)
    n_null = con.execute(f"SELECT count(*) FROM {model.name} WHERE {nulls}").fetchone()[0]
    dupes = con.execute(
        f"SELECT {keys}, count(*) FROM {model.name} GROUP BY ALL HAVING count(*) > 1 LIMIT 5"
    ).fetchall()
    assert n_null == 0, f"{model.name}: {n_null} rows with a NULL key column"
    assert not dupes, f"{model.name}: duplicate keys ({keys}): {dupes}"


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_columns_match_sidecar(model: Model) -> None:
    con = full_build()
    actual = [r[0] for r in con.execute(f"DESCRIBE {model.name}").fetchall()]
    undocumented = [c for c in actual if c not in model.columns]
    missing = [c for c in model.columns if c not in actual]
    assert not undocumented, f"{model.name}: output columns not in {model.name}.yml: {undocumented}"
    assert not missing, f"{model.name}: documented columns the SQL does not produce: {missing}"


def test_every_timeline_table_has_rows() -> None:
    """The event set exercises every timeline table (an empty table proves nothing above)."""
    con = full_build()
    for name in (
        "exposures",
        "inpatient_stays",
        "observation_periods",
        "drug_eras",
        "treatment_trials",
        "treatment_lines",
    ):
        assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0, name


PER_PATIENT = [m for m in MODELS if m.per_patient]
PATIENTS = sorted({e["patient_id"] for e in events()})


@pytest.mark.parametrize("patient", PATIENTS)
def test_patient_alone_equals_patient_in_cohort(patient: str) -> None:
    alone = build_all([e for e in events() if e["patient_id"] == patient])
    try:
        for model in PER_PATIENT:
            got = rows_of(alone, model)
            want = rows_of(full_build(), model, patient)
            assert got == want, (
                f"{model.name}: patient {patient} built alone differs from the cohort build "
                f"(alone-only: {list((got - want).elements())[:3]}, "
                f"cohort-only: {list((want - got).elements())[:3]})"
            )
    finally:
        alone.close()


def test_per_patient_table_must_be_ordered_by_patient_first(tmp_path) -> None:
    """A grouped build keeps a per-patient table as one file per range of patient ids, read in
    group order, so its total order must start with patient_id: a sidecar that orders it
    otherwise is refused when the models load."""
    from pipelines.build.models import ModelError

    d = tmp_path / "intermediate"
    d.mkdir()
    (d / "supply.sql").write_text("select 1 as supply_id, 'P1' as patient_id")
    side = (
        "name: supply\ngrain: one row per supply\nkeys: [supply_id]\ndepends_on: []\n"
        "per_patient: {pp}\ncolumns:\n  supply_id: Supply.\n  patient_id: Patient.\n{order}"
    )
    (d / "supply.yml").write_text(side.format(pp="true", order=""))
    with pytest.raises(ModelError, match="order_by must start with patient_id"):
        load_models(tmp_path)
    (d / "supply.yml").write_text(
        side.format(pp="true", order="order_by: [patient_id, supply_id]\n")
    )
    assert load_models(tmp_path)[0].order_by == ("patient_id", "supply_id")
    (d / "supply.yml").write_text(side.format(pp="false", order=""))  # a cohort table may
    assert load_models(tmp_path)[0].order_by == ("supply_id",)
