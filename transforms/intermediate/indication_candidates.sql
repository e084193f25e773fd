-- indication_candidates: the conditions a patient's therapy with an ingredient may have been
-- given for, when an event does not say. One place for the rule, used by exposures (exposures
-- without a condition) and treatment_trials (unfilled prescriptions without one); each chooses
-- among several candidates by diagnosis date, relative to its own start date.
--
-- Grain: one row per patient x ingredient x candidate condition, for every ingredient of the
-- patient's therapy events. Input: events_current (therapy and diagnosis events),
-- ref_drug_indications.
-- Rule: the first of these that gives any candidate for the patient x ingredient:
--   1. same_drug_events: conditions written on other therapy events (any type, prescriptions
--      included) of the same patient and ingredient;
--   2. indication_and_diagnosis: the drug's indications (ref_drug_indications) that the patient
--      was diagnosed with (`diagnosed`, or `diagnosis_revised` to it; any date in the log);
--   3. sole_indication: the drug has exactly one indication ($infer_condition_from_sole_indication).
-- first_diagnosed_date (the patient's first diagnosis of the condition, or revision to it)
-- lets the users break ties: most recent on or before their start, else earliest after it,
-- else alphabetical.
with

events as (
    select * from events_current
),

indications as (
    select * from ref_drug_indications
),

-- each patient x ingredient of the therapy events, with the conditions written on them (one
-- pass over the events)
therapy_conditions as (
    select distinct patient_id, ingredient, condition
    from events
    where family = 'therapy' and ingredient is not null
),

therapy_pairs as (
    select distinct patient_id, ingredient
    from therapy_conditions
),

explicit_conditions as (
    select * from therapy_conditions where condition is not null
),

-- diagnosed and revised-to conditions with their first date (transforms/macros/diagnoses.sql)
diagnosed_conditions as (
    select * from patient_diagnoses('events')
),

indication_counts as (
    select ingredient, count(*) as n_indications
    from indications
    group by all
),

all_candidates as (
    select patient_id, ingredient, condition, 1 as rule_rank,
        'same_drug_events' as condition_source
    from explicit_conditions
    union all
    select p.patient_id, p.ingredient, i.condition, 2, 'indication_and_diagnosis'
    from therapy_pairs as p
    join indications as i on i.ingredient = p.ingredient
    semi join diagnosed_conditions as d
        on d.patient_id = p.patient_id and d.condition = i.condition
    union all
    select p.patient_id, p.ingredient, i.condition, 3, 'sole_indication'
    from therapy_pairs as p
    join indications as i on i.ingredient = p.ingredient
    join indication_counts as c on c.ingredient = i.ingredient
    where c.n_indications = 1 and getvariable('infer_condition_from_sole_indication')
),

first_rule as (
    select *
    from all_candidates
    qualify rule_rank = min(rule_rank) over (partition by patient_id, ingredient)
),

final as (
    select
        r.patient_id,
        r.ingredient,
        r.condition,
        r.condition_source,
        cast(r.rule_rank as integer) as rule_rank,
        d.first_diagnosed_date,
        cast(count(*) over (partition by r.patient_id, r.ingredient) as integer) as n_candidates
    from first_rule as r
    left join diagnosed_conditions as d using (patient_id, condition)
)

select * from final
