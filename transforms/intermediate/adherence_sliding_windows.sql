-- adherence_sliding_windows: AdhereR's CMA1..CMA9 over sliding windows (CMA_sliding_window).
--
-- Grain: one row per patient x medication group x sliding window.
-- Input: adherence_cma_windows (window_kind 'sliding').
-- Rule (AdhereR R/adherer.R, CMA_sliding_window): windows of cma_sliding_window_duration_days
-- (90), the first starting cma_sliding_window_start_days (0) after the observation window start,
-- each the next cma_sliding_window_step_days (30) later, laid while they fit in the observation
-- window; each window is an observation window for the simple CMAs, inside the group's
-- follow-up window (so CMA7-9 see the supply carried in from before the window).
with

windows as (
    select * from adherence_cma_windows where window_kind = 'sliding'
),

final as (
    select
        patient_id,
        medication_group,
        window_id,
        date '1970-01-01' + cast(floor(window_start_day) as integer) as window_start_date,
        date '1970-01-01' + cast(floor(window_end_day) as integer) as window_end_date,
        date '1970-01-01' + cast(floor(cma8_window_start_day) as integer) as cma8_window_start_date,
        n_dispensings,
        cma1,
        cma2,
        cma3,
        cma4,
        cma5,
        cma6,
        cma7,
        cma8,
        cma9
    from windows
)

select * from final
