-- adherence_cma_windows: AdhereR's nine CMAs for every window the CMA family reports: the
-- observation window (adherence_cma), each sliding window (adherence_sliding_windows) and each
-- treatment episode intersected with the observation window (adherence_episodes).
--
-- Grain: one row per patient x medication group x window kind x window.
-- Input: adherence_cma_events (dispensings as AdhereR events, with the group's windows),
-- adherence_episode_spans (the episodes CMA_per_episode builds).
-- Source: AdhereR (GitHub ddediu/AdhereR, R/adherer.R, CMA1..CMA9, CMA_per_episode,
-- CMA_sliding_window; Vollmer et al., BMC Health Serv Res 2012). For a window [ws, we] inside a
-- follow-up window (FUW; the group's FUW, or the episode for per-episode CMAs):
--   CMA1 = supply of the window's dispensings except the last / days first..last dispensing
--   CMA2 = supply of all the window's dispensings / days first dispensing..we
--   CMA3, CMA4 = min(1, CMA1), min(1, CMA2)
--   CMA5 = 1 - gaps (carry-over restarting in the window) except after the last / days first..last
--   CMA6 = 1 - all those gaps (the last one runs to we) / days first..we
--   CMA7 = 1 - gap days inside the window, carry-over counted from the FUW start / (we - ws)
--   CMA8 = CMA7 over [ws', we], ws' = when the supply dispensed before ws runs out (if later)
--   CMA9 = supply ratio min(1, supply / interval) of each interval between dispensings over the
--          whole FUW (overflow carried on, the last interval ending at the FUW end), averaged
--          over the days of the window
-- NULL where AdhereR gives NA (too few dispensings; CMA7 with no dispensing before or in the
-- window) and where it would divide by zero (AdhereR: NaN / Inf).
-- Carry-over (CMA5..CMA9) uses the closed form of adherence_episode_spans (Lindley's recursion
-- in drug-amount units), with cma_carry_only_for_same_medication / cma_consider_dosage_change.
-- CMA7/CMA8 need, per window, the dispensings inside it and the last one before it (an ASOF
-- join), never a per-day expansion. Sums of fractional days are exact (DECIMAL(38,9), 1e-9 day)
-- so the result does not depend on thread scheduling (incremental builds equal full rebuilds)
-- without the cost of ordered aggregates.
with

events as (
    select * from adherence_cma_events
),

spans as (
    select * from adherence_episode_spans
),

groups as (
    select distinct
        patient_id, medication_group, fu_start_day, fu_end_day, ow_start_day, ow_end_day
    from events
),

observation_windows as (
    select
        patient_id, medication_group,
        'observation' as window_kind,
        1 as window_id,
        cast(null as varchar) as episode_set,
        cast(null as bigint) as episode_id,
        cast(fu_start_day as double) as fu_start_day,
        cast(fu_end_day as double) as fu_end_day,
        cast(ow_start_day as double) as window_start_day,
        cast(ow_end_day as double) as window_end_day
    from groups
),

sliding_starts as (
    select
        *,
        ow_start_day + getvariable('cma_sliding_window_start_days') as first_window_start_day,
        -- windows are laid while they fit in the observation window
        floor((ow_end_day - ow_start_day - getvariable('cma_sliding_window_start_days')
               - getvariable('cma_sliding_window_duration_days'))
              / getvariable('cma_sliding_window_step_days')) + 1 as n_windows
    from groups
),

sliding_windows as (
    select
        patient_id, medication_group,
        'sliding' as window_kind,
        cast(w.window_id as integer) as window_id,
        cast(null as varchar) as episode_set,
        cast(null as bigint) as episode_id,
        cast(fu_start_day as double) as fu_start_day,
        cast(fu_end_day as double) as fu_end_day,
        cast(first_window_start_day
             + (w.window_id - 1) * getvariable('cma_sliding_window_step_days') as double)
            as window_start_day,
        cast(first_window_start_day
             + (w.window_id - 1) * getvariable('cma_sliding_window_step_days')
             + getvariable('cma_sliding_window_duration_days') as double) as window_end_day
    from sliding_starts
    cross join unnest(range(1, cast(greatest(n_windows, 0) as bigint) + 1)) as w(window_id)
),

-- CMA_per_episode: the episode is the follow-up window, its part inside the OW the window
episode_windows as (
    select
        patient_id, medication_group,
        episode_set as window_kind,
        cast(episode_id as integer) as window_id,
        episode_set,
        episode_id,
        episode_start_day as fu_start_day,
        episode_end_day as fu_end_day,
        greatest(episode_start_day, ow_start_day) as window_start_day,
        least(episode_end_day, ow_end_day) as window_end_day
    from spans
    where episode_set in ('per_episode_simple', 'per_episode_carry')
        and greatest(episode_start_day, ow_start_day) < least(episode_end_day, ow_end_day)
),

all_windows as (
    select * from observation_windows
    union all
    select * from sliding_windows
    union all
    select * from episode_windows
),

-- a follow-up window: the group's (shared by its observation and sliding windows) or an episode
followups as (
    select
        row_number() over (order by patient_id, medication_group, episode_set, episode_id)
            as followup_key,
        *
    from (
        select distinct
            patient_id, medication_group, episode_set, episode_id, fu_start_day, fu_end_day
        from all_windows
    )
),

windows as (
    select
        row_number() over (order by w.patient_id, w.medication_group, w.window_kind, w.window_id)
            as window_key,
        f.followup_key,
        w.*
    from all_windows as w
    join followups as f
        on f.patient_id = w.patient_id
        and f.medication_group = w.medication_group
        and f.episode_set is not distinct from w.episode_set
        and f.episode_id is not distinct from w.episode_id
),

-- the carry-over chain over each follow-up window (carry-over into and within the windows)
followup_events as (
    select
        f.followup_key,
        f.fu_end_day,
        e.event_seq,
        cast(e.event_day as double) as event_day,
        e.duration_days,
        e.daily_dose,
        e.medication
    from followups as f
    join events as e
        on e.patient_id = f.patient_id
        and e.medication_group = f.medication_group
        and e.event_day between f.fu_start_day and f.fu_end_day
),

followup_intervals as (
    select
        *,
        coalesce(lead(event_day) over w, fu_end_day) - event_day as interval_days,
        case
            when getvariable('cma_carry_only_for_same_medication')
                and medication is distinct from lag(medication) over w then 1 else 0
        end as starts_carry_run,
        coalesce(daily_dose, last_value(daily_dose ignore nulls) over w) as dose_known
    from followup_events
    window w as (partition by followup_key order by event_seq)
),

followup_runs as (
    select
        *,
        sum(starts_carry_run) over (partition by followup_key order by event_seq) as carry_run,
        case
            when getvariable('cma_consider_dosage_change')
                then coalesce(dose_known, first_value(dose_known ignore nulls) over (
                    partition by followup_key order by event_seq
                    rows between unbounded preceding and unbounded following), 1.0)
            else 1.0
        end as dose_units
    from followup_intervals
),

followup_balance as (
    select
        *,
        coalesce(sum((duration_days - interval_days) * dose_units) over (
            partition by followup_key, carry_run order by event_seq
            rows between unbounded preceding and 1 preceding), 0) as cum_surplus_before
    from followup_runs
),

followup_carry as (
    select
        *,
        (cum_surplus_before - min(cum_surplus_before) over (
            partition by followup_key, carry_run order by event_seq rows unbounded preceding))
            / dose_units as carry_in_days
    from followup_balance
),

followup_chain as (
    select
        *,
        greatest(0, interval_days - duration_days - carry_in_days) as gap_days,
        -- CMA8: the day the supply in hand at this dispensing runs out, the latest so far
        max(event_day + duration_days + carry_in_days) over (
            partition by followup_key order by event_seq rows unbounded preceding)
            as supply_end_day_so_far,
        event_seq = max(event_seq) over (partition by followup_key, event_day) as is_last_of_day
    from followup_carry
),

last_of_day as (
    select * from followup_chain where is_last_of_day
),

-- CMA8's lagged start: when the supply dispensed before the window runs out, if later
cma8_starts as (
    select
        w.window_key,
        greatest(w.window_start_day, coalesce(p.supply_end_day_so_far, w.window_start_day))
            as cma8_window_start_day
    from windows as w
    asof left join last_of_day as p
        on p.followup_key = w.followup_key and w.window_start_day > p.event_day
),

-- CMA7 is computed for the window (variant 7) and for CMA8's lagged window (variant 8)
cma7_windows as (
    select window_key, followup_key, 7 as variant, window_start_day as start_day,
        window_end_day as end_day
    from windows
    union all
    select w.window_key, w.followup_key, 8, s.cma8_window_start_day, w.window_end_day
    from windows as w
    join cma8_starts as s using (window_key)
),

cma7_inside as (
    select
        w.window_key,
        w.variant,
        count(c.event_seq) as n_inside,
        min(c.event_day) as first_day,
        cast(sum(cast(c.gap_days as decimal(38, 9))) as double) - arg_max(c.gap_days, c.event_seq) as gaps_before_last,
        arg_max(c.event_day + c.duration_days + c.carry_in_days, c.event_seq) as last_supply_end
    from cma7_windows as w
    left join followup_chain as c
        on c.followup_key = w.followup_key and c.event_day between w.start_day and w.end_day
    group by all
),

cma7_before as (
    select
        w.window_key,
        w.variant,
        w.start_day,
        w.end_day,
        p.event_day as prev_day,
        p.gap_days as prev_gap_days,
        p.event_day + p.duration_days + p.carry_in_days as prev_supply_end
    from cma7_windows as w
    asof left join last_of_day as p
        on p.followup_key = w.followup_key and w.start_day > p.event_day
),

cma7_values as (
    select
        b.window_key,
        b.variant,
        case
            -- CMA8 when the supply from before outlasts the window: the lagged window is empty
            -- (AdhereR gives 0, or stops with an error when dispensings fall inside that supply)
            when b.end_day <= b.start_day then null
            when i.n_inside = 0 and b.prev_day is null then null
            when i.n_inside = 0 then
                -- no dispensing inside: the last one before it carries its supply in
                case
                    when greatest(0, b.end_day - b.prev_supply_end) <= b.end_day - b.start_day
                        then 1 - greatest(0, b.end_day - b.prev_supply_end)
                            / (b.end_day - b.start_day)
                    else 0.0
                end
            else 1 - (
                i.gaps_before_last
                + greatest(0, b.end_day - i.last_supply_end)
                + case
                    when b.prev_day is null then i.first_day - b.start_day
                    else least(b.prev_gap_days, i.first_day - b.start_day)
                end
            ) / (b.end_day - b.start_day)
        end as cma7
    from cma7_before as b
    join cma7_inside as i using (window_key, variant)
),

-- CMA9: the interval ratios of the follow-up chain, weighted by their days inside the window
cma9_values as (
    select
        w.window_key,
        sum((1 - c.gap_days / c.interval_days)
            * greatest(0, least(c.event_day + c.interval_days, w.window_end_day)
                          - greatest(c.event_day, w.window_start_day))
            order by c.event_seq)
            / nullif(any_value(w.window_end_day - w.window_start_day), 0) as cma9_sum
    from windows as w
    left join followup_chain as c
        on c.followup_key = w.followup_key
        and c.interval_days > 0
        and c.event_day < w.window_end_day
        and c.event_day + c.interval_days > w.window_start_day
    group by all
),

-- CMA1..CMA6: the dispensings inside the window, carry-over restarting at the first of them
window_events as (
    select
        w.window_key,
        w.window_end_day,
        c.event_seq,
        c.event_day,
        c.duration_days,
        c.medication,
        c.dose_units
    from windows as w
    join followup_chain as c
        on c.followup_key = w.followup_key
        and c.event_day between w.window_start_day and w.window_end_day
),

window_intervals as (
    select
        *,
        coalesce(lead(event_day) over w, window_end_day) - event_day as interval_days,
        case
            when getvariable('cma_carry_only_for_same_medication')
                and medication is distinct from lag(medication) over w then 1 else 0
        end as starts_carry_run
    from window_events
    window w as (partition by window_key order by event_seq)
),

window_runs as (
    select
        *,
        sum(starts_carry_run) over (partition by window_key order by event_seq) as carry_run
    from window_intervals
),

window_balance as (
    select
        *,
        coalesce(sum((duration_days - interval_days) * dose_units) over (
            partition by window_key, carry_run order by event_seq
            rows between unbounded preceding and 1 preceding), 0) as cum_surplus_before
    from window_runs
),

window_gaps as (
    select
        *,
        greatest(0, interval_days - duration_days
            - (cum_surplus_before - min(cum_surplus_before) over (
                partition by window_key, carry_run order by event_seq rows unbounded preceding))
              / dose_units) as gap_days
    from window_balance
),

window_summary as (
    select
        window_key,
        count(*) as n_dispensings,
        min(event_day) as first_day,
        max(event_day) as last_day,
        cast(sum(cast(duration_days as decimal(38, 9))) as double) as supply_days,
        arg_max(duration_days, event_seq) as last_supply_days,
        cast(sum(cast(gap_days as decimal(38, 9))) as double) as gap_days,
        arg_max(gap_days, event_seq) as last_gap_days
    from window_gaps
    group by window_key
),

simple_cmas as (
    select
        w.window_key,
        coalesce(s.n_dispensings, 0) as n_dispensings,
        case
            when s.n_dispensings >= 2 and s.last_day > s.first_day
                then (s.supply_days - s.last_supply_days) / (s.last_day - s.first_day)
        end as cma1,
        s.supply_days / nullif(w.window_end_day - s.first_day, 0) as cma2,
        case
            when s.n_dispensings >= 2 and s.last_day > s.first_day
                then 1 - (s.gap_days - s.last_gap_days) / (s.last_day - s.first_day)
        end as cma5,
        1 - s.gap_days / nullif(w.window_end_day - s.first_day, 0) as cma6
    from windows as w
    left join window_summary as s using (window_key)
),

-- CMA9 is NA only when no dispensing of the follow-up window falls on or before the window end
cma9_defined as (
    select w.window_key, p.event_day is not null as has_dispensing
    from windows as w
    asof left join last_of_day as p
        on p.followup_key = w.followup_key and w.window_end_day >= p.event_day
),

episodes as (
    select * from spans where episode_set in ('per_episode_simple', 'per_episode_carry')
),

combined as (
    select
        w.patient_id,
        w.medication_group,
        w.window_kind,
        w.window_id,
        w.fu_start_day,
        w.fu_end_day,
        w.window_start_day,
        w.window_end_day,
        s8.cma8_window_start_day,
        sc.n_dispensings,
        sc.cma1,
        sc.cma2,
        case when sc.cma1 is not null then least(1, sc.cma1) end as cma3,
        case when sc.cma2 is not null then least(1, sc.cma2) end as cma4,
        sc.cma5,
        sc.cma6,
        c7.cma7,
        c8.cma7 as cma8,
        case when d.has_dispensing then coalesce(c9.cma9_sum, 0) end as cma9,
        ep.end_gap_days,
        ep.episode_end_day - ep.episode_start_day as episode_duration_days,
        w.window_end_day > w.window_start_day as is_valid
    from windows as w
    join simple_cmas as sc using (window_key)
    join cma8_starts as s8 using (window_key)
    join cma7_values as c7 on c7.window_key = w.window_key and c7.variant = 7
    join cma7_values as c8 on c8.window_key = w.window_key and c8.variant = 8
    join cma9_values as c9 on c9.window_key = w.window_key
    join cma9_defined as d on d.window_key = w.window_key
    left join episodes as ep
        on w.window_kind = ep.episode_set
        and ep.patient_id = w.patient_id
        and ep.medication_group = w.medication_group
        and ep.episode_id = w.window_id
),

final as (
    select
        patient_id,
        medication_group,
        window_kind,
        window_id,
        fu_start_day,
        fu_end_day,
        window_start_day,
        window_end_day,
        cma8_window_start_day,
        n_dispensings,
        -- CMA_per_episode: CMA1-4 on the episodes built without carry-over, CMA5-9 with it;
        -- a window emptied by the end of follow-up has no CMA
        case when is_valid and window_kind <> 'per_episode_carry' then cma1 end as cma1,
        case when is_valid and window_kind <> 'per_episode_carry' then cma2 end as cma2,
        case when is_valid and window_kind <> 'per_episode_carry' then cma3 end as cma3,
        case when is_valid and window_kind <> 'per_episode_carry' then cma4 end as cma4,
        case when is_valid and window_kind <> 'per_episode_simple' then cma5 end as cma5,
        case when is_valid and window_kind <> 'per_episode_simple' then cma6 end as cma6,
        case when is_valid and window_kind <> 'per_episode_simple' then cma7 end as cma7,
        case when is_valid and window_kind <> 'per_episode_simple' then cma8 end as cma8,
        case when is_valid and window_kind <> 'per_episode_simple' then cma9 end as cma9,
        end_gap_days,
        episode_duration_days
    from combined
)

select * from final
