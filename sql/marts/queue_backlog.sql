-- marts.queue_backlog: tasks waiting now (CREATED or QUEUED) per region, device and owner, with their age.
-- grain: one row per region, device_arn, bucket, prefix
-- depends_on: staging.task_facts
-- materialized: view
--
-- "Now" is the last sync: statuses are what the API said then (the sync re-reads every open
-- task). Ages are counted to the moment of the query. Tasks the API no longer returns are
-- left out: they cannot be cancelled. task_arns lists the waiting tasks, oldest first: the
-- seed's third question (which ARNs to cancel for one bucket/prefix) reads them directly.

with task_facts as (

    select * from staging.task_facts

),

waiting as (

    select * from task_facts
    where status in ('CREATED', 'QUEUED')
      and not is_missing_from_api

),

backlog as (

    select
        region,
        device_arn,
        bucket,
        prefix,
        count(*) as tasks,
        count(*) filter (where status = 'CREATED') as created_tasks,
        count(*) filter (where status = 'QUEUED') as queued_tasks,
        sum(shots)::BIGINT as shots,
        min(created_at) as oldest_created_at,
        epoch(timezone('UTC', now()) - min(created_at)) as oldest_age_seconds,
        list(quantum_task_arn order by created_at, quantum_task_arn) as task_arns

    from waiting
    group by region, device_arn, bucket, prefix

),

final as (

    select * from backlog

)

select * from final
