-- marts.daily_usage: tasks, shots and estimated cost per day, device, status and owner.
-- grain: one row per day, region, device_arn, status, bucket, prefix
-- depends_on: staging.task_facts
-- materialized: incremental
-- day_column: day
--
-- `day` is the UTC day the task was created. est_cost_usd adds up the tasks that have an
-- estimate; unpriced_tasks counts those without one (still open, a device missing from
-- data/prices.csv, a simulator task without endedAt), so a partial sum is visible as such.
-- Rebuilt by day: only the days whose tasks changed are recomputed.

with task_facts as (

    select * from staging.task_facts
    where created_date in (select unnest($days::DATE[]))

),

daily as (

    select
        created_date as day,
        region,
        device_arn,
        status,
        bucket,
        prefix,
        count(*) as tasks,
        sum(shots)::BIGINT as shots,
        sum(est_cost_usd) as est_cost_usd,
        count(*) filter (where est_cost_usd is null) as unpriced_tasks

    from task_facts
    group by all

),

final as (

    select * from daily

)

select * from final
