"""The warehouse file as a Dagster resource; the key `warehouse` matches the assets' parameter."""

from __future__ import annotations

from contextlib import contextmanager

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.warehouse.connection import connect


class WarehouseResource(ConfigurableResource):
    path: str = Field(description="the DuckDB file (BRAKET_WAREHOUSE_DB)")
    lock_wait_seconds: float = Field(
        default=1800.0, description="how long a writer waits for the file"
    )

    @contextmanager
    def write(self):
        with connect(self.path, wait_seconds=self.lock_wait_seconds) as con:
            yield con

    @contextmanager
    def read(self):
        with connect(self.path, read_only=True, wait_seconds=self.lock_wait_seconds) as con:
            yield con
