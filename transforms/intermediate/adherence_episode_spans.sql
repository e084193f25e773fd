-- adherence_episode_spans: AdhereR treatment episodes (compute.treatment.episodes) for the three
-- parameter sets the CMA family needs.
--
-- Grain: one row per patient x medication group x episode set x episode.
-- Input: adherence_cma_events.
-- Episode sets:
--   treatment          compute.treatment.episodes with the cma_episode_* parameters (AdhereR
--                      defaults: max gap 90 d, carry-over only for the same medication, dose-
--                      adjusted, medication change starts a new episode)
--   per_episode_simple the episodes CMA_per_episode builds for CMA1-4 (no carry-over), max gap
--                      cma_per_episode_max_gap (180 d)
--   per_episode_carry  the episodes CMA_per_episode builds for CMA5-9 (carry-over with the CMA's
--                      cma_carry_only_for_same_medication / cma_consider_dosage_change)
-- Rule (AdhereR R/adherer.R, compute.event.int.gaps + compute.treatment.episodes):
--   the follow-up window doubles as the observation window; for the dispensings in it, in order,
--     interval_i = next date - date_i (the last: FUW end - date_i)
--     gap_i      = max(0, interval_i - duration_i - carry_i)
--     carry_i+1  = max(0, duration_i + carry_i - interval_i), reset to 0 across a medication
--                  change when carry-over is only for the same medication, times
--                  dose_i / dose_i+1 when dosage changes are considered;
--   a dispensing ends an episode when its gap exceeds the maximum permissible gap (strictly), or
--   the medication (dose) changes after it and that option is on; an episode ends when its last
--   supply runs out (next episode start - gap); the last episode ends at the FUW end, minus its
--   final gap when that gap is at least the maximum permissible gap. With
--   *_append_max_gap the maximum gap is added back to episodes ended by a longer gap.
-- Carry-over in closed form (no per-event loop): with x_i = (duration_i - interval_i) * dose_i
-- (dose 1 unless dosage changes count) and S_i = x_1 + .. + x_i-1 within a run of carry-over,
-- the carried supply is carry_i = (S_i - min_{j<=i} S_j) / dose_i (Lindley's recursion for
-- W_i+1 = max(0, W_i + x_i), W_1 = 0, in drug-amount units so the dose ratio cancels).
-- Deviation from AdhereR (documented in docs/validation/adherence_adherer.md): a dosage change
-- starts a new episode when its option is on (AdhereR compares the dose column's name and in
-- effect never splits); appending the maximum gap to a single episode adds it (AdhereR's
-- single-episode branch subtracts it).
with

events as (
    select * from adherence_cma_events
),

episode_sets as (
    select
        'treatment' as episode_set,
        getvariable('cma_episode_carryover') as carry_over,
        getvariable('cma_episode_carryover')
            and getvariable('cma_episode_carry_only_for_same_medication') as carry_same_medication,
        getvariable('cma_episode_carryover')
            and getvariable('cma_episode_consider_dosage_change') as carry_dose_adjusted,
        cast(getvariable('cma_episode_max_gap') as double) as max_gap,
        getvariable('cma_episode_max_gap_unit') as max_gap_unit,
        getvariable('cma_episode_append_max_gap') as append_max_gap,
        getvariable('cma_episode_medication_change_starts_new') as medication_change_starts_new,
        getvariable('cma_episode_dosage_change_starts_new') as dosage_change_starts_new
    union all
    select
        'per_episode_simple', false, false, false,
        cast(getvariable('cma_per_episode_max_gap') as double),
        getvariable('cma_per_episode_max_gap_unit'),
        getvariable('cma_per_episode_append_max_gap'),
        getvariable('cma_per_episode_medication_change_starts_new'),
        getvariable('cma_per_episode_dosage_change_starts_new')
    union all
    select
        'per_episode_carry', true,
        getvariable('cma_carry_only_for_same_medication'),
        getvariable('cma_consider_dosage_change'),
        cast(getvariable('cma_per_episode_max_gap') as double),
        getvariable('cma_per_episode_max_gap_unit'),
        getvariable('cma_per_episode_append_max_gap'),
        getvariable('cma_per_episode_medication_change_starts_new'),
        getvariable('cma_per_episode_dosage_change_starts_new')
),

-- the dispensings inside the follow-up window, once per episode set
followup_events as (
    select e.*, s.*
    from events as e
    cross join episode_sets as s
    where e.event_day between e.fu_start_day and e.fu_end_day
),

intervals as (
    select
        *,
        row_number() over w as k,
        count(*) over (partition by patient_id, medication_group, episode_set) as n_events,
        coalesce(lead(event_day) over w, fu_end_day) - event_day as interval_days,
        lead(medication) over w as next_medication,
        lead(daily_dose) over w as next_daily_dose,
        -- a medication change stops the carry-over when it is only for the same medication
        case
            when carry_same_medication and medication is distinct from lag(medication) over w
                then 1 else 0
        end as starts_carry_run,
        coalesce(daily_dose, last_value(daily_dose ignore nulls) over w) as dose_known
    from followup_events
    window w as (partition by patient_id, medication_group, episode_set order by event_seq)
),

carry_runs as (
    select
        *,
        sum(starts_carry_run) over (
            partition by patient_id, medication_group, episode_set order by event_seq
        ) as carry_run,
        case
            when carry_dose_adjusted
                then coalesce(dose_known, first_value(dose_known ignore nulls) over (
                    partition by patient_id, medication_group, episode_set order by event_seq
                    rows between unbounded preceding and unbounded following), 1.0)
            else 1.0
        end as dose_units
    from intervals
),

supply_balance as (
    select
        *,
        (duration_days - interval_days) * dose_units as surplus,
        coalesce(sum((duration_days - interval_days) * dose_units) over (
            partition by patient_id, medication_group, episode_set, carry_run order by event_seq
            rows between unbounded preceding and 1 preceding), 0) as cum_surplus_before
    from carry_runs
),

gaps as (
    select
        *,
        case
            when carry_over then (cum_surplus_before - min(cum_surplus_before) over (
                partition by patient_id, medication_group, episode_set, carry_run order by event_seq
                rows unbounded preceding)) / dose_units
            else 0
        end as carry_in_days
    from supply_balance
),

episode_breaks as (
    select
        *,
        greatest(0, interval_days - duration_days - carry_in_days) as gap_days,
        case
            when max_gap_unit = 'percent' then max_gap / 100 * duration_days
            else greatest(max_gap, 0)
        end as max_gap_days
    from gaps
),

episode_ends as (
    select
        *,
        gap_days > max_gap_days as ends_by_gap,
        medication_change_starts_new and n_events > 1
            and (k = n_events or medication is distinct from next_medication) as ends_by_medication,
        dosage_change_starts_new and n_events > 1
            and (k = n_events or daily_dose is distinct from next_daily_dose) as ends_by_dose
    from episode_breaks
),

episode_numbers as (
    select
        *,
        cast(1 + coalesce(sum(case when ends_by_gap or ends_by_medication or ends_by_dose then 1 end)
            over (partition by patient_id, medication_group, episode_set order by event_seq
                  rows between unbounded preceding and 1 preceding), 0) as integer) as episode_id
    from episode_ends
),

episodes as (
    select
        patient_id,
        medication_group,
        episode_set,
        episode_id,
        any_value(fu_start_day) as fu_start_day,
        any_value(fu_end_day) as fu_end_day,
        any_value(ow_start_day) as ow_start_day,
        any_value(ow_end_day) as ow_end_day,
        any_value(append_max_gap) as append_max_gap,
        cast(min(event_day) as double) as episode_start_day,
        cast(count(*) as integer) as n_dispensings,
        arg_max(gap_days, event_seq) as end_gap_days,
        arg_max(max_gap_days, event_seq) as end_max_gap_days,
        arg_max(case
            when ends_by_gap then 'gap'
            when k = n_events then 'follow_up_end'
            when ends_by_medication then 'medication_change'
            else 'dosage_change' end, event_seq) as end_reason
    from episode_numbers
    group by all
),

episode_durations as (
    select
        *,
        lead(episode_start_day) over (
            partition by patient_id, medication_group, episode_set order by episode_id
        ) as next_episode_start_day,
        case
            -- appended: an episode ended by a gap longer than the maximum keeps the maximum
            when append_max_gap and end_gap_days > end_max_gap_days
                then end_gap_days - end_max_gap_days
            when append_max_gap then 0
            else end_gap_days
        end as gap_removed_days
    from episodes
),

final as (
    select
        patient_id,
        medication_group,
        episode_set,
        episode_id,
        episode_start_day,
        case
            when next_episode_start_day is not null
                then next_episode_start_day - gap_removed_days
            -- the last episode runs to the end of follow-up unless its final gap reached the maximum
            when not append_max_gap and end_gap_days < end_max_gap_days then fu_end_day
            else fu_end_day - gap_removed_days
        end as episode_end_day,
        end_gap_days,
        end_max_gap_days,
        case when end_reason = 'follow_up_end' and end_gap_days >= end_max_gap_days
            then 'gap' else end_reason end as end_reason,
        n_dispensings,
        next_episode_start_day,
        fu_start_day,
        fu_end_day,
        ow_start_day,
        ow_end_day
    from episode_durations
)

select * from final
