-- trial_outcome_scenarios: the outcome class of every treatment trial, under the rule pack's
-- parameters (scenario 'base') and under each sensitivity variant of the adherence threshold and
-- the minimum trial duration.
--
-- Grain: one row per treatment trial x scenario. Per patient (the scenario grid is constant).
-- Inputs: treatment_trials, trial_response, adherence_trial, treatment_lines, rule_packs,
-- rule_pack_lists, ref_drug_indications, rule_pack_efficacy() (compiled from the packs).
--
-- Fixed precedence, first match wins (clinical-rules.md section 5; Howes 2022 validity gates;
-- ILAE 2010 outcome 3 "undetermined" for trials that were not adequately applied):
--   1 inappropriate          a trial drug is not for the recorded subtype (drug reference
--                            not_for_subtypes), or lacks the indication when the pack is strict
--   2 intolerant             stopped for adverse_event before adequate_dose_date (or start) +
--                            intolerance_window_days
--   3 non_adherent           prescribed but never dispensed, or PDC < adherence threshold
--   4 inadequate_trial       below the minimum effective dose, too few days at adequate dose or
--                            too few cycles (unless progression overrides, ZUMA-1), or stopped for
--                            a non-efficacy reason without outcome data
--   5 insufficient_followup  efficacy undetermined (window not elapsed, assessment missing), or
--                            still ongoing (or cut short by death or disenrolment: censored) and
--                            short of the minimum duration
--   6-9 from the pack's efficacy predicates: response, partial_response, non_response; plus
--     progression on therapy or within progression_window_days of the last dose = non_response
--     (IMWG 2011), and progression after a response outside that window =
--     relapse_after_response (relapse is not refractoriness).
-- A trial counts as a failure when non_response, or partial_response where the pack says
-- partial_counts_as_failure (ILAE yes; TRD no by default). Only trials of the pack's
-- counted_drug_classes (when the pack lists them) count toward the patient's status.
with

trials as (
    select * from treatment_trials
),

responses as (
    select * from trial_response
),

adherence as (
    select * from adherence_trial
),

packs as (
    select * from rule_packs
),

counted_classes as (
    select condition, list(item order by item) as classes
    from rule_pack_lists
    where list_name = 'counted_drug_classes'
    group by all
),

non_efficacy_reasons as (
    select trim(r) as reason
    from unnest(string_split(getvariable('non_efficacy_stop_reasons'), ',')) as t(r)
),

scenarios as (
    select 'base' as scenario_id, cast(null as double) as adherence_override, 1.0 as duration_factor
    union all
    select
        'adh=' || printf('%.2f', cast(trim(a) as double)) || ';dur=x' || printf('%.1f', cast(trim(f) as double)),
        cast(trim(a) as double),
        cast(trim(f) as double)
    from unnest(string_split(getvariable('sensitivity_adherence_thresholds'), ',')) as t(a)
    cross join unnest(string_split(getvariable('sensitivity_min_duration_factors'), ',')) as u(f)
),

-- the line of therapy a trial belongs to (oncology); other conditions: the trial order
trial_lines as (
    select unnest(trial_ids) as trial_id, line_number
    from treatment_lines
),

-- drugs of the trial that the reference marks as wrong for the patient's subtype
inappropriate as (
    select
        t.trial_id,
        string_agg(
            i.ingredient || ' not for ' || coalesce(t.subtype, '?')
            || case when not list_contains(coalesce(i.not_for_subtypes, []), t.subtype)
                    then ' (no ' || t.condition || ' indication)' else '' end,
            '; ' order by i.ingredient
        ) as detail
    from trials as t
    cross join unnest(t.ingredients) as u(ingredient)
    join packs as p on p.condition = t.condition
    left join ref_drug_indications as i
        on i.ingredient = u.ingredient and i.condition = t.condition
    where (t.subtype is not null and list_contains(coalesce(i.not_for_subtypes, []), t.subtype))
        or (p.strict_indication and i.ingredient is null)
    group by t.trial_id
),

evidence as (
    select
        t.*,
        coalesce(tl.line_number, t.trial_seq) as line_number,
        p.pack_id,
        p.pack_version,
        p.required_failures,
        p.adherence_threshold,
        p.min_adequate_days,
        p.intolerance_window_days,
        p.min_cycles_first_line,
        p.min_cycles_later_line,
        p.pd_overrides_min_exposure,
        p.progression_window_days,
        p.partial_counts_as_failure,
        r.best_response_category,
        r.best_response_rank,
        r.best_response_original,
        coalesce(r.assessed, false) as assessed,
        r.n_assessments,
        r.progression_date,
        coalesce(r.progression_on_therapy, false) as progression_on_therapy,
        r.days_after_last_dose_to_progression,
        coalesce(r.progression_on_therapy, false)
            or (p.progression_window_days is not null
                and r.days_after_last_dose_to_progression <= p.progression_window_days)
            as progression_within_window,
        r.ilae_outcome,
        r.pct_improvement,
        r.remission,
        r.office_at_goal,
        r.out_of_office_at_goal,
        r.baseline_sledai,
        r.latest_sledai,
        a.pdc,
        a.adherence_basis,
        len(list_distinct(t.drug_classes)) as n_classes,
        ia.detail as inappropriate_detail,
        cc.classes is null or len(list_intersect(t.drug_classes, cc.classes)) > 0 as is_counted
    from trials as t
    join packs as p on p.condition = t.condition
    left join responses as r on r.trial_id = t.trial_id
    left join adherence as a on a.trial_id = t.trial_id
    left join trial_lines as tl on tl.trial_id = t.trial_id
    left join inappropriate as ia on ia.trial_id = t.trial_id
    left join counted_classes as cc on cc.condition = t.condition
),

with_efficacy as (
    select
        e.*,
        rule_pack_efficacy(
            e.condition, e.best_response_category, e.best_response_rank, e.best_response_original,
            e.assessed, e.n_assessments, e.progression_date, e.progression_on_therapy,
            e.progression_within_window, e.ilae_outcome, e.pct_improvement, e.remission,
            e.office_at_goal, e.out_of_office_at_goal, e.baseline_sledai, e.latest_sledai,
            e.n_cycles, e.days_at_adequate_dose, e.is_ongoing, e.n_classes
        ) as efficacy
    from evidence as e
),

per_scenario as (
    select
        w.*,
        s.scenario_id,
        coalesce(s.adherence_override, w.adherence_threshold) as adherence_threshold_used,
        cast(round(w.min_adequate_days * s.duration_factor) as integer) as min_adequate_days_used,
        case when w.line_number = 1 then w.min_cycles_first_line else w.min_cycles_later_line end
            as min_cycles_used,
        w.pd_overrides_min_exposure and w.best_response_category = 'progression'
            as progression_overrides_exposure
    from with_efficacy as w
    cross join scenarios as s
),

classified as (
    select
        *,
        case
            when inappropriate_detail is not null then 'inappropriate'
            when stop_reason = 'adverse_event'
                and stop_date < coalesce(adequate_dose_date, start_date) + intolerance_window_days
                then 'intolerant'
            when never_dispensed then 'non_adherent'
            when pdc is not null and pdc < adherence_threshold_used then 'non_adherent'
            when not coalesce(is_dose_adequate, true) and not progression_overrides_exposure
                then 'inadequate_trial'
            -- a trial cut short by the end of observation (death, disenrolment) is censored,
            -- not inadequate: it falls through to insufficient_followup below
            when not is_ongoing and coalesce(days_at_adequate_dose, 0) < min_adequate_days_used
                and not progression_overrides_exposure
                and end_cause is distinct from 'observation_end'
                then 'inadequate_trial'
            -- cycle minimums bind regimens with cycle-based drugs only (n_cycles is NULL for
            -- continuous oral regimens such as lenalidomide-dexamethasone: days count there)
            when not is_ongoing and min_cycles_used is not null
                and n_cycles < min_cycles_used and not progression_overrides_exposure
                then 'inadequate_trial'
            when stop_reason in (select reason from non_efficacy_reasons) and not assessed
                then 'inadequate_trial'
            when progression_within_window then 'non_response'
            when efficacy.outcome = 'response' and progression_date is not null
                then 'relapse_after_response'
            when efficacy.outcome = 'undetermined' and stop_reason = 'inefficacy'
                and getvariable('inefficacy_stop_counts_as_non_response')
                then 'non_response'
            when efficacy.outcome = 'undetermined' then 'insufficient_followup'
            when (is_ongoing or end_cause = 'observation_end')
                and coalesce(days_at_adequate_dose, 0) < min_adequate_days_used
                and efficacy.outcome <> 'response'
                then 'insufficient_followup'
            else efficacy.outcome
        end as outcome_class
    from per_scenario
),

explained as (
    select
        *,
        case outcome_class
            when 'inappropriate' then 'inappropriate: ' || inappropriate_detail
            when 'intolerant' then 'intolerant: stopped for adverse_event on ' || stop_date
                || ', before ' || (coalesce(adequate_dose_date, start_date) + intolerance_window_days)
                || ' (adequate dose date + ' || intolerance_window_days || ' days)'
            when 'non_adherent' then 'non_adherent: ' || case
                when never_dispensed then 'prescribed, never dispensed'
                else 'PDC ' || printf('%.2f', pdc) || ' < ' || printf('%.2f', adherence_threshold_used) end
            when 'inadequate_trial' then 'inadequate_trial: ' || case
                when not coalesce(is_dose_adequate, true) then 'never at the minimum effective dose'
                when coalesce(days_at_adequate_dose, 0) < min_adequate_days_used and not is_ongoing
                    then coalesce(days_at_adequate_dose, 0) || ' days at adequate dose < '
                        || min_adequate_days_used
                when min_cycles_used is not null and n_cycles < min_cycles_used
                    then n_cycles || ' cycles < ' || min_cycles_used
                        || case when line_number = 1 then ' (first line)' else ' (later line)' end
                else 'stopped for ' || stop_reason || ' without outcome data' end
            when 'insufficient_followup' then 'insufficient_followup: ' || case
                when efficacy.outcome = 'undetermined' then efficacy.rule
                when end_cause = 'observation_end' then 'observation ended (censored) after '
                    || coalesce(days_at_adequate_dose, 0) || ' of '
                    || min_adequate_days_used || ' days at adequate dose'
                else 'ongoing, ' || coalesce(days_at_adequate_dose, 0) || ' of '
                    || min_adequate_days_used || ' days at adequate dose' end
            when 'relapse_after_response' then 'relapse_after_response: ' || efficacy.rule
                || '; progression ' || progression_date || ', '
                || coalesce(days_after_last_dose_to_progression::varchar, '?')
                || ' days after the last dose'
            else outcome_class || ': ' || case
                when progression_within_window and (progression_on_therapy or progression_window_days is not null)
                    and outcome_class = 'non_response' and efficacy.outcome <> 'non_response'
                    then 'progression ' || progression_date || case
                        when progression_on_therapy then ' on therapy'
                        else ', ' || days_after_last_dose_to_progression || ' days after the last dose (<= '
                            || progression_window_days || ')' end
                when outcome_class = 'non_response' and efficacy.outcome = 'undetermined'
                    then 'stopped for inefficacy (clinician judgement, no measured outcome)'
                else efficacy.rule end
        end as rule_fired
    from classified
),

final as (
    select
        patient_id,
        condition,
        trial_id,
        scenario_id,
        trial_seq,
        line_number,
        regimen_key,
        start_date,
        end_date,
        is_ongoing,
        outcome_class,
        outcome_class = 'non_response'
            or (outcome_class = 'partial_response' and partial_counts_as_failure) as counts_as_failure,
        outcome_class in ('response', 'partial_response', 'non_response', 'relapse_after_response')
            as is_informative,
        is_counted,
        rule_fired,
        efficacy.outcome as efficacy_outcome,
        pdc,
        adherence_basis,
        adherence_threshold_used,
        adequate_dose_date,
        days_at_adequate_dose,
        min_adequate_days_used,
        n_cycles,
        min_cycles_used,
        stop_reason,
        stop_date,
        last_dose_date,
        best_response_category,
        best_response_original,
        progression_date,
        progression_within_window,
        pack_id,
        pack_version
    from explained
)

select * from final
