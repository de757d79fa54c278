"""The Dagster code location: gathers each area's definitions and adds the shared resources.

Adding an area means adding it to AREAS; nothing else here changes.
"""

from dagster import Definitions

from pipelines.cleanup.definitions import defs as cleanup_defs
from pipelines.ingest.definitions import defs as ingest_defs
from pipelines.resources import build_resources

AREAS = [ingest_defs, cleanup_defs]

defs = Definitions.merge(*AREAS, Definitions(resources=build_resources()))
