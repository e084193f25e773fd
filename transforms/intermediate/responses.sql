-- responses: every response assessment and disease measurement, normalised to one ordinal scale.
--
-- Grain: one row per response-family event (response_assessed or measurement) of events_current.
-- Inputs: events_current, treatment_trials and treatment_lines (the treatment start a derived
-- category is measured from).
--
-- Normalisation (clinical-rules.md 1.0 "map disease-specific categories, not the words"; 2.1-2.3):
--   * Reported codes map to complete | partial | minimal | stable | progression | not_evaluable
--     with response_rank 1..6 (1 best; NE ranks below PD, so a PD is never hidden by an NE):
--       scr, cr, cmr, seizure_free -> complete;  vgpr, pr, pmr -> partial;  mr -> minimal;
--       sd, nmr -> stable;  pd, pmd -> progression;  ne -> not_evaluable.
--     Within a category the codes keep their order (sCR > CR, VGPR > PR) in response_fine_rank.
--   * Derived categories (derived = true), from measurements the criteria define (RECIST 1.1,
--     Eisenhauer 2009; IMWG 2016, Kumar 2016):
--       sum_of_diameters (recist_1_1): PD when >= nadir x (1 + $recist_progression_increase_fraction)
--         and >= nadir + $recist_progression_min_increase_mm; else CR when 0; else PR when
--         <= baseline x (1 - $recist_partial_decrease_fraction); else SD.
--       serum_m_protein (imwg): PD when >= nadir x (1 + $imwg_progression_increase_fraction) and the
--         absolute rise is >= $imwg_progression_min_increase_g_dl (>= the high-nadir minimum from a
--         nadir of $imwg_progression_high_nadir_g_dl); else by the reduction from baseline:
--         VGPR >= $imwg_vgpr_decrease_fraction, PR >= $imwg_partial_decrease_fraction,
--         MR >= $imwg_minimal_decrease_fraction, else SD. An undetectable M-protein is at most VGPR
--         (CR needs negative immunofixation, which a number cannot show).
--     Baseline: the latest value of the measure within $response_baseline_window_days up to the
--     start of the treatment in effect (the line of therapy containing the latest trial started
--     before the assessment, else that trial; RECIST: baseline <= 4 weeks before treatment).
--     Without any earlier trial the series' first value is the baseline. Nadir: the smallest of the
--     baseline and the earlier values measured against the same baseline. Baseline values
--     themselves get no category.
--   * Confirmation: RECIST 1.1 CR/PR is confirmed by a later RECIST assessment at least
--     $recist_confirmation_min_days after it that is as good or better, with no PD in between
--     (single-arm convention); unconfirmed, it counts as SD (confirmed_category). IMWG: every
--     category needs the next IMWG assessment (two consecutive assessments); confirmed_category
--     is the worse of the two, a PD is confirmed by a second PD, the last assessment is not yet
--     confirmed (confirmed_category NULL). Other criteria need no confirmation.
--   * Criteria: absent on response_assessed = clinician (contract); on a measurement, the
--     criteria its measure belongs to (sum_of_diameters: recist_1_1; serum/urine M-protein: imwg).
--   * Condition: as sent; else the measure's or criteria's condition (seizure_count: epilepsy,
--     phq9/madrs/hamd17: depression, sbp/dbp: hypertension, sledai2k: sle, M-protein and imwg:
--     multiple_myeloma, lugano_2014: lbcl, ilae: epilepsy); else the patient's only diagnosed
--     condition; else NULL.
-- Plain measurements (PHQ-9, BP, SLEDAI-2K, seizure counts, ...) are kept with a NULL category.
with

events as (
    select * from events_current
),

trials as (
    select * from treatment_trials
),

lines as (
    select * from treatment_lines
),

-- enumerations --------------------------------------------------------------------------------
-- contract response codes on the common ordinal scale (fine rank = rank x 10 + order in category)
response_codes as (
    select * from (values
        ('scr', 'complete', 1, 11),
        ('cr', 'complete', 1, 12),
        ('cmr', 'complete', 1, 13),
        ('seizure_free', 'complete', 1, 14),
        ('vgpr', 'partial', 2, 21),
        ('pr', 'partial', 2, 22),
        ('pmr', 'partial', 2, 23),
        ('mr', 'minimal', 3, 31),
        ('sd', 'stable', 4, 41),
        ('nmr', 'stable', 4, 42),
        ('pd', 'progression', 5, 51),
        ('pmd', 'progression', 5, 52),
        ('ne', 'not_evaluable', 6, 61)
    ) as t(code, response_category, response_rank, response_fine_rank)
),

-- the criteria and condition a known measure belongs to, and how a category is derived from it
measure_defaults as (
    select * from (values
        ('sum_of_diameters', 'recist_1_1', null, 'recist_sum_of_diameters'),
        ('serum_m_protein', 'imwg', 'multiple_myeloma', 'imwg_serum_m_protein'),
        ('urine_m_protein', 'imwg', 'multiple_myeloma', null),
        ('seizure_count', null, 'epilepsy', null),
        ('phq9', null, 'depression', null),
        ('madrs', null, 'depression', null),
        ('hamd17', null, 'depression', null),
        ('sbp', null, 'hypertension', null),
        ('dbp', null, 'hypertension', null),
        ('sledai2k', null, 'sle', null)
    ) as t(measure, criteria, condition, derivation)
),

criteria_conditions as (
    select * from (values
        ('imwg', 'multiple_myeloma'),
        ('lugano_2014', 'lbcl'),
        ('ilae', 'epilepsy')
    ) as t(criteria, condition)
),

-- the patient's diagnosed and revised-to conditions (a sole one names the condition of an
-- unlabelled event; transforms/macros/diagnoses.sql)
diagnosed_conditions as (
    select patient_id, condition from patient_diagnoses('events')
),

sole_conditions as (
    select patient_id, any_value(condition) as condition
    from diagnosed_conditions
    group by all
    having count(*) = 1
),

-- 1. response events with criteria and condition ----------------------------------------------
response_events as (
    select
        e.patient_id,
        e.patient_id || '|' || coalesce(e.source, '') || ':' || e.event_id as response_id,
        coalesce(e.source, '') || ':' || e.event_id as source_event_id,
        e.event_type,
        e.occurred_date as assessment_date,
        case
            when e.event_type = 'response_assessed' then coalesce(e.criteria, 'clinician')
            else coalesce(e.criteria, m.criteria)
        end as criteria,
        lower(e.response) as response_reported,
        e.measure,
        cast(e.value as double) as value,
        e.unit,
        e.period_days,
        e.setting,
        e.condition as event_condition,
        coalesce(m.condition, c.condition) as default_condition,
        m.criteria as measure_criteria,
        m.derivation
    from events as e
    left join measure_defaults as m on m.measure = e.measure
    left join criteria_conditions as c on c.criteria = coalesce(e.criteria, m.criteria)
    where e.family = 'response'
),

located as (
    select
        r.* exclude (event_condition, default_condition, measure_criteria, derivation),
        coalesce(r.event_condition, r.default_condition, s.condition) as condition,
        case
            when r.event_condition is not null then 'event'
            when r.default_condition is not null then 'measure'
            when s.condition is not null then 'sole_diagnosis'
        end as condition_source,
        -- derive only under the criteria the measure belongs to, and only from a value
        case
            when r.criteria is not distinct from r.measure_criteria and r.value is not null
                and r.response_reported is null
                then r.derivation
        end as derivation
    from response_events as r
    left join sole_conditions as s on s.patient_id = r.patient_id
),

-- 2. derived categories: baseline at the start of the treatment in effect ---------------------
-- a treatment start: the line of therapy (oncology) or else the trial
treatment_starts as (
    select
        t.patient_id,
        t.condition,
        t.trial_id,
        coalesce(l.line_id, t.trial_id) as anchor_id,
        coalesce(l.start_date, t.start_date) as anchor_start_date,
        t.start_date as trial_start_date
    from trials as t
    left join (
        select line_id, start_date, unnest(trial_ids) as trial_id from lines
    ) as l on l.trial_id = t.trial_id
    where not t.never_dispensed
),

derivable as (
    select * from located where derivation is not null
),

derivable_anchored as (
    select
        d.*,
        a.anchor_id,
        a.anchor_start_date
    from derivable as d
    left join treatment_starts as a
        on a.patient_id = d.patient_id
        and a.condition = d.condition
        and a.trial_start_date < d.assessment_date
    qualify row_number() over (
        partition by d.response_id
        order by a.trial_start_date desc nulls last, a.trial_id
    ) = 1
),

anchored_baselines as (
    select
        d.response_id,
        arg_max(b.value, (b.assessment_date, b.response_id)) as baseline_value
    from derivable_anchored as d
    join derivable as b
        on b.patient_id = d.patient_id
        and b.condition is not distinct from d.condition
        and b.measure = d.measure
        and b.assessment_date <= d.anchor_start_date
        and b.assessment_date >= d.anchor_start_date
            - cast(getvariable('response_baseline_window_days') as integer)
    where d.anchor_start_date is not null
    group by all
),

series as (
    select
        d.*,
        -- rows before any treatment form one series whose first value is its baseline
        case
            when d.anchor_id is null then first_value(d.value) over w_all
            else b.baseline_value
        end as baseline_value,
        d.anchor_id is null and row_number() over w_all = 1 as is_series_baseline,
        min(d.value) over (
            partition by d.patient_id, d.condition, d.measure, d.anchor_id
            order by d.assessment_date, d.response_id
            rows between unbounded preceding and 1 preceding
        ) as prior_min_value
    from derivable_anchored as d
    left join anchored_baselines as b on b.response_id = d.response_id
    window w_all as (
        partition by d.patient_id, d.condition, d.measure, d.anchor_id
        order by d.assessment_date, d.response_id
    )
),

series_with_nadir as (
    select
        *,
        case when baseline_value is not null and not is_series_baseline
            then least(baseline_value, prior_min_value) end as nadir_value
    from series
),

derived_codes as (
    select
        response_id,
        case when not is_series_baseline then baseline_value end as baseline_value,
        nadir_value,
        case when baseline_value > 0 and not is_series_baseline
            then (value - baseline_value) / baseline_value end as pct_change_from_baseline,
        case
            when nadir_value is null then null
            when derivation = 'recist_sum_of_diameters' then case
                when value >= nadir_value * (1 + getvariable('recist_progression_increase_fraction'))
                    and value - nadir_value >= getvariable('recist_progression_min_increase_mm')
                    then 'pd'
                when value = 0 then 'cr'
                when value <= baseline_value * (1 - getvariable('recist_partial_decrease_fraction'))
                    then 'pr'
                else 'sd'
            end
            when derivation = 'imwg_serum_m_protein' then case
                when value >= nadir_value * (1 + getvariable('imwg_progression_increase_fraction'))
                    and value - nadir_value >= case
                        when nadir_value >= getvariable('imwg_progression_high_nadir_g_dl')
                            then getvariable('imwg_progression_high_nadir_min_increase_g_dl')
                        else getvariable('imwg_progression_min_increase_g_dl')
                    end
                    then 'pd'
                when baseline_value <= 0 then null
                when (baseline_value - value) / baseline_value
                    >= getvariable('imwg_vgpr_decrease_fraction') then 'vgpr'
                when (baseline_value - value) / baseline_value
                    >= getvariable('imwg_partial_decrease_fraction') then 'pr'
                when (baseline_value - value) / baseline_value
                    >= getvariable('imwg_minimal_decrease_fraction') then 'mr'
                else 'sd'
            end
        end as derived_code
    from series_with_nadir
),

-- 3. one row per event with its category ------------------------------------------------------
categorised as (
    select
        l.*,
        d.baseline_value,
        d.nadir_value,
        d.pct_change_from_baseline,
        coalesce(l.response_reported, d.derived_code) as response_original,
        l.response_reported is null and d.derived_code is not null as derived,
        c.response_category,
        c.response_rank,
        c.response_fine_rank
    from located as l
    left join derived_codes as d on d.response_id = l.response_id
    left join response_codes as c on c.code = coalesce(l.response_reported, d.derived_code)
),

-- 4. confirmation -------------------------------------------------------------------------------
recist_assessments as (
    select * from categorised where criteria = 'recist_1_1' and response_rank is not null
),

recist_next_progression as (
    select
        a.response_id,
        min(p.assessment_date) as next_progression_date
    from recist_assessments as a
    join recist_assessments as p
        on p.patient_id = a.patient_id
        and p.condition is not distinct from a.condition
        and p.response_category = 'progression'
        and p.assessment_date > a.assessment_date
    group by all
),

recist_confirmations as (
    select
        a.response_id,
        min(b.assessment_date) as confirmation_date
    from recist_assessments as a
    left join recist_next_progression as p on p.response_id = a.response_id
    join recist_assessments as b
        on b.patient_id = a.patient_id
        and b.condition is not distinct from a.condition
        and b.response_rank <= a.response_rank
        and b.assessment_date >= a.assessment_date
            + cast(getvariable('recist_confirmation_min_days') as integer)
    where a.response_rank <= 2
        and (p.next_progression_date is null or b.assessment_date < p.next_progression_date)
    group by all
),

-- IMWG: two consecutive assessments (not-evaluable ones are skipped)
imwg_assessments as (
    select * from categorised
    where criteria = 'imwg' and response_category is not null
        and response_category <> 'not_evaluable'
),

imwg_next_dates as (
    select a.response_id, min(b.assessment_date) as next_date
    from imwg_assessments as a
    join imwg_assessments as b
        on b.patient_id = a.patient_id
        and b.condition is not distinct from a.condition
        and b.assessment_date > a.assessment_date
    group by all
),

imwg_next as (
    select
        n.response_id,
        n.next_date,
        max(b.response_fine_rank) as next_worst_fine_rank
    from imwg_next_dates as n
    join imwg_assessments as a on a.response_id = n.response_id
    join imwg_assessments as b
        on b.patient_id = a.patient_id
        and b.condition is not distinct from a.condition
        and b.assessment_date = n.next_date
    group by all
),

confirmed as (
    select
        c.*,
        case
            when c.response_category is null then null
            when c.criteria = 'recist_1_1' and c.response_rank <= 2 then rc.response_id is not null
            when c.criteria = 'imwg' and c.response_category <> 'not_evaluable' then case
                when n.next_date is null then false
                when c.response_category = 'progression' then n.next_worst_fine_rank >= 50
                else n.next_worst_fine_rank <= c.response_fine_rank
            end
            else true
        end as confirmed,
        case
            when c.criteria = 'recist_1_1' and c.response_rank <= 2 then rc.confirmation_date
            when c.criteria = 'imwg' then n.next_date
        end as confirmation_date,
        case
            when c.response_category is null then null
            -- RECIST: an unconfirmed CR/PR is at best SD
            when c.criteria = 'recist_1_1' and c.response_rank <= 2 and rc.response_id is null
                then 41
            -- IMWG: the worse of this and the next assessment; none yet = not confirmed
            when c.criteria = 'imwg' and c.response_category <> 'not_evaluable' then case
                when n.next_date is null then null
                when c.response_category = 'progression'
                    then case when n.next_worst_fine_rank >= 50 then c.response_fine_rank end
                -- a response followed by a progression is not confirmed as a response
                when n.next_worst_fine_rank >= 50 then null
                else greatest(c.response_fine_rank, n.next_worst_fine_rank)
            end
            else c.response_fine_rank
        end as confirmed_fine_rank
    from categorised as c
    left join recist_confirmations as rc on rc.response_id = c.response_id
    left join imwg_next as n on n.response_id = c.response_id
),

final as (
    select
        c.response_id,
        c.patient_id,
        c.condition,
        c.condition_source,
        c.assessment_date,
        c.event_type,
        c.criteria,
        c.measure,
        c.value,
        c.unit,
        c.period_days,
        c.setting,
        c.response_original,
        c.response_category,
        c.response_rank,
        c.response_fine_rank,
        coalesce(c.derived, false) as derived,
        c.baseline_value,
        c.nadir_value,
        c.pct_change_from_baseline,
        c.confirmed,
        c.confirmation_date,
        k.response_category as confirmed_category,
        k.response_rank as confirmed_rank,
        c.confirmed_fine_rank,
        k.code as confirmed_original,
        c.source_event_id
    from confirmed as c
    left join response_codes as k on k.response_fine_rank = c.confirmed_fine_rank
)

select * from final
