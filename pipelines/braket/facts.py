"""Facts about Amazon Braket the client, the emulator and the models share (braket-api.md)."""

from __future__ import annotations

REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-2", "eu-north-1")

STATUSES = ("CREATED", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED")
OPEN_STATUSES = ("CREATED", "QUEUED", "RUNNING", "CANCELLING")  # may still change
CANCELLABLE_STATUSES = ("CREATED", "QUEUED")
ENDED_STATUSES = ("COMPLETED", "FAILED", "CANCELLED")  # final

# Default quotas per account and region: operation -> (requests per second, burst).
QUOTAS = {
    "SearchQuantumTasks": (5.0, 50),
    "GetQuantumTask": (100.0, 500),
    "CancelQuantumTask": (2.0, 20),
    "CreateQuantumTask": (20.0, 40),
    "SearchDevices": (5.0, 50),
    "GetDevice": (5.0, 50),
}
ALL_REQUESTS_QUOTA = (140.0, 600)
PAGE_SIZE = 100  # SearchQuantumTasks maxResults upper bound
