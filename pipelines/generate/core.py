"""Cohort generation: chunks of patients -> events -> noise -> delivery files + hidden truth."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines.generate.archetypes import ARCHETYPES, CONDITION_SHARES, weights
from pipelines.generate.clinical import (
    CONDITION_CODES,
    GENERALIZED_EPILEPSY_CODE,
    TEMPLATES,
    Group,
    rxnorm,
    series,
    uni,
)
from pipelines.generate.events import (
    COLUMNS,
    NUM_COLS,
    STR_COLS,
    VOCAB,
    EventBuffer,
    V,
    day_iso,
    day_number,
    patient_ids,
    render,
    suffixed,
    take_cols,
)

GENERATOR_VERSION = "1.0.0"
FOLLOWUP_START = day_number(date(2020, 1, 1))
FOLLOWUP_END = day_number(date(2025, 1, 31))  # end of follow-up = the truth's as-of date
CHUNK_PATIENTS = 10_000
PILOT_PATIENTS = 3_000
# noise rates, as fractions of the clean events
BAD_RATE = 0.005
DUPLICATE_RATE = 0.003
RETRACTION_RATE = 0.001
AMENDMENT_RATE = 0.001
INPATIENT_STAY_RATE = 0.04
COMED_RATES = {"atorvastatin": (0.12, 20.0), "metformin": (0.08, 1000.0)}
BAD_KINDS = [
    ("bad_missing_patient_id", "missing_patient_id"),
    ("bad_unparseable_date", "unparseable_occurred_at"),
    ("bad_negative_days_supply", "negative_days_supply"),
    ("bad_unknown_event_type", "unknown_event_type"),
]
_PHI = 0.6180339887498949

Progress = Callable[[str, float], None]


@dataclass
class GenerateResult:
    out_dir: Path
    n_patients: int
    n_events: int  # rows written to the delivery files (noise included)
    n_clean_events: int
    n_deliveries: int
    deliveries: list[Path] = field(default_factory=list)
    noise_counts: dict[str, int] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


# --- patients -----------------------------------------------------------------------------------


def assign_archetypes(global_idx: np.ndarray, seed: int) -> np.ndarray:
    """Archetype index per patient: a low-discrepancy sequence over the fixed proportions, so any
    contiguous range of patients (a chunk) has the proportions to within a patient or two."""
    offset = (seed * 0.7548776662466927) % 1.0
    u = (global_idx.astype(np.float64) * _PHI + offset) % 1.0
    cum = np.cumsum(weights())
    return np.minimum(np.searchsorted(cum, u, side="right"), len(ARCHETYPES) - 1)


@dataclass
class Chunk:
    cols: dict[str, np.ndarray]  # sorted clean events; pat = chunk-local patient index
    patients: dict[str, np.ndarray]
    trials: dict[str, np.ndarray]


def build_chunk(seed: int, chunk_idx: int, first_global: int, n: int) -> Chunk:
    rng = np.random.default_rng([seed, chunk_idx])
    gidx = first_global + np.arange(n)
    arch = assign_archetypes(gidx, seed)
    buf = EventBuffer()
    trials: list[dict[str, np.ndarray]] = []
    first_day = np.zeros(n, np.int64)
    first_trial = np.zeros(n, np.int64)
    subtype = np.full(n, -1, np.int32)
    for ai, a in enumerate(ARCHETYPES):
        members = np.flatnonzero(arch == ai)
        m = len(members)
        if m == 0:
            continue
        st = None
        if a.condition == "epilepsy":
            st = np.where(rng.random(m) < 0.25, V("generalized"), V("focal")).astype(np.int32)
        elif a.condition == "lbcl":
            st = np.full(m, V("dlbcl"), np.int32)
        g = Group(rng, m, a.condition, st)
        end = TEMPLATES[a.condition](g, list(a.kinds))
        if a.flags == "misdiagnosis_suspected":
            g.buf.add(
                g.all,
                "diagnosis_revised",
                end + uni(rng, 10, 60, m),
                source="ehr",
                condition=a.condition,
                revised_to="psychogenic_nonepileptic_seizures",
            )
        mn = np.full(m, np.iinfo(np.int64).max)
        mx = np.full(m, np.iinfo(np.int64).min)
        for b in g.buf.blocks:
            np.minimum.at(mn, b["pat"], b["day"])
            np.maximum.at(mx, b["pat"], b["day"])
        if a.anchor == "end":
            shift = FOLLOWUP_END - uni(rng, 2, 12, m) - mx
        else:
            lo = FOLLOWUP_START + 240 - mn
            hi = FOLLOWUP_END - 20 - mx
            shift = lo + np.floor(rng.random(m) * (np.maximum(hi - lo, 0) + 1)).astype(np.int64)
        for b in g.buf.blocks:
            b["day"] += shift[b["pat"]]
            b["pat"] = members[b["pat"]]
        for t in g.trials:
            t["start"] = t["start"] + shift
            t["pat"] = members[t["member"]]
            t["condition"] = np.full(m, V(a.condition), np.int32)
            trials.append(t)
        first_day[members] = mn + shift
        first_trial[members] = g.trials[0]["start"]
        if st is not None:
            subtype[members] = st
        buf.extend(g.buf)

    all_ = np.arange(n)
    cond_names = [a.condition for a in ARCHETYPES]
    cond = np.array([V(c) for c in cond_names], np.int32)[arch]
    code = np.array([V(CONDITION_CODES[c]) for c in cond_names], np.int32)[arch]
    code = np.where(subtype == V("generalized"), V(GENERALIZED_EPILEPSY_CODE), code)
    enrolled = np.maximum(FOLLOWUP_START, first_day - uni(rng, 60, 200, n))
    buf.add(all_, "enrolled", enrolled, source="registry")
    buf.add(
        all_,
        "diagnosed",
        first_day - uni(rng, 7, 45, n),
        source="ehr",
        condition=cond,
        condition_code=code,
        condition_system="icd10",
        subtype=subtype,
    )
    # inpatient stays during the first trial
    stay = np.flatnonzero(rng.random(n) < INPATIENT_STAY_RATE)
    adm = first_trial[stay] + uni(rng, 20, 60, len(stay))
    ok = adm < FOLLOWUP_END - 20
    stay, adm = stay[ok], adm[ok]
    buf.add(stay, "admitted", adm, source="ehr", setting="inpatient")
    buf.add(stay, "discharged", adm + uni(rng, 3, 8, len(stay)), source="ehr", setting="inpatient")
    # co-medications without an indication among the six conditions
    for drug, (rate, dose) in COMED_RATES.items():
        who = np.flatnonzero(rng.random(n) < rate)
        start = first_day[who] + uni(rng, 0, 300, len(who))
        cnt = np.minimum(uni(rng, 6, 18, len(who)), (FOLLOWUP_END - 10 - start) // 32)
        keep = cnt > 0
        who, start, cnt = who[keep], start[keep], cnt[keep]
        mi, day, _k, _l = series(rng, start, cnt, 30, 32)
        buf.add(
            who[mi],
            "dispensed",
            day,
            source="pharmacy",
            drug=drug,
            drug_code=V(rxnorm(drug)),
            drug_system="rxnorm",
            dose=dose,
            dose_unit="mg",
            days_supply=30,
            quantity=30,
            route="oral",
        )

    cols = buf.concat()
    order = np.lexsort((np.arange(len(cols["day"])), cols["day"], cols["pat"]))
    cols = take_cols(cols, order)
    if len(cols["day"]) and cols["day"].max() > FOLLOWUP_END - 1:
        raise AssertionError("generated an event after the end of follow-up")
    N = len(cols["day"])
    u = rng.random(N)
    lag = np.where(
        u < 0.6, uni(rng, 0, 2, N), np.where(u < 0.9, uni(rng, 3, 14, N), uni(rng, 15, 90, N))
    )
    room = np.floor(rng.random(N) * (FOLLOWUP_END - cols["day"] + 1)).astype(np.int64)
    cols["rec_day"] = cols["day"] + np.minimum(lag, room)

    t_all = {
        k: np.concatenate([t[k] for t in trials])
        for k in ("pat", "trial_no", "regimen", "start", "outcome", "condition")
    }
    o = np.lexsort((t_all["trial_no"], t_all["pat"]))
    t_all = {k: v[o] for k, v in t_all.items()}
    n_trials = np.bincount(t_all["pat"], minlength=n)
    patients = {"arch": arch, "subtype": subtype, "first_trial": first_trial, "n_trials": n_trials}
    return Chunk(cols, patients, t_all)


# --- noise --------------------------------------------------------------------------------------


def _k(rate: float, n: int) -> int:
    return int(round(rate * n))


def _empty_cols(n: int) -> dict[str, np.ndarray]:
    out = {c: np.full(n, -1, np.int32) for c in STR_COLS}
    out.update({c: np.full(n, np.nan) for c in NUM_COLS})
    return out


@dataclass
class Prepared:
    table: pa.Table  # all rows of the chunk as strings (clean + corrections + noise)
    delivery: np.ndarray
    noise: pa.Table
    n_clean: int


def prepare_chunk(
    ch: Chunk, rng: np.random.Generator, first_global: int, bounds: np.ndarray, n_deliveries: int
) -> Prepared:
    c = ch.cols
    N = len(c["day"])
    pids = patient_ids(first_global + np.arange(len(ch.patients["arch"])))
    pid = pc.take(pids, pa.array(c["pat"]))
    first = np.searchsorted(c["pat"], c["pat"], side="left")
    seq = np.arange(N) - first + 1
    eid = pc.binary_join_element_wise(
        pid, pc.utf8_lpad(pa.array(seq).cast(pa.string()), 4, "0"), "-"
    )
    et = c["event_type"]
    valued = np.flatnonzero((et == V("measurement")) | (et == V("dispensed")))
    n_am, n_rt = _k(AMENDMENT_RATE, N), _k(RETRACTION_RATE, N)
    chosen = (
        rng.choice(valued, min(len(valued), n_am + n_rt), replace=False)
        if len(valued)
        else np.zeros(0, np.int64)
    )
    am, rt = np.sort(chosen[:n_am]), np.sort(chosen[n_am:])

    # amendments: the delivered row carries a wrong value; a later `amended` row restores it
    is_meas = et[am] == V("measurement")
    true_value, true_supply = c["value"][am].copy(), c["days_supply"][am].copy()
    c["value"][am] = np.where(is_meas, true_value + 1, true_value)
    c["days_supply"][am] = np.where(is_meas, true_supply, true_supply * 3)
    amd = _empty_cols(len(am))
    amd.update(
        pat=c["pat"][am],
        day=c["day"][am],
        event_type=np.full(len(am), V("amended"), np.int32),
        source=c["source"][am],
        rec_day=np.minimum(FOLLOWUP_END, c["rec_day"][am] + uni(rng, 20, 120, len(am))),
    )
    amd["value"] = np.where(is_meas, true_value, np.nan)
    amd["days_supply"] = np.where(is_meas, np.nan, true_supply)
    # retractions: a spurious re-entry (next day) is sent, then retracted
    spur = take_cols(c, rt)
    spur["day"] = spur["day"] + 1
    spur["rec_day"] = np.maximum(spur["rec_day"] + 1, spur["day"])
    spur_id = suffixed(pc.take(eid, pa.array(rt, pa.int64())), "-s")
    ret = _empty_cols(len(rt))
    ret.update(
        pat=spur["pat"],
        day=spur["day"],
        event_type=np.full(len(rt), V("retracted"), np.int32),
        source=spur["source"],
        rec_day=np.minimum(FOLLOWUP_END, spur["rec_day"] + uni(rng, 20, 120, len(rt))),
    )

    am_idx = pa.array(am, pa.int64())
    rt_idx = pa.array(rt, pa.int64())
    parts = [
        render(c, eid, pid),
        render(spur, spur_id, pc.take(pid, rt_idx)),
        render(
            amd, suffixed(pc.take(eid, am_idx), "-a"), pc.take(pid, am_idx), pc.take(eid, am_idx)
        ),
        render(ret, suffixed(pc.take(eid, rt_idx), "-r"), pc.take(pid, rt_idx), spur_id),
    ]
    good = pa.concat_tables(parts)
    g_pat = np.concatenate([c["pat"], spur["pat"], amd["pat"], ret["pat"]])
    g_day = np.concatenate([c["day"], spur["day"], amd["day"], ret["day"]])
    g_rec = np.concatenate([c["rec_day"], spur["rec_day"], amd["rec_day"], ret["rec_day"]])
    g_del = np.searchsorted(bounds, g_rec, side="right")
    last = n_deliveries - 1

    # exact duplicates re-sent in a later delivery
    cand = np.flatnonzero(g_del[:N] < last)
    dup = (
        np.sort(rng.choice(cand, min(len(cand), _k(DUPLICATE_RATE, N)), replace=False))
        if len(cand)
        else np.zeros(0, np.int64)
    )
    resend = np.searchsorted(bounds, g_rec[dup] + uni(rng, 30, 200, len(dup)), side="right")
    dup_del = np.minimum(np.maximum(resend, g_del[dup] + 1), last)
    dups = good.take(pa.array(dup, pa.int64()))

    # deliberately bad rows (copies of clean rows, then broken), in the source row's delivery
    n_bad = _k(BAD_RATE, N)
    kinds = np.arange(n_bad) % len(BAD_KINDS)
    disp = np.flatnonzero(et == V("dispensed"))
    bad_src = np.empty(n_bad, np.int64)
    neg = kinds == 2
    bad_src[~neg] = rng.choice(N, int((~neg).sum()), replace=False) if N else 0
    bad_src[neg] = rng.choice(disp, int(neg.sum()), replace=False) if len(disp) else 0
    bad = good.take(pa.array(bad_src, pa.int64()))
    bad_ids = suffixed(bad.column("event_id").combine_chunks(), "-q")
    patient_col = pc.if_else(
        pa.array(kinds == 0),
        pa.scalar(None, pa.string()),
        bad.column("patient_id").combine_chunks(),
    )
    occ_col = pc.if_else(
        pa.array(kinds == 1),
        pa.array(np.where(np.arange(n_bad) % 2 == 0, "2021-13-45", "unknown")),
        bad.column("occurred_at").combine_chunks(),
    )
    neg_supply = pc.binary_join_element_wise(
        "-", pc.fill_null(bad.column("days_supply").combine_chunks(), "30"), ""
    )
    ds_col = pc.if_else(pa.array(neg), neg_supply, bad.column("days_supply").combine_chunks())
    et_col = pc.if_else(
        pa.array(kinds == 3),
        pa.scalar("refill_reminder"),
        bad.column("event_type").combine_chunks(),
    )
    for name, arr in (
        ("event_id", bad_ids),
        ("patient_id", patient_col),
        ("occurred_at", occ_col),
        ("days_supply", ds_col),
        ("event_type", et_col),
    ):
        bad = bad.set_column(COLUMNS.index(name), name, arr)
    bad_del = g_del[bad_src]

    table = pa.concat_tables([good, dups, bad])
    delivery = np.concatenate([g_del, dup_del, bad_del])
    pat_all = np.concatenate([g_pat, g_pat[dup], g_pat[bad_src]])
    day_all = np.concatenate([g_day, g_day[dup], g_day[bad_src]])
    order = np.lexsort((np.arange(len(delivery)), day_all, pat_all, delivery))
    table = table.take(pa.array(order, pa.int64()))
    delivery = delivery[order]

    # truth about the noise
    n_sp, n_am_rows = len(rt), len(am)
    off_sp, off_am, off_rt = N, N + n_sp, N + n_sp + n_am_rows
    noise_parts = [
        _noise(
            "amendment_target",
            g_del[am],
            pc.take(eid, am_idx),
            None,
            pc.take(pid, am_idx),
            "accepted",
            "",
        ),
        _noise(
            "amended",
            g_del[off_am : off_am + n_am_rows],
            parts[2].column("event_id"),
            pc.take(eid, am_idx),
            pc.take(pid, am_idx),
            "accepted",
            "",
        ),
        _noise(
            "retraction_target",
            g_del[off_sp : off_sp + n_sp],
            spur_id,
            None,
            pc.take(pid, rt_idx),
            "accepted",
            "",
        ),
        _noise(
            "retracted",
            g_del[off_rt : off_rt + n_sp],
            parts[3].column("event_id"),
            spur_id,
            pc.take(pid, rt_idx),
            "accepted",
            "",
        ),
        _noise(
            "duplicate",
            dup_del,
            dups.column("event_id"),
            None,
            dups.column("patient_id"),
            "duplicate",
            "",
        ),
    ]
    src_pid = good.column("patient_id").take(pa.array(bad_src, pa.int64()))
    for ki, (kind, reason) in enumerate(BAD_KINDS):
        sel = np.flatnonzero(kinds == ki)
        sel_a = pa.array(sel, pa.int64())
        noise_parts.append(
            _noise(
                kind,
                bad_del[sel],
                pc.take(bad_ids, sel_a),
                None,
                pc.take(src_pid, sel_a),
                "quarantined",
                reason,
            )
        )
    noise = pa.concat_tables(noise_parts)
    return Prepared(table, delivery, noise, N + 2 * n_sp + n_am_rows)


def _noise(
    kind: str,
    deliv: np.ndarray,
    event_id: Any,
    target: Any,
    patient_id: Any,
    outcome: str,
    reason: str,
) -> pa.Table:
    n = len(deliv)
    return pa.table(
        {
            "delivery_seq": pa.array(deliv, pa.int64()),
            "kind": pa.array([kind] * n, pa.string()),
            "event_id": event_id,
            "target_event_id": target if target is not None else pa.nulls(n, pa.string()),
            "patient_id": patient_id,
            "expected_outcome": pa.array([outcome] * n, pa.string()),
            "expected_reason": pa.array([reason or None] * n, pa.string()),
        }
    )


# --- delivery slices ----------------------------------------------------------------------------


def delivery_bounds(
    rec_day: np.ndarray, n_deliveries: int, final_fraction: float | None
) -> np.ndarray:
    """First recorded day of deliveries 1..n-1: equal shares of the events, or, with
    final_fraction, equal shares of 1 - final_fraction and the rest in the last delivery."""
    if n_deliveries <= 1:
        return np.zeros(0, np.int64)
    if final_fraction is None:
        cum = np.arange(1, n_deliveries) / n_deliveries
    else:
        head = 1.0 - final_fraction
        cum = np.append(np.arange(1, n_deliveries - 1) / (n_deliveries - 1) * head, head)
    s = np.sort(rec_day)
    n = len(s)
    b = s[np.minimum((cum * n).round().astype(np.int64), n - 1)]
    # recorded dates are whole days: take the cut day (this one or the next) whose share of the
    # events before it is closest to the target
    alt = b + 1
    err_b = np.abs(np.searchsorted(s, b, side="left") / n - cum)
    err_alt = np.abs(np.searchsorted(s, alt, side="left") / n - cum)
    b = np.where(err_alt < err_b, alt, b)
    for i in range(1, len(b)):
        b[i] = max(b[i], b[i - 1] + 1)
    return b.astype(np.int64)


# --- writing ------------------------------------------------------------------------------------


def _write(f: BinaryIO, table: pa.Table) -> None:
    if table.num_rows:
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _header(columns: list[str]) -> bytes:
    return (",".join(columns) + "\n").encode()


def _patients_table(ch: Chunk, first_global: int) -> pa.Table:
    p = ch.patients
    arch = p["arch"]
    names = np.array([a.name for a in ARCHETYPES], dtype=object)
    cond = np.array([a.condition for a in ARCHETYPES], dtype=object)
    status = np.array([a.expected_status for a in ARCHETYPES], dtype=object)
    flags = np.array([a.flags or None for a in ARCHETYPES], dtype=object)
    st = p["subtype"]
    subtype = pc.take(
        VOCAB.arrow(), pa.array(np.where(st < 0, 0, st), mask=st < 0, type=pa.int32())
    )
    return pa.table(
        {
            "patient_id": patient_ids(first_global + np.arange(len(arch))),
            "condition": pa.array(cond[arch], pa.string()),
            "subtype": subtype,
            "archetype": pa.array(names[arch], pa.string()),
            "expected_status": pa.array(status[arch], pa.string()),
            "expected_flags": pa.array(flags[arch], pa.string()),
            "n_trials": pa.array(p["n_trials"], pa.int64()),
            "first_trial_start": pa.array(p["first_trial"].astype(np.int32), pa.int32()).cast(
                pa.date32()
            ),
        }
    )


def _trials_table(ch: Chunk, first_global: int) -> pa.Table:
    t = ch.trials
    voc = VOCAB.arrow()
    return pa.table(
        {
            "patient_id": pc.take(
                patient_ids(first_global + np.arange(len(ch.patients["arch"]))), pa.array(t["pat"])
            ),
            "condition": pc.take(voc, pa.array(t["condition"])),
            "trial_no": pa.array(t["trial_no"], pa.int64()),
            "regimen": pc.take(voc, pa.array(t["regimen"])),
            "start_date": pa.array(t["start"].astype(np.int32), pa.int32()).cast(pa.date32()),
            "expected_outcome": pc.take(voc, pa.array(t["outcome"])),
        }
    )


def _clean_events_per_patient(seed: int) -> float:
    ch = build_chunk(seed, 1_000_000, 0, PILOT_PATIENTS)
    return len(ch.cols["day"]) / PILOT_PATIENTS


def generate(
    out_dir: str | Path,
    n_patients: int | None = None,
    n_events: int | None = None,
    seed: int = 42,
    n_deliveries: int = 6,
    final_delivery_fraction: float | None = None,
    progress: Progress | None = None,
) -> GenerateResult:
    """Generate a synthetic cohort (see the package docstring). Same arguments, same bytes."""
    if (n_patients is None) == (n_events is None):
        raise ValueError("give exactly one of n_patients and n_events")
    if n_deliveries < 1 or n_deliveries > 100:
        raise ValueError("n_deliveries must be between 1 and 100")
    if final_delivery_fraction is not None and not (0 < final_delivery_fraction < 1):
        raise ValueError("final_delivery_fraction must be in (0, 1)")
    if final_delivery_fraction is not None and n_deliveries < 2:
        raise ValueError("final_delivery_fraction needs at least 2 deliveries")
    progress = progress or (lambda stage, frac: None)
    if n_patients is None:
        assert n_events is not None
        per_patient = _clean_events_per_patient(seed) * (
            1 + BAD_RATE + DUPLICATE_RATE + 2 * RETRACTION_RATE + AMENDMENT_RATE
        )
        n_patients = max(1, int(round(n_events / per_patient)))
    out = Path(out_dir)
    (out / "deliveries").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for old in list((out / "deliveries").glob("delivery_*.csv")):
        old.unlink()
    files = [out / "deliveries" / f"delivery_{i:02d}.csv" for i in range(n_deliveries)]
    handles = [f.open("wb") for f in files]
    truth = {
        name: (out / "truth" / f"{name}.csv").open("wb") for name in ("patients", "trials", "noise")
    }
    n_chunks = math.ceil(n_patients / CHUNK_PATIENTS)
    rows = np.zeros(n_deliveries, np.int64)
    rec_min = np.full(n_deliveries, np.iinfo(np.int64).max)
    rec_max = np.full(n_deliveries, np.iinfo(np.int64).min)
    noise_counts: dict[str, int] = {}
    n_clean = 0
    bounds = np.zeros(0, np.int64)
    try:
        for h in handles:
            h.write(_header(COLUMNS))
        header_done = False
        for ci in range(n_chunks):
            first_global = ci * CHUNK_PATIENTS
            n = min(CHUNK_PATIENTS, n_patients - first_global)
            ch = build_chunk(seed, ci, first_global, n)
            if ci == 0:
                bounds = delivery_bounds(ch.cols["rec_day"], n_deliveries, final_delivery_fraction)
            rng = np.random.default_rng([seed, ci, 1])
            prep = prepare_chunk(ch, rng, first_global, bounds, n_deliveries)
            n_clean += prep.n_clean
            rec = (
                pc.cast(pc.cast(prep.table.column("recorded_at"), pa.date32()), pa.int32())
                .to_numpy(zero_copy_only=False)
                .astype(np.int64)
            )
            cuts = np.searchsorted(prep.delivery, np.arange(n_deliveries + 1), side="left")
            for d in range(n_deliveries):
                part = prep.table.slice(cuts[d], cuts[d + 1] - cuts[d])
                _write(handles[d], part)
                rows[d] += part.num_rows
                if part.num_rows:
                    r = rec[cuts[d] : cuts[d + 1]]
                    rec_min[d] = min(rec_min[d], int(r.min()))
                    rec_max[d] = max(rec_max[d], int(r.max()))
            pt, tt, nt = (
                _patients_table(ch, first_global),
                _trials_table(ch, first_global),
                prep.noise,
            )
            fnames = pa.array([files[i].name for i in range(n_deliveries)])
            nt = nt.add_column(1, "file", pc.take(fnames, nt.column("delivery_seq")))
            nt = nt.take(
                pa.array(
                    np.lexsort((np.arange(nt.num_rows), nt.column("delivery_seq").to_numpy())),
                    pa.int64(),
                )
            )
            for name, tbl in (("patients", pt), ("trials", tt), ("noise", nt)):
                if not header_done:
                    truth[name].write(_header(tbl.column_names))
                _write(truth[name], tbl)
            header_done = True
            for k, v in zip(
                *np.unique(nt.column("kind").to_numpy(zero_copy_only=False), return_counts=True),
                strict=True,
            ):
                noise_counts[str(k)] = noise_counts.get(str(k), 0) + int(v)
            progress("generate", (ci + 1) / n_chunks)
    finally:
        for h in [*handles, *truth.values()]:
            h.close()

    starts = np.concatenate([[None], bounds]) if n_deliveries > 1 else np.array([None])
    deliveries = []
    for d in range(n_deliveries):
        slice_from = day_iso(starts[d]) if starts[d] is not None else day_iso(FOLLOWUP_START)
        slice_to = day_iso(bounds[d] - 1) if d < n_deliveries - 1 else day_iso(FOLLOWUP_END)
        deliveries.append(
            {
                "delivery_seq": d,
                "file": f"deliveries/{files[d].name}",
                "n_rows": int(rows[d]),
                "recorded_from": slice_from,
                "recorded_to": slice_to,
                "min_recorded_at": day_iso(rec_min[d]) if rows[d] else None,
                "max_recorded_at": day_iso(rec_max[d]) if rows[d] else None,
            }
        )
    with (out / "truth" / "deliveries.csv").open("w") as f:
        cols = list(deliveries[0])
        f.write(",".join(cols) + "\n")
        for dl in deliveries:
            f.write(",".join("" if dl[c] is None else str(dl[c]) for c in cols) + "\n")
    n_written = int(rows.sum())
    manifest = {
        "generator": "pipelines.generate",
        "generator_version": GENERATOR_VERSION,
        "event_contract_version": 1,
        "seed": seed,
        "parameters": {
            "n_patients": n_patients,
            "n_events_target": n_events,
            "n_deliveries": n_deliveries,
            "final_delivery_fraction": final_delivery_fraction,
            "chunk_patients": CHUNK_PATIENTS,
        },
        "followup_start": day_iso(FOLLOWUP_START),
        "followup_end": day_iso(FOLLOWUP_END),
        "truth_as_of": day_iso(FOLLOWUP_END),
        "counts": {
            "patients": n_patients,
            "events_written": n_written,
            "clean_events": n_clean,
            "rows_per_delivery": [int(r) for r in rows],
            "noise": dict(sorted(noise_counts.items())),
            "expected_ingest": {
                "quarantined": sum(v for k, v in noise_counts.items() if k.startswith("bad_")),
                "duplicates": noise_counts.get("duplicate", 0),
                "accepted": n_written
                - noise_counts.get("duplicate", 0)
                - sum(v for k, v in noise_counts.items() if k.startswith("bad_")),
            },
        },
        "rates": {
            "bad": BAD_RATE,
            "duplicate": DUPLICATE_RATE,
            "retraction": RETRACTION_RATE,
            "amendment": AMENDMENT_RATE,
            "inpatient_stay": INPATIENT_STAY_RATE,
            "comedication": {k: v[0] for k, v in COMED_RATES.items()},
        },
        "condition_shares": CONDITION_SHARES,
        "archetypes": [
            {
                "condition": a.condition,
                "archetype": a.name,
                "share_in_condition": a.share,
                "trial_kinds": list(a.kinds),
                "expected_status": a.expected_status,
                "expected_flags": a.flags or None,
            }
            for a in ARCHETYPES
        ],
        "deliveries": deliveries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return GenerateResult(
        out,
        n_patients,
        n_written,
        n_clean,
        n_deliveries,
        files,
        dict(sorted(noise_counts.items())),
        manifest,
    )
