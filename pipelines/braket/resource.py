"""The Braket client as a Dagster resource; the key `braket` matches the assets' parameter."""

from __future__ import annotations

from functools import cached_property

from dagster import ConfigurableResource
from pydantic import Field

from pipelines.braket.client import BraketApi, ClientSettings
from pipelines.braket.facts import REGIONS


class BraketResource(ConfigurableResource):
    """Where and how to call Braket. Credentials come from the standard chain or a profile."""

    endpoint_url: str | None = Field(default=None, description="None: real AWS")
    regions: list[str] = Field(default_factory=lambda: list(REGIONS))
    profile_name: str | None = None
    retry_mode: str = Field(
        default="standard", description="botocore retry mode: standard or adaptive"
    )
    max_attempts: int = Field(default=8, ge=1, le=20)
    pace_at_quota: bool = Field(
        default=True, description="client-side rate limit at the Braket quotas"
    )

    @cached_property
    def api(self) -> BraketApi:
        return BraketApi(
            ClientSettings(
                endpoint_url=self.endpoint_url,
                regions=tuple(self.regions),
                profile_name=self.profile_name,
                retry_mode=self.retry_mode,
                max_attempts=self.max_attempts,
                pace_at_quota=self.pace_at_quota,
            )
        )
