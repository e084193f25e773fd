-- trial_response: the response evidence of every treatment trial, in the terms the rule packs'
-- efficacy predicates read (best response, progression, ILAE outcome, % improvement, remission,
-- blood pressure at goal, SLEDAI-2K).
--
-- Grain: one row per treatment trial (join key trial_id). Inputs: treatment_trials, responses
-- (same patient and condition).
--
-- Windows (clinical-rules.md 2.4 and 0: windows are named offsets from an anchor):
--   * Every window opens $response_min_days_after_start after the start (the start day is the
--     pre-treatment baseline).
--   * Measurements (scores, BP, seizure diaries, SLEDAI) count up to end_date +
--     $response_grace_days, never after the next trial of the condition starts (the switch day
--     counts for both: end of the old trial, baseline of the new).
--   * Categorical responses count until the next trial starts (open-ended for the last trial)
--     when $response_window_until_next_trial (RECIST BOR from start until PD; IMWG: before any
--     new therapy), else as measurements.
--   * Baselines: the latest value within $response_baseline_window_days up to the start day.
-- Evidence:
--   * Best response (RECIST 1.1 BOR, Eisenhauer 2009; IMWG, Kumar 2016): the best category up to
--     and including the first progression, on each assessment's confirmed_category when
--     $best_response_requires_confirmation; a RECIST SD before $recist_sd_min_days counts as
--     not evaluable. Progression: the first progression in the categorical window (confirmed
--     only when $progression_requires_confirmation). On therapy = between start_date and
--     last_dose_date; after it, days_after_last_dose_to_progression (IMWG 2011: PD <= 60 days
--     after the last dose is refractory; the window itself is the rule pack's).
--   * ILAE 2010 (Kwan 2010; clinical-rules.md 1.1): seizures are seizure_count diary rows with a
--     value > 0 (dated on the diary date) and ilae assessments sd/pd; seizure-free evidence is a
--     diary row of 0 or an ilae seizure_free. ISI = the longest gap between seizure days within
--     $ilae_isi_lookback_days before the start (undefined with < 2: isi_indeterminate, 12-month
--     floor). Required = max($ilae_rule_of_three_multiplier x ISI, $ilae_min_seizure_free_days).
--     failure: a seizure after adequate_dose_date (a seizure before the adequate dose, or on a
--     trial never at it, is not a failure); seizure_free: the latest evidence in the window is at
--     least `required` days after the last seizure since the start (or the start); undetermined
--     otherwise. NULL when the trial has no seizure evidence at all.
--   * pct_improvement: seizure-rate trials: 1 - on-treatment rate / pre-treatment rate (diary
--     counts / period days, pre = diaries dated within the ISI lookback up to the start). Else
--     (baseline - last score in the window) / baseline on the first measure of
--     $improvement_scale_priority with both, else any other measure with both (alphabetical).
--     remission: the last PHQ-9 < $phq9_remission_below, MADRS <= $madrs_remission_max or
--     HAMD-17 <= $hamd17_remission_max (first scale of the priority list with a score).
--   * Blood pressure (AHA 2017/2018): mean SBP and DBP over $bp_averaging_days up to the latest
--     reading in the window, office and out-of-office ($out_of_office_bp_settings) apart; at goal
--     when below the goals (a missing SBP or DBP is not held against it); NULL without readings.
--   * SLEDAI-2K: baseline (baseline window) and latest in the window.
with

trials as (
    select * from treatment_trials
),

assessments as (
    select * from responses
),

scale_priority as (
    select trim(s) as measure, row_number() over () as priority
    from unnest(string_split(getvariable('improvement_scale_priority'), ',')) as t(s)
),

out_of_office_settings as (
    select trim(s) as setting
    from unnest(string_split(getvariable('out_of_office_bp_settings'), ',')) as t(s)
),

trial_windows as (
    select
        trial_id,
        patient_id,
        condition,
        start_date,
        end_date,
        last_dose_date,
        next_trial_start_date,
        adequate_dose_date,
        start_date + cast(getvariable('response_min_days_after_start') as integer)
            as window_start_date,
        start_date - cast(getvariable('response_baseline_window_days') as integer)
            as baseline_start_date,
        least(
            end_date + cast(getvariable('response_grace_days') as integer),
            coalesce(next_trial_start_date, end_date + cast(getvariable('response_grace_days') as integer))
        ) as measurement_end_date
    from trials
),

trial_windows_all as (
    select
        *,
        case
            when getvariable('response_window_until_next_trial')
                then coalesce(next_trial_start_date, date '9999-12-31')
            else measurement_end_date
        end as category_end_date
    from trial_windows
),

-- 1. categorical responses: best response and progression --------------------------------------
trial_categories as (
    select
        w.trial_id,
        w.start_date,
        r.response_id,
        r.assessment_date,
        r.criteria,
        r.response_category,
        r.confirmed,
        -- the category counted: progression as assessed (confirmed if required), others on
        -- their confirmed category when best response requires confirmation
        case
            when r.response_category = 'progression' then case
                when getvariable('progression_requires_confirmation') and not r.confirmed then null
                else r.response_fine_rank
            end
            when getvariable('best_response_requires_confirmation') then r.confirmed_fine_rank
            else r.response_fine_rank
        end as counted_fine_rank,
        case
            when r.response_category = 'progression'
                or not getvariable('best_response_requires_confirmation')
                then r.response_category
            else r.confirmed_category
        end as counted_category,
        case
            when r.response_category = 'progression'
                or not getvariable('best_response_requires_confirmation')
                then r.response_original
            else r.confirmed_original
        end as counted_original
    from trial_windows_all as w
    join assessments as r
        on r.patient_id = w.patient_id
        and r.condition = w.condition
        and r.response_category is not null
        and r.assessment_date between w.window_start_date and w.category_end_date
),

trial_categories_counted as (
    select
        *,
        -- RECIST: SD counts only once met after the protocol minimum; before it, not evaluable
        criteria = 'recist_1_1' and counted_category = 'stable'
            and assessment_date < start_date + cast(getvariable('recist_sd_min_days') as integer)
            as is_early_sd
    from trial_categories
),

trial_categories_effective as (
    select
        trial_id,
        assessment_date,
        response_category,
        case when is_early_sd then 61 else counted_fine_rank end as effective_fine_rank,
        case when is_early_sd then 'not_evaluable' else counted_category end as effective_category,
        case when is_early_sd then 'ne' else counted_original end as effective_original
    from trial_categories_counted
    where counted_fine_rank is not null
),

trial_progression as (
    select
        trial_id,
        min(assessment_date) as progression_date
    from trial_categories_effective
    where response_category = 'progression'
    group by all
),

best_responses as (
    select
        c.trial_id,
        arg_min(c.effective_category, (c.effective_fine_rank, c.assessment_date))
            as best_response_category,
        min(c.effective_fine_rank) // 10 as best_response_rank,
        arg_min(c.effective_original, (c.effective_fine_rank, c.assessment_date))
            as best_response_original,
        min(c.assessment_date) filter (where c.effective_fine_rank < 30) as first_response_date
    from trial_categories_effective as c
    left join trial_progression as p on p.trial_id = c.trial_id
    where p.progression_date is null or c.assessment_date <= p.progression_date
    group by all
),

-- 2. measurements in the window -------------------------------------------------------------------
trial_measurements as (
    select
        w.trial_id,
        w.start_date,
        w.adequate_dose_date,
        w.window_start_date,
        w.baseline_start_date,
        w.measurement_end_date,
        r.response_id,
        r.assessment_date,
        r.criteria,
        r.measure,
        r.value,
        r.period_days,
        r.setting,
        r.response_category
    from trial_windows_all as w
    join assessments as r
        on r.patient_id = w.patient_id
        and r.condition = w.condition
        and r.assessment_date between w.baseline_start_date
            - cast(getvariable('ilae_isi_lookback_days') as integer)
            and w.measurement_end_date
),

informative as (
    select
        w.trial_id,
        count(distinct r.response_id) as n_assessments
    from trial_windows_all as w
    join assessments as r
        on r.patient_id = w.patient_id
        and r.condition = w.condition
        and r.assessment_date >= w.window_start_date
        and (
            (r.response_category is not null and r.response_category <> 'not_evaluable'
                and r.assessment_date <= w.category_end_date)
            or (r.response_category is null and r.value is not null
                and r.assessment_date <= w.measurement_end_date)
        )
    group by all
),

-- scores: baseline and last value per measure (seizure counts are rates, not scores)
score_values as (
    select
        trial_id,
        measure,
        arg_max(value, (assessment_date, response_id)) filter (
            where assessment_date between baseline_start_date and start_date
        ) as baseline_score,
        arg_max(value, (assessment_date, response_id)) filter (
            where assessment_date between window_start_date and measurement_end_date
        ) as last_score
    from trial_measurements
    where value is not null and measure is not null and measure <> 'seizure_count'
    group by all
),

score_ranked as (
    select
        s.*,
        p.priority,
        row_number() over (
            partition by s.trial_id
            order by p.priority nulls last, s.measure
        ) as improvement_choice
    from score_values as s
    left join scale_priority as p on p.measure = s.measure
    where s.baseline_score > 0 and s.last_score is not null
),

score_improvement as (
    select
        trial_id,
        measure as improvement_measure,
        baseline_score,
        last_score,
        (baseline_score - last_score) / baseline_score as score_pct_improvement
    from score_ranked
    where improvement_choice = 1
),

remission_scores as (
    select
        s.trial_id,
        s.measure as remission_measure,
        s.last_score as remission_score,
        case s.measure
            when 'phq9' then s.last_score < getvariable('phq9_remission_below')
            when 'madrs' then s.last_score <= getvariable('madrs_remission_max')
            when 'hamd17' then s.last_score <= getvariable('hamd17_remission_max')
        end as remission
    from score_values as s
    join scale_priority as p on p.measure = s.measure
    where s.last_score is not null and s.measure in ('phq9', 'madrs', 'hamd17')
    qualify row_number() over (partition by s.trial_id order by p.priority) = 1
),

sledai as (
    select trial_id, baseline_score as baseline_sledai, last_score as latest_sledai
    from score_values
    where measure = 'sledai2k'
),

-- 3. epilepsy: seizures, ISI and the rule of three ---------------------------------------------
seizure_evidence as (
    select
        *,
        case
            when measure = 'seizure_count' then value > 0
            when criteria = 'ilae' then response_category in ('stable', 'progression')
        end as is_seizure
    from trial_measurements
    where (measure = 'seizure_count' and value is not null)
        or (criteria = 'ilae' and response_category in ('complete', 'stable', 'progression'))
),

pre_seizure_days as (
    select distinct trial_id, assessment_date
    from seizure_evidence
    where is_seizure
        and assessment_date >= start_date - cast(getvariable('ilae_isi_lookback_days') as integer)
        and assessment_date < start_date
),

pre_seizure_gaps as (
    select
        trial_id,
        assessment_date - lag(assessment_date) over (
            partition by trial_id order by assessment_date
        ) as gap_days
    from pre_seizure_days
),

isi as (
    select trial_id, max(gap_days) as isi_days
    from pre_seizure_gaps
    group by all
),

seizure_summary as (
    select
        trial_id,
        min(assessment_date) filter (
            where is_seizure and assessment_date > adequate_dose_date
                and assessment_date between window_start_date and measurement_end_date
        ) as first_seizure_after_adequate_date,
        max(assessment_date) filter (
            where is_seizure and assessment_date between window_start_date and measurement_end_date
        ) as last_seizure_on_trial_date,
        max(assessment_date) filter (
            where assessment_date between window_start_date and measurement_end_date
        ) as last_evidence_date,
        -- seizure rates from diaries (counts over their period)
        sum(value) filter (
            where measure = 'seizure_count' and period_days > 0
                and assessment_date >= start_date - cast(getvariable('ilae_isi_lookback_days') as integer)
                and assessment_date <= start_date
        ) / sum(period_days) filter (
            where measure = 'seizure_count' and period_days > 0
                and assessment_date >= start_date - cast(getvariable('ilae_isi_lookback_days') as integer)
                and assessment_date <= start_date
        ) as pre_treatment_seizure_rate,
        sum(value) filter (
            where measure = 'seizure_count' and period_days > 0
                and assessment_date between window_start_date and measurement_end_date
        ) / sum(period_days) filter (
            where measure = 'seizure_count' and period_days > 0
                and assessment_date between window_start_date and measurement_end_date
        ) as on_treatment_seizure_rate
    from seizure_evidence
    group by all
),

ilae as (
    select
        s.trial_id,
        i.isi_days,
        i.isi_days is null as isi_indeterminate,
        cast(ceil(greatest(
            getvariable('ilae_rule_of_three_multiplier') * coalesce(i.isi_days, 0),
            getvariable('ilae_min_seizure_free_days')
        )) as integer) as required_seizure_free_days,
        s.first_seizure_after_adequate_date,
        case when s.first_seizure_after_adequate_date is null
            then s.last_evidence_date - greatest(w.start_date, coalesce(s.last_seizure_on_trial_date, w.start_date))
        end as seizure_free_days,
        s.pre_treatment_seizure_rate,
        s.on_treatment_seizure_rate,
        case when s.pre_treatment_seizure_rate > 0 and s.on_treatment_seizure_rate is not null
            then 1 - s.on_treatment_seizure_rate / s.pre_treatment_seizure_rate
        end as seizure_pct_improvement
    from seizure_summary as s
    join trial_windows_all as w on w.trial_id = s.trial_id
    left join isi as i on i.trial_id = s.trial_id
),

ilae_outcomes as (
    select
        *,
        case
            when first_seizure_after_adequate_date is not null then 'failure'
            when seizure_free_days >= required_seizure_free_days then 'seizure_free'
            else 'undetermined'
        end as ilae_outcome
    from ilae
),

-- 4. blood pressure --------------------------------------------------------------------------------
bp_readings as (
    select
        trial_id,
        measure,
        value,
        assessment_date,
        case
            when setting in (select setting from out_of_office_settings) then 'out_of_office'
            else 'office'
        end as bp_setting
    from trial_measurements
    where measure in ('sbp', 'dbp') and value is not null
        and assessment_date between window_start_date and measurement_end_date
),

bp_latest as (
    select trial_id, bp_setting, max(assessment_date) as latest_date
    from bp_readings
    group by all
),

bp_means as (
    select
        b.trial_id,
        b.bp_setting,
        avg(b.value) filter (where b.measure = 'sbp') as sbp,
        avg(b.value) filter (where b.measure = 'dbp') as dbp
    from bp_readings as b
    join bp_latest as l on l.trial_id = b.trial_id and l.bp_setting = b.bp_setting
    where b.assessment_date > l.latest_date - cast(getvariable('bp_averaging_days') as integer)
    group by all
),

bp as (
    select
        trial_id,
        any_value(sbp) filter (where bp_setting = 'office') as office_sbp,
        any_value(dbp) filter (where bp_setting = 'office') as office_dbp,
        any_value(sbp) filter (where bp_setting = 'out_of_office') as out_of_office_sbp,
        any_value(dbp) filter (where bp_setting = 'out_of_office') as out_of_office_dbp
    from bp_means
    group by all
),

-- 5. assembled ---------------------------------------------------------------------------------------
assembled as (
    select
        t.trial_id,
        t.patient_id,
        t.condition,
        b.best_response_category,
        b.best_response_rank,
        b.best_response_original,
        coalesce(n.n_assessments, 0) > 0 as assessed,
        coalesce(n.n_assessments, 0) as n_assessments,
        b.first_response_date,
        p.progression_date,
        coalesce(p.progression_date between t.start_date and t.last_dose_date, false)
            as progression_on_therapy,
        case when p.progression_date > t.last_dose_date
            then p.progression_date - t.last_dose_date end as days_after_last_dose_to_progression,
        p.progression_date - t.start_date as time_to_progression_days,
        t.next_trial_start_date - t.start_date as time_to_next_treatment_days,
        e.ilae_outcome,
        e.isi_days,
        e.isi_indeterminate,
        e.required_seizure_free_days,
        e.first_seizure_after_adequate_date,
        e.seizure_free_days,
        coalesce(e.seizure_pct_improvement, s.score_pct_improvement) as pct_improvement,
        case when e.seizure_pct_improvement is not null then 'seizure_rate'
            else s.improvement_measure end as improvement_measure,
        s.baseline_score,
        s.last_score,
        rs.remission,
        bp.office_sbp,
        bp.office_dbp,
        case when bp.office_sbp is not null or bp.office_dbp is not null then
            coalesce(bp.office_sbp < getvariable('office_sbp_goal_mmhg'), true)
            and coalesce(bp.office_dbp < getvariable('office_dbp_goal_mmhg'), true)
        end as office_at_goal,
        bp.out_of_office_sbp,
        bp.out_of_office_dbp,
        case when bp.out_of_office_sbp is not null or bp.out_of_office_dbp is not null then
            coalesce(bp.out_of_office_sbp < getvariable('out_of_office_sbp_goal_mmhg'), true)
            and coalesce(bp.out_of_office_dbp < getvariable('out_of_office_dbp_goal_mmhg'), true)
        end as out_of_office_at_goal,
        sl.baseline_sledai,
        sl.latest_sledai
    from trials as t
    left join best_responses as b on b.trial_id = t.trial_id
    left join trial_progression as p on p.trial_id = t.trial_id
    left join informative as n on n.trial_id = t.trial_id
    left join ilae_outcomes as e on e.trial_id = t.trial_id
    left join score_improvement as s on s.trial_id = t.trial_id
    left join remission_scores as rs on rs.trial_id = t.trial_id
    left join bp on bp.trial_id = t.trial_id
    left join sledai as sl on sl.trial_id = t.trial_id
),

final as (
    select * from assembled
)

select * from final
