-- events_current: the corrected, de-duplicated clinical event stream as of the cut-off.
--
-- Grain: one row per visible, non-retracted clinical event (source x event_id), corrections
-- applied. Input: log_events (the committed log filtered to recorded_at and occurred_at <= as_of,
-- see pipelines/build/runner.py). Corrections are events, never edits (event-sourcing):
--   * `retracted` removes its target; a retraction of a correction cancels that correction
--     (one level: retracting a retraction restores the original).
--   * `amended` replaces the target's values with its non-null contract columns; with several
--     amendments the latest (recorded_at, ingest_seq) non-null value of each column wins. An
--     amendment carries the corrected occurred_at (docs: event contract, corrections).
--   * a correction recorded after the cut-off is not visible, so it does not apply.
--   * a correction whose target is not visible is kept out and counted in attrition.
-- The ingredient is `drug`, or, when only a code was sent, the shipped drug reference's
-- ingredient for that RxNorm/ATC code.
with

-- read where used, never copied: DuckDB would otherwise materialise this CTE (it is referenced
-- twice), a copy of every column of the visible log (at 10M events, alone on the whole log:
-- 8.1-11.2 s -> 6.7-10.7 s, same rows)
log as not materialized (
    select * from log_events
),

corrections as (
    select * from log where family = 'correction'
),

-- corrections cancelled by a visible retraction that targets them
cancelled_corrections as (
    select c.source, c.event_id
    from corrections as c
    semi join corrections as r
        on r.event_type = 'retracted'
        and r.target_event_id = c.event_id
        and r.source is not distinct from c.source
        and r.patient_id = c.patient_id
),

effective_corrections as (
    select c.*
    from corrections as c
    anti join cancelled_corrections as x
        on x.event_id = c.event_id and x.source is not distinct from c.source
),

clinical as (
    select * from log where family <> 'correction'
),

retracted_targets as (
    select distinct source, target_event_id as event_id, patient_id
    from effective_corrections
    where event_type = 'retracted'
),

-- latest non-null value per amended column
amendments as (
    select
        source,
        target_event_id as event_id,
        patient_id,
        count(*) as n_amendments,
        arg_max(occurred_at, (recorded_at, ingest_seq)) filter (where occurred_at is not null) as occurred_at,
        arg_max(drug, (recorded_at, ingest_seq)) filter (where drug is not null) as drug,
        arg_max(drug_code, (recorded_at, ingest_seq)) filter (where drug_code is not null) as drug_code,
        arg_max(drug_system, (recorded_at, ingest_seq)) filter (where drug_system is not null) as drug_system,
        arg_max(drug_class, (recorded_at, ingest_seq)) filter (where drug_class is not null) as drug_class,
        arg_max(condition, (recorded_at, ingest_seq)) filter (where condition is not null) as condition,
        arg_max(dose, (recorded_at, ingest_seq)) filter (where dose is not null) as dose,
        arg_max(dose_unit, (recorded_at, ingest_seq)) filter (where dose_unit is not null) as dose_unit,
        arg_max(days_supply, (recorded_at, ingest_seq)) filter (where days_supply is not null) as days_supply,
        arg_max(quantity, (recorded_at, ingest_seq)) filter (where quantity is not null) as quantity,
        arg_max(route, (recorded_at, ingest_seq)) filter (where route is not null) as route,
        arg_max(regimen, (recorded_at, ingest_seq)) filter (where regimen is not null) as regimen,
        arg_max(cycle, (recorded_at, ingest_seq)) filter (where cycle is not null) as cycle,
        arg_max(reason, (recorded_at, ingest_seq)) filter (where reason is not null) as reason,
        arg_max(criteria, (recorded_at, ingest_seq)) filter (where criteria is not null) as criteria,
        arg_max(response, (recorded_at, ingest_seq)) filter (where response is not null) as response,
        arg_max(measure, (recorded_at, ingest_seq)) filter (where measure is not null) as measure,
        arg_max(value, (recorded_at, ingest_seq)) filter (where value is not null) as value,
        arg_max(unit, (recorded_at, ingest_seq)) filter (where unit is not null) as unit,
        arg_max(period_days, (recorded_at, ingest_seq)) filter (where period_days is not null) as period_days,
        arg_max(setting, (recorded_at, ingest_seq)) filter (where setting is not null) as setting,
        arg_max(condition_code, (recorded_at, ingest_seq)) filter (where condition_code is not null) as condition_code,
        arg_max(condition_system, (recorded_at, ingest_seq)) filter (where condition_system is not null) as condition_system,
        arg_max(revised_to, (recorded_at, ingest_seq)) filter (where revised_to is not null) as revised_to,
        arg_max(subtype, (recorded_at, ingest_seq)) filter (where subtype is not null) as subtype,
        arg_max(procedure, (recorded_at, ingest_seq)) filter (where procedure is not null) as procedure,
        max(recorded_at) as last_amended_at
    from effective_corrections
    where event_type = 'amended'
    group by all
),

corrected as (
    select
        e.event_id,
        e.source,
        e.patient_id,
        e.event_type,
        e.family,
        coalesce(a.occurred_at, e.occurred_at) as occurred_at,
        e.recorded_at,
        coalesce(a.drug, e.drug) as drug,
        coalesce(a.drug_code, e.drug_code) as drug_code,
        coalesce(a.drug_system, e.drug_system) as drug_system,
        coalesce(a.drug_class, e.drug_class) as drug_class,
        coalesce(a.condition, e.condition) as condition,
        coalesce(a.dose, e.dose) as dose,
        coalesce(a.dose_unit, e.dose_unit) as dose_unit,
        coalesce(a.days_supply, e.days_supply) as days_supply,
        coalesce(a.quantity, e.quantity) as quantity,
        coalesce(a.route, e.route) as route,
        coalesce(a.regimen, e.regimen) as regimen,
        coalesce(a.cycle, e.cycle) as cycle,
        coalesce(a.reason, e.reason) as reason,
        coalesce(a.criteria, e.criteria) as criteria,
        coalesce(a.response, e.response) as response,
        coalesce(a.measure, e.measure) as measure,
        coalesce(a.value, e.value) as value,
        coalesce(a.unit, e.unit) as unit,
        coalesce(a.period_days, e.period_days) as period_days,
        coalesce(a.setting, e.setting) as setting,
        coalesce(a.condition_code, e.condition_code) as condition_code,
        coalesce(a.condition_system, e.condition_system) as condition_system,
        coalesce(a.revised_to, e.revised_to) as revised_to,
        coalesce(a.subtype, e.subtype) as subtype,
        coalesce(a.procedure, e.procedure) as procedure,
        coalesce(a.n_amendments, 0) as n_amendments,
        a.last_amended_at,
        e.batch_id,
        e.ingest_seq,
        e.extra
    from clinical as e
    left join amendments as a
        on a.event_id = e.event_id
        and a.source is not distinct from e.source
        and a.patient_id = e.patient_id
    anti join retracted_targets as r
        on r.event_id = e.event_id
        and r.source is not distinct from e.source
        and r.patient_id = e.patient_id
),

-- codes without an ingredient name resolve through the drug reference (RxNorm or ATC)
ingredient_by_code as (
    select rxnorm as code, 'rxnorm' as system, ingredient from ref_drugs where rxnorm is not null
    union all
    select atc as code, 'atc' as system, ingredient from ref_drugs where atc is not null
),

final as (
    select
        c.* exclude (batch_id, ingest_seq, extra),
        coalesce(c.drug, i.ingredient) as ingredient,
        cast(c.occurred_at as date) as occurred_date,
        c.batch_id,
        c.ingest_seq,
        c.extra
    from corrected as c
    left join ingredient_by_code as i
        on c.drug is null and c.drug_code = upper(i.code) and c.drug_system = i.system
)

select * from final
