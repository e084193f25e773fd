-- adherence_inpatient_periods: each patient's inpatient days as disjoint periods, with the count
-- of inpatient days before each, to move between calendar days and outpatient days.
--
-- Grain: one row per patient x merged inpatient period (overlapping or adjacent stays merged).
-- Input: inpatient_stays (stay_start_date .. stay_end_date inclusive, setting).
-- Source: CMS Part D Star Ratings PDC adjustment for inpatient and SNF stays (from 2013):
-- stay days leave the PDC denominator and supply is not used up during a stay
-- (clinical-rules.md 3.1 item 7; Chang & Gillespie, SAS 3560-2015). Stays count only when
-- pdc_adjust_for_inpatient_stays and their setting is in pdc_inpatient_settings.
-- The outpatient day of calendar day d is d - (inpatient days before d); every day of a period
-- maps to the outpatient day of the day after discharge. adherence_supply and the PDC tables
-- use it so that supply is consumed only on outpatient days.
with

stays as (
    select * from inpatient_stays
),

counted_stays as (
    select
        patient_id,
        stay_start_date,
        greatest(stay_start_date, stay_end_date) as stay_end_date
    from stays
    where getvariable('pdc_adjust_for_inpatient_stays')
        and setting in (
            select trim(s) from unnest(string_split(getvariable('pdc_inpatient_settings'), ',')) as t(s)
        )
        and stay_start_date is not null
),

period_flags as (
    select
        *,
        -- a stay starts a new period unless it overlaps or touches an earlier one
        case
            when stay_start_date <= max(stay_end_date) over (
                partition by patient_id order by stay_start_date, stay_end_date
                rows between unbounded preceding and 1 preceding) + 1
                then 0 else 1
        end as starts_period
    from counted_stays
),

period_numbers as (
    select
        *,
        sum(starts_period) over (
            partition by patient_id order by stay_start_date, stay_end_date
        ) as period_seq
    from period_flags
),

periods as (
    select
        patient_id,
        cast(period_seq as integer) as period_seq,
        min(stay_start_date) as period_start_date,
        max(stay_end_date) as period_end_date,
        count(*) as n_stays
    from period_numbers
    group by patient_id, period_seq
),

final as (
    select
        patient_id,
        period_seq,
        period_start_date,
        period_end_date,
        cast(period_end_date - period_start_date + 1 as integer) as inpatient_days,
        cast(coalesce(sum(period_end_date - period_start_date + 1) over (
            partition by patient_id order by period_seq
            rows between unbounded preceding and 1 preceding), 0) as integer) as inpatient_days_before,
        -- the outpatient day every day of the period maps to (days since 1970-01-01 minus the
        -- inpatient days before the period)
        cast(date_diff('day', date '1970-01-01', period_start_date)
            - coalesce(sum(period_end_date - period_start_date + 1) over (
                partition by patient_id order by period_seq
                rows between unbounded preceding and 1 preceding), 0) as integer) as outpatient_day,
        n_stays
    from periods
)

select * from final
