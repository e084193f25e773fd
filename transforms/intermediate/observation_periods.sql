-- observation_periods: when each patient's events can be expected to be recorded.
--
-- Grain: one row per patient x observation period. Input: events_current (`enrolled`,
-- `disenrolled`, `died`, and every event for the activity dates).
-- Rules (OMOP OBSERVATION_PERIOD idea; PQA measurement period ends at disenrollment or death):
--   * an `enrolled` event opens a period (a repeated `enrolled` inside an open period is
--     ignored); the next `disenrolled` closes it. On one day, enrolled sorts before disenrolled.
--   * a `disenrolled` before any enrolment closes a period that started at the patient's first
--     event (observation_basis = activity); a patient without enrolment events has one period
--     from the first event (activity).
--   * end = the earliest of disenrolment, death and as_of_date (end_reason says which; a death
--     on the disenrolment day reads `died`); periods starting after death are dropped.
--   * last_activity_date: the latest event of the patient inside the period (the censoring date
--     used for time-to-next-treatment); first_activity_date likewise.
with

events as (
    select * from events_current
),

deaths as (
    select patient_id, min(occurred_date) as death_date
    from events
    where event_type = 'died'
    group by all
),

activity as (
    select patient_id, min(occurred_date) as first_event_date
    from events
    group by all
),

enrolment_events as (
    select
        patient_id,
        occurred_date,
        event_type,
        lag(event_type) over w as previous_type,
        row_number() over w as event_seq
    from events
    where event_type in ('enrolled', 'disenrolled')
    window w as (
        partition by patient_id
        order by occurred_date, (event_type = 'enrolled') desc, occurred_at, event_id
        rows unbounded preceding
    )
),

-- gaps-and-islands: a period starts at an enrolment that follows nothing or a disenrolment
flagged as (
    select
        *,
        event_type = 'enrolled' and (previous_type is null or previous_type = 'disenrolled')
            as starts_period
    from enrolment_events
),

numbered as (
    select
        *,
        sum(case when starts_period then 1 else 0 end) over (
            partition by patient_id order by event_seq rows unbounded preceding
        ) as period_no
    from flagged
),

enrolment_periods as (
    select
        patient_id,
        period_no,
        min(occurred_date) filter (where starts_period) as enrolled_date,
        min(occurred_date) filter (where event_type = 'disenrolled') as disenrolled_date
    from numbered
    group by all
),

periods as (
    -- enrolled periods, and a leading disenrolment before any enrolment
    select
        p.patient_id,
        coalesce(p.enrolled_date, a.first_event_date) as observation_start_date,
        p.disenrolled_date,
        case when p.enrolled_date is null then 'activity' else 'enrollment' end
            as observation_basis
    from enrolment_periods as p
    join activity as a on a.patient_id = p.patient_id
    -- period 0 holds disenrolments before the first enrolment: only its first one counts
    where p.enrolled_date is not null or p.period_no = 0
    union all
    -- patients without enrolment events
    select a.patient_id, a.first_event_date, null, 'activity'
    from activity as a
    anti join enrolment_events as e on e.patient_id = a.patient_id
),

bounded as (
    select
        p.*,
        x.death_date,
        least(
            coalesce(p.disenrolled_date, getvariable('as_of_date')),
            coalesce(x.death_date, getvariable('as_of_date')),
            getvariable('as_of_date')
        ) as observation_end_date
    from periods as p
    left join deaths as x on x.patient_id = p.patient_id
    where x.death_date is null or p.observation_start_date <= x.death_date
),

with_reason as (
    select
        *,
        case
            when observation_end_date = death_date then 'died'
            when observation_end_date = disenrolled_date then 'disenrolled'
            else 'as_of'
        end as end_reason
    from bounded
),

activity_in_period as (
    select
        w.patient_id,
        w.observation_start_date,
        min(e.occurred_date) as first_activity_date,
        max(e.occurred_date) as last_activity_date
    from with_reason as w
    join events as e
        on e.patient_id = w.patient_id
        and e.occurred_date between w.observation_start_date and w.observation_end_date
    group by all
),

final as (
    select
        w.patient_id,
        w.observation_start_date,
        w.observation_end_date,
        w.end_reason,
        w.observation_basis,
        w.death_date,
        a.first_activity_date,
        a.last_activity_date,
        w.observation_end_date - w.observation_start_date + 1 as observation_days
    from with_reason as w
    left join activity_in_period as a
        on a.patient_id = w.patient_id and a.observation_start_date = w.observation_start_date
)

select * from final
