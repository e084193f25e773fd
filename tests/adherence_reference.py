"""Independent reference implementation of AdhereR's CMA family, for validating the SQL.

Written to follow AdhereR's R code (GitHub ddediu/AdhereR, ``R/adherer.R``: functions
``compute.event.int.gaps``, ``CMA1`` .. ``CMA9``, ``compute.treatment.episodes``,
``CMA_per_episode``, ``CMA_sliding_window``) statement by statement, in plain Python with loops
and no cleverness, so a reviewer can hold the two side by side. It deliberately shares no code or
algorithm with the SQL (which uses closed forms over window functions): agreement between the two
is the evidence that the SQL is right.

Dates are day numbers (days since 1970-01-01, as R's ``Date``), kept as floats because R's Date
arithmetic keeps fractions (dose-adjusted carry-over makes gaps, and so episode ends, fractional).
Only the ``days`` unit is supported (the pipeline's parameters are in days).

Conventions that matter:
  * events of a patient are sorted by date, ties kept in input order (data.table's ``setkey`` is a
    stable radix sort), so callers pass events in the source's row order;
  * R's ``NA`` is ``None`` here; ``NaN``/``Inf`` results (0/0, x/0) are returned as in R and
    the comparison treats NaN like NA;
  * AdhereR's argument defaults are the dataclass defaults below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date

EPOCH = date(1970, 1, 1)


def day_number(d: date) -> float:
    return float((d - EPOCH).days)


class AdhereRError(RuntimeError):
    """Where AdhereR itself stops with an R error (so no value can be compared)."""


@dataclass(frozen=True)
class Event:
    date: float  # day number
    duration: float
    dose: float | None = None
    med: str | None = None


@dataclass
class EventInfo:
    """One row of compute.event.int.gaps' output (events within the follow-up window)."""

    event: Event
    before_ow: bool
    after_ow: bool
    interval: float | None = None
    gap: float | None = None
    carry_in: float | None = None


@dataclass(frozen=True)
class Windows:
    fu_start: float
    fu_end: float
    ow_start: float
    ow_end: float


@dataclass(frozen=True)
class CmaParams:
    """AdhereR's defaults for CMA1..CMA9 (days units)."""

    followup_window_start: float = 0
    followup_window_duration: float = 365 * 2
    observation_window_start: float = 0
    observation_window_duration: float = 365 * 2
    carry_only_for_same_medication: bool = False
    consider_dosage_change: bool = False


@dataclass(frozen=True)
class EpisodeParams:
    """compute.treatment.episodes defaults."""

    carryover_within_obs_window: bool = True
    carry_only_for_same_medication: bool = True
    consider_dosage_change: bool = True
    medication_change_means_new_treatment_episode: bool = True
    dosage_change_means_new_treatment_episode: bool = False
    maximum_permissible_gap: float = 90
    maximum_permissible_gap_as_percent: bool = False
    maximum_permissible_gap_append_to_episode: bool = False
    followup_window_start: float = 0
    followup_window_duration: float = 365 * 2


@dataclass(frozen=True)
class Episode:
    episode_id: int
    start: float
    end_gap: float
    duration: float
    end: float


# -- the gap engine -------------------------------------------------------------------------


def patient_windows(
    events: list[Event],
    fu_start_offset: float,
    fu_duration: float,
    ow_start_offset: float,
    ow_duration: float,
) -> Windows:
    """FUW starts `fu_start_offset` days after the first event; the OW is relative to the FUW."""
    fu_start = events[0].date + fu_start_offset
    ow_start = fu_start + ow_start_offset
    return Windows(fu_start, fu_start + fu_duration, ow_start, ow_start + ow_duration)


def compute_event_int_gaps(
    events: list[Event],
    w: Windows,
    *,
    carryover_within: bool,
    carryover_into: bool,
    same_med: bool,
    dose_change: bool,
    keep_interval_for_all: bool = False,
    remove_outside_fu: bool = True,
) -> list[EventInfo]:
    """compute.event.int.gaps' .process.patient for one patient (events sorted)."""
    if w.fu_start > w.ow_start or w.fu_end < w.ow_end:
        raise ValueError("observation window not within the follow-up window (AdhereR: error)")
    n = len(events)
    within_fu = [w.fu_start <= e.date <= w.fu_end for e in events]
    before = [e.date < w.ow_start for e in events]
    after = [e.date > w.ow_end for e in events]
    # .TDIFF2: next event start - this event start, over all of the patient's events
    tdiff2: list[float | None] = [events[i + 1].date - events[i].date for i in range(n - 1)]
    tdiff2.append(None)
    info = [EventInfo(e, before[i], after[i]) for i, e in enumerate(events)]
    if carryover_into:
        s = [i for i in range(n) if within_fu[i] and not after[i]]
    else:
        s = [i for i in range(n) if within_fu[i] and not before[i] and not after[i]]
    if len(s) == 1:
        i = s[0]
        info[i].interval = w.ow_end - events[i].date
        info[i].carry_in = 0.0
        info[i].gap = max(0.0, info[i].interval - events[i].duration)
    elif len(s) > 1:
        for k, i in enumerate(s):
            info[i].interval = tdiff2[i] if k < len(s) - 1 else w.ow_end - events[i].date
        if carryover_within:
            med_changed = [events[s[k]].med != events[s[k + 1]].med for k in range(len(s) - 1)]
            med_changed.append(False)
            if any(events[i].dose is None for i in s):
                ratio = [1.0] * len(s)
            else:
                ratio = [events[s[k]].dose / events[s[k + 1]].dose for k in range(len(s) - 1)]
                ratio.append(1.0)
            cond1 = [same_med and mc for mc in med_changed]
            cond2 = [
                (same_med and dose_change and not mc) or (not same_med and dose_change)
                for mc in med_changed
            ]
            carry = 0.0
            for k, i in enumerate(s):
                info[i].carry_in = carry
                g = (info[i].interval - events[i].duration) - carry
                if g < 0.0:
                    info[i].gap = 0.0
                    carry = -g
                else:
                    info[i].gap = g
                    carry = 0.0
                if cond1[k]:
                    carry = 0.0
                elif cond2[k]:
                    carry = carry * ratio[k]
        else:
            for i in s:
                info[i].carry_in = 0.0
                info[i].gap = max(0.0, info[i].interval - events[i].duration)
    if not keep_interval_for_all:
        for x in info:
            if x.before_ow or x.after_ow:
                x.interval = None
    if remove_outside_fu:
        info = [x for i, x in enumerate(info) if within_fu[i]]
    return info


# -- the simple CMAs ------------------------------------------------------------------------


def _in_ow(info: list[EventInfo]) -> list[EventInfo]:
    return [x for x in info if not x.before_ow and not x.after_ow]


def _div(a: float, b: float) -> float:
    """R's a/b for doubles: x/0 is +-Inf, 0/0 is NaN."""
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def cma1(events: list[Event], w: Windows) -> float | None:
    info = compute_event_int_gaps(
        events, w, carryover_within=False, carryover_into=False, same_med=False, dose_change=False
    )
    sel = _in_ow(info)
    if len(sel) < 2 or sel[-1].event.date - sel[0].event.date == 0:
        return None
    return sum(x.event.duration for x in sel[:-1]) / (sel[-1].event.date - sel[0].event.date)


def cma2(events: list[Event], w: Windows) -> float | None:
    info = compute_event_int_gaps(
        events, w, carryover_within=False, carryover_into=False, same_med=False, dose_change=False
    )
    sel = _in_ow(info)
    if len(sel) < 1 or sel[0].event.date > w.ow_end:
        return None
    return _div(sum(x.event.duration for x in sel), w.ow_end - sel[0].event.date)


def _pmin1(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else min(1.0, x)


def cma3(events: list[Event], w: Windows) -> float | None:
    return _pmin1(cma1(events, w))


def cma4(events: list[Event], w: Windows) -> float | None:
    return _pmin1(cma2(events, w))


def cma5(events: list[Event], w: Windows, p: CmaParams) -> float | None:
    info = compute_event_int_gaps(
        events,
        w,
        carryover_within=True,
        carryover_into=False,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    sel = _in_ow(info)
    if len(sel) < 2 or sel[0].event.date == sel[-1].event.date:
        return None
    return 1 - sum(x.gap for x in sel[:-1]) / (sel[-1].event.date - sel[0].event.date)


def cma6(events: list[Event], w: Windows, p: CmaParams) -> float | None:
    info = compute_event_int_gaps(
        events,
        w,
        carryover_within=True,
        carryover_into=False,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    sel = _in_ow(info)
    if len(sel) < 1 or sel[0].event.date > w.ow_end:
        return None
    return 1 - _div(sum(x.gap for x in sel), w.ow_end - sel[0].event.date)


def _cma7_from_info(info: list[EventInfo], w: Windows) -> float | None:
    s = [k for k, x in enumerate(info) if not x.before_ow and not x.after_ow]
    ow_len = w.ow_end - w.ow_start
    if len(s) < 1 or info[s[0]].event.date > w.ow_end:
        if sum(x.before_ow for x in info) == 0:
            return None
        k = max(i for i, x in enumerate(info) if x.before_ow)
        if info[k].gap is None:
            # a dispensing after the window end but before its (lagged) start: its gap is NA and
            # R stops with "missing value where TRUE/FALSE needed" (only reachable from CMA8)
            raise AdhereRError("CMA7: NA gap of the last event before the window")
        if info[k].gap <= ow_len:
            return 1.0 - _div(info[k].gap, ow_len)
        return 0.0
    s1, slast = s[0], s[-1]
    gap_last = info[slast].gap
    days_to_first = info[s1].event.date - w.ow_start
    gap_before_first = days_to_first if s1 == 0 else min(info[s1 - 1].gap, days_to_first)
    if len(s) == 1:
        return 1 - _div(gap_last + gap_before_first, ow_len)
    return 1 - _div(sum(info[k].gap for k in s[:-1]) + gap_last + gap_before_first, ow_len)


def cma7(events: list[Event], w: Windows, p: CmaParams) -> float | None:
    info = compute_event_int_gaps(
        events,
        w,
        carryover_within=True,
        carryover_into=True,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    return _cma7_from_info(info, w)


def cma8_window_start(events: list[Event], w: Windows, p: CmaParams) -> float:
    info = compute_event_int_gaps(
        events,
        w,
        carryover_within=True,
        carryover_into=True,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    ends = [
        x.event.date + x.event.duration + x.carry_in
        for x in info
        if x.before_ow
        and x.carry_in is not None
        and x.event.date + x.event.duration + x.carry_in > w.ow_start
    ]
    return max(ends) if ends else w.ow_start


def cma8(events: list[Event], w: Windows, p: CmaParams) -> float | None:
    """CMA7 over the OW whose start is lagged until the supply from before the OW runs out.

    AdhereR recomputes CMA7 on the events left in the follow-up window (event.info), with the
    follow-up window fixed to the original one and OW = [new start, old OW end].
    """
    new_start = cma8_window_start(events, w, p)
    fu_events = [e for e in events if w.fu_start <= e.date <= w.fu_end]
    w2 = Windows(w.fu_start, w.fu_end, new_start, w.ow_end)
    info = compute_event_int_gaps(
        fu_events,
        w2,
        carryover_within=True,
        carryover_into=True,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    return _cma7_from_info(info, w2)


def cma9(events: list[Event], w: Windows, p: CmaParams) -> float | None:
    """Supply ratio per event interval (intervals over the whole FUW), averaged over the OW."""
    fu_as_ow = Windows(w.fu_start, w.fu_end, w.fu_start, w.fu_end)
    info = compute_event_int_gaps(
        events,
        fu_as_ow,
        carryover_within=True,
        carryover_into=True,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
        keep_interval_for_all=True,
    )
    if not any(x.event.date <= w.ow_end for x in info):
        return None
    total = 0.0
    for x in info:
        if x.interval is None or x.gap is None:
            continue
        ratio = 1 - _div(x.gap, x.interval)
        start = max(x.event.date, w.ow_start)
        end = min(x.event.date + x.interval, w.ow_end)
        overlap = max(0.0, end - start)
        term = ratio * overlap
        if not math.isnan(term):  # na.rm=TRUE (0/0 ratios of same-day events)
            total += term
    return _div(total, w.ow_end - w.ow_start)


def all_cmas(events: list[Event], w: Windows, p: CmaParams) -> dict[str, float | None]:
    return {
        "cma1": cma1(events, w),
        "cma2": cma2(events, w),
        "cma3": cma3(events, w),
        "cma4": cma4(events, w),
        "cma5": cma5(events, w, p),
        "cma6": cma6(events, w, p),
        "cma7": cma7(events, w, p),
        "cma8": cma8(events, w, p),
        "cma9": cma9(events, w, p),
    }


# -- treatment episodes ---------------------------------------------------------------------


def compute_treatment_episodes(events: list[Event], p: EpisodeParams) -> list[Episode]:
    """compute.treatment.episodes for one patient (events sorted).

    The follow-up window doubles as the observation window, no carry-over into it.
    """
    w0 = patient_windows(
        events, p.followup_window_start, p.followup_window_duration, 0, p.followup_window_duration
    )
    info = compute_event_int_gaps(
        events,
        w0,
        carryover_within=p.carryover_within_obs_window,
        carryover_into=False,
        same_med=p.carry_only_for_same_medication,
        dose_change=p.consider_dosage_change,
    )
    ev = [x for x in info if x.interval is not None and x.gap is not None]
    if not ev:
        return []
    n = len(ev)
    last = n - 1  # the last event in the follow-up window
    gap = [x.gap for x in ev]
    if p.maximum_permissible_gap_as_percent:
        mpg = [p.maximum_permissible_gap / 100 * x.event.duration for x in ev]
    else:
        mpg = [max(0.0, p.maximum_permissible_gap)] * n
    s = [gap[i] > mpg[i] for i in range(n)]
    if p.medication_change_means_new_treatment_episode and n > 1:
        changed = [ev[i].event.med != ev[i + 1].event.med for i in range(n - 1)] + [True]
        s = [a or b for a, b in zip(s, changed, strict=True)]
    if p.dosage_change_means_new_treatment_episode and n > 1:
        # AdhereR compares the *name* of the dose column with itself shifted (NA comparisons),
        # so only the trailing TRUE survives `which()`: dose changes never split an episode.
        s = s[:-1] + [True]
    idx = [i for i in range(n) if s[i]]
    fu_end = w0.fu_end
    append = p.maximum_permissible_gap_append_to_episode
    starts: list[float]
    gaps: list[float]
    if n == 1 or len(idx) == 0 or (len(idx) == 1 and idx[0] == n - 1):
        start = ev[0].event.date
        end_gap = gap[last]
        correction = mpg[last] if append else 0.0
        duration = (fu_end - start) - (0.0 if end_gap < mpg[last] else end_gap + correction)
        return [Episode(1, start, end_gap, duration, start + duration)]
    if idx[-1] != n - 1:
        starts = [ev[0].event.date] + [ev[i + 1].event.date for i in idx]
        gaps = [gap[i] for i in idx] + [gap[last]]
        smaller = [gap[i] <= mpg[i] for i in idx] + [gap[last] <= mpg[last]]
        corr = [mpg[i] for i in idx] + [mpg[last]]
    else:
        starts = [ev[0].event.date] + [ev[i + 1].event.date for i in idx[:-1]]
        gaps = [gap[i] for i in idx]
        smaller = [gap[i] <= mpg[i] for i in idx]
        corr = [mpg[i] for i in idx]
    m = len(starts)
    durations = []
    for k in range(m):
        if k < m - 1:
            base = starts[k + 1] - starts[k]
            if append:
                durations.append(base - (0.0 if smaller[k] else gaps[k] - corr[k]))
            else:
                durations.append(base - gaps[k])
        else:
            base = fu_end - starts[k]
            if append:
                durations.append(base - (0.0 if smaller[k] else gaps[k] - corr[k]))
            else:
                durations.append(base - (0.0 if gaps[k] < mpg[last] else gaps[k]))
    return [
        Episode(k + 1, starts[k], gaps[k], durations[k], starts[k] + durations[k]) for k in range(m)
    ]


# -- CMA per episode and sliding windows ----------------------------------------------------

CMA_FUNCTIONS = ("cma1", "cma2", "cma3", "cma4", "cma5", "cma6", "cma7", "cma8", "cma9")


def simple_cma(name: str, events: list[Event], w: Windows, p: CmaParams) -> float | None:
    if name in ("cma1", "cma2", "cma3", "cma4"):
        return {"cma1": cma1, "cma2": cma2, "cma3": cma3, "cma4": cma4}[name](events, w)
    return {"cma5": cma5, "cma6": cma6, "cma7": cma7, "cma8": cma8, "cma9": cma9}[name](
        events, w, p
    )


@dataclass(frozen=True)
class EpisodeCma:
    episode_id: int
    window_start: float  # AdhereR's episode.start (episode intersected with the OW)
    end_gap: float
    episode_duration: float  # the whole episode's duration (AdhereR keeps it unintersected)
    window_end: float  # AdhereR's episode.end (intersected)
    cma: float | None


def cma_per_episode(
    name: str, events: list[Event], p: CmaParams, ep: EpisodeParams | None = None
) -> list[EpisodeCma]:
    """CMA_per_episode for one patient. `ep` holds the episode arguments (its max gap etc.).

    As in AdhereR the carry-over arguments of the episodes are coupled to the CMA: none for
    CMA1-4, within the OW (with the CMA's same-medication/dosage flags) for CMA5-9.
    """
    simple = name in ("cma1", "cma2", "cma3", "cma4")
    ep = replace(
        ep or EpisodeParams(maximum_permissible_gap=180),
        carryover_within_obs_window=not simple,
        carry_only_for_same_medication=False if simple else p.carry_only_for_same_medication,
        consider_dosage_change=False if simple else p.consider_dosage_change,
        followup_window_start=p.followup_window_start,
        followup_window_duration=p.followup_window_duration,
    )
    episodes = compute_treatment_episodes(events, ep)
    w = patient_windows(
        events,
        p.followup_window_start,
        p.followup_window_duration,
        p.observation_window_start,
        p.observation_window_duration,
    )
    out = []
    for e in episodes:
        i_start = max(e.start, w.ow_start)
        i_end = min(e.end, w.ow_end)
        if not i_start < i_end:
            continue
        ew = Windows(e.start, e.start + (e.end - e.start), i_start, i_start + (i_end - i_start))
        value = simple_cma(name, events, ew, p)
        out.append(EpisodeCma(e.episode_id, i_start, e.end_gap, e.end - e.start, i_end, value))
    return out


@dataclass(frozen=True)
class SlidingWindowParams:
    start: float = 0
    duration: float = 90
    step: float = 30


@dataclass(frozen=True)
class WindowCma:
    window_id: int
    start: float
    end: float
    cma: float | None


def cma_sliding_window(
    name: str, events: list[Event], p: CmaParams, sw: SlidingWindowParams | None = None
) -> list[WindowCma]:
    sw = sw or SlidingWindowParams()
    w = patient_windows(
        events,
        p.followup_window_start,
        p.followup_window_duration,
        p.observation_window_start,
        p.observation_window_duration,
    )
    start = w.ow_start + sw.start
    sliding_duration = (w.ow_end - start) - sw.duration
    if sliding_duration < 0:
        return []
    n_steps = math.floor(sliding_duration / sw.step + 1)  # R: 1:(x/step + 1) truncates
    out = []
    for i in range(1, n_steps + 1):
        ws = start + (i - 1) * sw.step
        ww = Windows(w.fu_start, w.fu_end, ws, ws + sw.duration)
        out.append(WindowCma(i, ws, ws + sw.duration, simple_cma(name, events, ww, p)))
    return out


# -- PQA proportion of days covered, day by day ---------------------------------------------


def pqa_covered_days(
    fills: list[tuple[int, int, str]], inpatient_days: set[int]
) -> dict[str, set[int]]:
    """Days each drug is in hand, simulated one day at a time (the PQA and CMS rules).

    `fills` are (fill day, days supply, drug); `inpatient_days` are stay days. A fill's supply
    starts on its fill day or, if the same drug's earlier supply is still running, the day after
    it ends (same-drug shifting); a stay day uses no supply (pushed to after discharge, and so
    on for later fills). Different drugs never shift each other.
    """
    by_drug: dict[str, list[tuple[int, int]]] = {}
    for day, supply, drug in sorted(fills, key=lambda f: f[0]):
        by_drug.setdefault(drug, []).append((day, supply))
    covered: dict[str, set[int]] = {}
    for drug, drug_fills in by_drug.items():
        days: set[int] = set()
        next_free = -(10**9)
        for day, supply in drug_fills:
            d, used = max(day, next_free), 0
            while used < supply:
                if d not in inpatient_days:
                    days.add(d)
                    used += 1
                d += 1
            next_free = d
        covered[drug] = days
    return covered


def pqa_pdc(
    fills: list[tuple[int, int, str]],
    inpatient_days: set[int],
    start: int,
    end: int,
    drugs: list[str] | None = None,
    rule: str = "any",
) -> tuple[int, int]:
    """(covered days, outpatient days) in [start, end]: a day counts when any (or all) of
    `drugs` (default: every drug filled) is in hand; stay days are left out of both."""
    covered = pqa_covered_days(fills, inpatient_days)
    sets = [covered.get(d, set()) for d in (drugs or sorted(covered))]
    window = [d for d in range(start, end + 1) if d not in inpatient_days]
    test = any if rule == "any" else all
    return sum(1 for d in window if sets and test(d in s for s in sets)), len(window)
