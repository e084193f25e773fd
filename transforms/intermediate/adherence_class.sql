-- adherence_class: PQA proportion of days covered per patient and drug class over the PQA
-- measurement period, with PQA's eligibility rule.
--
-- Grain: one row per patient x drug class (classes of the dispensed ingredients).
-- Input: adherence_supply (dispensings, shifted and pushed out of stays), adherence_inpatient_periods,
-- observation_periods, events_current (the class a source sent), ref_drug_classes.
-- Rules (PQA PDC specification and calculator test cases pdc-dr/pdc-sta; clinical-rules.md 3.1):
--   * class level: any drug of the class covers a day; fills of the same drug shift (see
--     adherence_supply), different drugs do not, overlapping days count once;
--   * measurement period: index prescription start date (IPSD, the first fill of the class; with
--     pdc_class_lookback_days > 0 the first fill on or after evaluation date - N) to the
--     evaluation date, disenrolment or death (end of the observation period holding the IPSD);
--   * coverage is truncated at the period end: covered days, never summed supply;
--   * PDC = covered outpatient days / outpatient days of the period (inpatient/SNF days leave
--     the denominator, CMS Part D);
--   * eligible: >= pqa_min_fills_distinct_dates fills on distinct dates in the period and IPSD at
--     least pqa_min_days_ipsd_before_period_end days before the period end. Age and the
--     measures' exclusions (hospice, ESRD, insulin) are not applied here.
--   * adherent: PDC >= pdc_adherence_threshold (pdc_adherence_threshold_arv for the classes in
--     pdc_arv_drug_classes).
with

supply as (
    select * from adherence_supply where origin = 'dispensed'
),

periods as (
    select * from adherence_inpatient_periods
),

observation as (
    select * from observation_periods
),

source_classes as (
    select patient_id, event_id, drug_class
    from events_current
    where event_type = 'dispensed' and drug_class is not null
),

-- the class the source sent, else every class of the ingredient in the drug reference
supply_classes as (
    select s.*, coalesce(sc.drug_class, rc.drug_class) as drug_class
    from supply as s
    left join source_classes as sc
        on sc.patient_id = s.patient_id and sc.event_id = s.source_event_id
    left join ref_drug_classes as rc
        on sc.drug_class is null and rc.ingredient = s.ingredient
),

classified as (
    select * from supply_classes where drug_class is not null
),

index_fills as (
    select
        patient_id,
        drug_class,
        min(fill_date) as ipsd
    from classified
    where fill_date <= getvariable('as_of_date')
        and (getvariable('pdc_class_lookback_days') <= 0
             or fill_date >= getvariable('as_of_date') - cast(getvariable('pdc_class_lookback_days') as integer))
    group by all
),

observation_ends as (
    select i.patient_id, i.drug_class, min(o.observation_end_date) as observation_end_date
    from index_fills as i
    join observation as o
        on o.patient_id = i.patient_id
        and i.ipsd between o.observation_start_date and o.observation_end_date
    group by all
),

measurement_periods as (
    select
        i.patient_id,
        i.drug_class,
        i.ipsd as period_start_date,
        least(getvariable('as_of_date'),
              coalesce(e.observation_end_date, getvariable('as_of_date'))) as period_end_date
    from index_fills as i
    left join observation_ends as e using (patient_id, drug_class)
),

-- outpatient days of the period's first day and of the day after its last
period_start_outpatient as (
    select
        m.*,
        outpatient_day(m.period_start_date, p.period_start_date, p.period_end_date,
                       p.inpatient_days_before) as start_outpatient_day
    from measurement_periods as m
    asof left join periods as p
        on p.patient_id = m.patient_id and m.period_start_date >= p.period_start_date
),

period_bounds as (
    select
        m.*,
        outpatient_day(m.period_end_date + 1, p.period_start_date, p.period_end_date,
                       p.inpatient_days_before) as after_end_outpatient_day
    from period_start_outpatient as m
    asof left join periods as p
        on p.patient_id = m.patient_id and m.period_end_date + 1 >= p.period_start_date
),

-- covered intervals of the class, clipped to the period, merged across drugs
clipped as (
    select
        b.patient_id,
        b.drug_class,
        greatest(c.covered_start_day, b.start_outpatient_day) as start_day,
        least(c.covered_end_day, b.after_end_outpatient_day - 1) as end_day
    from period_bounds as b
    join classified as c on c.patient_id = b.patient_id and c.drug_class = b.drug_class
    where greatest(c.covered_start_day, b.start_outpatient_day)
        <= least(c.covered_end_day, b.after_end_outpatient_day - 1)
),

-- the days each interval adds to those before it; summed, the days covered by any drug of the
-- class, overlaps counted once (macro in transforms/macros/adherence.sql)
new_days as (
    select
        patient_id,
        drug_class,
        days_added(start_day, end_day, max(end_day) over (
            partition by patient_id, drug_class order by start_day, end_day
            rows between unbounded preceding and 1 preceding)) as new_days
    from clipped
),

coverage as (
    select patient_id, drug_class, cast(sum(new_days) as integer) as covered_days
    from new_days
    group by all
),

fills_in_period as (
    select
        b.patient_id,
        b.drug_class,
        count(*) as n_fills,
        count(distinct c.fill_date) as n_fill_dates,
        sum(c.days_supply) as supply_days
    from period_bounds as b
    join classified as c
        on c.patient_id = b.patient_id
        and c.drug_class = b.drug_class
        and c.fill_date between b.period_start_date and b.period_end_date
    group by all
),

arv_classes as (
    select trim(s) as drug_class
    from unnest(string_split(getvariable('pdc_arv_drug_classes'), ',')) as t(s)
),

thresholds as (
    select
        b.drug_class,
        case
            when b.drug_class in (select drug_class from arv_classes)
                then cast(getvariable('pdc_adherence_threshold_arv') as double)
            else cast(getvariable('pdc_adherence_threshold') as double)
        end as adherence_threshold
    from (select distinct drug_class from period_bounds) as b
),

final as (
    select
        b.patient_id,
        b.drug_class,
        b.period_start_date,
        b.period_end_date,
        b.after_end_outpatient_day - b.start_outpatient_day as period_days,
        (b.period_end_date - b.period_start_date + 1)
            - (b.after_end_outpatient_day - b.start_outpatient_day) as inpatient_days,
        coalesce(c.covered_days, 0) as covered_days,
        coalesce(c.covered_days, 0)
            / nullif(b.after_end_outpatient_day - b.start_outpatient_day, 0) as pdc,
        f.supply_days / nullif(b.after_end_outpatient_day - b.start_outpatient_day, 0) as mpr,
        f.n_fills,
        f.n_fill_dates,
        f.n_fill_dates >= getvariable('pqa_min_fills_distinct_dates')
            and b.period_end_date - b.period_start_date
                >= getvariable('pqa_min_days_ipsd_before_period_end') as is_eligible,
        t.adherence_threshold,
        coalesce(c.covered_days, 0)
            / nullif(b.after_end_outpatient_day - b.start_outpatient_day, 0)
            >= t.adherence_threshold as is_adherent
    from period_bounds as b
    join fills_in_period as f using (patient_id, drug_class)
    left join coverage as c using (patient_id, drug_class)
    left join thresholds as t on t.drug_class = b.drug_class
)

select * from final
