-- treatment_lines: oncology lines of therapy (conditions listed in lines_of_therapy.yaml).
--
-- Grain: one row per patient x condition x line. Inputs: exposures, events_current
-- (`transplanted`), treatment_trials (to list the trials inside each line), ref_drugs (cycle
-- drugs), ref_lot_parameters, ref_lot_lists, ref_lot_substitutions
-- (transforms/reference/lines_of_therapy.yaml).
--
-- Rules (Merck Line-of-Therapy algorithm, Meng et al. J Biomed Inform 2019, pre-refinement
-- defaults; myeloma: Rajkumar, Richardson, San Miguel, Blood 2015; clinical-rules.md 4.3):
--   1. Line 1 starts at the condition's first exposure (no index date: the log has no
--      metastatic/diagnosis anchor for lines). The regimen is every drug first given within
--      regimen_window_days after the line start (inclusive).
--   2. Gap: a drug (or transplant) more than line_gap_days after the last covered day of
--      everything before it (next start - last covered day > value) starts a new line, even with
--      the same drugs (advance_reason `gap`). Last covered day = exposures.end_date, i.e. an
--      administration covers its cycle.
--   3. New drug: after the window, a drug outside the regimen that is neither an allowed
--      substitute of a regimen drug, nor a maintenance drug, nor transplant conditioning starts
--      a new line at its first administration (`new_drug`); its regimen is again the drugs of
--      its own window. Dropping drugs never advances (Rajkumar 2015); dose changes are not new
--      exposures, so they never do (CIBMTR).
--   4. Transplants (`transplanted`, attached to the oncology condition treated most recently
--      before it): procedures in line_advancing_procedures (CAR-T, allogeneic SCT) start a new
--      line (`procedure`); an autologous SCT is part of the line (planned sequence induction ->
--      ASCT -> consolidation -> maintenance) when asct_in_planned_sequence, except a second one
--      more than tandem_transplant_max_days after the first, or any third (`transplant`).
--      Conditioning drugs (list `conditioning`) started within transplant_conditioning_days
--      before a transplant belong to it: they never advance the line, and a line started by
--      the transplant starts with them.
--   5. Maintenance (list `maintenance`): never advances the line. is_maintenance marks a line
--      whose last phase is maintenance only: maintenance drugs given after the regimen window
--      and after every other (non-conditioning) drug of the line ended, following such drugs or
--      a transplant; maintenance_start_date is its first day.
-- Line end_date = last covered day of the line's exposures; last_administration_date = last
-- administration (or last covered day of a dispensed/started oral drug), not after as_of_date.
-- Gaps (2) and transplants (4) do not depend on earlier lines, so they cut the timeline into
-- episodes first; new-drug advances (3) depend on the current line's regimen, so they are found
-- line by line inside each episode with a recursive CTE (iterations = lines per episode).
with recursive

exposure_segments as (
    select * from exposures
),

events as (
    select * from events_current
),

trials as (
    select * from treatment_trials
),

lot_parameters as (
    select * from ref_lot_parameters
),

lot_lists as (
    select * from ref_lot_lists
),

lot_substitutions as (
    select * from ref_lot_substitutions
),

drugs as (
    select * from ref_drugs
),

-- one row per exposure of a condition that has line rules
line_exposures as (
    select
        x.patient_id,
        x.condition,
        x.ingredient,
        x.source_exposure_id,
        x.origin,
        any_value(x.supply) as supply,
        any_value(x.cycle) as cycle,
        min(x.start_date) as start_date,
        max(x.end_date) as end_date
    from exposure_segments as x
    semi join lot_parameters as p on p.condition = x.condition
    group by all
),

transplants as (
    select
        patient_id,
        occurred_date as transplant_date,
        coalesce(procedure, 'unknown') as procedure,
        coalesce(source, '') || ':' || event_id as transplant_event_id
    from events
    where event_type = 'transplanted'
),

-- a transplant belongs to the line-rule condition treated most recently before it
transplants_with_condition as (
    select t.*, x.condition
    from transplants as t
    asof join line_exposures as x
        on x.patient_id = t.patient_id
        and x.start_date <= t.transplant_date
),

transplant_types as (
    select
        t.*,
        coalesce(bool_or(l.list_name = 'planned_sequence_procedures'), false) as is_planned_type,
        coalesce(bool_or(l.list_name = 'line_advancing_procedures'), false) as is_advancing_type
    from transplants_with_condition as t
    left join lot_lists as l
        on l.condition = t.condition
        and l.item = t.procedure
        and l.list_name in ('planned_sequence_procedures', 'line_advancing_procedures')
    group by all
),

transplants_classified as (
    select
        *,
        row_number() over w as asct_no,
        transplant_date - lag(transplant_date) over w as days_since_previous_asct
    from transplant_types
    window w as (
        partition by patient_id, condition, is_planned_type
        order by transplant_date, transplant_event_id
    )
),

transplant_roles as (
    select
        t.*,
        case
            when t.is_advancing_type then 'procedure'
            when not t.is_planned_type then null
            when not p.asct_in_planned_sequence then 'transplant'
            when t.asct_no >= 3 then 'transplant'
            when t.asct_no = 2 and t.days_since_previous_asct > p.tandem_transplant_max_days
                then 'transplant'
        end as advance_reason
    from transplants_classified as t
    join lot_parameters as p on p.condition = t.condition
),

-- conditioning drugs given shortly before a transplant belong to it
conditioning_exposures as (
    select
        x.source_exposure_id,
        x.patient_id,
        any_value(t.transplant_event_id) as transplant_event_id
    from line_exposures as x
    join lot_parameters as p on p.condition = x.condition
    join lot_lists as l
        on l.condition = x.condition and l.list_name = 'conditioning' and l.item = x.ingredient
    join transplant_roles as t
        on t.patient_id = x.patient_id
        and t.condition = x.condition
        and x.start_date between t.transplant_date - p.transplant_conditioning_days
            and t.transplant_date
    group by all
),

maintenance_drugs as (
    select condition, item as ingredient from lot_lists where list_name = 'maintenance'
),

-- every dated thing on the line timeline: drug exposures and transplants
timeline as (
    select
        x.patient_id,
        x.condition,
        'drug' as kind,
        x.ingredient,
        x.origin,
        x.supply,
        x.cycle,
        x.start_date as event_date,
        x.end_date,
        x.source_exposure_id as item_id,
        c.source_exposure_id is not null as is_conditioning,
        c.transplant_event_id as conditioning_for,
        m.ingredient is not null as is_maintenance_drug,
        cast(null as varchar) as transplant_advance_reason
    from line_exposures as x
    left join conditioning_exposures as c
        on c.patient_id = x.patient_id and c.source_exposure_id = x.source_exposure_id
    left join maintenance_drugs as m
        on m.condition = x.condition and m.ingredient = x.ingredient
    union all
    select
        patient_id,
        condition,
        'transplant',
        null,
        null,
        null,
        null,
        transplant_date,
        transplant_date,
        transplant_event_id,
        false,
        null,
        false,
        advance_reason
    from transplant_roles
),

timeline_with_prior_end as (
    select
        t.*,
        p.regimen_window_days,
        p.line_gap_days,
        max(t.end_date) over (
            partition by t.patient_id, t.condition
            order by t.event_date, t.kind, t.item_id
            rows between unbounded preceding and 1 preceding
        ) as prior_max_end_date
    from timeline as t
    join lot_parameters as p on p.condition = t.condition
),

-- episode boundaries: the first event, gaps, and line-advancing transplants (with their
-- conditioning)
boundaries as (
    select patient_id, condition, min(event_date) as boundary_date, 'first' as advance_reason,
        0 as priority
    from timeline
    group by all
    union all
    select patient_id, condition, event_date, 'gap', 2
    from timeline_with_prior_end
    where event_date - prior_max_end_date > line_gap_days
    union all
    select
        t.patient_id,
        t.condition,
        least(t.transplant_date, coalesce(min(x.event_date), t.transplant_date)),
        t.advance_reason,
        1
    from transplant_roles as t
    left join timeline as x
        on x.patient_id = t.patient_id and x.conditioning_for = t.transplant_event_id
    where t.advance_reason is not null
    group by t.patient_id, t.condition, t.transplant_date, t.transplant_event_id, t.advance_reason
),

episodes as (
    select
        patient_id,
        condition,
        boundary_date as episode_start_date,
        advance_reason
    from boundaries
    qualify row_number() over (
        partition by patient_id, condition, boundary_date order by priority, advance_reason
    ) = 1
),

timeline_in_episodes as (
    select t.*, e.episode_start_date, e.advance_reason as episode_reason
    from timeline_with_prior_end as t
    asof join episodes as e
        on e.patient_id = t.patient_id
        and e.condition = t.condition
        and e.episode_start_date <= t.event_date
),

condition_substitutions as (
    select condition, list({'ingredient': ingredient, 'substitute': substitute}) as substitutions
    from lot_substitutions
    group by all
),

-- per episode: its drug administrations (conditioning excluded) as a list, for the line scan
episode_drug_lists as (
    select
        t.patient_id,
        t.condition,
        t.episode_start_date,
        any_value(t.episode_reason) as episode_reason,
        any_value(t.regimen_window_days) as regimen_window_days,
        coalesce(any_value(s.substitutions), []) as substitutions,
        coalesce(
            list({'day': t.event_date, 'ingredient': t.ingredient,
                  'maintenance': t.is_maintenance_drug} order by t.event_date, t.ingredient)
                filter (where t.kind = 'drug' and not t.is_conditioning),
            []
        ) as drug_events
    from timeline_in_episodes as t
    left join condition_substitutions as s on s.condition = t.condition
    group by t.patient_id, t.condition, t.episode_start_date
),

-- line scan: from a line start, the regimen is the drugs of its window; the next line starts at
-- the first later drug outside regimen + substitutes that is not a maintenance drug
line_starts(patient_id, condition, episode_start_date, line_start_date, advance_reason) as (
    select patient_id, condition, episode_start_date, episode_start_date, episode_reason
    from episode_drug_lists
    union all
    select patient_id, condition, episode_start_date, next_line_start_date, 'new_drug'
    from (
        select
            r.patient_id,
            r.condition,
            r.episode_start_date,
            list_min(list_transform(
                list_filter(r.drug_events, lambda v:
                    v.day > r.line_start_date + r.regimen_window_days
                    and not v.maintenance
                    and not list_contains(r.allowed_ingredients, v.ingredient)),
                lambda v: v.day
            )) as next_line_start_date
        from (
            select
                w.*,
                list_concat(
                    w.regimen_ingredients,
                    list_transform(
                        list_filter(w.substitutions, lambda p:
                            list_contains(w.regimen_ingredients, p.ingredient)),
                        lambda p: p.substitute
                    )
                ) as allowed_ingredients
            from (
                select
                    l.line_start_date,
                    e.*,
                    list_distinct(list_transform(
                        list_filter(e.drug_events, lambda v:
                            v.day between l.line_start_date
                                and l.line_start_date + e.regimen_window_days),
                        lambda v: v.ingredient
                    )) as regimen_ingredients
                from line_starts as l
                join episode_drug_lists as e
                    on e.patient_id = l.patient_id
                    and e.condition = l.condition
                    and e.episode_start_date = l.episode_start_date
            ) as w
        ) as r
    )
    where next_line_start_date is not null
),

lines_numbered as (
    select
        *,
        row_number() over (partition by patient_id, condition order by line_start_date)
            as line_number,
        lead(line_start_date) over (partition by patient_id, condition order by line_start_date)
            as next_line_start_date
    from line_starts
),

timeline_in_lines as (
    select t.*, l.line_number, l.line_start_date
    from timeline_in_episodes as t
    asof join lines_numbered as l
        on l.patient_id = t.patient_id
        and l.condition = t.condition
        and l.line_start_date <= t.event_date
),

line_regimens as (
    select
        patient_id,
        condition,
        line_number,
        -- the regimen: drugs of the window (conditioning only when nothing else was given)
        coalesce(
            list(distinct ingredient order by ingredient) filter (
                where kind = 'drug' and not is_conditioning
                    and event_date <= line_start_date + regimen_window_days
            ),
            list(distinct ingredient order by ingredient) filter (
                where kind = 'drug' and event_date <= line_start_date + regimen_window_days
            ),
            []
        ) as regimen_ingredients,
        coalesce(list(distinct ingredient order by ingredient) filter (where kind = 'drug'), [])
            as ingredients,
        max(end_date) as end_date,
        max(least(
            case when origin = 'administered' then event_date else end_date end,
            getvariable('as_of_date')
        )) filter (where kind = 'drug') as last_administration_date,
        max(end_date) filter (
            where kind = 'drug' and not is_conditioning and not is_maintenance_drug
        ) as last_non_maintenance_end_date,
        min(event_date) filter (where kind = 'transplant') as first_transplant_date,
        coalesce(list(event_date order by event_date) filter (where kind = 'transplant'), [])
            as transplant_dates
    from timeline_in_lines
    group by all
),

maintenance_phase as (
    select
        t.patient_id,
        t.condition,
        t.line_number,
        min(t.event_date) as maintenance_start_date
    from timeline_in_lines as t
    join line_regimens as r
        on r.patient_id = t.patient_id
        and r.condition = t.condition
        and r.line_number = t.line_number
    where t.kind = 'drug'
        and t.is_maintenance_drug
        and t.event_date > t.line_start_date + t.regimen_window_days
        and (r.last_non_maintenance_end_date is not null or r.first_transplant_date is not null)
        and t.event_date > coalesce(r.last_non_maintenance_end_date, r.first_transplant_date)
        and t.event_date >= coalesce(r.first_transplant_date, t.event_date)
    group by all
),

-- cycles of cycle-based drugs (as treatment_trials): distinct cycle numbers, else cycle slots
line_administrations as (
    select
        t.patient_id,
        t.condition,
        t.line_number,
        t.ingredient,
        t.event_date,
        t.cycle,
        d.cycle_days,
        min(t.event_date) over (partition by t.patient_id, t.condition, t.line_number, t.ingredient)
            as first_administration_date
    from timeline_in_lines as t
    join drugs as d on d.ingredient = t.ingredient
    where t.kind = 'drug' and t.origin = 'administered' and d.supply = 'cycle'
        and not t.is_conditioning
),

line_cycles as (
    select patient_id, condition, line_number, max(n_cycles) as n_cycles
    from (
        select
            patient_id,
            condition,
            line_number,
            ingredient,
            case
                when count(*) = count(cycle) then count(distinct cycle)
                else count(distinct floor(
                    (event_date - first_administration_date) / greatest(cycle_days, 1)
                ))
            end as n_cycles
        from line_administrations
        group by all
    )
    group by all
),

-- each trial of the condition belongs to the line in force at its start (else the first line)
trial_lines as (
    select
        t.trial_id,
        t.start_date as trial_start_date,
        coalesce(l.line_number, 1) as line_number,
        t.patient_id,
        t.condition
    from trials as t
    semi join lot_parameters as p on p.condition = t.condition
    asof left join lines_numbered as l
        on l.patient_id = t.patient_id
        and l.condition = t.condition
        and l.line_start_date <= t.start_date
),

line_trials as (
    select
        patient_id,
        condition,
        line_number,
        list(trial_id order by trial_start_date, trial_id) as trial_ids
    from trial_lines
    group by all
),

final as (
    select
        l.patient_id || '|' || l.condition || '|' || strftime(l.line_start_date, '%Y-%m-%d')
            as line_id,
        l.patient_id,
        l.condition,
        l.line_number,
        l.line_start_date as start_date,
        r.end_date,
        r.last_administration_date,
        r.ingredients,
        r.regimen_ingredients,
        array_to_string(r.regimen_ingredients, '+') as regimen_key,
        m.maintenance_start_date is not null as is_maintenance,
        m.maintenance_start_date,
        c.n_cycles,
        case when l.line_number = 1 then 'first' else l.advance_reason end as advance_reason,
        l.next_line_start_date,
        r.transplant_dates,
        coalesce(tr.trial_ids, []) as trial_ids
    from lines_numbered as l
    join line_regimens as r
        on r.patient_id = l.patient_id
        and r.condition = l.condition
        and r.line_number = l.line_number
    left join maintenance_phase as m
        on m.patient_id = l.patient_id
        and m.condition = l.condition
        and m.line_number = l.line_number
    left join line_cycles as c
        on c.patient_id = l.patient_id
        and c.condition = l.condition
        and c.line_number = l.line_number
    left join line_trials as tr
        on tr.patient_id = l.patient_id
        and tr.condition = l.condition
        and tr.line_number = l.line_number
)

select * from final
