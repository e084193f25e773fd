-- patient_status_scenarios: each patient's status per condition as of the build date, under the
-- rule pack's parameters (scenario 'base') and under each sensitivity variant.
--
-- Grain: one row per patient x condition x scenario, for every condition with a rule pack that
-- the patient was diagnosed with or treated for. Inputs: trial_outcome_scenarios,
-- treatment_trials, trial_response, events_current, rule_packs, rule_pack_lists,
-- rule_pack_parameters.
--
-- Status (clinical-rules.md section 5, "Patient-level flags as of date T"):
--   status_rule count_failures (ILAE 2010, TRD Delphi 2022, IMWG 2011, SCHOLAR-1, SLE):
--     responder          the latest informative counted trial responded and the pack lets a
--                        response reset refractoriness (ILAE: drug-responsive again)
--     refractory         informative failures >= required_failures
--     pseudo_refractory  failures + look-alike trials (intolerant, non_adherent,
--                        inadequate_trial) >= required_failures: looks refractory only because
--                        non-informative trials are counted
--     partial_responder  the latest informative counted trial was a partial response that the
--                        pack does not count as a failure (TRD: PRD kept apart; under ILAE a
--                        seizure reduction without freedom is a failure, so at_risk applies)
--     responder          the latest informative counted trial responded (or relapsed after one)
--     at_risk            one informative failure short (required_failures >= 2)
--     undetermined       fewer informative trials than required
--   status_rule current_regimen (AHA 2018 resistant hypertension), on the latest counted trial:
--     apparent resistance = office BP above goal on >= min_classes_resistant concurrent classes
--     including a diuretic. Then pseudo_refractory when non-adherent, white-coat (out-of-office
--     BP at goal) or a suboptimal regimen (intolerant, inadequate); refractory when a true
--     non-response; at_risk when above goal one class short; responder when at goal.
with

outcomes as (
    select * from trial_outcome_scenarios
),

trials as (
    select * from treatment_trials
),

responses as (
    select * from trial_response
),

packs as (
    select * from rule_packs
),

pack_number as (
    select condition, name, value_number from rule_pack_parameters
),

pack_list as (
    select condition, list_name, list(item order by item) as items
    from rule_pack_lists
    group by all
),

scenario_ids as (
    select distinct scenario_id from outcomes
    union
    select 'base'
),

-- patient x condition pairs to judge: diagnosed (as of the build) or treated, with a pack
diagnosed as (
    select distinct patient_id, condition
    from events_current
    where event_type = 'diagnosed' and condition is not null
),

pairs as (
    select d.patient_id, d.condition from diagnosed as d
    union
    select distinct patient_id, condition from trials
),

judged as (
    select p.patient_id, p.condition, s.scenario_id
    from pairs as p
    semi join packs as k on k.condition = p.condition
    cross join scenario_ids as s
),

counts as (
    select
        patient_id,
        condition,
        scenario_id,
        count(*) as n_trials,
        count(*) filter (where is_counted and counts_as_failure) as n_failures,
        count(*) filter (where is_counted
            and outcome_class in ('intolerant', 'non_adherent', 'inadequate_trial')) as n_look_alike,
        count(*) filter (where is_counted and outcome_class = 'non_adherent') as n_non_adherent_counted,
        arg_max(outcome_class, (start_date, trial_seq))
            filter (where is_counted and is_informative) as latest_informative,
        arg_max(outcome_class, (start_date, trial_seq)) filter (where is_counted) as current_outcome,
        arg_max(trial_id, (start_date, trial_seq)) filter (where is_counted) as current_trial_id
    from outcomes
    group by all
),

-- hypertension: each trial's classes (once per trial, not per scenario)
trial_regimens as (
    select
        t.trial_id,
        t.ingredients,
        len(list_intersect(list_distinct(t.drug_classes), coalesce(ah.items, []))) as n_classes,
        len(list_intersect(t.drug_classes, coalesce(di.items, []))) > 0 as has_diuretic,
        len(t.ingredients) as n_agents,
        len(list_intersect(t.ingredients, coalesce(tl.items, []))) > 0 as has_thiazide_like,
        len(list_intersect(t.drug_classes, coalesce(mra.items, []))) > 0 as has_mra
    from trials as t
    left join pack_list as ah on ah.condition = t.condition and ah.list_name = 'antihypertensive_classes'
    left join pack_list as di on di.condition = t.condition and di.list_name = 'diuretic_classes'
    left join pack_list as tl on tl.condition = t.condition and tl.list_name = 'thiazide_like_diuretics'
    left join pack_list as mra on mra.condition = t.condition and mra.list_name = 'mra_classes'
),

-- the current regimen's classes and blood pressures
current_regimen as (
    select
        c.patient_id,
        c.condition,
        c.scenario_id,
        t.ingredients,
        t.n_classes,
        t.has_diuretic,
        t.n_agents,
        t.has_thiazide_like,
        t.has_mra,
        r.office_at_goal,
        r.out_of_office_at_goal
    from counts as c
    join trial_regimens as t on t.trial_id = c.current_trial_id
    left join responses as r on r.trial_id = c.current_trial_id
),

joined as (
    select
        j.patient_id,
        j.condition,
        j.scenario_id,
        k.status_rule,
        k.required_failures,
        k.response_resets_refractory,
        coalesce(k.partial_counts_as_failure, false) as partial_counts_as_failure,
        coalesce(c.n_trials, 0) as n_trials,
        coalesce(c.n_failures, 0) as n_failures,
        coalesce(c.n_look_alike, 0) as n_look_alike,
        c.latest_informative,
        c.current_outcome,
        cr.n_classes,
        cr.has_diuretic,
        cr.n_agents,
        cr.has_thiazide_like,
        cr.has_mra,
        cr.office_at_goal,
        cr.out_of_office_at_goal,
        cast(mc.value_number as integer) as min_classes_resistant
    from judged as j
    join packs as k on k.condition = j.condition
    left join counts as c
        on c.patient_id = j.patient_id and c.condition = j.condition and c.scenario_id = j.scenario_id
    left join current_regimen as cr
        on cr.patient_id = j.patient_id and cr.condition = j.condition
        and cr.scenario_id = j.scenario_id
    left join pack_number as mc on mc.condition = j.condition and mc.name = 'min_classes_resistant'
),

statused as (
    select
        *,
        coalesce(n_classes >= min_classes_resistant and has_diuretic
            and not coalesce(office_at_goal, true), false) as apparent_resistance,
        case
            when status_rule = 'current_regimen' then case
                when coalesce(n_classes >= min_classes_resistant and has_diuretic
                        and not coalesce(office_at_goal, true), false) then case
                    when current_outcome = 'non_adherent' then 'pseudo_refractory'
                    when coalesce(out_of_office_at_goal, false) then 'pseudo_refractory'
                    when current_outcome in ('intolerant', 'inadequate_trial') then 'pseudo_refractory'
                    when current_outcome = 'non_response' then 'refractory'
                    else 'undetermined' end
                when not coalesce(office_at_goal, true) and not coalesce(out_of_office_at_goal, false)
                    and current_outcome = 'non_response'
                    and n_classes = min_classes_resistant - 1 then 'at_risk'
                when current_outcome in ('response', 'relapse_after_response') then 'responder'
                else 'undetermined' end
            when response_resets_refractory and latest_informative = 'response' then 'responder'
            when n_failures >= required_failures then 'refractory'
            when n_failures + n_look_alike >= required_failures then 'pseudo_refractory'
            when latest_informative = 'partial_response' and not partial_counts_as_failure
                then 'partial_responder'
            when latest_informative in ('response', 'relapse_after_response') then 'responder'
            when required_failures >= 2 and n_failures = required_failures - 1 then 'at_risk'
            else 'undetermined'
        end as status
    from joined
),

final as (
    select
        patient_id,
        condition,
        scenario_id,
        getvariable('as_of_date') as as_of_date,
        status,
        case
            when status <> 'pseudo_refractory' then null
            when status_rule = 'current_regimen' then case
                when current_outcome = 'non_adherent' then 'non_adherent'
                when coalesce(out_of_office_at_goal, false) then 'white_coat'
                else 'suboptimal_regimen' end
            else 'look_alike_trials_counted'
        end as pseudo_reason,
        n_trials,
        n_failures,
        n_look_alike,
        latest_informative,
        current_outcome,
        apparent_resistance,
        n_classes as current_n_classes,
        n_agents as current_n_agents,
        has_diuretic as current_has_diuretic,
        has_thiazide_like as current_has_thiazide_like,
        has_mra as current_has_mra,
        office_at_goal as current_office_at_goal,
        out_of_office_at_goal as current_out_of_office_at_goal
    from statused
)

select * from final
