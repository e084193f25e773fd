-- Shared SQL macros for the adherence tables: one definition of a formula that several tables
-- (or one table twice) apply. Loaded on every build connection before the models run
-- (pipelines.build.runner.bind_params); DuckDB expands a macro in place, so it costs nothing.

-- Outpatient days (CMS Part D PDC inpatient adjustment; clinical-rules.md 3.1 item 7): the
-- inpatient days before calendar day d, given the patient's last merged inpatient period that
-- starts on or before d (adherence_inpatient_periods; NULLs when there is none): the days of
-- earlier periods plus the days of this one before d. A day inside a stay maps to the day after
-- discharge.
create or replace macro inpatient_days_before_day(
    d, period_start_date, period_end_date, days_before_period
) as
    coalesce(days_before_period + (least(d, period_end_date + 1) - period_start_date), 0);

-- The outpatient day of calendar day d: days since 1970-01-01 minus inpatient days before d.
create or replace macro outpatient_day(
    d, period_start_date, period_end_date, days_before_period
) as
    date_diff('day', date '1970-01-01', d)
        - inpatient_days_before_day(d, period_start_date, period_end_date, days_before_period);

-- Covered days, overlaps counted once (PQA PDC; clinical-rules.md 3.1): over a patient's
-- supply intervals [start_day, end_day] in order of start, the days an interval adds to those
-- before it are the part after the latest end so far (prior_max_end: max(end_day) over the
-- preceding rows, NULL for the first); their sum is the number of covered days. One window pass
-- instead of merging the intervals into islands first.
create or replace macro days_added(start_day, end_day, prior_max_end) as
    greatest(0, end_day - greatest(start_day, coalesce(prior_max_end + 1, start_day)) + 1);

-- AdhereR CMA7 over a window [start_day, window_end_day] (AdhereR R/adherer.R, CMA7; Vollmer
-- et al., BMC Health Serv Res 2012): 1 - (gap days inside the window) / window length, with the
-- carry-over from the follow-up window start. The gaps are: those before the window's last
-- dispensing (gaps_before_last), the days after the last supply runs out (last_supply_end), and
-- before the first dispensing in the window either the previous dispensing's gap (if any)
-- or the days from the window start. No dispensing inside: the supply from before covers the
-- window up to prev_supply_end (0 when it never reaches it). NULL (AdhereR: NA) for an empty
-- window or when no dispensing falls before or in it. CMA8 is the same over its lagged window.
create or replace macro adherer_cma7(
    window_end_day, start_day, n_inside, first_day, gaps_before_last, last_supply_end,
    prev_day, prev_gap_days, prev_supply_end
) as
    case
        when window_end_day <= start_day then null
        when n_inside = 0 and prev_day is null then null
        when n_inside = 0 then
            case
                when greatest(0, window_end_day - prev_supply_end) <= window_end_day - start_day
                    then 1 - greatest(0, window_end_day - prev_supply_end)
                        / (window_end_day - start_day)
                else 0.0
            end
        else 1 - (
            gaps_before_last
            + greatest(0, window_end_day - last_supply_end)
            + case
                when prev_day is null then first_day - start_day
                else least(prev_gap_days, first_day - start_day)
            end
        ) / (window_end_day - start_day)
    end;

-- AdhereR CMA9's term for one interval between dispensings (AdhereR R/adherer.R, CMA9): its
-- supply ratio (1 - gap / interval) weighted by its days inside the window [window_start_day,
-- window_end_day], as an exact decimal (adherence_cma_windows sums these); 0 when the interval
-- is empty or outside the window.
create or replace macro adherer_cma9_days(
    event_day, interval_days, gap_days, window_start_day, window_end_day
) as
    case
        when interval_days > 0
            and event_day < window_end_day
            and event_day + interval_days > window_start_day
        then cast((1 - gap_days / interval_days)
            * greatest(0, least(event_day + interval_days, window_end_day)
                          - greatest(event_day, window_start_day)) as decimal(38, 9))
        else 0
    end;
