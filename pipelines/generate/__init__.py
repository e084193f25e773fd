"""Synthetic cohort generator (`txh generate`): canonical-contract deliveries plus hidden truth.

    from pipelines.generate import generate
    generate("data/generated", n_patients=300, seed=42)       # or n_events=1_000_000

Outputs under out_dir:
  deliveries/delivery_NN.csv  what the source sent at one time: the events recorded in that
                              delivery's slice of system time (late arrivals land in later
                              deliveries), exact re-sent duplicates, corrections (`retracted`,
                              `amended`, target_event_id -> an earlier sent event) and ~0.5% bad
                              rows (missing patient_id, unparseable occurred_at, negative
                              days_supply, unknown event_type) that the quality gate quarantines
  truth/patients.csv          patient_id, condition, subtype, archetype, expected_status,
                              expected_flags, n_trials, first_trial_start
  truth/trials.csv            patient_id, condition, trial_no, regimen, start_date, expected_outcome
  truth/noise.csv             every injected noise row: delivery, kind, event ids, expected ingest
                              outcome (quarantined | duplicate | accepted) and reason
  truth/deliveries.csv        delivery order and slices (delivery_seq, file, n_rows, recorded_from,
                              recorded_to)
  manifest.json               seed, parameters, counts, proportions, generator version

Time: occurred dates 2020-01-01 .. 2025-01-30; expected statuses hold as of the end of follow-up,
2025-01-31 (`truth_as_of`). recorded_at = occurred_at + 0-2 days (60%), 3-14 days (30%) or
15-90 days (10%, late arrivals), never after the end of follow-up.

Conditions (share of patients): epilepsy 22%, depression 24%, hypertension 22%, lbcl 10%,
multiple_myeloma 10%, sle 12%. Archetypes (share within the condition -> expected status):
  epilepsy      refractory 20% (two failed adequate ASM trials: seizure diaries stay near the
                pre-treatment rate) | pseudo_nonadherent 10% (first trial PDC ~0.55-0.6) |
                pseudo_intolerant 10% (stopped for adverse_event at day 10-20) |
                pseudo_inadequate_dose 8% (below min_effective_daily_dose_mg) | pseudo_short_trial 5%
                (one 14-20 day fill, patient_choice) -> pseudo_refractory | responder_first 15%,
                responder_second 10% (>= 16 months seizure-free, ongoing) -> responder | at_risk 10%
                (one failure, second trial ongoing) | undetermined 7% (ongoing, no diary) |
                misdiagnosis 5% (refractory + diagnosis_revised to PNES; flag misdiagnosis_suspected)
  depression    refractory 18% (PHQ-9 ~20 -> 5-15% improvement, twice) | pseudo_nonadherent 10% |
                pseudo_intolerant 10% | pseudo_inadequate_dose 8% | pseudo_short_trial 6% |
                partial_responder 12% (32-40% improvement) | responder_first 12% | responder_second
                8% (60-70% improvement) | at_risk 9% | undetermined 7%
  hypertension  (one concurrent regimen, ongoing) refractory 25% (RAS + CCB + thiazide, adherent,
                office ~150/92 and home ~147/89) | pseudo_nonadherent 15% (same, PDC ~0.55) |
                white_coat 15% (office high, home ~121/74; flag white_coat) -> pseudo_refractory |
                responder 25% (RAS + CCB at goal) | at_risk 10% (two classes incl. a diuretic, above
                goal) | undetermined 10% (no BP on treatment)
  lbcl          refractory 30% (R-CHOP x6, Lugano SD then PD) | pseudo_intolerant 10% (one cycle,
                adverse_event) | pseudo_inadequate_cycles 10% (two cycles, patient_choice) |
                partial_responder 15% (PR) | responder 25% (CR) | undetermined 10% (ongoing, 2-4
                cycles, no assessment)
  myeloma       refractory 30% (Rd: IMWG SD then PD on therapy; then Vd: SD then PD) |
                pseudo_nonadherent 12% (lenalidomide PDC ~0.55, SD) | pseudo_intolerant 8% |
                partial_responder 15% (MR, MR, MR) | responder 25% (PR, VGPR, VGPR) | undetermined 10%
  sle           refractory 25% (mycophenolate/azathioprine then belimumab/anifrolumab on
                hydroxychloroquine; SLEDAI-2K stays >= 7) | pseudo_nonadherent 12% |
                pseudo_inadequate_dose 10% | responder_first 15%, responder_second 10% (SLEDAI-2K
                < 6) | at_risk 15% | undetermined 13%
Every patient: `enrolled`, `diagnosed` (condition, ICD-10 code, subtype: epilepsy focal 75% /
generalized 25%, lbcl dlbcl). 4% have an inpatient stay (admitted/discharged) during the first
trial; 12% take atorvastatin and 8% metformin (no indication among the six conditions).
Noise (of the clean events): bad rows 0.5%, duplicates 0.3%, retractions 0.1% (each of a spurious
re-entry sent for the purpose), amendments 0.1% (the original was sent with a wrong value or
days_supply; the amendment restores it, so the truth holds after corrections).

Sizes: exactly one of n_patients / n_events; n_events sizes the cohort from the mean rows per
patient of a fixed pilot cohort (within a few percent). Generation is vectorised over patients of
one archetype, 20,000 patients per chunk, appending to the CSVs, so memory is bounded.
Deterministic: same arguments -> byte-identical files. `progress(stage, fraction)` as in the CLI.
"""

from pipelines.generate.core import GenerateResult, generate

__all__ = ["GenerateResult", "generate"]
