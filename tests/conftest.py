from __future__ import annotations

import pytest

from tests.emulator_harness import RunningEmulator, small_config


@pytest.fixture
def emulator_factory():
    """Make emulators with any EmulatorConfig fields; all are stopped after the test."""
    running: list[RunningEmulator] = []

    def make(**overrides) -> RunningEmulator:
        em = RunningEmulator(small_config(**overrides))
        running.append(em)
        return em

    yield make
    for em in running:
        em.stop()


@pytest.fixture
def emulator(emulator_factory) -> RunningEmulator:
    return emulator_factory()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (free a moment ago): connections are refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
