-- staging.stg_quantum_tasks: raw.quantum_tasks renamed and typed for the models.
-- grain: one row per task (key: quantum_task_arn)
-- depends_on: raw.quantum_tasks
-- materialized: view
--
-- Only renames and casts, so every model reads raw through one place. Parsing ARNs and paths,
-- durations and cost happen in the Polars staging that reads this view (staging.task_facts).

with source as (

    select * from raw.quantum_tasks

),

renamed as (

    select
        quantum_task_arn,
        device_arn,
        status,
        shots,
        output_s3_bucket as bucket,
        output_s3_directory,
        created_at,
        ended_at,
        created_date,
        is_missing_from_api,
        data_issues,
        updated_at as raw_updated_at

    from source

),

final as (

    select * from renamed

)

select * from final
