-- marts.weekly_usage: marts.daily_usage rolled up to ISO weeks (Monday to Sunday, UTC).
-- grain: one row per week_start_date, region, device_arn, status, bucket, prefix
-- depends_on: marts.daily_usage
-- materialized: view

with daily_usage as (

    select * from marts.daily_usage

),

weekly as (

    select
        date_trunc('week', day)::DATE as week_start_date,
        region,
        device_arn,
        status,
        bucket,
        prefix,
        sum(tasks)::BIGINT as tasks,
        sum(shots)::BIGINT as shots,
        sum(est_cost_usd) as est_cost_usd,
        sum(unpriced_tasks)::BIGINT as unpriced_tasks

    from daily_usage
    group by all

),

final as (

    select * from weekly

)

select * from final
