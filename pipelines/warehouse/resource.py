"""The warehouse file as a Dagster resource; the key `warehouse` matches the assets' parameter."""

from __future__ import annotations

from contextlib import contextmanager

from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field

from pipelines.warehouse.connection import check_warehouse, connect, recognise


def say_waiting(message: str) -> None:
    """A wait for the file, told in the run's log (the CLI's console, the UI's event log):
    the connection module's own logger reaches neither, so a sync behind a long `query` or
    another writer stalled without a word."""
    get_dagster_logger().info(message)


class WarehouseResource(ConfigurableResource):
    path: str = Field(description="the DuckDB file (BRAKET_WAREHOUSE_DB)")
    lock_wait_seconds: float = Field(
        default=1800.0, description="how long a writer waits for the file"
    )

    @contextmanager
    def write(self):
        """A write connection to a file that is new or this project's warehouse (another
        program's DuckDB file is refused before anything is written: connection.recognise)."""
        with connect(self.path, wait_seconds=self.lock_wait_seconds, on_wait=say_waiting) as con:
            recognise(con, self.path)
            yield con

    @contextmanager
    def read(self):
        with connect(
            self.path, read_only=True, wait_seconds=self.lock_wait_seconds, on_wait=say_waiting
        ) as con:
            yield con

    def check(self, wait: bool = True) -> None:
        """connection.check_warehouse: WarehouseError for a file this project cannot use.
        While a writer holds the file it waits as a writer would (WarehouseBusy after
        `lock_wait_seconds`), or with `wait` False returns: the run's writes check it."""
        check_warehouse(self.path, self.lock_wait_seconds if wait else None, on_wait=say_waiting)
