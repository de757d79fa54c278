"""The Dagster code location: gathers each area's definitions and adds the shared resources.

Adding an area means adding it to AREAS; nothing else here changes.
"""

from dagster import Definitions

from pipelines.cleanup import definitions as cleanup
from pipelines.ingest import definitions as ingest
from pipelines.models import definitions as models
from pipelines.resources import build_resources

# Modules, not their `defs`: Dagster refuses a module with more than one Definitions in scope.
AREAS = [ingest.defs, models.defs, cleanup.defs]

defs = Definitions.merge(*AREAS, Definitions(resources=build_resources()))
