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
-- without the cost of ordered aggregates (CMA9's weighted terms too: an ordered sum over the
-- window's rows cost half of this table's time at 10M events).
-- Evaluation: groups, follow-up windows and windows get integer keys, so window functions and
-- joins partition and sort on integers and carry no text. What no follow-up window changes (next
-- dispensing, runs of one medication, last / next known dose) is computed once per dispensing of
-- the group; a follow-up window holds a contiguous run of them, so its intervals, runs and doses
-- follow without a per-follow-up pass. The window's own carry-over (CMA5, CMA6) restarts at its
-- first dispensing; within a run of carry-over its balance is the follow-up's balance S minus its
-- value there, so carry_i = (S_i - min of S over the run's part inside the window) / dose (one
-- window function instead of re-running the chain). That window function is needed only where
-- the supply carried into the window's first dispensing is positive: where it is zero, the
-- follow-up's running minimum is reached at that dispensing, so from there on it is the
-- window's own and the window's carry-over is the follow-up's (a quarter of the window x
-- dispensing rows at 10M events need it; the table 83 -> 76 s by hand, identical). The
-- dispensings inside a window are joined
-- once and, with the last one before it, feed a single aggregate for CMA1..CMA9 (CMA8's lagged
-- window is a filter on the same rows, its previous dispensing the last inside before its start
-- or else the window's).
with

events as (
    select * from adherence_cma_events
),

spans as (
    select * from adherence_episode_spans
),

-- each patient x medication group with its windows, numbered (integer keys from here on)
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

-- the group's dispensings inside its follow-up window (every follow-up window lies in it)
group_events as (
    select
        g.group_key,
        e.event_seq,
        cast(e.event_day as double) as event_day,
        e.duration_days,
        e.daily_dose,
        e.medication
    from events as e
    join groups as g using (patient_id, medication_group)
    where e.event_day between e.fu_start_day and e.fu_end_day
),

-- what no follow-up window changes, once per dispensing: the next dispensing, the runs of one
-- medication, the last known dose at or before it and the next known dose from it (with days)
group_sequence as (
    select
        *,
        lead(event_day) over w as next_event_day,
        case when medication is distinct from lag(medication) over w then 1 else 0 end
            as starts_medication_run,
        last_value(daily_dose ignore nulls) over w as last_known_dose,
        last_value(case when daily_dose is not null then event_day end ignore nulls) over w
            as last_known_dose_day,
        first_value(daily_dose ignore nulls) over (
            w rows between current row and unbounded following) as next_known_dose,
        first_value(case when daily_dose is not null then event_day end ignore nulls) over (
            w rows between current row and unbounded following) as next_known_dose_day
    from group_events
    window w as (partition by group_key order by event_seq)
),

group_runs as (
    select
        * exclude (starts_medication_run),
        sum(starts_medication_run) over (partition by group_key order by event_seq)
            as medication_run
    from group_sequence
),

observation_windows as (
    select
        group_key,
        0 as window_slot,
        'observation' as window_kind,
        1 as window_id,
        cast(null as varchar) as episode_set,
        cast(null as bigint) as episode_id,
        cast(fu_start_day as double) as fu_start_day,
        cast(fu_end_day as double) as fu_end_day,
        cast(ow_start_day as double) as window_start_day,
        cast(ow_end_day as double) as window_end_day,
        cast(null as double) as end_gap_days,
        cast(null as double) as episode_duration_days
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
        group_key,
        w.window_id as window_slot,
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
             + getvariable('cma_sliding_window_duration_days') as double) as window_end_day,
        cast(null as double) as end_gap_days,
        cast(null as double) as episode_duration_days
    from sliding_starts
    cross join unnest(range(1, cast(greatest(n_windows, 0) as bigint) + 1)) as w(window_id)
),

-- CMA_per_episode: the episode is the follow-up window, its part inside the OW the window
episode_windows as (
    select
        g.group_key,
        0 as window_slot,
        s.episode_set as window_kind,
        cast(s.episode_id as integer) as window_id,
        s.episode_set,
        s.episode_id,
        s.episode_start_day as fu_start_day,
        s.episode_end_day as fu_end_day,
        greatest(s.episode_start_day, s.ow_start_day) as window_start_day,
        least(s.episode_end_day, s.ow_end_day) as window_end_day,
        s.end_gap_days,
        s.episode_end_day - s.episode_start_day as episode_duration_days
    from spans as s
    join groups as g using (patient_id, medication_group)
    where s.episode_set in ('per_episode_simple', 'per_episode_carry')
        and greatest(s.episode_start_day, s.ow_start_day) < least(s.episode_end_day, s.ow_end_day)
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
        row_number() over (order by group_key, episode_set, episode_id) as followup_key,
        *
    from (
        select distinct group_key, episode_set, episode_id, fu_start_day, fu_end_day
        from all_windows
    )
),

windows as (
    select
        -- the follow-up window's sliding windows are numbered 1.., its other window 0
        f.followup_key * 4294967296 + w.window_slot as window_key,
        f.followup_key,
        w.*
    from all_windows as w
    join followups as f
        on f.group_key = w.group_key
        and f.episode_set is not distinct from w.episode_set
        and f.episode_id is not distinct from w.episode_id
),

-- the carry-over chain over each follow-up window (carry-over into and within the windows)
followup_events as (
    select
        f.followup_key,
        e.event_seq,
        e.event_day,
        e.duration_days,
        e.next_event_day,
        -- the next dispensing, or the end of the follow-up window when it is the last in it
        least(coalesce(e.next_event_day, f.fu_end_day), f.fu_end_day) - e.event_day
            as interval_days,
        case
            when getvariable('cma_carry_only_for_same_medication') then e.medication_run
            else 0
        end as carry_run,
        case
            when getvariable('cma_consider_dosage_change')
                then coalesce(
                    e.daily_dose,
                    case when e.last_known_dose_day >= f.fu_start_day then e.last_known_dose end,
                    case when e.next_known_dose_day <= f.fu_end_day then e.next_known_dose end,
                    1.0)
            else 1.0
        end as dose_units
    from followups as f
    join group_runs as e
        on e.group_key = f.group_key
        and e.event_day between f.fu_start_day and f.fu_end_day
),

followup_balance as (
    select
        *,
        coalesce(sum((duration_days - interval_days) * dose_units) over (
            partition by followup_key, carry_run order by event_seq
            rows between unbounded preceding and 1 preceding), 0) as cum_surplus_before
    from followup_events
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
        event_day + duration_days + carry_in_days as supply_end_day,
        -- CMA8: the day the supply in hand at this dispensing runs out, the latest so far
        max(event_day + duration_days + carry_in_days) over (
            partition by followup_key order by event_seq rows unbounded preceding)
            as supply_end_day_so_far,
        next_event_day is distinct from event_day as is_last_of_day,
        lead(carry_in_days) over (partition by followup_key order by event_seq)
            as next_carry_in_days
    from followup_carry
),

last_of_day as (
    select * from followup_chain where is_last_of_day
),

-- the last dispensing before the window, and CMA8's lagged start: when the supply dispensed
-- before the window runs out, if later
window_starts as (
    select
        w.*,
        p.event_seq as prev_seq,
        p.event_day as prev_day,
        p.interval_days as prev_interval_days,
        p.gap_days as prev_gap_days,
        p.supply_end_day as prev_supply_end,
        greatest(w.window_start_day, coalesce(p.supply_end_day_so_far, w.window_start_day))
            as cma8_window_start_day,
        -- supply carried into the window's first dispensing (none before the first dispensing
        -- of the follow-up window or of a run of carry-over)
        coalesce(p.next_carry_in_days > 0, false) as carries_in
    from windows as w
    asof left join last_of_day as p
        on p.followup_key = w.followup_key and w.window_start_day > p.event_day
),

-- the dispensings inside each window, with the carry-over restarting at the first of them
-- (CMA5, CMA6): within a run of carry-over, the window's balance is the follow-up's minus its
-- value at the window's first dispensing, so carry = (S_i - min of S over the run's part inside
-- the window) / dose. Not materialised: its two uses below each read only their own windows.
window_events as not materialized (
    select
        w.window_key,
        w.window_start_day,
        w.window_end_day,
        w.cma8_window_start_day,
        c.event_seq,
        c.event_day,
        c.duration_days,
        c.interval_days,
        c.gap_days,
        c.supply_end_day,
        c.carry_run,
        c.dose_units,
        c.cum_surplus_before,
        c.carry_in_days,
        w.carries_in,
        case
            when c.next_event_day is null or c.next_event_day > w.window_end_day
                then w.window_end_day - c.event_day
            else c.interval_days
        end as window_interval_days
    from window_starts as w
    join followup_chain as c
        on c.followup_key = w.followup_key
        and c.event_day between w.window_start_day and w.window_end_day
),

window_gaps as (
    select
        window_key,
        window_start_day,
        window_end_day,
        cma8_window_start_day,
        event_seq,
        event_day,
        duration_days,
        interval_days,
        gap_days,
        supply_end_day,
        true as is_inside,
        greatest(0, window_interval_days - duration_days
            - (cum_surplus_before - min(cum_surplus_before) over (
                partition by window_key, carry_run order by event_seq rows unbounded preceding))
              / dose_units) as window_gap_days
    from window_events
    where carries_in
    union all
    -- nothing carried into the window: its carry-over is the follow-up's
    select
        window_key, window_start_day, window_end_day, cma8_window_start_day, event_seq,
        event_day, duration_days, interval_days, gap_days, supply_end_day, true,
        greatest(0, window_interval_days - duration_days - carry_in_days)
    from window_events
    where not carries_in
    -- CMA9 also counts the interval of the last dispensing before the window
    union all
    select
        window_key, window_start_day, window_end_day, cma8_window_start_day,
        prev_seq, prev_day, null, prev_interval_days, prev_gap_days, prev_supply_end, false, null
    from window_starts
    where prev_seq is not null
),

window_summary as (
    select
        window_key,
        -- CMA1..CMA6: the dispensings inside the window
        count(*) filter (where is_inside) as n_dispensings,
        min(event_day) filter (where is_inside) as first_day,
        max(event_day) filter (where is_inside) as last_day,
        cast(sum(cast(duration_days as decimal(38, 9))) filter (where is_inside) as double)
            as supply_days,
        arg_max(duration_days, event_seq) filter (where is_inside) as last_supply_days,
        cast(sum(cast(window_gap_days as decimal(38, 9))) filter (where is_inside) as double)
            as window_gap_days,
        arg_max(window_gap_days, event_seq) filter (where is_inside) as last_window_gap_days,
        -- CMA7: the follow-up chain's gaps inside the window
        cast(sum(cast(gap_days as decimal(38, 9))) filter (where is_inside) as double)
            - arg_max(gap_days, event_seq) filter (where is_inside) as gaps_before_last,
        arg_max(supply_end_day, event_seq) filter (where is_inside) as last_supply_end,
        -- CMA8: the same from its lagged start, and the last dispensing before that start
        count(*) filter (where is_inside and event_day >= cma8_window_start_day) as n_inside_8,
        min(event_day) filter (where is_inside and event_day >= cma8_window_start_day)
            as first_day_8,
        cast(sum(cast(gap_days as decimal(38, 9)))
                filter (where is_inside and event_day >= cma8_window_start_day) as double)
            - arg_max(gap_days, event_seq)
                filter (where is_inside and event_day >= cma8_window_start_day)
            as gaps_before_last_8,
        arg_max(supply_end_day, event_seq)
            filter (where is_inside and event_day >= cma8_window_start_day) as last_supply_end_8,
        arg_max(event_day, event_seq)
            filter (where is_inside and event_day < cma8_window_start_day) as prev_day_8,
        arg_max(gap_days, event_seq)
            filter (where is_inside and event_day < cma8_window_start_day) as prev_gap_days_8,
        arg_max(supply_end_day, event_seq)
            filter (where is_inside and event_day < cma8_window_start_day) as prev_supply_end_8,
        -- CMA9: the interval ratios of the follow-up chain, weighted by their days inside
        cast(sum(case
            when interval_days > 0
                and event_day < window_end_day
                and event_day + interval_days > window_start_day
            then cast((1 - gap_days / interval_days)
                * greatest(0, least(event_day + interval_days, window_end_day)
                              - greatest(event_day, window_start_day)) as decimal(38, 9))
        end) as double) as cma9_weighted
    from window_gaps
    group by window_key
),

window_values as (
    select
        w.*,
        coalesce(s.n_dispensings, 0) as n_dispensings,
        s.first_day,
        s.last_day,
        s.supply_days,
        s.last_supply_days,
        s.window_gap_days,
        s.last_window_gap_days,
        coalesce(s.n_dispensings, 0) as n_inside_7,
        s.first_day as first_day_7,
        s.gaps_before_last as gaps_before_last_7,
        s.last_supply_end as last_supply_end_7,
        w.window_start_day as start_day_7,
        w.prev_day as prev_day_7,
        w.prev_gap_days as prev_gap_days_7,
        w.prev_supply_end as prev_supply_end_7,
        coalesce(s.n_inside_8, 0) as n_inside_8,
        s.first_day_8,
        s.gaps_before_last_8,
        s.last_supply_end_8,
        w.cma8_window_start_day as start_day_8,
        coalesce(s.prev_day_8, w.prev_day) as prev_day_8,
        case when s.prev_day_8 is not null then s.prev_gap_days_8 else w.prev_gap_days end
            as prev_gap_days_8,
        case when s.prev_day_8 is not null then s.prev_supply_end_8 else w.prev_supply_end end
            as prev_supply_end_8,
        s.cma9_weighted / nullif(w.window_end_day - w.window_start_day, 0) as cma9_sum,
        -- CMA9 is NA only when no dispensing of the follow-up window falls on or before the
        -- window end
        w.prev_seq is not null or coalesce(s.n_dispensings, 0) > 0 as has_dispensing
    from window_starts as w
    left join window_summary as s using (window_key)
),

combined as (
    select
        g.patient_id,
        g.medication_group,
        v.window_kind,
        v.window_id,
        v.fu_start_day,
        v.fu_end_day,
        v.window_start_day,
        v.window_end_day,
        v.cma8_window_start_day,
        v.n_dispensings,
        case
            when v.n_dispensings >= 2 and v.last_day > v.first_day
                then (v.supply_days - v.last_supply_days) / (v.last_day - v.first_day)
        end as cma1,
        v.supply_days / nullif(v.window_end_day - v.first_day, 0) as cma2,
        case
            when v.n_dispensings >= 2 and v.last_day > v.first_day
                then 1 - (v.window_gap_days - v.last_window_gap_days) / (v.last_day - v.first_day)
        end as cma5,
        1 - v.window_gap_days / nullif(v.window_end_day - v.first_day, 0) as cma6,
        -- CMA7 for the window, and for CMA8's lagged window (macro in transforms/macros/);
        -- CMA8 when the supply from before outlasts the window: the lagged window is empty
        -- (AdhereR gives 0, or stops with an error when dispensings fall inside that supply)
        adherer_cma7(
            v.window_end_day, v.start_day_7, v.n_inside_7, v.first_day_7, v.gaps_before_last_7,
            v.last_supply_end_7, v.prev_day_7, v.prev_gap_days_7, v.prev_supply_end_7
        ) as cma7,
        adherer_cma7(
            v.window_end_day, v.start_day_8, v.n_inside_8, v.first_day_8, v.gaps_before_last_8,
            v.last_supply_end_8, v.prev_day_8, v.prev_gap_days_8, v.prev_supply_end_8
        ) as cma8,
        case when v.has_dispensing then coalesce(v.cma9_sum, 0) end as cma9,
        v.end_gap_days,
        v.episode_duration_days,
        v.window_end_day > v.window_start_day as is_valid
    from window_values as v
    join groups as g using (group_key)
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
        case when is_valid and window_kind <> 'per_episode_carry' and cma1 is not null
            then least(1, cma1) end as cma3,
        case when is_valid and window_kind <> 'per_episode_carry' and cma2 is not null
            then least(1, cma2) end as cma4,
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
