"""The cleanup area: job cancel_queued_tasks and sensor queued_task_cleanup (off by default)."""

from dagster import Definitions

from pipelines.cleanup.job import cancel_queued_tasks
from pipelines.cleanup.sensors import queued_task_cleanup

defs = Definitions(jobs=[cancel_queued_tasks], sensors=[queued_task_cleanup])
