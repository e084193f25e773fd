-- exposures: every therapy exposure interval, dose-homogeneous, with its indication.
--
-- Grain: one row per therapy exposure interval x dose segment (patient x exposure_id). A
-- dispensing, an administration or a started/stopped pair is one exposure (source_exposure_id);
-- a `dose_changed` inside its interval splits it into dose segments (dose_segment 1, 2, ...), so
-- every row has one daily dose and the first day at an adequate dose is a segment start.
-- Inputs: events_current (therapy and `died` events), ref_drugs, indication_candidates.
-- Intervals are inclusive [start_date, end_date] (docs/dev/tables.md).
--
-- Coverage (clinical-rules.md section 0; architecture.md canonical conventions):
--   * dispensed: a fill on day d with days_supply s covers d .. d+s-1 (PQA calculator cases).
--     Fills without a positive days_supply are left out (attrition).
--   * administered: the drug's cycle_days (ref_drugs, supply = cycle) or, for other drugs,
--     $administration_default_days (OMOP: end = start + 1 when nothing else is known).
--   * started: covered until the first `stopped` of the same ingredient on or after the start,
--     else open until as_of_date.
--   * every interval ends on the patient's death day at the latest (deviation from OMOP, which
--     keeps supply past death: nobody takes a drug after death; drug_eras inherit it).
--   * a `stopped` dated inside a dispensed/administered interval ends it on the stop date when
--     $stop_truncates_supply (left-over supply is not taken); its reason becomes stop_reason
--     (absent reason = `unknown`, contract). Stops match by ingredient, whatever their condition.
-- Doses: daily_dose is mg/day (mass units converted; a NULL dose_unit is read as mg, the
-- contract's convention for daily doses). Administrations carry dose_per_administration and no
-- daily dose. A `dose_changed` on day x splits a dispensed or started interval covering x into
-- [start, x-1] and [x, end] (supply length is not re-computed: fills are not re-timed by dose).
-- A segment without its own dose takes the latest known daily dose of the same ingredient
-- (dose_changed, dispensed or started) when $carry_forward_dose (dose_source says which).
--
-- Indication (condition) when the event has none: the candidates of indication_candidates
-- (same_drug_events, else indication_and_diagnosis, else sole_indication; rules there).
-- Several candidates: the condition diagnosed most recently on or before the exposure start,
-- else the earliest diagnosed after it, else alphabetical; flagged condition_ambiguous.
-- No candidate: condition NULL (such exposures stay here and in drug_eras; trials need one).
with

events as (
    select * from events_current
),

drugs as (
    select * from ref_drugs
),

candidates as (
    select * from indication_candidates
),

therapy as (
    select
        patient_id,
        source,
        event_id,
        event_type,
        occurred_at,
        occurred_date,
        ingredient,
        condition,
        dose,
        dose_unit,
        days_supply,
        route,
        regimen,
        cycle,
        reason,
        -- mass units only; other units (mg/m2, mg/kg, ml) give no mg/day figure
        dose * case
            when dose_unit is null or dose_unit = 'mg' then 1.0
            when dose_unit = 'g' then 1000.0
            when dose_unit in ('mcg', 'ug', 'µg') then 0.001
        end as dose_mg
    from events
    where family = 'therapy' and ingredient is not null
),

deaths as (
    select patient_id, min(occurred_date) as death_date
    from events
    where event_type = 'died'
    group by all
),

stops as (
    select
        patient_id,
        ingredient,
        occurred_date as stop_date,
        coalesce(reason, 'unknown') as stop_reason,
        coalesce(source, '') || ':' || event_id as stop_event_id
    from therapy
    where event_type = 'stopped'
),

-- one stop per patient x ingredient x day (the first recorded wins)
stops_by_day as (
    select
        patient_id,
        ingredient,
        stop_date,
        arg_min(stop_reason, stop_event_id) as stop_reason,
        min(stop_event_id) as stop_event_id
    from stops
    group by all
),

-- the interval each therapy event nominally covers, before stops and dose changes
raw_intervals as (
    select
        t.*,
        coalesce(t.source, '') || ':' || t.event_id as source_exposure_id,
        case t.event_type
            when 'dispensed' then 'dispensed'
            when 'administered' then 'administered'
            else 'started_stopped'
        end as origin,
        d.supply,
        x.death_date,
        t.occurred_date as start_date,
        case t.event_type
            when 'dispensed' then t.occurred_date + cast(t.days_supply as integer) - 1
            when 'administered' then t.occurred_date + cast(coalesce(
                case when d.supply = 'cycle' then d.cycle_days end,
                getvariable('administration_default_days')
            ) as integer) - 1
            else getvariable('as_of_date')
        end as raw_end_date
    from therapy as t
    left join drugs as d on d.ingredient = t.ingredient
    left join deaths as x on x.patient_id = t.patient_id
    where (t.event_type = 'administered'
        or t.event_type = 'started'
        -- a fill without a positive supply covers nothing (counted in attrition)
        or (t.event_type = 'dispensed' and t.days_supply >= 1))
        -- an event after the patient's death covers nothing
        and (x.death_date is null or t.occurred_date <= x.death_date)
),

-- nobody takes a drug after death: every interval ends on the death day at the latest
nominal_intervals as (
    select
        * exclude (raw_end_date, death_date),
        case when death_date < raw_end_date then death_date else raw_end_date end
            as nominal_end_date
    from raw_intervals
),

-- the first stop of the same ingredient inside the nominal interval (started: its end)
first_stop_inside as (
    select
        n.patient_id,
        n.source_exposure_id,
        n.ingredient,
        min(s.stop_date) as stop_date
    from nominal_intervals as n
    join stops_by_day as s
        on s.patient_id = n.patient_id
        and s.ingredient = n.ingredient
        and s.stop_date between n.start_date and n.nominal_end_date
    group by all
),

intervals as (
    select
        n.*,
        f.stop_date is not null as is_stopped_inside,
        case
            when f.stop_date is not null
                and (n.origin = 'started_stopped' or getvariable('stop_truncates_supply'))
                then f.stop_date
            else n.nominal_end_date
        end as end_date,
        s.stop_reason,
        s.stop_event_id,
        n.origin = 'started_stopped' and f.stop_date is null as is_open_ended
    from nominal_intervals as n
    left join first_stop_inside as f
        on f.patient_id = n.patient_id and f.source_exposure_id = n.source_exposure_id
    left join stops_by_day as s
        on s.patient_id = f.patient_id and s.ingredient = f.ingredient and s.stop_date = f.stop_date
),

dose_changes as (
    select patient_id, ingredient, occurred_date as change_date, dose_mg
    from therapy
    where event_type = 'dose_changed' and dose_mg is not null
    qualify row_number() over (
        partition by patient_id, ingredient, occurred_date order by occurred_at desc, event_id desc
    ) = 1
),

-- dose changes strictly inside a dispensed or started interval split it
change_points as (
    select i.patient_id, i.source_exposure_id, c.change_date, c.dose_mg as change_dose_mg
    from intervals as i
    join dose_changes as c
        on c.patient_id = i.patient_id
        and c.ingredient = i.ingredient
        and c.change_date > i.start_date
        and c.change_date <= i.end_date
    where i.origin <> 'administered'
),

split_segment_starts as (
    select patient_id, source_exposure_id, change_date as segment_start_date, change_dose_mg
    from change_points
    union all
    select distinct patient_id, source_exposure_id, null, null
    from change_points
),

split_segments as (
    select
        i.*,
        coalesce(s.segment_start_date, i.start_date) as segment_start_date,
        s.change_dose_mg
    from split_segment_starts as s
    join intervals as i
        on i.patient_id = s.patient_id and i.source_exposure_id = s.source_exposure_id
),

segments as (
    -- the common case: no dose change inside, one segment
    select
        i.*,
        i.start_date as segment_start_date,
        i.end_date as segment_end_date,
        1 as dose_segment,
        1 as n_dose_segments,
        cast(null as double) as change_dose_mg
    from intervals as i
    anti join change_points as c
        on c.patient_id = i.patient_id and c.source_exposure_id = i.source_exposure_id
    union all by name
    select
        * exclude (change_dose_mg),
        coalesce(lead(segment_start_date) over w - 1, end_date) as segment_end_date,
        row_number() over w as dose_segment,
        count(*) over (partition by patient_id, source_exposure_id) as n_dose_segments,
        change_dose_mg
    from split_segments
    window w as (partition by patient_id, source_exposure_id order by segment_start_date)
),

-- segments without a dose of their own may carry the latest known dose forward
undosed_segments as (
    select patient_id, source_exposure_id, ingredient, start_date as segment_start_date
    from intervals
    where origin <> 'administered' and dose_mg is null and getvariable('carry_forward_dose')
),

dose_timeline as (
    select t.patient_id, t.ingredient, t.occurred_date as dose_date, t.dose_mg
    from therapy as t
    semi join undosed_segments as u
        on u.patient_id = t.patient_id and u.ingredient = t.ingredient
    where t.event_type in ('dose_changed', 'dispensed', 'started') and t.dose_mg is not null
    qualify row_number() over (
        partition by t.patient_id, t.ingredient, t.occurred_date
        order by (t.event_type = 'dose_changed') desc, t.occurred_at desc, t.event_id desc
    ) = 1
),

carried_doses as (
    select u.patient_id, u.source_exposure_id, k.dose_mg as carried_dose_mg
    from undosed_segments as u
    asof join dose_timeline as k
        on k.patient_id = u.patient_id
        and k.ingredient = u.ingredient
        and k.dose_date <= u.segment_start_date
),

dosed_segments as (
    select
        g.*,
        case
            when g.origin = 'administered' then null
            when g.dose_segment > 1 then g.change_dose_mg
            when g.dose_mg is not null then g.dose_mg
            else k.carried_dose_mg
        end as daily_dose,
        case
            when g.origin = 'administered' then null
            when g.dose_segment > 1 then 'dose_changed'
            when g.dose_mg is not null then 'event'
            when k.carried_dose_mg is not null then 'carried_forward'
        end as dose_source
    from segments as g
    left join carried_doses as k
        on k.patient_id = g.patient_id
        and k.source_exposure_id = g.source_exposure_id
        and g.dose_segment = 1
),

-- indication inference (the candidates: indication_candidates) --------------------------------
needs_condition as (
    select patient_id, source_exposure_id, ingredient, start_date
    from intervals
    where condition is null
),

-- several candidates: per exposure, the latest diagnosed on or before its start, else the
-- earliest diagnosed after it, else alphabetical (macro in transforms/macros/indication.sql)
ambiguous_choices as (
    select
        n.patient_id,
        n.source_exposure_id,
        arg_min(
            c.condition,
            indication_preference(c.first_diagnosed_date, n.start_date, c.condition)
        ) as condition
    from needs_condition as n
    join candidates as c
        on c.patient_id = n.patient_id and c.ingredient = n.ingredient and c.n_candidates > 1
    group by all
),

chosen_condition as (
    select
        n.patient_id,
        n.source_exposure_id,
        coalesce(a.condition, c.condition) as condition,
        c.condition_source,
        c.n_candidates > 1 as condition_ambiguous
    from needs_condition as n
    join candidates as c
        on c.patient_id = n.patient_id and c.ingredient = n.ingredient
    left join ambiguous_choices as a
        on a.patient_id = n.patient_id and a.source_exposure_id = n.source_exposure_id
    -- one row per exposure: the chosen candidate (or the only one)
    where c.n_candidates = 1 or c.condition = a.condition
),

final as (
    select
        s.source_exposure_id
        || case when s.dose_segment > 1 then '#' || s.dose_segment else '' end as exposure_id,
        s.patient_id,
        s.ingredient,
        coalesce(s.condition, c.condition) as condition,
        case when s.condition is not null then 'event' else c.condition_source end
            as condition_source,
        coalesce(c.condition_ambiguous, false) as condition_ambiguous,
        s.origin,
        s.supply,
        s.segment_start_date as start_date,
        s.segment_end_date as end_date,
        s.segment_end_date - s.segment_start_date + 1 as days_covered,
        s.daily_dose,
        s.dose_source,
        case when s.origin = 'administered' then s.dose end as dose_per_administration,
        s.dose_unit,
        s.route,
        s.regimen,
        s.cycle,
        s.source,
        s.event_id as source_event_id,
        s.source_exposure_id,
        s.dose_segment,
        s.n_dose_segments,
        s.start_date as exposure_start_date,
        s.end_date as exposure_end_date,
        s.nominal_end_date,
        s.days_supply,
        s.is_open_ended,
        -- the stop belongs to the segment it ends (the last one)
        case when s.dose_segment = s.n_dose_segments then s.stop_reason end as stop_reason,
        case when s.dose_segment = s.n_dose_segments then s.stop_event_id end as stop_event_id,
        s.is_stopped_inside and s.dose_segment = s.n_dose_segments
            and s.end_date < s.nominal_end_date as is_truncated_by_stop
    from dosed_segments as s
    left join chosen_condition as c
        on c.patient_id = s.patient_id and c.source_exposure_id = s.source_exposure_id
)

select * from final
