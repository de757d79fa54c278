"""Configuration from the environment, the same names for the CLI, Dagster and tests.

BRAKET_ENDPOINT_URL  Braket endpoint; unset means real AWS (standard credential chain).
BRAKET_REGIONS       comma list of regions; default all five Braket regions.
BRAKET_WAREHOUSE_DB  the DuckDB file; default data/warehouse.duckdb.
BRAKET_POLICIES      cleanup policy file; default policies.yaml.
BRAKET_PROFILE       optional named AWS profile.
BRAKET_PACE_AT_QUOTA false turns off the client-side pacing (benchmarks against an emulator
                     without quotas); default true.
DAGSTER_HOME         the Dagster instance; default data/dagster_home.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator

from pipelines.braket.facts import REGIONS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable."""


class Settings(BaseModel):
    endpoint_url: str | None = None
    regions: list[str] = Field(default_factory=lambda: list(REGIONS))
    warehouse_db: str = str(PROJECT_ROOT / "data" / "warehouse.duckdb")
    policies: str = str(PROJECT_ROOT / "policies.yaml")
    profile: str | None = None
    pace_at_quota: bool = True

    @field_validator("endpoint_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"{value!r} is not an http(s) URL like http://127.0.0.1:4010")
        return value

    @field_validator("profile")
    @classmethod
    def _a_known_profile(cls, value: str | None) -> str | None:
        if value is not None:
            import botocore.session

            if value not in botocore.session.Session().available_profiles:
                raise ValueError(f"no AWS profile {value!r} in the AWS config or credentials files")
        return value

    @field_validator("warehouse_db")
    @classmethod
    def _a_duckdb_file_path(cls, value: str) -> str:
        """A DuckDB file, or a path where one can be created (file system checks only: the
        file is opened, and recognised as a warehouse, by the commands that write it)."""
        from pipelines.warehouse.connection import path_problem

        problem = path_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in REGIONS]
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not a Braket region; use some of {', '.join(REGIONS)}"
            )
        if not value:
            raise ValueError("at least one region is needed")
        return value


_ENV = {
    "endpoint_url": "BRAKET_ENDPOINT_URL",
    "regions": "BRAKET_REGIONS",
    "warehouse_db": "BRAKET_WAREHOUSE_DB",
    "policies": "BRAKET_POLICIES",
    "profile": "BRAKET_PROFILE",
    "pace_at_quota": "BRAKET_PACE_AT_QUOTA",
}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict = {}
    for field, var in _ENV.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        values[field] = (
            [r.strip() for r in raw.split(",") if r.strip()] if field == "regions" else raw.strip()
        )
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_ENV[str(e['loc'][0])]}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SettingsError(f"bad configuration: {problems}") from None


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default data/dagster_home) with the project's dagster.yaml in it; a
    SettingsError naming DAGSTER_HOME when it cannot be Dagster's home directory."""
    raw = os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "data" / "dagster_home"))
    if not raw.strip():
        raise SettingsError(
            "bad configuration: DAGSTER_HOME is set but empty: unset it for the default "
            f"({PROJECT_ROOT / 'data' / 'dagster_home'}) or name a directory"
        )
    home = Path(raw).expanduser()  # as Dagster reads it
    if not home.is_absolute():
        raise SettingsError(
            f"bad configuration: DAGSTER_HOME: {raw!r} is not an absolute path "
            "(Dagster needs one), e.g. $PWD/data/dagster_home"
        )
    if home.exists() and not home.is_dir():
        raise SettingsError(
            f"bad configuration: DAGSTER_HOME: {home} is a file, not a directory; "
            "name a directory (it is created if missing)"
        )
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    except OSError as exc:
        raise SettingsError(
            f"bad configuration: DAGSTER_HOME: cannot create {exc.filename or home}: "
            f"{exc.strerror or exc}"
        ) from None
    return home


def dagster_instance():
    """The Dagster instance in DAGSTER_HOME (see ensure_dagster_home). A dagster.yaml that
    Dagster cannot load is a one-line SettingsError naming DAGSTER_HOME, the file and, for
    broken YAML, the line; not Dagster's traceback. Its warehouse_writer pool lets one step
    write at a time whatever that dagster.yaml says (warehouse/pool.py)."""
    import yaml
    from dagster import DagsterInstance, DagsterInvalidConfigError
    from dagster._check import CheckError

    from pipelines.warehouse.pool import ensure_one_writer

    config = ensure_dagster_home() / "dagster.yaml"
    where = f"bad configuration: DAGSTER_HOME: {config}"
    try:
        instance = DagsterInstance.get()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}: YAML syntax error, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context and exc.context_mark:
            problem += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        raise SettingsError(f"{where}{at}: {problem}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{where}: not valid YAML: {exc}") from None
    except DagsterInvalidConfigError as exc:
        # Dagster's messages end with the whole expected schema: keep what is wrong.
        errors = "; ".join(e.message.split(" Expected: ")[0] for e in exc.errors)
        raise SettingsError(
            f"{where}: not a Dagster instance config: {errors or str(exc).splitlines()[0]}"
        ) from None
    except CheckError as exc:  # a value of the wrong type, e.g. a pool limit that is text
        raise SettingsError(
            f"{where}: not a Dagster instance config: {str(exc).splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read: {exc.strerror or exc}") from None
    ensure_one_writer(instance)  # whatever dagster.yaml says about pools
    return instance
