-- status_changes: patients whose status differs between the previous status snapshot and this
-- build, with the events that changed it: the event-sourced audit trail ("why was this patient
-- flagged in March but not in April?").
--
-- Grain: one row per patient x condition whose status (or misdiagnosis flag) changed between
-- the previous as-of date and this one, or who appeared. Inputs: refractory_status (now),
-- refractory_status_previous (the latest snapshot before this as-of date, provided by the
-- runner from <warehouse>/status_history; empty on a first build), log_events (every event,
-- corrections included, recorded after the previous as-of date).
with

now_status as (
    select * from refractory_status
),

previous as (
    select * from refractory_status_previous
),

previous_date as (
    select max(as_of_date) as previous_as_of_date from previous
),

changed as (
    select
        coalesce(n.patient_id, p.patient_id) as patient_id,
        coalesce(n.condition, p.condition) as condition,
        p.as_of_date as previous_as_of_date,
        n.as_of_date,
        p.status as previous_status,
        n.status,
        p.misdiagnosis_suspected as previous_misdiagnosis_suspected,
        n.misdiagnosis_suspected,
        p.n_failures as previous_n_failures,
        n.n_failures,
        n.evidence
    from now_status as n
    full join previous as p using (patient_id, condition)
    where p.status is distinct from n.status
        or p.misdiagnosis_suspected is distinct from n.misdiagnosis_suspected
),

-- events recorded after the previous snapshot (what became known in between): the latest
-- status_changes_max_events_listed of them listed in recorded order, all of them counted
new_events as (
    select
        e.patient_id,
        max_by(
            e.event_type || ' ' || cast(e.occurred_at as date)
            || ' (recorded ' || cast(e.recorded_at as date) || ')'
            || coalesce(' ' || coalesce(e.drug, e.measure, e.response, e.revised_to, e.target_event_id, e.condition), ''),
            (e.recorded_at, e.ingest_seq),
            getvariable('status_changes_max_events_listed')
        ) as latest_events,
        count(*) as n_events_since_previous
    from log_events as e
    semi join changed as c on c.patient_id = e.patient_id
    cross join previous_date as d
    where d.previous_as_of_date is null or cast(e.recorded_at as date) > d.previous_as_of_date
    group by e.patient_id
),

new_events_listed as (
    select
        patient_id,
        n_events_since_previous,
        case
            when n_events_since_previous > len(latest_events)
                then '[' || (n_events_since_previous - len(latest_events)) || ' earlier not listed] '
            else ''
        end || array_to_string(list_reverse(latest_events), '; ') as events_since_previous
    from new_events
),

final as (
    select
        c.patient_id,
        c.condition,
        c.previous_as_of_date,
        c.as_of_date,
        c.previous_status,
        c.status,
        c.previous_n_failures,
        c.n_failures,
        c.previous_misdiagnosis_suspected,
        c.misdiagnosis_suspected,
        coalesce(ne.n_events_since_previous, 0) as n_events_since_previous,
        ne.events_since_previous,
        c.evidence
    from changed as c
    left join new_events_listed as ne using (patient_id)
)

select * from final
