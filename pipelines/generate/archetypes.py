"""Conditions and archetypes with their fixed proportions and the status a correct pipeline
should give at the end of follow-up (refractory_status.sql vocabulary).

Each archetype: (name, share within the condition, trial kinds in order, expected_status,
anchor, expected_flags). anchor `end`: the last trial is still running at the end of follow-up
(its fills continue to within 2-12 days of it); `start`: the story is complete earlier.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archetype:
    condition: str
    name: str
    share: float  # of the condition's patients
    kinds: tuple[str, ...]
    expected_status: str
    anchor: str = "start"
    flags: str = ""


CONDITION_SHARES: dict[str, float] = {
    "epilepsy": 0.22,
    "depression": 0.24,
    "hypertension": 0.22,
    "lbcl": 0.10,
    "multiple_myeloma": 0.10,
    "sle": 0.12,
}

_A = Archetype
ARCHETYPES: list[Archetype] = [
    # epilepsy (ILAE 2010: two failed adequate, tolerated schedules)
    _A("epilepsy", "refractory", 0.20, ("fail", "fail"), "refractory"),
    _A("epilepsy", "pseudo_nonadherent", 0.10, ("nonadherent", "fail"), "pseudo_refractory"),
    _A("epilepsy", "pseudo_intolerant", 0.10, ("intolerant", "fail"), "pseudo_refractory"),
    _A("epilepsy", "pseudo_inadequate_dose", 0.08, ("low_dose", "fail"), "pseudo_refractory"),
    _A("epilepsy", "pseudo_short_trial", 0.05, ("short", "fail"), "pseudo_refractory"),
    _A("epilepsy", "responder_first", 0.15, ("respond",), "responder", "end"),
    _A("epilepsy", "responder_second", 0.10, ("fail", "respond"), "responder", "end"),
    _A("epilepsy", "at_risk", 0.10, ("fail", "ongoing"), "at_risk", "end"),
    _A("epilepsy", "undetermined", 0.07, ("ongoing",), "undetermined", "end"),
    _A(
        "epilepsy",
        "misdiagnosis",
        0.05,
        ("fail", "fail"),
        "refractory",
        "start",
        "misdiagnosis_suspected",
    ),
    # depression (TRD, Delphi 2022: two failed adequate trials, <25% improvement)
    _A("depression", "refractory", 0.18, ("fail", "fail"), "refractory"),
    _A("depression", "pseudo_nonadherent", 0.10, ("nonadherent", "fail"), "pseudo_refractory"),
    _A("depression", "pseudo_intolerant", 0.10, ("intolerant", "fail"), "pseudo_refractory"),
    _A("depression", "pseudo_inadequate_dose", 0.08, ("low_dose", "fail"), "pseudo_refractory"),
    _A("depression", "pseudo_short_trial", 0.06, ("short", "fail"), "pseudo_refractory"),
    _A("depression", "partial_responder", 0.12, ("partial",), "partial_responder", "end"),
    _A("depression", "responder_first", 0.12, ("respond",), "responder", "end"),
    _A("depression", "responder_second", 0.08, ("fail", "respond"), "responder", "end"),
    _A("depression", "at_risk", 0.09, ("fail", "ongoing"), "at_risk", "end"),
    _A("depression", "undetermined", 0.07, ("ongoing",), "undetermined", "end"),
    # hypertension (AHA 2018, current regimen)
    _A("hypertension", "refractory", 0.25, ("fail",), "refractory", "end"),
    _A("hypertension", "pseudo_nonadherent", 0.15, ("nonadherent",), "pseudo_refractory", "end"),
    _A(
        "hypertension",
        "white_coat",
        0.15,
        ("white_coat",),
        "pseudo_refractory",
        "end",
        "white_coat",
    ),
    _A("hypertension", "responder", 0.25, ("respond",), "responder", "end"),
    _A("hypertension", "at_risk", 0.10, ("at_risk",), "at_risk", "end"),
    _A("hypertension", "undetermined", 0.10, ("undetermined",), "undetermined", "end"),
    # LBCL (SCHOLAR-1: SD/PD as best response to first-line R-CHOP)
    _A("lbcl", "refractory", 0.30, ("fail",), "refractory", "start", "primary_refractory"),
    _A("lbcl", "pseudo_intolerant", 0.10, ("intolerant",), "pseudo_refractory"),
    _A("lbcl", "pseudo_inadequate_cycles", 0.10, ("short",), "pseudo_refractory"),
    _A("lbcl", "partial_responder", 0.15, ("partial",), "partial_responder"),
    _A("lbcl", "responder", 0.25, ("respond",), "responder"),
    _A("lbcl", "undetermined", 0.10, ("ongoing",), "undetermined", "end"),
    # multiple myeloma (IMWG 2011: non-responsive or progression on therapy)
    _A(
        "multiple_myeloma",
        "refractory",
        0.30,
        ("fail", "fail"),
        "refractory",
        "start",
        "primary_refractory",
    ),
    _A("multiple_myeloma", "pseudo_nonadherent", 0.12, ("nonadherent",), "pseudo_refractory"),
    _A("multiple_myeloma", "pseudo_intolerant", 0.08, ("intolerant",), "pseudo_refractory"),
    _A("multiple_myeloma", "partial_responder", 0.15, ("partial",), "partial_responder", "end"),
    _A("multiple_myeloma", "responder", 0.25, ("respond",), "responder", "end"),
    _A("multiple_myeloma", "undetermined", 0.10, ("ongoing",), "undetermined", "end"),
    # SLE (operational: SLEDAI-2K >= 6 despite two immunosuppressants/biologics >= 3 months)
    _A("sle", "refractory", 0.25, ("fail", "fail"), "refractory"),
    _A("sle", "pseudo_nonadherent", 0.12, ("nonadherent", "fail"), "pseudo_refractory"),
    _A("sle", "pseudo_inadequate_dose", 0.10, ("low_dose", "fail"), "pseudo_refractory"),
    _A("sle", "responder_first", 0.15, ("respond",), "responder", "end"),
    _A("sle", "responder_second", 0.10, ("fail", "respond"), "responder", "end"),
    _A("sle", "at_risk", 0.15, ("fail", "ongoing"), "at_risk", "end"),
    _A("sle", "undetermined", 0.13, ("ongoing",), "undetermined", "end"),
]


def weights() -> list[float]:
    """Share of all patients per archetype (condition share x share within the condition)."""
    return [CONDITION_SHARES[a.condition] * a.share for a in ARCHETYPES]


def _check() -> None:
    for c in CONDITION_SHARES:
        s = sum(a.share for a in ARCHETYPES if a.condition == c)
        assert abs(s - 1.0) < 1e-9, (c, s)
    assert abs(sum(CONDITION_SHARES.values()) - 1.0) < 1e-9


_check()
