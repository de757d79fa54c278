"""The ingest area: quantum_tasks (with its checks), the sync job and its schedule."""

from dagster import Definitions

from pipelines.ingest.assets import quantum_tasks
from pipelines.ingest.schedules import hourly_sync, sync_job

defs = Definitions(
    assets=[quantum_tasks],
    jobs=[sync_job],
    schedules=[hourly_sync],
)
