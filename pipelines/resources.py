"""Resources for every area, built from the environment (pipelines.settings)."""

from __future__ import annotations

from pipelines.braket.resource import BraketResource
from pipelines.settings import Settings, load_settings
from pipelines.warehouse.resource import WarehouseResource


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    return {
        "braket": BraketResource(
            endpoint_url=settings.endpoint_url,
            regions=list(settings.regions),
            profile_name=settings.profile,
            pace_at_quota=settings.pace_at_quota,
        ),
        "warehouse": WarehouseResource(path=settings.warehouse_db),
    }
