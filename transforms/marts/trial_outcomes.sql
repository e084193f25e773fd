-- trial_outcomes: the outcome class of every treatment trial under its condition's rule pack,
-- with the inputs that decided it and the rule that fired.
--
-- Grain: one row per treatment trial. Input: trial_outcome_scenarios (scenario 'base' = the
-- rule pack's own parameters). The classification, its fixed precedence and sources are in
-- trial_outcome_scenarios.sql.
with

base as (
    select * exclude (scenario_id)
    from trial_outcome_scenarios
    where scenario_id = 'base'
),

final as (
    select * from base
)

select * from final
