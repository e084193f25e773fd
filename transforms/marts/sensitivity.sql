-- sensitivity: how the cohort's status split moves as the adherence threshold and the minimum
-- trial duration vary (the grid of parameters sensitivity_adherence_thresholds x
-- sensitivity_min_duration_factors; scenario 'base' is each rule pack's own values).
--
-- Grain: one row per condition x scenario. Input: patient_status_scenarios. Cohort level.
with

scenario_status as (
    select * from patient_status_scenarios
),

counted as (
    select
        condition,
        scenario_id,
        count(*) as n_patients,
        count(*) filter (where status = 'refractory') as n_refractory,
        count(*) filter (where status = 'pseudo_refractory') as n_pseudo_refractory,
        count(*) filter (where status = 'at_risk') as n_at_risk,
        count(*) filter (where status = 'partial_responder') as n_partial_responder,
        count(*) filter (where status = 'responder') as n_responder,
        count(*) filter (where status = 'undetermined') as n_undetermined
    from scenario_status
    group by all
),

final as (
    select
        condition,
        scenario_id,
        scenario_id = 'base' as is_base,
        try_cast(regexp_extract(scenario_id, 'adh=([0-9.]+)', 1) as double) as adherence_threshold,
        try_cast(regexp_extract(scenario_id, 'dur=x([0-9.]+)', 1) as double) as min_duration_factor,
        n_patients,
        n_refractory,
        n_pseudo_refractory,
        n_at_risk,
        n_partial_responder,
        n_responder,
        n_undetermined,
        round(n_refractory / n_patients, 4) as pct_refractory,
        round(n_pseudo_refractory / n_patients, 4) as pct_pseudo_refractory,
        getvariable('as_of_date') as as_of_date
    from counted
)

select * from final
