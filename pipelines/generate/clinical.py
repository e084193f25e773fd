"""Clinical templates: per condition, how a trial of a given kind is written as events.

Every archetype is a sequence of trial *kinds* (see ``archetypes.py``); all patients of one
archetype in a chunk are generated together, vectorised over patients (one numpy operation per
event type and trial step, never per event). Days are relative to the first trial start and are
shifted onto the calendar afterwards.

Kinds and the outcome a correct pipeline should derive (trial_outcome_scenarios.sql precedence):
  fail         adequate (dose >= minimum, PDC ~1, long enough), tolerated, measured failure -> non_response
  respond      adequate, measured response                                               -> response
  partial      adequate, measured partial response                                       -> partial_response
  nonadherent  refills every 48-57 days for 28-30 days of supply (PDC ~0.55-0.60, gaps <= 27
               days so the trial stays one trial), measured "failure"                    -> non_adherent
  intolerant   stopped for adverse_event 8-20 days after the start                       -> intolerant
  low_dose     adherent and long, but below min_effective_daily_dose_mg, measured failure -> inadequate_trial
  short        one short fill (14-20 days) / two cycles, stopped for patient_choice      -> inadequate_trial
  ongoing      started shortly before the end of follow-up, no assessment yet            -> insufficient_followup
  white_coat   (hypertension) office BP above goal, home BP at goal                      -> response
Thresholds are kept far from every cut-off (PDC 0.80, 30-day gap, 28/90-day minimum durations,
25%/50% PHQ-9 improvement, SLEDAI-2K 6, 4 LBCL cycles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipelines.generate.events import EventBuffer, V

_DRUGS_YAML = Path(__file__).resolve().parents[2] / "schemas" / "reference" / "drugs.yaml"
_REF = yaml.safe_load(_DRUGS_YAML.read_text())["drugs"]


def rxnorm(drug: str) -> str:
    return str(_REF[drug]["rxnorm"])


class DrugList:
    """Ingredients with the doses the generator uses: adequate (>= the reference minimum with a
    clear margin) and low (below the minimum)."""

    def __init__(self, rows: list[tuple[str, float, float]]):
        self.names = [r[0] for r in rows]
        self.name = np.array([V(r[0]) for r in rows], np.int32)
        self.rx = np.array([V(rxnorm(r[0])) for r in rows], np.int32)
        self.dose = np.array([r[1] for r in rows], np.float64)
        self.low = np.array([r[2] for r in rows], np.float64)
        for nm, adequate, low in rows:
            ind = _REF[nm].get("indications") or {}
            mins = [v.get("min_effective_daily_dose_mg") for v in ind.values() if v]
            mins = [m for m in mins if m is not None]
            if mins:
                assert adequate >= 1.2 * max(mins) and low <= 0.6 * min(mins), nm


# focal: all seven; generalized: the first four (no sodium-channel blockers)
EPILEPSY_DRUGS = DrugList(
    [
        ("levetiracetam", 1500, 500),
        ("valproate", 1000, 250),
        ("lamotrigine", 200, 50),
        ("topiramate", 200, 50),
        ("lacosamide", 300, 100),
        ("carbamazepine", 800, 200),
        ("oxcarbazepine", 1200, 300),
    ]
)
DEPRESSION_DRUGS = DrugList(
    [
        ("sertraline", 100, 25),
        ("escitalopram", 15, 5),
        ("citalopram", 30, 10),
        ("fluoxetine", 40, 10),
        ("venlafaxine", 150, 37.5),
        ("duloxetine", 90, 30),
        ("bupropion", 300, 75),
        ("mirtazapine", 30, 7.5),
    ]
)
HTN_CCB = DrugList([("amlodipine", 10, 1.25)])
HTN_RAS = DrugList([("lisinopril", 20, 5), ("losartan", 100, 25), ("valsartan", 160, 40)])
HTN_DIURETIC = DrugList([("hydrochlorothiazide", 25, 6.25), ("chlorthalidone", 25, 6.25)])
SLE_ORAL = DrugList([("mycophenolate", 2500, 1000), ("azathioprine", 150, 50)])
SLE_HCQ = DrugList([("hydroxychloroquine", 400, 100)])
SLE_BIOLOGIC = [("belimumab", 10.0, "mg/kg"), ("anifrolumab", 300.0, "mg")]
RCHOP = [
    ("rituximab", 375.0),
    ("cyclophosphamide", 750.0),
    ("doxorubicin", 50.0),
    ("vincristine", 1.4),
]
MM_RD = DrugList([("lenalidomide", 25, 25)])
MM_DEX = DrugList([("dexamethasone", 40, 40)])

CONDITION_CODES = {
    "epilepsy": "G40.209",
    "depression": "F33.1",
    "hypertension": "I10",
    "lbcl": "C83.30",
    "multiple_myeloma": "C90.00",
    "sle": "M32.9",
}
GENERALIZED_EPILEPSY_CODE = "G40.309"

OUTCOME = {
    "fail": "non_response",
    "respond": "response",
    "partial": "partial_response",
    "nonadherent": "non_adherent",
    "intolerant": "intolerant",
    "low_dose": "inadequate_trial",
    "short": "inadequate_trial",
    "ongoing": "insufficient_followup",
    "white_coat": "response",
}


def series(
    rng: np.random.Generator, start: np.ndarray, count: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """count[i] events for member i from start[i], consecutive intervals uniform in [lo, hi].
    Returns (member, day, k = 0-based index within the member, last day per member)."""
    count = np.asarray(count, np.int64)
    n = len(start)
    idx = np.repeat(np.arange(n), count)
    offs = np.cumsum(count) - count
    iv = rng.integers(lo, hi + 1, len(idx)) if hi > lo else np.full(len(idx), lo, np.int64)
    iv[offs[count > 0]] = 0
    cs = np.cumsum(iv)
    k = np.arange(len(idx)) - offs[idx]
    day = start[idx] + cs - cs[offs[idx]]
    last = np.where(
        count > 0, day[np.minimum(offs + count - 1, len(day) - 1)] if len(day) else start, start
    )
    return idx, day, k, last


def uni(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, n)


@dataclass
class Group:
    """The patients of one condition x archetype in a chunk; days relative to the first trial."""

    rng: np.random.Generator
    n: int
    condition: str
    subtype: np.ndarray | None = None  # vocab codes
    buf: EventBuffer = field(default_factory=EventBuffer)
    trials: list[dict[str, np.ndarray]] = field(default_factory=list)
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def all(self) -> np.ndarray:
        return np.arange(self.n)

    def trial(self, trial_no: int, regimen: np.ndarray, start: np.ndarray, kind: str) -> None:
        self.trials.append(
            {
                "member": self.all,
                "trial_no": np.full(self.n, trial_no),
                "regimen": np.asarray(regimen, np.int32),
                "start": start.copy(),
                "outcome": np.full(self.n, V(OUTCOME[kind]), np.int32),
            }
        )

    # -- therapy ---------------------------------------------------------------------------------
    def dispense(
        self,
        dl: DrugList,
        di: np.ndarray,
        dose: np.ndarray,
        start: np.ndarray,
        count: np.ndarray,
        lo: int,
        hi: int,
        supply: int | np.ndarray,
        regimen: str | None = None,
        prescribe: bool = True,
        quantity: float | None = None,
    ) -> np.ndarray:
        """Fills from start; returns the last covered day per member."""
        m, day, _k, last = series(self.rng, start, count, lo, hi)
        sup = np.broadcast_to(np.asarray(supply), (self.n,))
        self.buf.add(
            m,
            "dispensed",
            day,
            source="pharmacy",
            drug=dl.name[di[m]],
            drug_code=dl.rx[di[m]],
            drug_system="rxnorm",
            condition=self.condition,
            dose=dose[m],
            dose_unit="mg",
            days_supply=sup[m],
            quantity=sup[m] if quantity is None else quantity,
            route="oral",
            regimen=regimen,
        )
        if prescribe:
            self.buf.add(
                self.all,
                "prescribed",
                start,
                source="ehr",
                drug=dl.name[di],
                drug_code=dl.rx[di],
                drug_system="rxnorm",
                condition=self.condition,
                dose=dose,
                dose_unit="mg",
                route="oral",
                regimen=regimen,
            )
        return last + sup - 1

    def stop(self, dl_name: np.ndarray, day: np.ndarray, reason: str) -> None:
        self.buf.add(
            self.all,
            "stopped",
            day,
            source="ehr",
            drug=dl_name,
            condition=self.condition,
            reason=reason,
        )

    def measure(
        self,
        day: np.ndarray,
        measure: str,
        value: np.ndarray,
        unit: str,
        period_days: int | None = None,
        setting: str | None = None,
        member: np.ndarray | None = None,
    ) -> None:
        self.buf.add(
            self.all if member is None else member,
            "measurement",
            day,
            source="ehr",
            condition=self.condition,
            measure=measure,
            value=np.round(value),
            unit=unit,
            period_days=period_days,
            setting=setting,
        )

    def assess(self, day: np.ndarray, criteria: str, response: str) -> None:
        self.buf.add(
            self.all,
            "response_assessed",
            day,
            source="ehr",
            condition=self.condition,
            criteria=criteria,
            response=response,
        )


def _pick(
    rng: np.random.Generator, n: int, size: np.ndarray | int, trials: int
) -> list[np.ndarray]:
    """Distinct drug indices for trials 0..trials-1 from lists of `size` drugs."""
    size = np.broadcast_to(np.asarray(size), (n,))
    first = np.floor(rng.random(n) * size).astype(np.int64)
    step = 1 + np.floor(rng.random(n) * (size - 1)).astype(np.int64)
    return [(first + t * step) % size for t in range(trials)]


# --- oral monotherapy conditions (epilepsy, depression) -----------------------------------------


def oral_mono(g: Group, kinds: list[str]) -> np.ndarray:
    """Sequential monotherapy trials; returns the end (last covered day) of the last trial."""
    rng, n = g.rng, g.n
    if g.condition == "epilepsy":
        dl = EPILEPSY_DRUGS
        size = np.where(g.subtype == V("generalized"), 4, len(dl.names))
    else:
        dl = DEPRESSION_DRUGS
        size = len(dl.names)
    picks = _pick(rng, n, size, len(kinds))
    t = np.zeros(n, np.int64)
    end = t
    for no, kind in enumerate(kinds, start=1):
        di = picks[no - 1]
        start = t
        dose = dl.low[di] if kind == "low_dose" else dl.dose[di]
        is_last = no == len(kinds)
        if kind in ("fail", "low_dose", "partial"):
            end = g.dispense(dl, di, dose, start, uni(rng, 5, 7, n), 30, 32, 30)
        elif kind == "respond":
            cnt = uni(rng, 17, 22, n) if g.condition == "epilepsy" else uni(rng, 5, 12, n)
            end = g.dispense(dl, di, dose, start, cnt, 30, 32, 30)
        elif kind == "nonadherent":
            end = g.dispense(dl, di, dose, start, uni(rng, 5, 6, n), 53, 57, 30)
        elif kind == "intolerant":
            g.dispense(dl, di, dose, start, np.ones(n, np.int64), 0, 0, 30)
            end = start + uni(rng, 10, 20, n)
            g.stop(dl.name[di], end, "adverse_event")
        elif kind == "short":
            sup = uni(rng, 14, 20, n)
            end = g.dispense(dl, di, dose, start, np.ones(n, np.int64), 0, 0, sup)
            g.stop(dl.name[di], end, "patient_choice")
        elif kind == "ongoing":
            end = g.dispense(dl, di, dose, start, uni(rng, 2, 3, n), 30, 32, 30)
        else:
            raise ValueError(kind)
        g.trial(no, dl.name[di], start, kind)
        _mono_measures(g, kind, start, end)
        if kind in ("fail", "low_dose", "nonadherent") and not is_last:
            g.stop(dl.name[di], end, "inefficacy")
        t = end + uni(rng, 1, 10, n)
    return end


def _mono_measures(g: Group, kind: str, start: np.ndarray, end: np.ndarray) -> None:
    rng, n = g.rng, g.n
    if g.condition == "epilepsy":
        # one pre-treatment seizure rate per patient, kept across trials (the pipeline's
        # pre-treatment rate of a second trial includes the first trial's diaries)
        if "seizure_base" not in g.state:
            g.state["seizure_base"] = uni(rng, 4, 10, n).astype(float)
        base = g.state["seizure_base"]
        g.measure(start - uni(rng, 3, 10, n), "seizure_count", base, "seizures", period_days=30)
        if kind in ("fail", "low_dose", "nonadherent"):
            for d in (45, 75, 105, 135):
                v = np.maximum(1, np.round(base * rng.uniform(0.75, 1.1, n)))
                g.measure(start + d, "seizure_count", v, "seizures", period_days=30)
        elif kind == "respond":
            g.measure(start + 30, "seizure_count", np.zeros(n), "seizures", period_days=30)
            for d in (120, 210, 300, 390, 480):
                g.measure(start + d, "seizure_count", np.zeros(n), "seizures", period_days=90)
    else:
        # one pre-treatment severity per patient, kept across trials: the next trial's baseline
        # score can fall in the previous trial's window and must not look like an improvement
        if "phq9_base" not in g.state:
            g.state["phq9_base"] = uni(rng, 18, 23, n).astype(float)
        base = g.state["phq9_base"]
        g.measure(start - uni(rng, 1, 7, n), "phq9", base, "score")
        lo_hi = {
            "fail": (0.85, 0.95),
            "low_dose": (0.85, 0.95),
            "nonadherent": (0.85, 0.95),
            "partial": (0.60, 0.68),
            "respond": (0.30, 0.40),
        }.get(kind)
        if lo_hi:
            mid = {"partial": 0.75, "respond": 0.6}.get(kind, 0.92)
            g.measure(start + 42, "phq9", np.round(base * mid), "score")
            g.measure(start + 84, "phq9", np.round(base * rng.uniform(*lo_hi, n)), "score")


# --- hypertension: one concurrent regimen, judged on the current regimen -----------------------


def hypertension(g: Group, kinds: list[str]) -> np.ndarray:
    rng, n = g.rng, g.n
    (kind,) = kinds
    start = np.zeros(n, np.int64)
    ras = rng.integers(0, 3, n)
    diu = rng.integers(0, 2, n)
    zero = np.zeros(n, np.int64)
    if kind == "respond":
        parts = [(HTN_RAS, ras), (HTN_CCB, zero)]
    elif kind == "at_risk":
        parts = [(HTN_RAS, ras), (HTN_DIURETIC, diu)]
    else:
        parts = [(HTN_RAS, ras), (HTN_CCB, zero), (HTN_DIURETIC, diu)]
    if kind == "nonadherent":
        count, lo, hi = uni(rng, 5, 9, n), 53, 57
    else:
        count, lo, hi = uni(rng, 8, 20, n), 30, 32
    # all drugs of the regimen are filled together (same days)
    m, day, _k, last = series(rng, start, count, lo, hi)
    for dl, di in parts:
        g.buf.add(
            m,
            "dispensed",
            day,
            source="pharmacy",
            drug=dl.name[di[m]],
            drug_code=dl.rx[di[m]],
            drug_system="rxnorm",
            condition="hypertension",
            dose=dl.dose[di[m]],
            dose_unit="mg",
            days_supply=30,
            quantity=30,
            route="oral",
        )
        g.buf.add(
            g.all,
            "prescribed",
            start,
            source="ehr",
            drug=dl.name[di],
            drug_code=dl.rx[di],
            drug_system="rxnorm",
            condition="hypertension",
            dose=dl.dose[di],
            dose_unit="mg",
            route="oral",
        )
    end = last + 29
    reg = _regimen_codes([[dl.names[i] for i in di] for dl, di in parts])
    g.trial(1, reg, start, {"at_risk": "fail", "undetermined": "ongoing"}.get(kind, kind))
    # baseline office BP before the regimen
    day0 = start - uni(rng, 3, 20, n)
    g.measure(day0, "sbp", uni(rng, 155, 165, n), "mmHg", setting="office")
    g.measure(day0, "dbp", uni(rng, 95, 100, n), "mmHg", setting="office")
    if kind == "undetermined":
        # no BP on treatment: baseline only
        return end
    high = (146, 158, 88, 96)
    goal = (116, 126, 70, 78)
    office = goal if kind == "respond" else high
    home = goal if kind in ("respond", "white_coat") else (142, 152, 86, 92)
    for d, setting, (slo, shi, dlo, dhi) in (
        (60, "office", office),
        (75, "home", home),
        (150, "office", office),
        (165, "home", home),
    ):
        day = start + d + uni(rng, 0, 5, n)
        g.measure(day, "sbp", uni(rng, slo, shi, n), "mmHg", setting=setting)
        g.measure(day, "dbp", uni(rng, dlo, dhi, n), "mmHg", setting=setting)
    return end


def _regimen_codes(names_per_part: list[list[str]]) -> np.ndarray:
    rows = zip(*names_per_part, strict=True)
    return np.array([V("+".join(sorted(r))) for r in rows], np.int32)


# --- SLE: immunosuppressant then biologic, on hydroxychloroquine background --------------------


def sle(g: Group, kinds: list[str]) -> np.ndarray:
    rng, n = g.rng, g.n
    t = np.zeros(n, np.int64)
    end = t
    hcq = np.zeros(n, np.int64)
    for no, kind in enumerate(kinds, start=1):
        start = t
        if "sledai_base" not in g.state:  # kept across trials (see _mono_measures)
            g.state["sledai_base"] = uni(rng, 10, 14, n).astype(float)
        base = g.state["sledai_base"]
        g.measure(start - uni(rng, 3, 10, n), "sledai2k", base, "score")
        if no == 1:
            di = rng.integers(0, len(SLE_ORAL.names), n)
            dose = SLE_ORAL.low[di] if kind == "low_dose" else SLE_ORAL.dose[di]
            if kind == "nonadherent":
                cnt, lo, hi = uni(rng, 5, 6, n), 53, 57
            elif kind == "ongoing":
                cnt, lo, hi = uni(rng, 2, 3, n), 30, 32
            elif kind == "respond":
                cnt, lo, hi = uni(rng, 7, 14, n), 30, 32
            else:
                cnt, lo, hi = uni(rng, 6, 7, n), 30, 32
            m, day, _k, last = series(rng, start, cnt, lo, hi)
            for dl, d_i, ds in ((SLE_ORAL, di, dose), (SLE_HCQ, hcq, SLE_HCQ.dose[hcq])):
                g.buf.add(
                    m,
                    "dispensed",
                    day,
                    source="pharmacy",
                    drug=dl.name[d_i[m]],
                    drug_code=dl.rx[d_i[m]],
                    drug_system="rxnorm",
                    condition="sle",
                    dose=ds[m],
                    dose_unit="mg",
                    days_supply=30,
                    quantity=30,
                    route="oral",
                )
                g.buf.add(
                    g.all,
                    "prescribed",
                    start,
                    source="ehr",
                    drug=dl.name[d_i],
                    drug_code=dl.rx[d_i],
                    drug_system="rxnorm",
                    condition="sle",
                    dose=ds,
                    dose_unit="mg",
                    route="oral",
                )
            end = last + 29
            reg = np.array(
                [V("+".join(sorted((nm, "hydroxychloroquine")))) for nm in SLE_ORAL.names], np.int32
            )[di]
            if kind != "ongoing" and no < len(kinds):
                g.stop(SLE_ORAL.name[di], end, "inefficacy")
        else:
            bi = rng.integers(0, len(SLE_BIOLOGIC), n)
            cnt = {"ongoing": uni(rng, 2, 3, n), "respond": uni(rng, 7, 14, n)}.get(
                kind, uni(rng, 7, 8, n)
            )
            m, day, k, last = series(rng, start, cnt, 28, 29)
            names = np.array([V(b[0]) for b in SLE_BIOLOGIC], np.int32)
            rx = np.array([V(rxnorm(b[0])) for b in SLE_BIOLOGIC], np.int32)
            doses = np.array([b[1] for b in SLE_BIOLOGIC])
            units = np.array([V(b[2]) for b in SLE_BIOLOGIC], np.int32)
            g.buf.add(
                m,
                "administered",
                day,
                source="ehr",
                drug=names[bi[m]],
                drug_code=rx[bi[m]],
                drug_system="rxnorm",
                condition="sle",
                dose=doses[bi[m]],
                dose_unit=units[bi[m]],
                route="iv",
                cycle=k + 1,
            )
            end = last + 27
            # background hydroxychloroquine continues, filled monthly
            hc = (end - start) // 31 + 1
            hm, hday, _hk, _hl = series(rng, start, hc, 30, 31)
            g.buf.add(
                hm,
                "dispensed",
                hday,
                source="pharmacy",
                drug=SLE_HCQ.name[hcq[hm]],
                drug_code=SLE_HCQ.rx[hcq[hm]],
                drug_system="rxnorm",
                condition="sle",
                dose=400.0,
                dose_unit="mg",
                days_supply=30,
                quantity=30,
                route="oral",
            )
            end = np.maximum(end, _hl + 29)
            reg = np.array(
                [V("+".join(sorted((b[0], "hydroxychloroquine")))) for b in SLE_BIOLOGIC], np.int32
            )[bi]
        g.trial(no, reg, start, kind)
        if kind in ("fail", "low_dose", "nonadherent"):
            g.measure(start + 90, "sledai2k", base - uni(rng, 0, 2, n), "score")
            g.measure(start + 150, "sledai2k", base - uni(rng, 1, 3, n), "score")
        elif kind == "respond":
            g.measure(start + 90, "sledai2k", uni(rng, 2, 4, n), "score")
            g.measure(start + 150, "sledai2k", uni(rng, 0, 3, n), "score")
        t = end + uni(rng, 1, 10, n)
    return end


# --- LBCL: R-CHOP cycles every 21 days, Lugano 2014 assessments ---------------------------------


def lbcl(g: Group, kinds: list[str]) -> np.ndarray:
    rng, n = g.rng, g.n
    (kind,) = kinds
    start = np.zeros(n, np.int64)
    cycles = {"intolerant": 1, "short": 2}.get(kind, 6)
    cnt = uni(rng, 2, 4, n) if kind == "ongoing" else np.full(n, cycles)
    m, day, k, last = series(rng, start, cnt, 21, 23)
    for drug, dose in RCHOP:
        g.buf.add(
            m,
            "administered",
            day,
            source="oncology",
            drug=drug,
            drug_code=V(rxnorm(drug)),
            drug_system="rxnorm",
            condition="lbcl",
            dose=dose,
            dose_unit="mg/m2",
            route="iv",
            regimen="r-chop",
            cycle=k + 1,
        )
    end = last + 20
    reg = np.full(n, V("+".join(sorted(d for d, _ in RCHOP))), np.int32)
    g.trial(1, reg, start, kind)
    cycle4 = start + 3 * 22
    if kind in ("fail", "respond", "partial"):
        interim = {"fail": "sd", "respond": "pr", "partial": "pr"}[kind]
        final = {"fail": "pd", "respond": "cr", "partial": "pr"}[kind]
        g.assess(cycle4 - uni(rng, 1, 4, n), "lugano_2014", interim)
        g.assess(last + uni(rng, 14, 18, n), "lugano_2014", final)
    elif kind == "intolerant":
        end = start + uni(rng, 8, 14, n)
        for drug, _ in RCHOP:
            g.stop(np.full(n, V(drug), np.int32), end, "adverse_event")
    elif kind == "short":
        end = last + uni(rng, 10, 14, n)
        g.assess(end - 2, "lugano_2014", "sd")
        for drug, _ in RCHOP:
            g.stop(np.full(n, V(drug), np.int32), end, "patient_choice")
    return end


# --- multiple myeloma: Rd (oral, 28-day fills), then Vd; IMWG assessments ----------------------


def myeloma(g: Group, kinds: list[str]) -> np.ndarray:
    rng, n = g.rng, g.n
    t = np.zeros(n, np.int64)
    end = t
    zero = np.zeros(n, np.int64)
    for no, kind in enumerate(kinds, start=1):
        start = t
        if no == 1:
            if kind == "nonadherent":
                cnt, lo, hi = uni(rng, 5, 5, n), 48, 52
            elif kind in ("respond", "partial"):
                cnt, lo, hi = uni(rng, 8, 14, n), 28, 30
            elif kind == "ongoing":
                cnt, lo, hi = uni(rng, 1, 2, n), 28, 30
            elif kind == "intolerant":
                cnt, lo, hi = np.ones(n, np.int64), 28, 28
            else:
                cnt, lo, hi = uni(rng, 4, 4, n), 28, 29
            m, day, _k, last = series(rng, start, cnt, lo, hi)
            for dl, qty in ((MM_RD, 28.0), (MM_DEX, 4.0)):
                g.buf.add(
                    m,
                    "dispensed",
                    day,
                    source="pharmacy",
                    drug=dl.name[zero[m]],
                    drug_code=dl.rx[zero[m]],
                    drug_system="rxnorm",
                    condition="multiple_myeloma",
                    dose=dl.dose[0],
                    dose_unit="mg",
                    days_supply=28,
                    quantity=qty,
                    route="oral",
                    regimen="rd",
                )
            end = last + 27
            drugs = [MM_RD.name[0], MM_DEX.name[0]]
            reg = np.full(n, V("dexamethasone+lenalidomide"), np.int32)
            if kind == "nonadherent":
                marks = ((100, "sd"), (200, "sd"))
            else:
                marks = {
                    "fail": ((54, "sd"), (106, "pd")),
                    "respond": ((54, "pr"), (110, "vgpr"), (166, "vgpr")),
                    "partial": ((54, "mr"), (110, "mr"), (166, "mr")),
                }.get(kind, ())
        else:
            cnt = np.full(n, 4)
            m, day, k, last = series(rng, start, cnt, 21, 22)
            g.buf.add(
                m,
                "administered",
                day,
                source="oncology",
                drug="bortezomib",
                drug_code=V(rxnorm("bortezomib")),
                drug_system="rxnorm",
                condition="multiple_myeloma",
                dose=1.3,
                dose_unit="mg/m2",
                route="sc",
                regimen="vd",
                cycle=k + 1,
            )
            g.buf.add(
                m,
                "dispensed",
                day,
                source="pharmacy",
                drug="dexamethasone",
                drug_code=V(rxnorm("dexamethasone")),
                drug_system="rxnorm",
                condition="multiple_myeloma",
                dose=20.0,
                dose_unit="mg",
                days_supply=21,
                quantity=4.0,
                route="oral",
                regimen="vd",
            )
            end = last + 20
            drugs = [V("bortezomib"), MM_DEX.name[0]]
            reg = np.full(n, V("bortezomib+dexamethasone"), np.int32)
            marks = ((40, "sd"), (80, "pd"))
        g.trial(no, reg, start, kind)
        for d, resp in marks:
            g.assess(start + d, "imwg", resp)
        if kind == "intolerant":
            end = start + uni(rng, 8, 16, n)
            for dr in drugs:
                g.stop(np.full(n, dr, np.int32), end, "adverse_event")
        elif kind == "fail":
            for dr in drugs:
                g.stop(np.full(n, dr, np.int32), start + marks[-1][0], "inefficacy")
            end = start + marks[-1][0]
        t = end + uni(rng, 7, 20, n)
    return end


TEMPLATES = {
    "epilepsy": oral_mono,
    "depression": oral_mono,
    "hypertension": hypertension,
    "sle": sle,
    "lbcl": lbcl,
    "multiple_myeloma": myeloma,
}
