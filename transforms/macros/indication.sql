-- Shared SQL macro for inferring an event's indication (condition) when several candidates
-- remain (indication_candidates): exposures.sql picks one per exposure, treatment_trials.sql one
-- per unfilled prescription, by the same preference. Loaded on every build connection before the
-- models run (pipelines.build.runner.bind_params).
--
-- Preference among candidate conditions for an event on day on_date, as a sort key (lowest
-- first): the condition diagnosed most recently on or before the event (bucket 0, fewest days
-- before), else the earliest diagnosed after it (bucket 1, fewest days after), else, for
-- conditions never diagnosed, alphabetical (bucket 2); ties within a bucket alphabetical. The
-- rule is documented in the exposures.sql header.
create or replace macro indication_preference(first_diagnosed_date, on_date, condition) as {
    'bucket': case
        when first_diagnosed_date <= on_date then 0
        when first_diagnosed_date is not null then 1
        else 2
    end,
    'days': case
        when first_diagnosed_date <= on_date then on_date - first_diagnosed_date
        when first_diagnosed_date is not null then first_diagnosed_date - on_date
        else 0
    end,
    'condition': condition
};
