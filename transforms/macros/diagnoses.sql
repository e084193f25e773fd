-- Shared SQL table macro: the conditions each patient has been diagnosed with, one row per
-- patient x condition with the first date: `diagnosed` events, and the condition a
-- `diagnosis_revised` event revised to. indication_candidates prefers the indications diagnosed
-- (transforms/macros/indication.sql); responses gives a response event without a condition the
-- patient's only diagnosed one. The argument names the relation of events to read (the models
-- pass their `events` CTE over events_current). Loaded on every build connection before the
-- models run (pipelines.build.runner.bind_params).
create or replace macro patient_diagnoses(events_table) as table
    select patient_id, condition, min(occurred_date) as first_diagnosed_date
    from (
        select patient_id, condition, occurred_date
        from query_table(events_table)
        where event_type = 'diagnosed' and condition is not null
        union all
        select patient_id, revised_to as condition, occurred_date
        from query_table(events_table)
        where event_type = 'diagnosis_revised' and revised_to is not null
    )
    group by patient_id, condition;
