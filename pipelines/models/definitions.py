"""The models area: stg_quantum_tasks, task_facts, the marts from sql/, and their checks."""

from dagster import Definitions

from pipelines.models.assets import MODEL_ASSETS
from pipelines.models.checks import MODEL_CHECKS

defs = Definitions(assets=MODEL_ASSETS, asset_checks=MODEL_CHECKS)
