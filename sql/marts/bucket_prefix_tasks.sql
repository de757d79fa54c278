-- marts.bucket_prefix_tasks: for a status and a device, shots and task ARNs per bucket and per bucket/prefix.
-- grain: one row per level, status, device_arn, owner (level 'bucket': owner = bucket; level 'bucket/prefix': owner = bucket/prefix)
-- depends_on: staging.task_facts
-- materialized: view
--
-- The seed's second function in one query:
--   select level, owner, shots, task_arns from marts.bucket_prefix_tasks
--   where status = 'COMPLETED' and device_arn = '...' order by level, owner
-- A view, not a table: its ARN lists would copy every task ARN twice, and a filter on status
-- and device reaches the scan of staging.task_facts (both are in every grouping set), so a
-- question reads only its own tasks. One scan serves both levels.

with task_facts as (

    select * from staging.task_facts

),

grouped as (

    select
        case when grouping(prefix) = 1 then 'bucket' else 'bucket/prefix' end as level,
        status,
        device_arn,
        bucket,
        prefix,
        count(*) as tasks,
        sum(shots)::BIGINT as shots,
        sum(est_cost_usd) as est_cost_usd,
        list(quantum_task_arn order by created_at, quantum_task_arn) as task_arns

    from task_facts
    group by grouping sets (
        (status, device_arn, bucket),
        (status, device_arn, bucket, prefix)
    )

),

final as (

    select
        level,
        status,
        device_arn,
        bucket,
        prefix,
        case when level = 'bucket' then bucket else bucket || '/' || prefix end as owner,
        tasks,
        shots,
        est_cost_usd,
        task_arns

    from grouped

)

select * from final
