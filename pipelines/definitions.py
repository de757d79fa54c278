"""The Dagster code location: gathers each area's definitions and adds the shared resources.

Adding an area means adding it to AREAS; nothing else here changes.
"""

from dagster import Definitions, in_process_executor

from pipelines.cleanup import definitions as cleanup
from pipelines.console import NAME as CLI_CONSOLE
from pipelines.console import cli_console
from pipelines.ingest import definitions as ingest
from pipelines.models import definitions as models
from pipelines.resources import build_resources

# Modules, not their `defs`: Dagster refuses a module with more than one Definitions in scope.
AREAS = [ingest.defs, models.defs, cleanup.defs]


def build_definitions(resources: dict, areas=AREAS) -> Definitions:
    """The code location over `resources` (tests pass theirs, and some areas only).

    Runs execute their steps in process: every asset writes the one DuckDB file, so steps
    take turns anyway, and a process per step costs a Dagster import each (~2 s of CPU here;
    a launched hourly sync took 41 s that way, 8.5 s in process). The CLI's runs configure
    the logger `cli_console`; others configure none and get Dagster's console."""
    return Definitions.merge(
        *areas,
        Definitions(
            resources=resources,
            executor=in_process_executor,
            loggers={CLI_CONSOLE: cli_console},
        ),
    )


defs = build_definitions(build_resources())
