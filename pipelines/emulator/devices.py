"""The device catalog the emulator serves and draws synthetic history from.

Values follow ../shared/braket-api.md: current and retired QPUs with their home regions, and
the managed simulators (ARNs without a region; tasks on them run in every Braket region).
Queue and run times are rough medians that give the history a realistic shape, not facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.braket.facts import REGIONS


@dataclass(frozen=True)
class Device:
    arn: str
    provider: str
    name: str
    device_type: str  # QPU or SIMULATOR
    regions: tuple[str, ...]
    status: str  # ONLINE, OFFLINE or RETIRED
    shots: tuple[int, ...]  # the shot counts users typically pick
    queue_median_s: float  # median time in QUEUED
    run_median_s: float  # median time in RUNNING
    weight: float  # share of tasks in its regions while it is in service
    retired_after_days_ago: int = 0  # for retired devices: last day (days before end) it ran

    @property
    def is_qpu(self) -> bool:
        return self.device_type == "QPU"


def _qpu(provider, name, region, shots, queue_h, weight, status="ONLINE", retired_days=0):
    return Device(
        arn=f"arn:aws:braket:{region}::device/qpu/{provider}/{name}",
        provider=provider,
        name=name,
        device_type="QPU",
        regions=(region,),
        status=status,
        shots=shots,
        queue_median_s=queue_h * 3600,
        run_median_s=40.0,
        weight=weight,
        retired_after_days_ago=retired_days,
    )


def _sim(name, provider_name, status="ONLINE", weight=1.0, retired_days=0):
    return Device(
        arn=f"arn:aws:braket:::device/quantum-simulator/amazon/{name}",
        provider=provider_name,
        name=name.upper(),
        device_type="SIMULATOR",
        regions=REGIONS if name != "tn1" else ("us-east-1", "us-west-2", "eu-west-2"),
        status=status,
        shots=(0, 100, 1000, 10000),
        queue_median_s=4.0,
        run_median_s=25.0 if name != "tn1" else 300.0,
        weight=weight,
        retired_after_days_ago=retired_days,
    )


QPU_SHOTS_SMALL = (100, 500, 1000)
QPU_SHOTS_LARGE = (100, 1000, 4000, 10000)

DEVICES: tuple[Device, ...] = (
    _qpu("aqt", "Ibex-Q1", "eu-north-1", QPU_SHOTS_SMALL, 6, 0.6),
    _qpu("iqm", "Garnet", "eu-north-1", QPU_SHOTS_LARGE, 2, 1.2),
    _qpu("iqm", "Emerald", "eu-north-1", QPU_SHOTS_LARGE, 3, 0.8),
    _qpu("ionq", "Forte-1", "us-east-1", QPU_SHOTS_SMALL, 20, 1.0),
    _qpu("ionq", "Forte-Enterprise-1", "us-east-1", QPU_SHOTS_SMALL, 12, 0.8),
    _qpu("quera", "Aquila", "us-east-1", (100, 200, 1000), 30, 0.4),
    _qpu("rigetti", "Cepheus-1-108Q", "us-west-1", QPU_SHOTS_LARGE, 1, 1.5),
    _qpu("rigetti", "Ankaa-3", "us-west-1", QPU_SHOTS_LARGE, 1, 1.5, "RETIRED", 60),
    _qpu("rigetti", "Ankaa-2", "us-west-1", QPU_SHOTS_LARGE, 1, 1.0, "RETIRED", 200),
    _qpu("rigetti", "Aspen-M-3", "us-west-1", QPU_SHOTS_LARGE, 1, 1.0, "RETIRED", 400),
    _qpu("ionq", "Aria-1", "us-east-1", QPU_SHOTS_SMALL, 24, 0.8, "RETIRED", 90),
    _qpu("ionq", "Aria-2", "us-east-1", QPU_SHOTS_SMALL, 24, 0.5, "RETIRED", 150),
    _qpu("ionq", "Harmony", "us-east-1", QPU_SHOTS_SMALL, 24, 0.5, "RETIRED", 500),
    _qpu("oqc", "Lucy", "eu-west-2", QPU_SHOTS_SMALL, 4, 0.8, "RETIRED", 300),
    _sim("sv1", "Amazon Braket", weight=4.0),
    _sim("dm1", "Amazon Braket", weight=1.5),
    _sim("tn1", "Amazon Braket", status="RETIRED", weight=0.4, retired_days=120),
)

DEVICES_BY_ARN: dict[str, Device] = {d.arn: d for d in DEVICES}
