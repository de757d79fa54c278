"""The console of the Dagster runs the CLI executes in process (`sync`, `policy enforce`, the
demo): Dagster's lines, but an error's stack stays in the run's event log (the UI). The CLI
prints what failed itself, in a line with the root cause; a stack per failure event buried
that line under some 300 lines when the endpoint was unreachable."""

from __future__ import annotations

import logging
import sys

from dagster import Field, logger

NAME = "cli_console"


class _FirstLineOfErrors(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.split("\n", 1)[0] if record.levelno >= logging.ERROR else text


@logger(
    {"log_level": Field(str, is_required=False, default_value="INFO")},
    description="The CLI's console: an error event's first line, its stack left to the UI",
)
def cli_console(init_context) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _FirstLineOfErrors(
            "%(asctime)s - dagster - %(levelname)s - %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    log = logging.Logger("dagster", level=init_context.logger_config["log_level"].upper())
    log.addHandler(handler)
    return log


def console_config(log_level: str) -> dict:
    """The run config's `loggers` section for a run the CLI executes."""
    return {NAME: {"config": {"log_level": log_level}}}
