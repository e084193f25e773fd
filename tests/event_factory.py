"""Small random canonical event batches for property-style build tests.

Independent of `txh generate` on purpose: a compact, seeded mix of every event family (therapy
across the shipped conditions, scores, seizure diaries, BP, oncology responses, diagnoses,
admissions) spread over several delivery files, with late arrivals (recorded long after they
occurred), exact re-sends and corrections (retractions and amendments of earlier events).
"""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

COLUMNS = [
    "event_id",
    "patient_id",
    "event_type",
    "occurred_at",
    "recorded_at",
    "source",
    "drug",
    "condition",
    "dose",
    "dose_unit",
    "days_supply",
    "regimen",
    "cycle",
    "reason",
    "criteria",
    "response",
    "measure",
    "value",
    "unit",
    "period_days",
    "setting",
    "subtype",
    "revised_to",
    "procedure",
    "target_event_id",
]

CONDITIONS = {
    "epilepsy": (["levetiracetam", "lamotrigine", "valproate"], "seizure_count"),
    "depression": (["sertraline", "escitalopram", "venlafaxine"], "phq9"),
    "hypertension": (["amlodipine", "lisinopril", "hydrochlorothiazide", "chlorthalidone"], "sbp"),
    "multiple_myeloma": (["bortezomib", "lenalidomide", "daratumumab"], "serum_m_protein"),
}


def _patient_events(rng: random.Random, pid: str, start: date) -> list[dict[str, Any]]:
    cond = rng.choice(list(CONDITIONS))
    drugs, measure = CONDITIONS[cond]
    ev: list[dict[str, Any]] = []

    def add(day: date, **kw: Any) -> None:
        ev.append({"patient_id": pid, "occurred_at": day.isoformat(), "condition": cond, **kw})

    add(start - timedelta(days=30), event_type="enrolled", condition=None)
    add(start, event_type="diagnosed", subtype=rng.choice(["focal", "generalized", None]))
    day = start
    for drug in rng.sample(drugs, k=rng.randint(1, len(drugs))):
        n_fills = rng.randint(1, 6)
        for _ in range(n_fills):
            if cond == "multiple_myeloma" and drug != "lenalidomide":
                add(
                    day,
                    event_type="administered",
                    drug=drug,
                    dose=1.3,
                    dose_unit="mg/m2",
                    regimen="vrd",
                    cycle=_ + 1,
                )
            else:
                add(
                    day,
                    event_type="dispensed",
                    drug=drug,
                    days_supply=30,
                    dose=rng.choice([50, 100, 1000]),
                    dose_unit="mg",
                )
            day += timedelta(days=rng.choice([28, 30, 35, 45, 70]))
            if measure == "seizure_count":
                add(
                    day,
                    event_type="measurement",
                    measure=measure,
                    value=rng.randint(0, 4),
                    period_days=30,
                    setting="home",
                )
            elif measure == "phq9":
                add(
                    day,
                    event_type="measurement",
                    measure=measure,
                    value=rng.randint(3, 24),
                    setting="office",
                )
            elif measure == "sbp":
                add(
                    day,
                    event_type="measurement",
                    measure="sbp",
                    value=rng.randint(115, 165),
                    unit="mmHg",
                    setting=rng.choice(["office", "office", "home"]),
                )
                add(
                    day,
                    event_type="measurement",
                    measure="dbp",
                    value=rng.randint(70, 100),
                    unit="mmHg",
                    setting="office",
                )
            else:
                add(
                    day,
                    event_type="response_assessed",
                    criteria="imwg",
                    response=rng.choice(["pr", "vgpr", "sd", "pd", "mr"]),
                )
        if rng.random() < 0.4:
            add(
                day,
                event_type="stopped",
                drug=drug,
                reason=rng.choice(["inefficacy", "adverse_event", "cost", "unknown"]),
            )
    if rng.random() < 0.2:
        add(day + timedelta(days=5), event_type="admitted", setting="inpatient", condition=None)
        add(day + timedelta(days=9), event_type="discharged", setting="inpatient", condition=None)
    if rng.random() < 0.1:
        add(day + timedelta(days=40), event_type="diagnosis_revised", revised_to="other")
    return ev


def random_batches(
    out: Path, *, n_patients: int = 60, n_batches: int = 6, seed: int = 0
) -> list[Path]:
    """Delivery files in delivery order. Every row is valid contract data."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for p in range(n_patients):
        start = date(2023, 1, 1) + timedelta(days=rng.randint(0, 300))
        events += _patient_events(rng, f"P{p:04d}", start)
    for i, e in enumerate(events):
        e["event_id"] = f"ev{i:06d}"
        e["source"] = rng.choice(["emr", "pharmacy"])
    # deliveries: by occurrence, with ~5% arriving late (in the last delivery)
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    per = max(1, len(events) // n_batches)
    files: list[list[dict[str, Any]]] = [[] for _ in range(n_batches)]
    for i, e in enumerate(events):
        k = min(i // per, n_batches - 1)
        if rng.random() < 0.05:
            k = n_batches - 1
        occurred = datetime.fromisoformat(e["occurred_at"])
        # the source records an event when it sends it: the delivery day (late arrivals
        # occurred long before their delivery)
        delivered = datetime(2025, 1, 1) + timedelta(days=k, hours=rng.randint(0, 10))
        e["recorded_at"] = max(delivered, occurred + timedelta(days=1)).isoformat()
        files[k].append(e)
    # re-sends and corrections in later deliveries
    for k in range(1, n_batches):
        earlier = [e for f in files[:k] for e in f if e["event_type"] == "dispensed"]
        for e in rng.sample(earlier, k=min(3, len(earlier))):
            files[k].append(dict(e))  # exact re-send (same id and content): a duplicate
        for j, e in enumerate(rng.sample(earlier, k=min(2, len(earlier)))):
            when = datetime(2025, 1, 1) + timedelta(days=k, hours=11)
            corr = {
                "event_id": f"c{k}_{j}",
                "patient_id": e["patient_id"],
                "source": e["source"],
                "occurred_at": e["occurred_at"],
                "recorded_at": when.isoformat(),
                "target_event_id": e["event_id"],
            }
            if j == 0:
                corr["event_type"] = "retracted"
            else:
                corr.update(event_type="amended", days_supply=90)
            files[k].append(corr)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rows in enumerate(files):
        p = out / f"delivery_{k:02d}.csv"
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in COLUMNS})
        paths.append(p)
    return paths
