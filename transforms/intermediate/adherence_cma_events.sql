-- adherence_cma_events: the medication events of the AdhereR analyses (CMA1..CMA9, treatment
-- episodes, sliding windows), one per dispensing and medication group, in AdhereR's order, with
-- the group's follow-up window (FUW) and observation window (OW).
--
-- Grain: one row per dispensing (source x event_id) x medication group.
-- Input: events_current (dispensed events with a positive days_supply), ref_drug_classes and
-- ref_drug_indications (to place a dispensing in its group when the event does not say),
-- observation_periods (death, disenrolment).
-- Rules (AdhereR, GitHub ddediu/AdhereR R/adherer.R, compute.event.int.gaps):
--   * an event = date, duration (days_supply), daily dose (dose), medication (the ingredient);
--   * events are ordered by date; same-day events keep the source order (data.table's stable
--     sort), here batch_id, ingest_seq, source, event_id;
--   * FUW start = first event of the group + cma_followup_window_start_days, FUW end = start +
--     duration; OW start = FUW start + cma_observation_window_start_days, OW end = OW start +
--     duration (AdhereR: "days" units; an event on the end day is inside).
-- Pipeline choices (docs/validation/adherence_adherer.md): windows are anchored on the first
-- dispensing of the medication group (AdhereR: of the patient; identical with one group), and,
-- when cma_truncate_at_observation_end, end at the evaluation date (or disenrolment / death) so
-- no day outside observation counts as a gap. Day numbers are days since 1970-01-01 (AdhereR's Date), the arithmetic of later steps.
with

events as (
    select * from events_current
),

dispensings as (
    select
        patient_id,
        source,
        event_id,
        occurred_date as event_date,
        occurred_at,
        batch_id,
        ingest_seq,
        ingredient,
        condition,
        drug_class,
        cast(days_supply as double) as duration_days,
        dose as daily_dose
    from events
    -- a dispensing without a positive supply or an ingredient is not a medication event
    where event_type = 'dispensed' and days_supply > 0 and ingredient is not null
),

single_indication as (
    select ingredient, any_value(condition) as condition
    from ref_drug_indications
    group by ingredient
    having count(distinct condition) = 1
),

by_condition as (
    select
        d.*,
        coalesce(d.condition, s.condition, 'unspecified') as medication_group
    from dispensings as d
    left join single_indication as s on s.ingredient = d.ingredient
    where getvariable('cma_medication_group') = 'condition'
),

by_drug_class as (
    select
        d.*,
        coalesce(d.drug_class, c.drug_class, 'unclassified') as medication_group
    from dispensings as d
    -- the source's class when sent, else every class of the ingredient in the drug reference
    left join ref_drug_classes as c on d.drug_class is null and c.ingredient = d.ingredient
    where getvariable('cma_medication_group') = 'drug_class'
),

by_patient as (
    select d.*, 'all' as medication_group
    from dispensings as d
    where getvariable('cma_medication_group') = 'patient'
),

grouped as (
    select * from by_condition
    union all
    select * from by_drug_class
    union all
    select * from by_patient
),

ordered as (
    select
        *,
        row_number() over (
            partition by patient_id, medication_group
            order by event_date, occurred_at, batch_id, ingest_seq, source, event_id
        ) as event_seq,
        date_diff('day', date '1970-01-01', event_date) as event_day
    from grouped
),

observation as (
    select * from observation_periods
),

-- follow-up ends at the evaluation date, or earlier at the end (disenrolment, death) of the
-- observation period holding the group's first dispensing
group_censoring as (
    select
        g.patient_id,
        g.medication_group,
        date_diff('day', date '1970-01-01',
                  least(getvariable('as_of_date'),
                        coalesce(min(o.observation_end_date), getvariable('as_of_date'))))
            as censor_day
    from (
        select patient_id, medication_group, min(event_date) as first_date
        from ordered
        group by all
    ) as g
    left join observation as o
        on o.patient_id = g.patient_id
        and g.first_date between o.observation_start_date and o.observation_end_date
    group by all
),

windows as (
    select
        o.*,
        min(o.event_day) over (partition by o.patient_id, o.medication_group)
            + getvariable('cma_followup_window_start_days') as fu_start_day,
        c.censor_day
    from ordered as o
    join group_censoring as c using (patient_id, medication_group)
),

window_bounds as (
    select
        *,
        case
            when getvariable('cma_truncate_at_observation_end')
                then least(fu_start_day + getvariable('cma_followup_window_duration_days'), censor_day)
            else fu_start_day + getvariable('cma_followup_window_duration_days')
        end as fu_end_day,
        fu_start_day + getvariable('cma_observation_window_start_days') as ow_start_day
    from windows
),

final as (
    select
        patient_id,
        medication_group,
        event_seq,
        source,
        event_id,
        event_date,
        event_day,
        duration_days,
        daily_dose,
        ingredient as medication,
        fu_start_day,
        fu_end_day,
        ow_start_day,
        -- the OW never extends beyond the (possibly truncated) FUW
        least(ow_start_day + getvariable('cma_observation_window_duration_days'), fu_end_day)
            as ow_end_day,
        ow_start_day + getvariable('cma_observation_window_duration_days') > fu_end_day
            as is_window_truncated
    from window_bounds
)

select * from final
