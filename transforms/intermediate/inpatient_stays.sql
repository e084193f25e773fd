-- inpatient_stays: periods a patient spent in an inpatient or skilled-nursing setting.
--
-- Grain: one row per patient x stay (admission day). Input: events_current (`admitted`,
-- `discharged`, `died`). Dates are inclusive: a stay admitted on day a and discharged on day b
-- covers a .. b (both days count as inpatient days for the PDC adjustment).
-- Rules (CMS Part D PDC inpatient/SNF adjustment, clinical-rules.md 3.1 item 7):
--   * admissions with a setting in $inpatient_stay_settings (no setting = inpatient) open a stay;
--     several admissions on one day are one stay (the first recorded gives the setting);
--   * the stay ends on the first discharge on or after the admission (discharges of other
--     settings are ignored) - but never after the day before the next admission: an admission
--     before the discharge (e.g. hospital -> SNF transfer) ends the stay the day before it
--     (end_reason `transferred`), so stays never overlap;
--   * an admission without a discharge stays open until death or as_of_date (is_open).
-- Discharges without an admission are left out (attrition).
with

events as (
    select * from events_current
),

stay_settings as (
    select trim(s) as setting
    from unnest(string_split(getvariable('inpatient_stay_settings'), ',')) as t(s)
),

deaths as (
    select patient_id, min(occurred_date) as death_date
    from events
    where event_type = 'died'
    group by all
),

admissions as (
    select
        patient_id,
        occurred_date as stay_start_date,
        coalesce(setting, 'inpatient') as setting,
        coalesce(source, '') || ':' || event_id as admission_event_id
    from events
    where event_type = 'admitted'
        and coalesce(setting, 'inpatient') in (select setting from stay_settings)
    qualify row_number() over (
        partition by patient_id, occurred_date order by occurred_at, recorded_at, event_id
    ) = 1
),

discharges as (
    select
        patient_id,
        occurred_date as discharge_date,
        coalesce(source, '') || ':' || event_id as discharge_event_id
    from events
    where event_type = 'discharged'
        and coalesce(setting, 'inpatient') in (select setting from stay_settings)
    qualify row_number() over (
        partition by patient_id, occurred_date order by occurred_at, recorded_at, event_id
    ) = 1
),

admissions_with_next as (
    select
        *,
        lead(stay_start_date) over (partition by patient_id order by stay_start_date)
            as next_admission_date
    from admissions
),

-- the first discharge on or after the admission day
paired as (
    select a.*, d.discharge_date, d.discharge_event_id
    from admissions_with_next as a
    asof left join discharges as d
        on d.patient_id = a.patient_id
        and d.discharge_date >= a.stay_start_date
),

ends as (
    select
        p.*,
        x.death_date,
        case
            when p.discharge_date is not null
                and (p.next_admission_date is null or p.discharge_date < p.next_admission_date)
                then 'discharged'
            when p.next_admission_date is not null then 'transferred'
            when x.death_date >= p.stay_start_date then 'died'
            else 'as_of'
        end as end_reason
    from paired as p
    left join deaths as x on x.patient_id = p.patient_id
),

final as (
    select
        patient_id,
        stay_start_date,
        case end_reason
            when 'discharged' then discharge_date
            when 'transferred' then next_admission_date - 1
            when 'died' then death_date
            else getvariable('as_of_date')
        end as stay_end_date,
        setting,
        end_reason,
        end_reason in ('died', 'as_of') as is_open,
        admission_event_id,
        case when end_reason = 'discharged' then discharge_event_id end as discharge_event_id
    from ends
)

select *, stay_end_date - stay_start_date + 1 as stay_days from final
