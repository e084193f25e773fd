-- refractory_status: is each patient's disease truly refractory as of the build date, or does it
-- only look so? With condition-specific sub-flags, counts of trials by outcome class, the rule
-- pack, and the evidence (the trials that decided it), readable by a clinician.
--
-- Grain: one row per patient x condition x as-of date (the build's as-of date; a build replays
-- only what was recorded by then, about what had occurred by then).
-- Inputs: patient_status_scenarios (scenario 'base'), trial_outcomes, treatment_trials,
-- treatment_lines, responses, events_current, rule_packs, rule_pack_lists, rule_pack_parameters.
-- Sub-flags and their sources:
--   lbcl (SCHOLAR-1, Crump 2017): primary_refractory = the first line counts as a failure;
--     relapse within asct_relapse_window_days of an autologous SCT is refractory;
--     prior_lines and eligible_after_two_lines (Yescarta 2017 label: >= 2 prior lines, a count
--     of lines, not refractoriness to each).
--   multiple_myeloma (IMWG 2011; MAMMOTH, Gandhi 2019): relapsed_and_refractory (reached >= MR
--     earlier), primary_refractory (never >= MR), refractory drugs and classes (drugs of
--     failed lines), triple_class_exposed vs triple_class_refractory, penta_refractory.
--   depression (Thase & Rush 1997; Fava 2003 MGH): partially_responsive (PRD, Sforzini 2022),
--     thase_rush_stage, mgh_score.
--   hypertension (AHA 2018): white_coat, controlled_resistant (at goal on >= 4 agents),
--     refractory_htn (uncontrolled on >= 5 agents incl. chlorthalidone/indapamide and an MRA),
--     apparent_only (resistant by office BP, no out-of-office BP to exclude white-coat).
--   epilepsy (ILAE 2010): drug_responsive_again (had the failures, now seizure-free).
--   sle: active_disease (latest SLEDAI-2K >= the pack's activity threshold).
--   all: misdiagnosis_suspected (diagnosis revised or refuted as of the date).
with

status as (
    select * from patient_status_scenarios where scenario_id = 'base'
),

outcomes as (
    select o.*, t.ingredients, t.drug_classes, t.is_combination
    from trial_outcomes as o
    join treatment_trials as t using (trial_id)
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

class_counts as (
    select
        patient_id,
        condition,
        count(*) filter (where outcome_class = 'response') as n_response,
        count(*) filter (where outcome_class = 'partial_response') as n_partial_response,
        count(*) filter (where outcome_class = 'non_response') as n_non_response,
        count(*) filter (where outcome_class = 'relapse_after_response') as n_relapse_after_response,
        count(*) filter (where outcome_class = 'intolerant') as n_intolerant,
        count(*) filter (where outcome_class = 'non_adherent') as n_non_adherent,
        count(*) filter (where outcome_class = 'inadequate_trial') as n_inadequate_trial,
        count(*) filter (where outcome_class = 'insufficient_followup') as n_insufficient_followup,
        count(*) filter (where outcome_class = 'inappropriate') as n_inappropriate,
        min(start_date) as first_trial_start_date,
        max(start_date) filter (where counts_as_failure and is_counted) as last_failure_start_date,
        max(coalesce(stop_date, end_date)) filter (where counts_as_failure and is_counted)
            as last_failure_end_date
    from outcomes
    group by all
),

evidence as (
    select
        patient_id,
        condition,
        string_agg(
            '#' || trial_seq || ' ' || regimen_key || ' ' || start_date || '..' || end_date
            || case when is_ongoing then ' (ongoing)' else '' end
            || ': ' || rule_fired
            || coalesce('; PDC ' || printf('%.2f', pdc), '')
            || coalesce('; best response ' || best_response_original, '')
            || case when not is_counted then ' [not counted for this condition]' else '' end,
            ' | ' order by start_date, trial_seq
        ) as evidence
    from outcomes
    group by all
),

diagnosis_changes as (
    select
        patient_id,
        condition,
        min(occurred_date) as diagnosis_changed_date,
        string_agg(
            event_type || ' ' || occurred_date || coalesce(' to ' || revised_to, ''),
            '; ' order by occurred_date, event_id
        ) as diagnosis_change
    from events_current
    where event_type in ('diagnosis_revised', 'diagnosis_refuted')
    group by all
),

subtypes as (
    select patient_id, condition, arg_max(subtype, (occurred_at, event_id)) as subtype
    from events_current
    where event_type = 'diagnosed' and subtype is not null
    group by all
),

lines as (
    select patient_id, condition, count(*) as n_lines
    from treatment_lines
    group by all
),

first_line_failure as (
    select patient_id, condition, bool_or(counts_as_failure) as first_line_failed
    from outcomes
    where line_number = 1 and is_counted
    group by all
),

-- lbcl: relapse within the window after an autologous stem-cell transplant (SCHOLAR-1)
asct as (
    select patient_id, min(occurred_date) as asct_date
    from events_current
    where event_type = 'transplanted' and procedure in ('autologous_sct', 'asct')
    group by all
),

asct_relapse as (
    select
        a.patient_id,
        r.condition,
        a.asct_date,
        min(r.assessment_date) as relapse_date
    from asct as a
    join responses as r
        on r.patient_id = a.patient_id
        and r.response_category = 'progression'
        and r.assessment_date > a.asct_date
    join pack_number as w
        on w.condition = r.condition and w.name = 'asct_relapse_window_days'
    where r.assessment_date <= a.asct_date + cast(w.value_number as integer)
    group by all
),

-- multiple myeloma: drug and class level (MAMMOTH)
myeloma as (
    select
        o.patient_id,
        o.condition,
        list_sort(list_distinct(flatten(list(o.ingredients)))) as exposed_drugs,
        list_sort(list_distinct(flatten(list(o.ingredients) filter (
            where o.counts_as_failure and o.is_counted)))) as refractory_drugs,
        bool_or(o.best_response_category in ('complete', 'partial', 'minimal')) as ever_minimal_response
    from outcomes as o
    join packs as p on p.condition = o.condition
    where exists (select 1 from rule_pack_lists l where l.condition = o.condition and l.list_name = 'imid')
    group by all
),

myeloma_flags as (
    select
        m.*,
        len(list_intersect(m.exposed_drugs, imid.items)) > 0
            and len(list_intersect(m.exposed_drugs, pi.items)) > 0
            and len(list_intersect(m.exposed_drugs, cd38.items)) > 0 as triple_class_exposed,
        len(list_intersect(m.refractory_drugs, imid.items)) > 0
            and len(list_intersect(m.refractory_drugs, pi.items)) > 0
            and len(list_intersect(m.refractory_drugs, cd38.items)) > 0 as triple_class_refractory,
        len(list_intersect(m.refractory_drugs, penta.items)) = len(penta.items)
            and len(list_intersect(m.refractory_drugs, cd38.items)) > 0 as penta_refractory,
        list_filter(['imid', 'pi', 'anti_cd38'], lambda c: case c
            when 'imid' then len(list_intersect(m.refractory_drugs, imid.items)) > 0
            when 'pi' then len(list_intersect(m.refractory_drugs, pi.items)) > 0
            else len(list_intersect(m.refractory_drugs, cd38.items)) > 0 end) as refractory_classes
    from myeloma as m
    join pack_list as imid on imid.condition = m.condition and imid.list_name = 'imid'
    join pack_list as pi on pi.condition = m.condition and pi.list_name = 'pi'
    join pack_list as cd38 on cd38.condition = m.condition and cd38.list_name = 'anti_cd38'
    join pack_list as penta on penta.condition = m.condition and penta.list_name = 'penta'
),

-- depression staging (Thase-Rush 1997; MGH, Fava 2003)
ect as (
    select distinct patient_id from events_current where procedure = 'ect'
),

depression as (
    select
        o.patient_id,
        o.condition,
        len(list_distinct(flatten(list(list_intersect(o.drug_classes, mc.items))
            filter (where o.counts_as_failure and o.is_counted)))) as n_failed_major_classes,
        count(*) filter (where o.counts_as_failure and o.is_counted) as n_failed,
        bool_or(list_contains(o.drug_classes, 'tca')) filter (where o.counts_as_failure) as failed_tca,
        bool_or(list_contains(o.drug_classes, 'maoi')) filter (where o.counts_as_failure) as failed_maoi,
        count(*) filter (where o.counts_as_failure and o.is_counted
            and o.days_at_adequate_dose >= getvariable('mgh_adequate_trial_days')) as n_failed_adequate_mgh,
        count(*) filter (where o.counts_as_failure and o.is_combination) as n_failed_combination
    from outcomes as o
    join pack_list as mc on mc.condition = o.condition and mc.list_name = 'thase_rush_major_classes'
    group by all
),

depression_flags as (
    select
        d.*,
        e.patient_id is not null as had_ect,
        case
            when d.n_failed = 0 then 0
            when d.n_failed_major_classes < getvariable('thase_rush_stage2_min_major_classes')
                then 1
            when not coalesce(d.failed_tca, false) then 2
            when not coalesce(d.failed_maoi, false) then 3
            when e.patient_id is null then 4
            else 5
        end as thase_rush_stage,
        d.n_failed_adequate_mgh * getvariable('mgh_points_per_failed_trial')
            + d.n_failed_combination * getvariable('mgh_points_per_combination')
            + case when e.patient_id is not null then getvariable('mgh_points_for_ect') else 0 end
            as mgh_score
    from depression as d
    left join ect as e on e.patient_id = d.patient_id
),

latest_sledai as (
    select patient_id, condition, arg_max(value, (assessment_date, response_id)) as latest_sledai
    from responses
    where measure = 'sledai2k'
    group by all
),

final as (
    select
        s.patient_id,
        s.condition,
        s.as_of_date,
        case when ar.relapse_date is not null then 'refractory' else s.status end as status,
        s.pseudo_reason,
        k.pack_id,
        k.pack_version,
        k.required_failures,
        s.n_trials,
        s.n_failures,
        s.n_look_alike,
        coalesce(cc.n_response, 0) as n_response,
        coalesce(cc.n_partial_response, 0) as n_partial_response,
        coalesce(cc.n_non_response, 0) as n_non_response,
        coalesce(cc.n_relapse_after_response, 0) as n_relapse_after_response,
        coalesce(cc.n_intolerant, 0) as n_intolerant,
        coalesce(cc.n_non_adherent, 0) as n_non_adherent,
        coalesce(cc.n_inadequate_trial, 0) as n_inadequate_trial,
        coalesce(cc.n_insufficient_followup, 0) as n_insufficient_followup,
        coalesce(cc.n_inappropriate, 0) as n_inappropriate,
        cc.first_trial_start_date,
        cc.last_failure_end_date,
        st.subtype,
        dc.diagnosis_changed_date is not null as misdiagnosis_suspected,
        dc.diagnosis_change,
        -- oncology
        case when s.condition in (select condition from pack_number where name = 'asct_relapse_window_days')
             then coalesce(fl.first_line_failed, false) end as primary_refractory_first_line,
        ar.relapse_date as asct_relapse_date,
        coalesce(l.n_lines, 0) as prior_lines,
        case when pl.value_number is not null then coalesce(l.n_lines, 0) >= pl.value_number end
            as eligible_after_two_lines,
        -- myeloma
        case when mf.patient_id is not null then s.status = 'refractory' and mf.ever_minimal_response end
            as relapsed_and_refractory,
        case when mf.patient_id is not null then s.status = 'refractory' and not mf.ever_minimal_response end
            as primary_refractory_myeloma,
        mf.refractory_drugs,
        mf.refractory_classes,
        mf.triple_class_exposed,
        mf.triple_class_refractory,
        mf.penta_refractory,
        -- depression
        case when df.patient_id is not null then s.latest_informative = 'partial_response' end
            as partially_responsive,
        df.thase_rush_stage,
        df.mgh_score,
        -- hypertension
        -- office above goal, out-of-office at goal (false when home/ABPM is above goal too;
        -- NULL when either is unknown), whatever decided the status
        case when k.status_rule = 'current_regimen'
             then not s.current_office_at_goal and s.current_out_of_office_at_goal end as white_coat,
        case when k.status_rule = 'current_regimen'
             then coalesce(s.current_office_at_goal, false)
                  and s.current_n_agents >= cast(ca.value_number as integer) end as controlled_resistant,
        case when k.status_rule = 'current_regimen'
             then s.status = 'refractory' and s.current_n_agents >= cast(ra.value_number as integer)
                  and s.current_has_thiazide_like and s.current_has_mra end as refractory_htn,
        case when k.status_rule = 'current_regimen'
             then s.status = 'refractory' and s.current_out_of_office_at_goal is null end as apparent_only,
        s.current_n_classes,
        -- epilepsy / generic
        s.status = 'responder' and s.n_failures >= k.required_failures as drug_responsive_again,
        -- sle
        case when av.value_number is not null then ls.latest_sledai >= av.value_number end as active_disease,
        ev.evidence
    from status as s
    join packs as k on k.condition = s.condition
    left join class_counts as cc on cc.patient_id = s.patient_id and cc.condition = s.condition
    left join evidence as ev on ev.patient_id = s.patient_id and ev.condition = s.condition
    left join diagnosis_changes as dc on dc.patient_id = s.patient_id and dc.condition = s.condition
    left join subtypes as st on st.patient_id = s.patient_id and st.condition = s.condition
    left join lines as l on l.patient_id = s.patient_id and l.condition = s.condition
    left join first_line_failure as fl on fl.patient_id = s.patient_id and fl.condition = s.condition
    left join asct_relapse as ar on ar.patient_id = s.patient_id and ar.condition = s.condition
    left join pack_number as pl on pl.condition = s.condition and pl.name = 'prior_lines_for_3l_eligibility'
    left join myeloma_flags as mf on mf.patient_id = s.patient_id and mf.condition = s.condition
    left join depression_flags as df on df.patient_id = s.patient_id and df.condition = s.condition
    left join pack_number as ca on ca.condition = s.condition and ca.name = 'controlled_resistant_agents'
    left join pack_number as ra on ra.condition = s.condition and ra.name = 'refractory_agents'
    left join pack_number as av on av.condition = s.condition and av.name = 'active_sledai_threshold'
    left join latest_sledai as ls on ls.patient_id = s.patient_id and ls.condition = s.condition
)

select * from final
