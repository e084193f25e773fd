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
-- CMA7/CMA8 need, per window, the dispensings inside it and the last one before it, never a
-- per-day expansion. Sums of fractional days are exact (decimals of 1e-9 day) so the result
-- does not depend on thread scheduling (incremental builds equal full rebuilds) without the
-- cost of ordered aggregates. The per-dispensing running sums are kept as DECIMAL(18,9), 64-bit
-- integers (up to a billion days: a follow-up's supply is at most its dispensings x
-- ingest.max_days_supply), not the DECIMAL(38,9) a sum returns: at 10M events this halved
-- what the query spilled to disk (20.9M rows).
-- Evaluation: groups, follow-up windows and windows get integer keys, so window functions and
-- joins partition and sort on integers and carry no text. What no follow-up window changes (next
-- dispensing, runs of one medication, last / next known dose) is computed once per dispensing of
-- the group; a follow-up window holds a contiguous run of them, so its intervals, runs and doses
-- follow without a per-follow-up pass. Along each follow-up window the dispensings are numbered
-- and carry running sums (supply, gaps, CMA9's interval terms); the dispensings inside a window
-- are those numbered after the last one before it up to the last one on or before its end, so
-- its sums are differences of two running sums and its CMAs need just those two dispensings.
-- Both are found by equality joins, not range or ASOF joins: a dispensing is the last before
-- (or the last on or before) the windows whose start (end) falls between it and the next
-- dispensing, and for sliding windows, laid at a fixed step, those are a range of slot numbers
-- computed from its day (at 10M events, with 4.5M sliding windows: the range join of windows
-- and dispensings and the aggregate over their 39M pairs cost more than half of this table).
-- The window's own carry-over (CMA5, CMA6) restarts at its first dispensing; within a run of
-- carry-over its balance is the follow-up's balance S minus its value there, so carry_i = (S_i -
-- min of S over the run's part inside the window) / dose (one window function instead of
-- re-running the chain). That needs the window's dispensings row by row, but only where the
-- supply carried into its first dispensing is positive: where it is zero, the follow-up's running
-- minimum is reached at that dispensing, so from there on the window's carry-over is the
-- follow-up's and so are its gaps but the last one's (cut at the window end). CMA8's lagged
-- window starts where the supply dispensed before the window runs out: where that is after the
-- window start, an ASOF join finds the last dispensing before it.
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

-- every follow-up window with its one window at slot 0: the group's follow-up window with the
-- observation window (and the group's sliding windows, slots 1..), or an episode with its part
-- inside the OW (CMA_per_episode: the episode is the follow-up window)
followup_windows as (
    select
        group_key,
        'observation' as window_kind,
        1 as window_id,
        cast(null as varchar) as episode_set,
        cast(null as bigint) as episode_id,
        cast(fu_start_day as double) as fu_start_day,
        cast(fu_end_day as double) as fu_end_day,
        cast(ow_start_day as double) as window_start_day,
        cast(ow_end_day as double) as window_end_day,
        cast(null as double) as end_gap_days,
        cast(null as double) as episode_duration_days,
        cast(ow_start_day + getvariable('cma_sliding_window_start_days') as double)
            as sliding_start_day,
        -- sliding windows are laid while they fit in the observation window
        cast(greatest(floor((ow_end_day - ow_start_day
                             - getvariable('cma_sliding_window_start_days')
                             - getvariable('cma_sliding_window_duration_days'))
                            / getvariable('cma_sliding_window_step_days')) + 1, 0) as bigint)
            as n_sliding
    from groups
    union all
    select
        g.group_key,
        s.episode_set,
        cast(s.episode_id as integer),
        s.episode_set,
        s.episode_id,
        s.episode_start_day,
        s.episode_end_day,
        greatest(s.episode_start_day, s.ow_start_day),
        least(s.episode_end_day, s.ow_end_day),
        s.end_gap_days,
        s.episode_end_day - s.episode_start_day,
        null,
        0
    from spans as s
    join groups as g using (patient_id, medication_group)
    where s.episode_set in ('per_episode_simple', 'per_episode_carry')
        and greatest(s.episode_start_day, s.ow_start_day) < least(s.episode_end_day, s.ow_end_day)
),

followups as (
    select
        row_number() over (order by group_key, episode_set, episode_id) as followup_key,
        *
    from followup_windows
),

-- window_key = followup_key * 2^32 + slot: 0 for the follow-up window's own window, k for its
-- k-th sliding window (start = sliding_start_day + (k - 1) * step, end = start + duration)
windows as (
    select
        followup_key * 4294967296 as window_key,
        followup_key,
        group_key,
        window_kind,
        window_id,
        fu_start_day,
        fu_end_day,
        window_start_day,
        window_end_day,
        end_gap_days,
        episode_duration_days
    from followups
    union all
    select
        f.followup_key * 4294967296 + f.slot,
        f.followup_key,
        f.group_key,
        'sliding',
        cast(f.slot as integer),
        f.fu_start_day,
        f.fu_end_day,
        f.sliding_start_day + (f.slot - 1) * getvariable('cma_sliding_window_step_days'),
        f.sliding_start_day + (f.slot - 1) * getvariable('cma_sliding_window_step_days')
            + getvariable('cma_sliding_window_duration_days'),
        cast(null as double),
        cast(null as double)
    from (
        select *, unnest(range(1, n_sliding + 1)) as slot from followups where n_sliding > 0
    ) as f
),

-- the carry-over chain over each follow-up window (carry-over into and within the windows)
followup_events as (
    select
        f.followup_key,
        f.window_start_day as slot_start_day,
        f.window_end_day as slot_end_day,
        f.sliding_start_day,
        f.n_sliding,
        e.event_seq,
        e.event_day,
        e.duration_days,
        e.next_event_day,
        -- the next dispensing inside the follow-up window (those in it are a run of the group's)
        case when e.next_event_day <= f.fu_end_day then e.next_event_day end
            as next_day_in_followup,
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

followup_gaps as (
    select
        *,
        greatest(0, interval_days - duration_days - carry_in_days) as gap_days,
        event_day + duration_days + carry_in_days as supply_end_day
    from followup_carry
),

-- CMA9's term for the whole interval to the next dispensing: (1 - gap / interval) x interval,
-- its days inside any window holding both its ends
followup_terms as (
    select
        *,
        case
            when interval_days > 0
            then cast((1 - gap_days / interval_days)
                * greatest(0, (event_day + interval_days) - event_day) as decimal(18, 9))
            else 0
        end as cma9_days
    from followup_gaps
),

-- running sums over the follow-up window (exact decimals), so a window's sums are differences
-- of two of them: supply, gaps, and CMA9's interval terms
followup_chain as (
    select
        *,
        row_number() over w as event_index,
        -- CMA8: the day the supply in hand at this dispensing runs out, the latest so far
        max(supply_end_day) over (w rows unbounded preceding) as supply_end_day_so_far,
        next_event_day is distinct from event_day as is_last_of_day,
        lead(carry_in_days) over w as next_carry_in_days,
        cast(sum(cast(duration_days as decimal(18, 9))) over (w rows unbounded preceding)
            as decimal(18, 9)) as cum_supply_days,
        cast(sum(cast(gap_days as decimal(18, 9))) over (w rows unbounded preceding)
            as decimal(18, 9)) as cum_gap_days,
        cast(sum(cma9_days) over (w rows unbounded preceding) as decimal(18, 9)) as cum_cma9_days
    from followup_terms
    window w as (partition by followup_key order by event_seq)
),

last_of_day as (
    select * from followup_chain where is_last_of_day
),

-- the last dispensing before each window (by the windows it precedes: its own window when that
-- starts after it and no later than the next dispensing; the sliding windows starting in
-- (event_day, next_day_in_followup]), and where none precedes a window, the follow-up window's
-- first dispensing as the window's first (before_index 0)
window_prev as (
    select
        followup_key * 4294967296 as window_key,
        event_index as before_index,
        next_day_in_followup as first_day,
        event_seq as prev_seq,
        event_day as prev_day,
        interval_days as prev_interval_days,
        gap_days as prev_gap_days,
        supply_end_day as prev_supply_end,
        supply_end_day_so_far as prev_supply_end_so_far,
        next_carry_in_days > 0 as carries_in,
        cum_supply_days as prev_cum_supply_days,
        cum_gap_days as prev_cum_gap_days,
        cum_cma9_days as prev_cum_cma9_days
    from last_of_day
    where event_day < slot_start_day
        and (next_day_in_followup is null or next_day_in_followup >= slot_start_day)
    union all
    select
        followup_key * 4294967296 + slot, event_index, next_day_in_followup, event_seq,
        event_day, interval_days, gap_days, supply_end_day, supply_end_day_so_far,
        next_carry_in_days > 0, cum_supply_days, cum_gap_days, cum_cma9_days
    from (
        select
            *,
            unnest(range(
                cast(greatest(1, floor((event_day - sliding_start_day)
                    / getvariable('cma_sliding_window_step_days')) + 2) as bigint),
                cast(least(n_sliding, coalesce(
                    floor((next_day_in_followup - sliding_start_day)
                          / getvariable('cma_sliding_window_step_days')) + 1,
                    n_sliding)) as bigint) + 1)) as slot
        from last_of_day
        where n_sliding > 0
    )
    union all
    select
        followup_key * 4294967296, 0, event_day, null, null, null, null, null, null, false,
        0, 0, 0
    from followup_chain
    where event_index = 1 and event_day >= slot_start_day
    union all
    select
        followup_key * 4294967296 + slot, 0, event_day, null, null, null, null, null, null,
        false, 0, 0, 0
    from (
        select
            *,
            unnest(range(1, cast(least(n_sliding, floor((event_day - sliding_start_day)
                / getvariable('cma_sliding_window_step_days')) + 1) as bigint) + 1)) as slot
        from followup_chain
        where event_index = 1 and n_sliding > 0
    )
),

-- the last dispensing on or before each window's end (the window's last when inside it): its
-- own window when that ends on or after it and before the next dispensing; the sliding windows
-- ending in [event_day, next_day_in_followup)
window_last as (
    select
        followup_key * 4294967296 as window_key,
        event_index as last_index,
        event_day as last_day,
        duration_days as last_supply_days,
        interval_days as last_interval_days,
        gap_days as last_gap_days,
        carry_in_days as last_carry_in_days,
        supply_end_day as last_supply_end,
        cma9_days as last_full_cma9_days,
        cum_supply_days as last_cum_supply_days,
        cum_gap_days as last_cum_gap_days,
        cum_cma9_days as last_cum_cma9_days
    from last_of_day
    where event_day <= slot_end_day
        and (next_day_in_followup is null or next_day_in_followup > slot_end_day)
    union all
    select
        followup_key * 4294967296 + slot, event_index, event_day, duration_days,
        interval_days, gap_days, carry_in_days, supply_end_day, cma9_days, cum_supply_days,
        cum_gap_days, cum_cma9_days
    from (
        select
            *,
            unnest(range(
                cast(greatest(1, ceil((event_day - sliding_start_day
                    - getvariable('cma_sliding_window_duration_days'))
                    / getvariable('cma_sliding_window_step_days')) + 1) as bigint),
                cast(least(n_sliding, coalesce(
                    ceil((next_day_in_followup - sliding_start_day
                          - getvariable('cma_sliding_window_duration_days'))
                         / getvariable('cma_sliding_window_step_days')),
                    n_sliding)) as bigint) + 1)) as slot
        from last_of_day
        where n_sliding > 0
    )
),

-- each window with the dispensing before it and its last: the dispensings inside are the
-- follow-up window's from before_index + 1 to last_index
window_bounds as (
    select
        w.*,
        coalesce(p.before_index, 0) as before_index,
        greatest(coalesce(l.last_index, 0) - coalesce(p.before_index, 0), 0) as n_dispensings,
        p.* exclude (window_key, before_index),
        l.* exclude (window_key),
        greatest(w.window_start_day, coalesce(p.prev_supply_end_so_far, w.window_start_day))
            as cma8_window_start_day,
        coalesce(p.carries_in, false) as carries_in_window
    from windows as w
    left join window_prev as p using (window_key)
    left join window_last as l using (window_key)
),

-- CMA8's lagged window: where the supply from before the window outlasts its start, the last
-- dispensing before the lagged start (inside the window, or the one before it)
cma8_prev as (
    select
        w.window_key,
        p.event_index as before_index_8,
        p.next_day_in_followup as first_day_8,
        p.event_day as prev_day_8,
        p.gap_days as prev_gap_days_8,
        p.supply_end_day as prev_supply_end_8,
        p.cum_gap_days as prev_cum_gap_days_8
    from window_bounds as w
    asof join last_of_day as p
        on p.followup_key = w.followup_key and w.cma8_window_start_day > p.event_day
    where w.cma8_window_start_day > w.window_start_day and w.n_dispensings > 0
),

-- the window's own carry-over (CMA5, CMA6) restarts at its first dispensing: within a run of
-- carry-over the window's balance is the follow-up's minus its value at the window's first
-- dispensing, so carry = (S_i - min of S over the run's part inside the window) / dose. Only
-- where supply is carried into the window's first dispensing; elsewhere the window's
-- carry-over is the follow-up's.
carry_windows as (
    select window_key, followup_key, window_end_day, before_index, last_index
    from window_bounds
    where carries_in_window and n_dispensings > 0
),

-- each dispensing with the windows that hold it: its follow-up window's own and the sliding
-- windows with start <= event_day <= end
window_members as (
    select
        followup_key * 4294967296 as window_key, event_index, event_day, carry_run,
        interval_days, duration_days, cum_surplus_before, dose_units
    from followup_chain
    where event_day between slot_start_day and slot_end_day
    union all
    select
        followup_key * 4294967296 + slot, event_index, event_day, carry_run, interval_days,
        duration_days, cum_surplus_before, dose_units
    from (
        select
            *,
            unnest(range(
                cast(greatest(1, ceil((event_day - sliding_start_day
                    - getvariable('cma_sliding_window_duration_days'))
                    / getvariable('cma_sliding_window_step_days')) + 1) as bigint),
                cast(least(n_sliding, floor((event_day - sliding_start_day)
                    / getvariable('cma_sliding_window_step_days')) + 1) as bigint) + 1)) as slot
        from followup_chain
        where n_sliding > 0
    )
),

carry_window_events as (
    select
        w.window_key,
        c.carry_run,
        c.event_index = w.last_index as is_last,
        greatest(0,
            case when c.event_index = w.last_index
                then w.window_end_day - c.event_day else c.interval_days end
            - c.duration_days
            - (c.cum_surplus_before - min(c.cum_surplus_before) over (
                partition by w.window_key, c.carry_run order by c.event_index
                rows unbounded preceding)) / c.dose_units) as window_gap_days
    from window_members as c
    join carry_windows as w using (window_key)
),

carry_window_gaps as (
    select
        window_key,
        cast(sum(cast(window_gap_days as decimal(38, 9))) as double) as window_gap_days,
        max(window_gap_days) filter (where is_last) as last_window_gap_days
    from carry_window_events
    group by window_key
),

window_values as (
    select
        w.*,
        c8.* exclude (window_key),
        -- the window's last gap: the days from its last dispensing to its end
        greatest(0, w.window_end_day - w.last_day - w.last_supply_days - w.last_carry_in_days)
            as own_last_window_gap_days,
        cg.window_gap_days as carry_window_gap_days,
        cg.last_window_gap_days as carry_last_window_gap_days,
        -- CMA9: the intervals of the dispensing before the window and of its last, clipped to
        -- the window (macro in transforms/macros/)
        adherer_cma9_days(w.prev_day, w.prev_interval_days, w.prev_gap_days,
                          w.window_start_day, w.window_end_day) as prev_cma9_days,
        adherer_cma9_days(w.last_day, w.last_interval_days, w.last_gap_days,
                          w.window_start_day, w.window_end_day) as last_cma9_days
    from window_bounds as w
    left join cma8_prev as c8 using (window_key)
    left join carry_window_gaps as cg using (window_key)
),

window_summary as (
    select
        *,
        case when n_dispensings > 0 then
            cast(last_cum_supply_days - coalesce(prev_cum_supply_days, 0) as double)
        end as supply_days,
        case when n_dispensings > 0 then
            coalesce(carry_window_gap_days, cast(
                last_cum_gap_days - cast(last_gap_days as decimal(38, 9))
                - coalesce(prev_cum_gap_days, 0)
                + cast(own_last_window_gap_days as decimal(38, 9)) as double))
        end as window_gap_days,
        case when n_dispensings > 0 then
            coalesce(carry_last_window_gap_days, own_last_window_gap_days)
        end as last_window_gap_days,
        case when n_dispensings > 0 then
            cast(last_cum_gap_days - coalesce(prev_cum_gap_days, 0) as double) - last_gap_days
        end as gaps_before_last,
        -- CMA8 from its lagged start
        case
            when before_index_8 is null then n_dispensings
            else greatest(last_index - before_index_8, 0)
        end as n_inside_8,
        -- CMA9 over the window: the inside intervals but the last whole, the last and the one
        -- before clipped
        case
            when n_dispensings > 0 then
                cast(last_cum_cma9_days - last_full_cma9_days - coalesce(prev_cum_cma9_days, 0)
                     + last_cma9_days + prev_cma9_days as double)
            else cast(prev_cma9_days as double)
        end as cma9_weighted
    from window_values
),

window_fields as (
    select
        window_key,
        group_key,
        window_kind,
        window_id,
        fu_start_day,
        fu_end_day,
        window_start_day,
        window_end_day,
        cma8_window_start_day,
        end_gap_days,
        episode_duration_days,
        n_dispensings,
        case when n_dispensings > 0 then first_day end as first_day,
        case when n_dispensings > 0 then last_day end as last_day,
        supply_days,
        case when n_dispensings > 0 then last_supply_days end as last_supply_days,
        window_gap_days,
        last_window_gap_days,
        n_dispensings as n_inside_7,
        case when n_dispensings > 0 then first_day end as first_day_7,
        gaps_before_last as gaps_before_last_7,
        case when n_dispensings > 0 then last_supply_end end as last_supply_end_7,
        window_start_day as start_day_7,
        prev_day as prev_day_7,
        prev_gap_days as prev_gap_days_7,
        prev_supply_end as prev_supply_end_7,
        n_inside_8,
        case
            when n_inside_8 = 0 then null
            when before_index_8 is null then first_day
            else first_day_8
        end as first_day_8,
        case
            when n_inside_8 = 0 then null
            when before_index_8 is null then gaps_before_last
            else cast(last_cum_gap_days - prev_cum_gap_days_8 as double) - last_gap_days
        end as gaps_before_last_8,
        case when n_inside_8 > 0 then last_supply_end end as last_supply_end_8,
        cma8_window_start_day as start_day_8,
        case when before_index_8 is null then prev_day else prev_day_8 end as prev_day_8,
        case when before_index_8 is null then prev_gap_days else prev_gap_days_8 end
            as prev_gap_days_8,
        case when before_index_8 is null then prev_supply_end else prev_supply_end_8 end
            as prev_supply_end_8,
        cma9_weighted / nullif(window_end_day - window_start_day, 0) as cma9_sum,
        -- CMA9 is NA only when no dispensing of the follow-up window falls on or before the
        -- window end
        prev_seq is not null or n_dispensings > 0 as has_dispensing
    from window_summary
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
    from window_fields as v
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
