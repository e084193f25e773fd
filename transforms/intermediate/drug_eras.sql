-- drug_eras: OMOP-compatible drug eras per patient x ingredient, non-stockpiling and stockpiling.
--
-- Grain: one row per patient x ingredient x era_method x era. Input: exposures (every origin;
-- the dose segments of one exposure are rejoined first, so drug_exposure_count counts
-- dispensings/administrations/started pairs, not segments). The indication is ignored, as in
-- OMOP (treatment_trials builds its own per-condition eras).
--
-- Rule (OMOP CDM DRUG_ERA conventions; OHDSI ETL-CMS create_CDMv5_drug_era_non_stockpile.sql,
-- ETL-Synthea insert_drug_era.sql; clinical-rules.md 4.1):
--   1. Work on OMOP's exclusive ends: end_excl = last covered day + 1 (= start + days_supply).
--   2. Overlapping or touching exposures (start <= running max end_excl) collapse into
--      sub-exposures (OMOP sorts a start before an end on the same day).
--   3. A sub-exposure starting at most $persistence_window_days after the previous one's
--      end_excl continues the era: a 30-day gap (30 uncovered days) merges, 31 splits.
--   4. drug_exposure_count = exposures in the era; gap_days = era length - days in its
--      sub-exposures = uncovered days inside the era (non-stockpiling: left-over supply at a
--      refill is discarded).
--   5. era_end_date per $drug_era_end_convention: omop_exclusive = end_excl (OMOP);
--      pqa_inclusive = the last covered day. Membership and gap_days are the same under both.
-- Stockpiling variant (era_method = 'stockpiling'; OMOP/PQA same-drug shifting): a dispensing
-- that starts while earlier dispensed supply of the ingredient remains is moved to start the day
-- that supply runs out (closed form, clinical-rules.md 3.1: end_i = cum_i + max_j<=i (start_j -
-- cum_j-1) on exclusive ends). Only dispensings stockpile; administrations and started/stopped
-- intervals keep their dates. gap_days then counts the uncovered days after shifting.
-- Evaluation: each patient x ingredient series and each exposure get integer keys (exposure_key
-- follows start date then source_exposure_id, the OMOP order), so the window functions sort
-- integers, not text (10M events: 21.5 s -> 13 s). The keys never leave this table.
with

exposure_segments as (
    select * from exposures
),

-- one row per exposure: dose segments are contiguous pieces of it
exposure_rows as (
    select
        patient_id,
        ingredient,
        source_exposure_id,
        origin,
        min(start_date) as start_date,
        max(end_date) + 1 as end_excl
    from exposure_segments
    group by all
),

series as (
    select
        row_number() over (order by patient_id, ingredient) as series_key,
        patient_id,
        ingredient
    from (select distinct patient_id, ingredient from exposure_rows)
),

exposure_intervals as (
    select
        s.series_key,
        e.origin,
        e.start_date,
        e.end_excl,
        row_number() over (order by s.series_key, e.start_date, e.source_exposure_id)
            as exposure_key
    from exposure_rows as e
    join series as s using (patient_id, ingredient)
),

-- stockpiling: shift dispensed supply past earlier dispensed supply of the same ingredient
dispensed_cumulative as (
    select
        *,
        end_excl - start_date as supply_days,
        sum(end_excl - start_date) over w as cum_supply_days
    from exposure_intervals
    where origin = 'dispensed'
    window w as (
        partition by series_key order by exposure_key
        rows unbounded preceding
    )
),

dispensed_shifted as (
    select
        *,
        cast(cum_supply_days as integer)
            + max(start_date - cast(cum_supply_days - supply_days as integer)) over (
                partition by series_key order by exposure_key
                rows unbounded preceding
            ) as shifted_end_excl
    from dispensed_cumulative
),

intervals_by_method as (
    select 'non_stockpiling' as era_method, series_key, exposure_key,
        start_date, end_excl
    from exposure_intervals
    union all
    select 'stockpiling', series_key, exposure_key,
        shifted_end_excl - cast(supply_days as integer), shifted_end_excl
    from dispensed_shifted
    union all
    select 'stockpiling', series_key, exposure_key, start_date, end_excl
    from exposure_intervals
    where origin <> 'dispensed'
),

intervals_with_prior_end as (
    select
        *,
        max(end_excl) over (
            partition by series_key, era_method
            order by start_date, end_excl, exposure_key
            rows between unbounded preceding and 1 preceding
        ) as prior_max_end_excl
    from intervals_by_method
),

-- gaps-and-islands 1: overlapping or touching exposures form a sub-exposure
sub_exposure_numbers as (
    select
        *,
        sum(case when prior_max_end_excl is null or start_date > prior_max_end_excl then 1 else 0 end)
            over (
                partition by series_key, era_method
                order by start_date, end_excl, exposure_key
                rows unbounded preceding
            ) as sub_exposure_no
    from intervals_with_prior_end
),

sub_exposures as (
    select
        series_key,
        era_method,
        sub_exposure_no,
        min(start_date) as sub_start_date,
        max(end_excl) as sub_end_excl,
        count(*) as n_exposures
    from sub_exposure_numbers
    group by all
),

-- gaps-and-islands 2: the persistence window joins sub-exposures into eras
sub_exposures_with_gap as (
    select
        *,
        sub_start_date - lag(sub_end_excl) over (
            partition by series_key, era_method order by sub_start_date
        ) as days_since_previous
    from sub_exposures
),

era_numbers as (
    select
        *,
        sum(case
            when days_since_previous is null
                or days_since_previous > getvariable('persistence_window_days') then 1
            else 0
        end) over (
            partition by series_key, era_method order by sub_start_date
            rows unbounded preceding
        ) as era_no
    from sub_exposures_with_gap
),

eras as (
    select
        series_key,
        era_method,
        era_no,
        min(sub_start_date) as era_start_date,
        max(sub_end_excl) as era_end_excl,
        sum(n_exposures) as drug_exposure_count,
        sum(sub_end_excl - sub_start_date) as days_exposed,
        count(*) as n_sub_exposures
    from era_numbers
    group by all
),

final as (
    select
        patient_id || ':' || ingredient || ':' || era_method || ':'
            || strftime(era_start_date, '%Y-%m-%d') as drug_era_id,
        patient_id,
        ingredient,
        era_method,
        era_start_date,
        case getvariable('drug_era_end_convention')
            when 'pqa_inclusive' then era_end_excl - 1
            else era_end_excl
        end as era_end_date,
        era_end_excl - 1 as last_covered_date,
        cast(drug_exposure_count as bigint) as drug_exposure_count,
        cast(era_end_excl - era_start_date - days_exposed as integer) as gap_days,
        cast(days_exposed as integer) as days_exposed,
        cast(n_sub_exposures as bigint) as n_sub_exposures
    from eras
    join series using (series_key)
)

select * from final
