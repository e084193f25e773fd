-- treatment_trials: the unit judged for refractoriness - one continuous exposure to one regimen
-- (monotherapy or combination) for one condition.
--
-- Grain: one row per patient x condition x trial. Inputs: exposures (with their inferred
-- indication), events_current (prescriptions, stops, diagnoses), observation_periods, ref_drugs,
-- ref_drug_classes, ref_drug_indications, indication_candidates.
--
-- Construction (TreatmentPatterns v3 constructPathways, clinical-rules.md 4.2; ILAE 2010 counts
-- "schedules", not molecules, clinical-rules.md section 0):
--   1. Per patient x condition x ingredient, exposures leaving at most $trial_gap_days uncovered
--      days merge into ingredient eras (eraCollapseSize); eras shorter than $min_era_days go.
--   2. Two ingredients overlapping >= $combination_window_days, or one era inside the other,
--      are a combination for the overlap. A shorter overlap is a switch: the earlier era is cut
--      the day before the later starts (overlapMethod = truncate). One pass (TreatmentPatterns
--      iterates; they differ only when three or more eras overlap in a chain).
--   3. The condition's timeline is cut at every era start and end into elementary segments,
--      each with its set of active ingredients; contiguous segments with the same set are runs.
--   4. A run created by a combination split - touching a run whose ingredient set is a strict
--      superset or subset of its own (A | A+B | B) - shorter than $min_post_combination_days is
--      dropped (minPostCombinationDuration). Whole switch pieces and stand-alone eras stay.
--   5. A new trial starts when the ingredient set changes or after more than $trial_gap_days
--      uncovered days; a dose change never starts one (doses are read from exposures' dose
--      segments only for adequacy).
--   6. Prescriptions with no exposure of the ingredient overlapping [date, date +
--      $primary_nonadherence_window_days] (primary non-adherence) are trials of their own,
--      never_dispensed = true, one per condition and day, merged with an identical one repeated
--      within $trial_gap_days. A prescription whose window has not elapsed by as_of_date is not
--      judged (attrition), nor, when $primary_nonadherence_requires_supply_data, one of a patient
--      without any dispensing or administration in the log (a prescriptions-only source cannot
--      show non-collection). Their indication is inferred as in exposures.sql
--      (indication_candidates).
-- Deviations from TreatmentPatterns, on purpose: gaps count uncovered days (TreatmentPatterns
-- compares next start - previous end, one more), as drug_eras does; step 4 also trims the tail
-- of a combination whose drugs stop a few days apart (R-CHOP: the trial ends with prednisone's
-- last day, the 16 cycle days of R-CHO-V after it are a dropped fragment); TreatmentPatterns
-- builds pathways across conditions from cohorts, here each condition is its own timeline.
-- Attributes:
--   * n_dispensings / n_administrations: fills / administrations of trial drugs whose coverage
--     overlaps the trial (a fill spanning two trials counts in both: it supplies both).
--   * adequate_dose_date: the first day on which every ingredient has reached its
--     min_effective_daily_dose_mg for the condition (later reductions are not re-checked); a NULL
--     minimum (or no indication row) is adequate from the ingredient's first day. An ingredient
--     whose daily dose is unknown throughout the trial while a minimum exists is assumed
--     adequate from its first day and flagged dose_unknown (is_dose_adequate is then NULL, not
--     true). Never reached: adequate_dose_date NULL, is_dose_adequate false.
--   * days_at_adequate_dose and elapsed_days count up to min(end_date, as_of_date, the patient's
--     last observed day): supply still in hand after death or disenrolment is not observed time.
--   * stop_reason: the `stopped` event of a trial drug (same condition or none) closest to the
--     last covered day, within $stop_reason_window_days either side; `unknown` when the trial
--     ended without one; NULL while ongoing.
--   * is_ongoing: not never_dispensed, no stop attached, no later trial of the condition, the
--     patient still observed at as_of_date (observation_periods), and the last covered day at
--     most $trial_gap_days before as_of_date (a refill could still continue it).
--   * n_cycles (cycle drugs, ref_drugs.supply = cycle): per ingredient, the distinct `cycle`
--     numbers of its administrations in the trial, or, when some lack one, the distinct
--     cycle_days slots since its first administration in the trial; the trial takes the maximum.
--   * last_dose_date: the last administration or last covered day of a dispensing/started
--     interval, within the trial and not after as_of_date (IMWG "last dose").
--   * subtype: the patient's latest `diagnosed` subtype for the condition on or before the
--     trial start; if none, the first one diagnosed later (subtype_source says which).
with

exposure_segments as (
    select * from exposures
),

events as (
    select * from events_current
),

observation as (
    select * from observation_periods
),

drugs as (
    select * from ref_drugs
),

drug_classes as (
    select * from ref_drug_classes
),

indications as (
    select * from ref_drug_indications
),

candidates as (
    select * from indication_candidates
),

condition_exposures as (
    select * from exposure_segments where condition is not null
),

-- 1. ingredient eras per condition ----------------------------------------------------------
-- each patient x condition x ingredient series gets an integer key, so the window functions
-- sort integers, not text; exposures tied on start and end are interchangeable here, so no
-- further tie-break is needed
condition_series as (
    select
        row_number() over (order by patient_id, condition, ingredient) as series_key,
        patient_id,
        condition,
        ingredient
    from (select distinct patient_id, condition, ingredient from condition_exposures)
),

exposures_with_prior_end as (
    select
        s.series_key,
        e.start_date,
        e.end_date,
        max(e.end_date) over (
            partition by s.series_key
            order by e.start_date, e.end_date
            rows between unbounded preceding and 1 preceding
        ) as prior_max_end_date
    from condition_exposures as e
    join condition_series as s using (patient_id, condition, ingredient)
),

ingredient_era_numbers as (
    select
        *,
        sum(case
            when prior_max_end_date is null
                or start_date - prior_max_end_date - 1 > getvariable('trial_gap_days') then 1
            else 0
        end) over (
            partition by series_key
            order by start_date, end_date
            rows unbounded preceding
        ) as era_no
    from exposures_with_prior_end
),

ingredient_eras as (
    select s.patient_id, s.condition, s.ingredient, e.era_no, e.era_start_date, e.era_end_date
    from (
        select
            series_key,
            era_no,
            min(start_date) as era_start_date,
            max(end_date) as era_end_date
        from ingredient_era_numbers
        group by all
        having max(end_date) - min(start_date) + 1 >= getvariable('min_era_days')
    ) as e
    join condition_series as s using (series_key)
),

-- 2. short overlaps are switches: cut the earlier era the day before the later one starts --
switch_cuts as (
    select
        a.patient_id,
        a.condition,
        a.ingredient,
        a.era_no,
        min(b.era_start_date) - 1 as cut_end_date
    from ingredient_eras as a
    join ingredient_eras as b
        on b.patient_id = a.patient_id
        and b.condition = a.condition
        and b.ingredient <> a.ingredient
        and b.era_start_date > a.era_start_date
        and b.era_start_date <= a.era_end_date
        -- b outlasts a (an era inside another is always a combination)
        and b.era_end_date > a.era_end_date
        and a.era_end_date - b.era_start_date + 1 < getvariable('combination_window_days')
    group by all
),

trimmed_eras as (
    select
        e.patient_id,
        e.condition,
        e.ingredient,
        e.era_start_date,
        coalesce(c.cut_end_date, e.era_end_date) as era_end_date
    from ingredient_eras as e
    left join switch_cuts as c
        on c.patient_id = e.patient_id
        and c.condition = e.condition
        and c.ingredient = e.ingredient
        and c.era_no = e.era_no
),

-- 3. elementary segments and their active ingredient sets -----------------------------------
boundaries as (
    select patient_id, condition, era_start_date as boundary_date from trimmed_eras
    union
    select patient_id, condition, era_end_date + 1 from trimmed_eras
),

elementary_segments as (
    select
        patient_id,
        condition,
        boundary_date as segment_start_date,
        lead(boundary_date) over (partition by patient_id, condition order by boundary_date) - 1
            as segment_end_date
    from boundaries
    qualify segment_end_date is not null
),

segment_regimens as (
    select
        s.patient_id,
        s.condition,
        s.segment_start_date,
        s.segment_end_date,
        list(e.ingredient order by e.ingredient) as ingredients
    from elementary_segments as s
    join trimmed_eras as e
        on e.patient_id = s.patient_id
        and e.condition = s.condition
        and e.era_start_date <= s.segment_start_date
        and e.era_end_date >= s.segment_start_date
    group by all
),

segments_flagged as (
    select
        *,
        case
            when lag(ingredients) over w = ingredients
                and lag(segment_end_date) over w = segment_start_date - 1 then 0
            else 1
        end as starts_run
    from segment_regimens
    window w as (partition by patient_id, condition order by segment_start_date)
),

segments_numbered as (
    select
        *,
        sum(starts_run) over (
            partition by patient_id, condition order by segment_start_date
            rows unbounded preceding
        ) as run_no
    from segments_flagged
),

runs as (
    select
        patient_id,
        condition,
        run_no,
        any_value(ingredients) as ingredients,
        min(segment_start_date) as run_start_date,
        max(segment_end_date) as run_end_date
    from segments_numbered
    group by all
),

-- 4. drop short fragments of combination splits ---------------------------------------------
runs_with_neighbours as (
    select
        *,
        lag(ingredients) over w as previous_ingredients,
        lag(run_end_date) over w as previous_end_date,
        lead(ingredients) over w as next_ingredients,
        lead(run_start_date) over w as next_start_date
    from runs
    window w as (partition by patient_id, condition order by run_start_date)
),

kept_runs as (
    select *
    from runs_with_neighbours
    where not (
        run_end_date - run_start_date + 1 < getvariable('min_post_combination_days')
        and coalesce(
            (previous_end_date = run_start_date - 1
                and (list_has_all(previous_ingredients, ingredients)
                    or list_has_all(ingredients, previous_ingredients)))
            or (next_start_date = run_end_date + 1
                and (list_has_all(next_ingredients, ingredients)
                    or list_has_all(ingredients, next_ingredients))),
            false
        )
    )
),

-- 5. trials: a new regimen, or the same one after a gap ---------------------------------------
kept_runs_flagged as (
    select
        *,
        case
            when lag(ingredients) over w is distinct from ingredients then 1
            when run_start_date - lag(run_end_date) over w - 1 > getvariable('trial_gap_days') then 1
            else 0
        end as starts_trial
    from kept_runs
    window w as (partition by patient_id, condition order by run_start_date)
),

kept_runs_numbered as (
    select
        *,
        sum(starts_trial) over (
            partition by patient_id, condition order by run_start_date rows unbounded preceding
        ) as trial_no
    from kept_runs_flagged
),

exposure_trials as (
    select
        patient_id,
        condition,
        any_value(ingredients) as ingredients,
        min(run_start_date) as start_date,
        max(run_end_date) as end_date,
        false as never_dispensed
    from kept_runs_numbered
    group by patient_id, condition, trial_no
),

exposure_trials_with_next as (
    select
        *,
        lead(start_date) over (partition by patient_id, condition order by start_date)
            as next_dispensed_trial_start_date
    from exposure_trials
),

-- 6. prescriptions never dispensed (primary non-adherence) ----------------------------------
prescriptions as (
    select
        patient_id,
        coalesce(source, '') || ':' || event_id as prescription_id,
        occurred_date as prescribed_date,
        ingredient,
        condition
    from events
    where event_type = 'prescribed' and ingredient is not null
        -- the window must have elapsed before the prescription can be judged unfilled
        and occurred_date + cast(getvariable('primary_nonadherence_window_days') as integer)
            <= getvariable('as_of_date')
),

-- patients with pharmacy/administration data at all: only there can a prescription be unfilled
patients_with_supply_data as (
    select distinct patient_id
    from exposure_segments
    where origin in ('dispensed', 'administered')
),

unfilled_prescriptions as (
    select p.*
    from prescriptions as p
    anti join exposure_segments as x
        on x.patient_id = p.patient_id
        and x.ingredient = p.ingredient
        and x.start_date <= p.prescribed_date
            + cast(getvariable('primary_nonadherence_window_days') as integer)
        and x.end_date >= p.prescribed_date
    where not getvariable('primary_nonadherence_requires_supply_data')
        or p.patient_id in (select patient_id from patients_with_supply_data)
),

-- the indication of a prescription without one: the candidates of indication_candidates (the
-- exposures.sql rule), the most recently diagnosed on or before the prescription, else the
-- earliest diagnosed after it, else alphabetical (macro in transforms/macros/indication.sql)
prescription_conditions as (
    select u.prescription_id, c.condition
    from unfilled_prescriptions as u
    join candidates as c on c.patient_id = u.patient_id and c.ingredient = u.ingredient
    where u.condition is null
    qualify row_number() over (
        partition by u.prescription_id
        order by indication_preference(c.first_diagnosed_date, u.prescribed_date, c.condition)
    ) = 1
),

unfilled_by_day as (
    select
        u.patient_id,
        coalesce(u.condition, c.condition) as condition,
        u.prescribed_date,
        list(distinct u.ingredient order by u.ingredient) as ingredients
    from unfilled_prescriptions as u
    left join prescription_conditions as c on c.prescription_id = u.prescription_id
    where coalesce(u.condition, c.condition) is not null
    group by all
),

unfilled_flagged as (
    select
        *,
        case
            when lag(ingredients) over w is distinct from ingredients then 1
            when prescribed_date - lag(prescribed_date) over w - 1 > getvariable('trial_gap_days')
                then 1
            else 0
        end as starts_trial
    from unfilled_by_day
    window w as (partition by patient_id, condition order by prescribed_date)
),

unfilled_numbered as (
    select
        *,
        sum(starts_trial) over (
            partition by patient_id, condition order by prescribed_date rows unbounded preceding
        ) as trial_no
    from unfilled_flagged
),

never_dispensed_trials as (
    select
        patient_id,
        condition,
        any_value(ingredients) as ingredients,
        min(prescribed_date) as start_date,
        max(prescribed_date) as end_date,
        true as never_dispensed,
        cast(null as date) as next_dispensed_trial_start_date
    from unfilled_numbered
    group by patient_id, condition, trial_no
),

-- all trials, identified -----------------------------------------------------------------------
all_trials as (
    select * from exposure_trials_with_next
    union all
    select * from never_dispensed_trials
),

trials as (
    select
        patient_id || '|' || condition || '|' || strftime(start_date, '%Y-%m-%d') || '|'
            || array_to_string(ingredients, '+')
            || case when never_dispensed then '|never_dispensed' else '' end as trial_id,
        patient_id,
        condition,
        row_number() over (
            partition by patient_id, condition
            order by start_date, never_dispensed, array_to_string(ingredients, '+')
        ) as trial_seq,
        array_to_string(ingredients, '+') as regimen_key,
        ingredients,
        len(ingredients) > 1 as is_combination,
        start_date,
        end_date,
        never_dispensed,
        next_dispensed_trial_start_date
    from all_trials
),

trial_drug_classes as (
    select t.trial_id, list(distinct c.drug_class order by c.drug_class) as drug_classes
    from trials as t
    cross join unnest(t.ingredients) as u(ingredient)
    join drug_classes as c on c.ingredient = u.ingredient
    group by all
),

-- each trial ingredient, and the whole exposures of it (same condition) overlapping the trial
trial_ingredients as (
    select
        t.trial_id,
        t.patient_id,
        t.condition,
        u.ingredient,
        t.start_date as trial_start_date,
        t.end_date as trial_end_date
    from trials as t
    cross join unnest(t.ingredients) as u(ingredient)
    where not t.never_dispensed
),

trial_exposures as (
    select
        ti.trial_id,
        ti.ingredient,
        ti.trial_start_date,
        ti.trial_end_date,
        x.origin,
        x.exposure_start_date,
        x.exposure_end_date,
        x.cycle,
        x.condition_source,
        x.condition_ambiguous
    from trial_ingredients as ti
    join condition_exposures as x
        on x.patient_id = ti.patient_id
        and x.condition = ti.condition
        and x.ingredient = ti.ingredient
        and x.exposure_start_date <= ti.trial_end_date
        and x.exposure_end_date >= ti.trial_start_date
    -- one row per exposure (its first dose segment carries the whole exposure's dates)
    where x.dose_segment = 1
),

exposure_summary as (
    select
        trial_id,
        -- every fill / administration whose coverage overlaps the trial (one spanning two
        -- trials counts in both: its supply is evidence for both)
        count(*) filter (where origin = 'dispensed') as n_dispensings,
        count(*) filter (where origin = 'administered') as n_administrations,
        max(least(
            case when origin = 'administered' then exposure_start_date else exposure_end_date end,
            trial_end_date,
            getvariable('as_of_date')
        )) as last_dose_date,
        bool_or(condition_source <> 'event') as condition_inferred,
        bool_or(condition_ambiguous) as condition_ambiguous
    from trial_exposures
    group by all
),

-- adequacy: first day each ingredient reaches its minimum effective dose for the condition
ingredient_first_days as (
    select
        trial_id,
        ingredient,
        min(greatest(exposure_start_date, trial_start_date)) as first_day
    from trial_exposures
    group by all
),

dosed_trial_ingredients as (
    select ti.*, i.min_effective_daily_dose_mg as min_dose_mg
    from trial_ingredients as ti
    join indications as i on i.ingredient = ti.ingredient and i.condition = ti.condition
    where i.min_effective_daily_dose_mg is not null
),

ingredient_doses as (
    select
        d.trial_id,
        d.ingredient,
        any_value(d.min_dose_mg) as min_dose_mg,
        count(x.daily_dose) as n_known_doses,
        min(greatest(x.start_date, d.trial_start_date))
            filter (where x.daily_dose >= d.min_dose_mg) as first_adequate_day
    from dosed_trial_ingredients as d
    join condition_exposures as x
        on x.patient_id = d.patient_id
        and x.condition = d.condition
        and x.ingredient = d.ingredient
        and x.start_date <= d.trial_end_date
        and x.end_date >= d.trial_start_date
    group by all
),

ingredient_adequacy_dates as (
    select
        f.trial_id,
        f.ingredient,
        d.min_dose_mg is not null and coalesce(d.n_known_doses, 0) = 0 as dose_unknown,
        case
            when d.min_dose_mg is null or coalesce(d.n_known_doses, 0) = 0 then f.first_day
            else d.first_adequate_day
        end as adequate_day
    from ingredient_first_days as f
    left join ingredient_doses as d on d.trial_id = f.trial_id and d.ingredient = f.ingredient
),

trial_adequacy as (
    select
        trial_id,
        case when bool_or(adequate_day is null) then null else max(adequate_day) end
            as adequate_dose_date,
        case
            when bool_or(adequate_day is null) then false
            when bool_or(dose_unknown) then null
            else true
        end as is_dose_adequate,
        bool_or(dose_unknown) as dose_unknown
    from ingredient_adequacy_dates
    group by all
),

-- cycles of cycle-based drugs
trial_administrations as (
    select
        x.trial_id,
        x.ingredient,
        x.exposure_start_date as administration_date,
        x.cycle,
        d.cycle_days,
        min(x.exposure_start_date) over (partition by x.trial_id, x.ingredient)
            as first_administration_date
    from trial_exposures as x
    join drugs as d on d.ingredient = x.ingredient
    where x.origin = 'administered' and d.supply = 'cycle'
        and x.exposure_start_date between x.trial_start_date and x.trial_end_date
),

ingredient_cycles as (
    select
        trial_id,
        ingredient,
        case
            when count(*) = count(cycle) then count(distinct cycle)
            else count(distinct floor(
                (administration_date - first_administration_date) / greatest(cycle_days, 1)
            ))
        end as n_cycles
    from trial_administrations
    group by all
),

trial_cycles as (
    select trial_id, max(n_cycles) as n_cycles
    from ingredient_cycles
    group by all
),

-- stop events of trial drugs near the trial's last covered day
stops as (
    select
        patient_id,
        ingredient,
        condition,
        occurred_date as stop_date,
        coalesce(reason, 'unknown') as stop_reason,
        coalesce(source, '') || ':' || event_id as stop_event_id
    from events
    where event_type = 'stopped' and ingredient is not null
),

trial_stops as (
    select
        t.trial_id,
        s.stop_date,
        s.stop_reason,
        s.stop_event_id
    from trials as t
    join stops as s
        on s.patient_id = t.patient_id
        and list_contains(t.ingredients, s.ingredient)
        and (s.condition is null or s.condition = t.condition)
        and s.stop_date between t.end_date - cast(getvariable('stop_reason_window_days') as integer)
            and t.end_date + cast(getvariable('stop_reason_window_days') as integer)
    qualify row_number() over (
        partition by t.trial_id
        order by abs(s.stop_date - t.end_date), s.stop_date desc, s.stop_event_id
    ) = 1
),

patient_observation as (
    select
        patient_id,
        bool_or(end_reason = 'as_of') as observed_at_as_of,
        max(observation_end_date) as last_observed_date
    from observation
    group by all
),

subtypes as (
    select patient_id, condition, occurred_date, occurred_at, event_id, subtype
    from events
    where event_type = 'diagnosed' and subtype is not null and condition is not null
),

trial_subtypes as (
    select
        t.trial_id,
        arg_max(s.subtype, (s.occurred_at, s.event_id))
            filter (where s.occurred_date <= t.start_date) as subtype_as_of_start,
        arg_min(s.subtype, (s.occurred_at, s.event_id))
            filter (where s.occurred_date > t.start_date) as subtype_later
    from trials as t
    join subtypes as s on s.patient_id = t.patient_id and s.condition = t.condition
    group by all
),

assembled as (
    select
        t.*,
        coalesce(c.drug_classes, []) as drug_classes,
        a.adequate_dose_date,
        a.is_dose_adequate,
        coalesce(a.dose_unknown, false) as dose_unknown,
        cy.n_cycles,
        coalesce(e.n_dispensings, 0) as n_dispensings,
        coalesce(e.n_administrations, 0) as n_administrations,
        e.last_dose_date,
        coalesce(e.condition_inferred, false) as condition_inferred,
        coalesce(e.condition_ambiguous, false) as condition_ambiguous,
        s.stop_date as stop_event_date,
        s.stop_reason as stop_event_reason,
        s.stop_event_id,
        lead(t.start_date) over (
            partition by t.patient_id, t.condition order by t.start_date, t.trial_seq
        ) as next_trial_start_date,
        coalesce(o.observed_at_as_of, false) as observed_at_as_of,
        o.last_observed_date,
        coalesce(st.subtype_as_of_start, st.subtype_later) as subtype,
        case
            when st.subtype_as_of_start is not null then 'as_of_start'
            when st.subtype_later is not null then 'later_diagnosis'
        end as subtype_source
    from trials as t
    left join trial_drug_classes as c on c.trial_id = t.trial_id
    left join trial_adequacy as a on a.trial_id = t.trial_id
    left join trial_cycles as cy on cy.trial_id = t.trial_id
    left join exposure_summary as e on e.trial_id = t.trial_id
    left join trial_stops as s on s.trial_id = t.trial_id
    left join patient_observation as o on o.patient_id = t.patient_id
    left join trial_subtypes as st on st.trial_id = t.trial_id
),

with_status as (
    select
        *,
        not never_dispensed
            and stop_event_id is null
            and next_dispensed_trial_start_date is null
            and observed_at_as_of
            and end_date >= getvariable('as_of_date')
                - cast(getvariable('trial_gap_days') as integer)
            as is_ongoing
    from assembled
),

final as (
    select
        trial_id,
        patient_id,
        condition,
        trial_seq,
        regimen_key,
        ingredients,
        drug_classes,
        is_combination,
        start_date,
        end_date,
        is_ongoing,
        end_date - start_date + 1 as duration_days,
        greatest(
            least(end_date, getvariable('as_of_date'), coalesce(last_observed_date, end_date))
            - start_date + 1, 0) as elapsed_days,
        adequate_dose_date,
        coalesce(
            greatest(
                least(end_date, getvariable('as_of_date'), coalesce(last_observed_date, end_date))
                - adequate_dose_date + 1, 0),
            0
        ) as days_at_adequate_dose,
        is_dose_adequate,
        dose_unknown,
        n_cycles,
        n_dispensings,
        n_administrations,
        case
            when is_ongoing then null
            else coalesce(stop_event_reason, 'unknown')
        end as stop_reason,
        case
            when is_ongoing then null
            else coalesce(stop_event_date, end_date)
        end as stop_date,
        stop_event_id,
        case
            when never_dispensed then 'never_dispensed'
            when is_ongoing then 'ongoing'
            when stop_event_id is not null then 'stopped'
            when next_dispensed_trial_start_date - end_date - 1
                <= getvariable('trial_gap_days') then 'regimen_change'
            when not observed_at_as_of
                and end_date >= last_observed_date - cast(getvariable('trial_gap_days') as integer)
                then 'observation_end'
            else 'gap'
        end as end_cause,
        never_dispensed,
        last_dose_date,
        next_trial_start_date,
        subtype,
        subtype_source,
        condition_inferred,
        condition_ambiguous
    from with_status
)

select * from final
