-- adherence_trial: did the patient have the drugs of a treatment trial in hand? PQA proportion of
-- days covered (PDC) in the trial's assessment window, with MPR for comparison. The
-- non-adherence gate of the refractory classification (clinical-rules.md 5, class 3).
--
-- Grain: one row per treatment trial.
-- Input: treatment_trials, adherence_supply (dispensings shifted the PQA way and pushed out of
-- inpatient stays; administrations), adherence_inpatient_periods, observation_periods.
-- Rules (PQA PDC specification and calculator; CMS Part D inpatient adjustment;
-- clinical-rules.md 3.1, 3.2):
--   * window: pdc_trial_window_start (trial start, or the first day at adequate dose) ..
--     pdc_trial_window_end (trial end = last covered day, or the evaluation date while the trial
--     is ongoing), truncated at the evaluation date and at the end of the observation period
--     holding the window start (disenrolment, death);
--   * a day is covered when a drug of the trial is in hand (pdc_combination_coverage = any: the
--     PQA class-level rule, overlapping days counted once) or when all of them are (all);
--     fills of the same drug shift, different drugs do not (adherence_supply);
--   * inpatient/SNF days leave the denominator (window_days counts outpatient days) and supply
--     is not used up during a stay (pdc_adjust_for_inpatient_stays);
--   * coverage is truncated at the window end, so covered_days <= window_days;
--   * PDC = covered_days / window_days; adherent when PDC >= pdc_adherence_threshold (0.80), or
--     pdc_adherence_threshold_arv (0.90) when a drug class of the trial is antiretroviral;
--   * MPR = days supplied by the trial's drugs' fills dated in the window / window_days (can
--     exceed 1; for comparison only);
--   * adherence_basis: dispensings when the trial has any, else administrations (oncology
--     cycles: coverage from administration dates .. end of cycle), else no_supply_data (PDC NULL).
with

trials as (
    select * from treatment_trials
),

supply as (
    select * from adherence_supply
),

periods as (
    select * from adherence_inpatient_periods
),

observation as (
    select * from observation_periods
),

trial_windows as (
    select
        t.trial_id,
        t.patient_id,
        t.condition,
        t.ingredients,
        t.drug_classes,
        t.n_dispensings,
        t.n_administrations,
        case
            when getvariable('pdc_trial_window_start') = 'adequate_dose_date'
                then coalesce(t.adequate_dose_date, t.start_date)
            else t.start_date
        end as window_start_date,
        case
            when getvariable('pdc_trial_window_end') = 'as_of_if_ongoing' and t.is_ongoing
                then getvariable('as_of_date')
            else coalesce(t.end_date, getvariable('as_of_date'))
        end as planned_end_date
    from trials as t
),

observation_ends as (
    select w.trial_id, min(o.observation_end_date) as observation_end_date
    from trial_windows as w
    join observation as o
        on o.patient_id = w.patient_id
        and w.window_start_date between o.observation_start_date and o.observation_end_date
    group by w.trial_id
),

truncated as (
    select
        w.* exclude (planned_end_date),
        least(w.planned_end_date, getvariable('as_of_date'),
              coalesce(e.observation_end_date, getvariable('as_of_date'))) as window_end_date
    from trial_windows as w
    left join observation_ends as e using (trial_id)
),

window_start_outpatient as (
    select
        w.*,
        outpatient_day(w.window_start_date, p.period_start_date, p.period_end_date,
                       p.inpatient_days_before) as start_outpatient_day
    from truncated as w
    asof left join periods as p
        on p.patient_id = w.patient_id and w.window_start_date >= p.period_start_date
),

window_bounds as (
    select
        w.*,
        outpatient_day(w.window_end_date + 1, p.period_start_date, p.period_end_date,
                       p.inpatient_days_before) as after_end_outpatient_day
    from window_start_outpatient as w
    asof left join periods as p
        on p.patient_id = w.patient_id and w.window_end_date + 1 >= p.period_start_date
),

-- the trial's drugs' supply, clipped to the window (outpatient days)
clipped as (
    select
        w.trial_id,
        s.ingredient,
        greatest(s.covered_start_day, w.start_outpatient_day) as start_day,
        least(s.covered_end_day, w.after_end_outpatient_day - 1) as end_day
    from window_bounds as w
    join supply as s
        on s.patient_id = w.patient_id and list_contains(w.ingredients, s.ingredient)
    where w.window_end_date >= w.window_start_date
        and greatest(s.covered_start_day, w.start_outpatient_day)
            <= least(s.covered_end_day, w.after_end_outpatient_day - 1)
),

-- any (the default): the days each interval adds to those before it; summed, the days with
-- any of the trial's drugs in hand, overlaps counted once (macro in transforms/macros/adherence.sql)
any_new_days as (
    select
        trial_id,
        days_added(start_day, end_day, max(end_day) over (
            partition by trial_id order by start_day, end_day
            rows between unbounded preceding and 1 preceding)) as new_days
    from clipped
    where getvariable('pdc_combination_coverage') = 'any'
),

any_coverage as (
    select trial_id, cast(sum(new_days) as integer) as covered_days
    from any_new_days
    group by trial_id
),

-- all: merge each drug's intervals, so a day counts each drug once
drug_island_flags as (
    select
        *,
        case
            when start_day <= max(end_day) over (
                partition by trial_id, ingredient order by start_day, end_day
                rows between unbounded preceding and 1 preceding) + 1
                then 0 else 1
        end as starts_island
    from clipped
    where getvariable('pdc_combination_coverage') = 'all'
),

drug_islands as (
    select trial_id, ingredient, min(start_day) as start_day, max(end_day) as end_day
    from (
        select
            *,
            sum(starts_island) over (
                partition by trial_id, ingredient order by start_day, end_day) as island
        from drug_island_flags
    )
    group by trial_id, ingredient, island
),

-- sweep: how many of the trial's drugs are in hand from each change point on
change_points as (
    select trial_id, start_day as day, 1 as delta from drug_islands
    union all
    select trial_id, end_day + 1 as day, -1 as delta from drug_islands
),

drug_counts as (
    select
        trial_id,
        day,
        sum(sum(delta)) over (partition by trial_id order by day) as n_drugs_in_hand,
        lead(day) over (partition by trial_id order by day) as next_day
    from change_points
    group by trial_id, day
),

all_coverage as (
    select
        c.trial_id,
        cast(sum(c.next_day - c.day) as integer) as covered_days
    from drug_counts as c
    join window_bounds as w using (trial_id)
    where c.next_day is not null
        and c.n_drugs_in_hand >= len(list_distinct(w.ingredients))
    group by c.trial_id
),

coverage as (
    select * from any_coverage
    union all
    select * from all_coverage
),

fills_in_window as (
    select
        w.trial_id,
        count(*) as n_fills,
        sum(s.days_supply) as supply_days
    from window_bounds as w
    join supply as s
        on s.patient_id = w.patient_id
        and list_contains(w.ingredients, s.ingredient)
        and s.origin = 'dispensed'
        and s.fill_date between w.window_start_date and w.window_end_date
    group by w.trial_id
),

arv_classes as (
    select list(trim(s)) as classes
    from unnest(string_split(getvariable('pdc_arv_drug_classes'), ',')) as t(s)
),

measured as (
    select
        w.*,
        case
            when coalesce(w.n_dispensings, 0) > 0 then 'dispensings'
            when coalesce(w.n_administrations, 0) > 0 then 'administrations'
            else 'no_supply_data'
        end as adherence_basis,
        greatest(w.after_end_outpatient_day - w.start_outpatient_day, 0) as window_days,
        greatest(w.window_end_date - w.window_start_date + 1, 0) as calendar_days,
        coalesce(c.covered_days, 0) as covered_days,
        coalesce(f.n_fills, 0) as n_fills_in_window,
        f.supply_days,
        case when len(list_intersect(w.drug_classes, a.classes)) > 0
            then cast(getvariable('pdc_adherence_threshold_arv') as double)
            else cast(getvariable('pdc_adherence_threshold') as double) end as adherence_threshold
    from window_bounds as w
    cross join arv_classes as a
    left join coverage as c using (trial_id)
    left join fills_in_window as f using (trial_id)
),

final as (
    select
        trial_id,
        patient_id,
        condition,
        adherence_basis,
        case when adherence_basis <> 'no_supply_data'
            then covered_days / nullif(window_days, 0) end as pdc,
        case when adherence_basis = 'dispensings'
            then coalesce(supply_days, 0) / nullif(window_days, 0) end as mpr,
        window_start_date as pdc_window_start_date,
        window_end_date as pdc_window_end_date,
        covered_days,
        window_days,
        calendar_days - window_days as inpatient_days,
        n_fills_in_window,
        adherence_threshold,
        case when adherence_basis <> 'no_supply_data'
            then covered_days / nullif(window_days, 0) >= adherence_threshold end as is_adherent
    from measured
)

select * from final
