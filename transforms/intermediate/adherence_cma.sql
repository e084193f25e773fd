-- adherence_cma: AdhereR's CMA1..CMA9 per patient and medication group over the observation
-- window (the "simple" CMAs of AdhereR's CMA1..CMA9 constructors).
--
-- Grain: one row per patient x medication group.
-- Input: adherence_cma_windows (window_kind 'observation'), adherence_cma_events (truncation).
-- Source: AdhereR (Dima & Dediu, PLoS ONE 2017; GitHub ddediu/AdhereR R/adherer.R), CMA
-- definitions after Vollmer et al. (BMC Health Serv Res 2012); see adherence_cma_windows for
-- the formulas. Validated against AdhereR on its med.events data
-- (docs/validation/adherence_adherer.md).
-- AdhereR's windows end at start + duration and a dispensing on the end day is inside; the
-- denominators count duration days. Dates are the floor of AdhereR's day numbers.
with

windows as (
    select * from adherence_cma_windows where window_kind = 'observation'
),

truncation as (
    select patient_id, medication_group, bool_or(is_window_truncated) as is_window_truncated
    from adherence_cma_events
    group by all
),

final as (
    select
        w.patient_id,
        w.medication_group,
        date '1970-01-01' + cast(floor(w.fu_start_day) as integer) as followup_start_date,
        date '1970-01-01' + cast(floor(w.fu_end_day) as integer) as followup_end_date,
        date '1970-01-01' + cast(floor(w.window_start_day) as integer) as observation_start_date,
        date '1970-01-01' + cast(floor(w.window_end_day) as integer) as observation_end_date,
        w.window_end_day - w.window_start_day as observation_days,
        date '1970-01-01' + cast(floor(w.cma8_window_start_day) as integer)
            as cma8_observation_start_date,
        t.is_window_truncated,
        w.n_dispensings,
        w.cma1,
        w.cma2,
        w.cma3,
        w.cma4,
        w.cma5,
        w.cma6,
        w.cma7,
        w.cma8,
        w.cma9
    from windows as w
    join truncation as t using (patient_id, medication_group)
)

select * from final
