-- adherence_supply: when each dispensing's supply is actually in hand, the PQA way, and when
-- each administration covers the patient, on the outpatient-day scale of the PDC.
--
-- Grain: one row per dispensing or administration (exposures.source_exposure_id).
-- Input: exposures (one dispensing or administration per source_exposure_id, possibly split
-- into dose segments: exposure_start_date = fill date, exposure_end_date = last day supplied,
-- earlier than fill + days_supply - 1 when a `stopped` ended it), adherence_inpatient_periods.
-- Rules (PQA PDC specification and calculator test cases; CMS Part D inpatient adjustment;
-- clinical-rules.md 3.1):
--   * a fill on day d with s days covers d .. d+s-1 (PQA convention, clinical-rules.md 0);
--   * a refill of the same drug (ingredient) before the previous supply ends starts the day
--     after it ends (same-drug shifting); different drugs never shift each other;
--   * supply is not used during an inpatient/SNF stay: what falls inside a stay is pushed to
--     after discharge, which can push later fills of the same drug further (cascading).
-- How: every date is mapped to its outpatient day o(d) = days since 1970-01-01 minus inpatient
-- days before d (a stay day maps to the day after discharge; adherence_inpatient_periods). On
-- that scale stays do not exist, so the cascade is just same-drug shifting there, in closed form
-- (clinical-rules.md 3.1): with cum_i = s_1 + .. + s_i over the drug's fills in order,
--     end_i = cum_i - 1 + max_{j<=i} (o(fill_j) - cum_{j-1}),   start_i = end_i - s_i + 1
-- which is end_i = max(o(fill_i), end_i-1 + 1) + s_i - 1 unrolled. This equals shifting in
-- calendar time with a second pass that pushes supply out of stays and re-shifts, repeated until
-- nothing moves (each stay day delays all supply not yet used by one day). Administrations cover
-- their start_date .. end_date, minus any stay days (no shifting).
with

exposures_in as (
    select * from exposures
),

periods as (
    select * from adherence_inpatient_periods
),

-- one row per dispensing / administration: exposures splits them into dose segments and ends
-- them at a `stopped` inside (stop_truncates_supply), so the supply is the exposure's days
supplies as (
    select
        source_exposure_id as exposure_id,
        patient_id,
        ingredient,
        origin,
        exposure_start_date as fill_date,
        exposure_end_date - exposure_start_date + 1 as days_supply,
        exposure_end_date as end_date,
        source_event_id
    from exposures_in
    -- only dispensed and administered supply is evidence that the drug was available
    where origin in ('dispensed', 'administered')
        and dose_segment = 1
        and exposure_start_date is not null
),

positive_supplies as (
    select * from supplies where days_supply > 0
),

-- only patients with an inpatient period need the period lookups (ASOF joins sort their rows);
-- for everyone else the outpatient day is the calendar day
stay_patients as (
    select distinct patient_id from periods
),

stay_supplies as (
    select * from positive_supplies semi join stay_patients using (patient_id)
),

-- outpatient day of the fill / first day, and of the day after the last administered day
stay_outpatient_start as (
    select
        s.*,
        inpatient_days_before_day(s.fill_date, p.period_start_date, p.period_end_date,
                                  p.inpatient_days_before) as start_inpatient_days
    from stay_supplies as s
    asof left join periods as p
        on p.patient_id = s.patient_id and s.fill_date >= p.period_start_date
),

stay_outpatient_days as (
    select
        s.patient_id,
        s.exposure_id,
        s.start_inpatient_days,
        inpatient_days_before_day(s.end_date + 1, p.period_start_date, p.period_end_date,
                                  p.inpatient_days_before) as after_end_inpatient_days
    from stay_outpatient_start as s
    asof left join periods as p
        on p.patient_id = s.patient_id and s.end_date + 1 >= p.period_start_date
),

outpatient_end as (
    select
        s.*,
        date_diff('day', date '1970-01-01', s.fill_date) - coalesce(o.start_inpatient_days, 0)
            as start_outpatient_day,
        date_diff('day', date '1970-01-01', s.end_date + 1)
            - coalesce(o.after_end_inpatient_days, 0) as after_end_outpatient_day
    from positive_supplies as s
    left join stay_outpatient_days as o using (patient_id, exposure_id)
),

dispensed_running as (
    select
        *,
        sum(days_supply) over w as cum_supply
    from outpatient_end
    where origin = 'dispensed'
    window w as (
        partition by patient_id, ingredient order by fill_date, exposure_id
        rows unbounded preceding)
),

dispensed_shifted as (
    select
        *,
        cum_supply - 1 + max(start_outpatient_day - (cum_supply - days_supply)) over (
            partition by patient_id, ingredient order by fill_date, exposure_id
            rows unbounded preceding) as covered_end_day
    from dispensed_running
),

covered as (
    select
        exposure_id, patient_id, ingredient, origin, fill_date, days_supply, source_event_id,
        start_outpatient_day,
        cast(covered_end_day - days_supply + 1 as bigint) as covered_start_day,
        cast(covered_end_day as bigint) as covered_end_day
    from dispensed_shifted
    union all
    select
        exposure_id, patient_id, ingredient, origin, fill_date, days_supply, source_event_id,
        start_outpatient_day,
        cast(start_outpatient_day as bigint) as covered_start_day,
        cast(after_end_outpatient_day - 1 as bigint) as covered_end_day
    from outpatient_end
    where origin = 'administered'
),

-- back to calendar dates, for reading: outpatient day o lies after every period whose
-- outpatient_day <= o (again only patients with a period need the lookup)
stay_covered as (
    select * from covered semi join stay_patients using (patient_id)
),

stay_calendar_start as (
    select
        c.*,
        p.inpatient_days_before + p.inpatient_days as start_inpatient_days
    from stay_covered as c
    asof left join periods as p
        on p.patient_id = c.patient_id and c.covered_start_day >= p.outpatient_day
),

stay_calendar_days as (
    select
        c.patient_id,
        c.exposure_id,
        c.start_inpatient_days,
        p.inpatient_days_before + p.inpatient_days as end_inpatient_days
    from stay_calendar_start as c
    asof left join periods as p
        on p.patient_id = c.patient_id and c.covered_end_day >= p.outpatient_day
),

calendar_end as (
    select
        c.*,
        date '1970-01-01'
            + cast(c.covered_start_day + coalesce(d.start_inpatient_days, 0) as integer)
            as covered_start_date,
        date '1970-01-01'
            + cast(c.covered_end_day + coalesce(d.end_inpatient_days, 0) as integer)
            as covered_end_date
    from covered as c
    left join stay_calendar_days as d using (patient_id, exposure_id)
),

final as (
    select
        exposure_id,
        patient_id,
        ingredient,
        origin,
        fill_date,
        days_supply,
        covered_start_day,
        covered_end_day,
        covered_start_date,
        covered_end_date,
        cast(covered_start_day - start_outpatient_day as integer) as days_shifted,
        source_event_id
    from calendar_end
)

select * from final
