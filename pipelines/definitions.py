"""The Dagster code location: gathers each area's definitions and adds the shared resources.

Adding an area means adding it to AREAS; nothing else here changes.
"""

from dagster import Definitions, in_process_executor

from pipelines.cleanup import definitions as cleanup
from pipelines.ingest import definitions as ingest
from pipelines.models import definitions as models
from pipelines.resources import build_resources

# Modules, not their `defs`: Dagster refuses a module with more than one Definitions in scope.
AREAS = [ingest.defs, models.defs, cleanup.defs]

# Runs execute their steps in process: every asset writes the one DuckDB file, so steps take
# turns anyway, and a process per step costs a Dagster import each (~2 s of CPU here; a
# launched hourly sync took 41 s that way, 8.5 s in process).
defs = Definitions.merge(
    *AREAS, Definitions(resources=build_resources(), executor=in_process_executor)
)
