-- adherence_episodes: AdhereR treatment episodes (persistence) and the CMAs per episode.
--
-- Grain: one row per patient x medication group x episode basis x episode.
-- Input: adherence_episode_spans, adherence_cma_windows.
-- Rows:
--   episode_basis 'treatment_episodes': compute.treatment.episodes with the cma_episode_*
--     parameters (defaults: maximum permissible gap 90 days, a change of ingredient starts a new
--     episode, carry-over only for the same ingredient, dose-adjusted); no CMA.
--   episode_basis 'CMA1'..'CMA9': CMA_per_episode with that CMA: the episodes it builds
--     (maximum permissible gap cma_per_episode_max_gap, default 180 days; carry-over as the CMA:
--     none for CMA1-4) that intersect the observation window, and the CMA over that part.
-- Source: AdhereR R/adherer.R (compute.treatment.episodes, CMA_per_episode); see
-- adherence_episode_spans for the episode rule. Dates are the floor of AdhereR's day numbers
-- (dose-adjusted carry-over can end an episode part-way through a day).
with

spans as (
    select * from adherence_episode_spans
),

windows as (
    select * from adherence_cma_windows
    where window_kind in ('per_episode_simple', 'per_episode_carry')
),

treatment_episodes as (
    select
        patient_id,
        medication_group,
        'treatment_episodes' as episode_basis,
        episode_id,
        episode_start_day,
        episode_end_day,
        end_gap_days,
        end_reason,
        n_dispensings,
        cast(null as double) as window_start_day,
        cast(null as double) as window_end_day,
        cast(null as double) as cma
    from spans
    where episode_set = 'treatment'
),

per_episode as (
    select
        w.patient_id,
        w.medication_group,
        upper(c.cma_name) as episode_basis,
        w.window_id as episode_id,
        w.fu_start_day as episode_start_day,
        w.fu_end_day as episode_end_day,
        s.end_gap_days,
        s.end_reason,
        s.n_dispensings,
        w.window_start_day,
        w.window_end_day,
        c.cma
    from windows as w
    join spans as s
        on s.patient_id = w.patient_id
        and s.medication_group = w.medication_group
        and s.episode_set = w.window_kind
        and s.episode_id = w.window_id
    cross join lateral (
        select * from (values
            ('cma1', w.cma1), ('cma2', w.cma2), ('cma3', w.cma3), ('cma4', w.cma4),
            ('cma5', w.cma5), ('cma6', w.cma6), ('cma7', w.cma7), ('cma8', w.cma8),
            ('cma9', w.cma9)) as v(cma_name, cma)
    ) as c
    -- CMA1-4 are computed on the episodes built without carry-over, CMA5-9 on those with it
    where (w.window_kind = 'per_episode_simple') = (c.cma_name in ('cma1', 'cma2', 'cma3', 'cma4'))
),

all_rows as (
    select * from treatment_episodes
    union all
    select * from per_episode
),

final as (
    select
        patient_id,
        medication_group,
        episode_basis,
        episode_id,
        date '1970-01-01' + cast(floor(episode_start_day) as integer) as episode_start_date,
        date '1970-01-01' + cast(floor(episode_end_day) as integer) as episode_end_date,
        episode_end_day - episode_start_day as episode_duration_days,
        end_gap_days as end_episode_gap_days,
        end_reason,
        n_dispensings,
        date '1970-01-01' + cast(floor(window_start_day) as integer) as cma_window_start_date,
        date '1970-01-01' + cast(floor(window_end_day) as integer) as cma_window_end_date,
        window_end_day - window_start_day as cma_window_days,
        cma
    from all_rows
)

select * from final
