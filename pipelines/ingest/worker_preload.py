"""Imported once by the region workers' forkserver (workers.py): the pull code and Braket's
service model are in memory before any worker forks, so a worker starts in a few
milliseconds instead of ~0.1 s of CPU."""

from pipelines.braket.client import load_service_model
from pipelines.ingest import pull  # noqa: F401  (the code the workers run)

try:
    load_service_model()
except Exception:  # noqa: BLE001
    # The forkserver survives only ImportError from its preloads; without this, a bad AWS
    # config would break every worker with no cause shown. Each worker then builds its own
    # client and reports the real error.
    pass
