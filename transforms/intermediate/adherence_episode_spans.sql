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
-- Evaluation: each patient x medication group gets an integer key, so the window functions
-- partition and sort on integers and carry no text; what does not depend on the episode set
-- (intervals, next medication / dose, the medication runs, the known dose) is computed once per
-- dispensing in one pass before the three sets fan out; a set without carry-over skips the
-- carry-over passes; episodes are read off the dispensings that end them (one short window over
-- those: number, start = the previous end's next dispensing, count) instead of a group-by.
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
        1 as set_key,
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
        2, 'per_episode_simple', false, false, false,
        cast(getvariable('cma_per_episode_max_gap') as double),
        getvariable('cma_per_episode_max_gap_unit'),
        getvariable('cma_per_episode_append_max_gap'),
        getvariable('cma_per_episode_medication_change_starts_new'),
        getvariable('cma_per_episode_dosage_change_starts_new')
    union all
    select
        3, 'per_episode_carry', true,
        getvariable('cma_carry_only_for_same_medication'),
        getvariable('cma_consider_dosage_change'),
        cast(getvariable('cma_per_episode_max_gap') as double),
        getvariable('cma_per_episode_max_gap_unit'),
        getvariable('cma_per_episode_append_max_gap'),
        getvariable('cma_per_episode_medication_change_starts_new'),
        getvariable('cma_per_episode_dosage_change_starts_new')
),

-- each patient x medication group with its windows, numbered
groups as (
    select
        row_number() over (order by patient_id, medication_group) as group_key,
        *
    from (
        select distinct
            patient_id, medication_group, fu_start_day, fu_end_day, ow_start_day, ow_end_day
        from events
    )
),

-- the dispensings inside the follow-up window
followup_events as (
    select
        g.group_key,
        e.event_seq,
        e.event_day,
        e.duration_days,
        e.daily_dose,
        e.medication,
        e.fu_end_day
    from events as e
    join groups as g using (patient_id, medication_group)
    where e.event_day between e.fu_start_day and e.fu_end_day
),

-- what every episode set shares, in one pass over the group's dispensings
intervals as (
    select
        group_key,
        event_seq,
        event_day,
        duration_days,
        row_number() over w as k,
        count(*) over (partition by group_key) as n_events,
        min(event_day) over (partition by group_key) as first_event_day,
        lead(event_day) over w as next_event_day,
        coalesce(lead(event_day) over w, fu_end_day) - event_day as interval_days,
        medication is distinct from lead(medication) over w as medication_changes_next,
        daily_dose is distinct from lead(daily_dose) over w as dose_changes_next,
        case when medication is distinct from lag(medication) over w then 1 else 0 end
            as starts_medication_run,
        -- the dose carried forward from the last known one (else the first known, else 1)
        coalesce(
            daily_dose,
            last_value(daily_dose ignore nulls) over w,
            first_value(daily_dose ignore nulls) over (
                w rows between unbounded preceding and unbounded following),
            1.0) as dose_filled
    from followup_events
    window w as (partition by group_key order by event_seq)
),

medication_runs as (
    select
        *,
        sum(starts_medication_run) over (partition by group_key order by event_seq)
            as medication_run
    from intervals
),

set_events as (
    select
        e.*,
        s.set_key,
        s.carry_over,
        -- a medication change stops the carry-over when it is only for the same medication
        case when s.carry_same_medication then e.medication_run else 0 end as carry_run,
        case when s.carry_dose_adjusted then e.dose_filled else 1.0 end as dose_units
    from medication_runs as e
    cross join episode_sets as s
),

supply_balance as (
    select
        *,
        coalesce(sum((duration_days - interval_days) * dose_units) over (
            partition by group_key, set_key, carry_run order by event_seq
            rows between unbounded preceding and 1 preceding), 0) as cum_surplus_before
    from set_events
    where carry_over
),

gaps as (
    select
        * exclude (cum_surplus_before),
        (cum_surplus_before - min(cum_surplus_before) over (
            partition by group_key, set_key, carry_run order by event_seq
            rows unbounded preceding)) / dose_units as carry_in_days
    from supply_balance
    union all
    select *, 0 as carry_in_days
    from set_events
    where not carry_over
),

episode_breaks as (
    select
        g.group_key,
        g.set_key,
        g.event_seq,
        g.k,
        g.n_events,
        g.first_event_day,
        g.next_event_day,
        greatest(0, g.interval_days - g.duration_days - g.carry_in_days) as gap_days,
        case
            when s.max_gap_unit = 'percent' then s.max_gap / 100 * g.duration_days
            else greatest(s.max_gap, 0)
        end as max_gap_days,
        s.medication_change_starts_new and g.n_events > 1
            and (g.k = g.n_events or g.medication_changes_next) as ends_by_medication,
        s.dosage_change_starts_new and g.n_events > 1
            and (g.k = g.n_events or g.dose_changes_next) as ends_by_dose
    from gaps as g
    join episode_sets as s using (set_key)
),

-- the dispensings that end an episode (the last one always does)
episode_ends as (
    select
        *,
        gap_days > max_gap_days as ends_by_gap
    from episode_breaks
    where gap_days > max_gap_days or ends_by_medication or ends_by_dose or k = n_events
),

episodes as (
    select
        group_key,
        set_key,
        cast(row_number() over w as integer) as episode_id,
        cast(coalesce(lag(next_event_day) over w, first_event_day) as double) as episode_start_day,
        cast(k - coalesce(lag(k) over w, 0) as integer) as n_dispensings,
        cast(next_event_day as double) as next_episode_start_day,
        gap_days as end_gap_days,
        max_gap_days as end_max_gap_days,
        case
            when ends_by_gap then 'gap'
            when k = n_events then 'follow_up_end'
            when ends_by_medication then 'medication_change'
            else 'dosage_change'
        end as end_reason
    from episode_ends
    window w as (partition by group_key, set_key order by event_seq)
),

episode_durations as (
    select
        g.patient_id,
        g.medication_group,
        s.episode_set,
        e.*,
        s.append_max_gap,
        g.fu_start_day,
        g.fu_end_day,
        g.ow_start_day,
        g.ow_end_day,
        case
            -- appended: an episode ended by a gap longer than the maximum keeps the maximum
            when s.append_max_gap and e.end_gap_days > e.end_max_gap_days
                then e.end_gap_days - e.end_max_gap_days
            when s.append_max_gap then 0
            else e.end_gap_days
        end as gap_removed_days
    from episodes as e
    join groups as g using (group_key)
    join episode_sets as s using (set_key)
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
