-- cohort_summary: per condition, counts and proportions of patients by status and of trials by
-- outcome class: the cohort-wide split of true non-response from its look-alikes.
--
-- Grain: one row per condition x dimension x category (dimension 'status' counts patients,
-- 'trial_outcome' counts trials, 'non_response_explained_by' splits apparent non-responders).
-- Inputs: refractory_status, trial_outcomes. Cohort level: aggregates per-patient tables.
-- "Apparent non-responders" = patients who look refractory when look-alike trials count
-- (status refractory or pseudo_refractory); the split says how many are true non-response and
-- how many are explained by non-adherence, intolerance, inadequate trials or a measurement
-- artefact (clinical-rules.md section 5: "the main deliverable").
with

status as (
    select * from refractory_status
),

outcomes as (
    select * from trial_outcomes
),

by_status as (
    select
        condition,
        'status' as dimension,
        status as category,
        count(*) as n,
        sum(count(*)) over (partition by condition) as denominator
    from status
    group by condition, status
),

by_outcome as (
    select
        condition,
        'trial_outcome' as dimension,
        outcome_class as category,
        count(*) as n,
        sum(count(*)) over (partition by condition) as denominator
    from outcomes
    group by condition, outcome_class
),

apparent as (
    select
        condition,
        case
            when status = 'refractory' then 'true_non_response'
            when pseudo_reason = 'white_coat' then 'measurement_artefact'
            when n_non_adherent > 0 and n_non_adherent >= greatest(n_intolerant, n_inadequate_trial)
                then 'non_adherence'
            when pseudo_reason = 'non_adherent' then 'non_adherence'
            when n_intolerant > 0 and n_intolerant >= n_inadequate_trial then 'intolerance'
            else 'inadequate_trial'
        end as category
    from status
    where status in ('refractory', 'pseudo_refractory')
),

by_explanation as (
    select
        condition,
        'non_response_explained_by' as dimension,
        category,
        count(*) as n,
        sum(count(*)) over (partition by condition) as denominator
    from apparent
    group by condition, category
),

unioned as (
    select condition, dimension, category, n, cast(denominator as bigint) as denominator from by_status
    union all
    select condition, dimension, category, n, cast(denominator as bigint) from by_outcome
    union all
    select condition, dimension, category, n, cast(denominator as bigint) from by_explanation
),

final as (
    select
        condition,
        dimension,
        category,
        n,
        denominator,
        round(n / denominator, 4) as proportion,
        getvariable('as_of_date') as as_of_date
    from unioned
)

select * from final
