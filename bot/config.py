"""Configuration: environment variables (12-factor) with an optional TOML file.

Standard names are used where an ecosystem has them (`SLACK_*`, `DATABASE_URL`, the boto3 chain);
everything else is `RUNCTL_`-prefixed. Precedence: environment > TOML file (`RUNCTL_CONFIG`) > defaults.
Every option is documented in docs/configuration.md; a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.core.durations import parse_duration

SLACK_API_DEFAULT = "https://slack.com/api/"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _split_list(value: Any) -> Any:
    """Lists come from env as `A,B C` (commas or spaces); TOML gives real lists."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value.strip()) if part]
    return value


def _duration(value: Any) -> Any:
    """Durations are written `30m`, `2h`, `1d` (or a number of seconds)."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return timedelta(seconds=int(text))
        return parse_duration(text)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Settings(BaseSettings):
    """Everything the bot reads from its environment. Secrets are SecretStr: never printed."""

    model_config = SettingsConfigDict(
        env_prefix="RUNCTL_",
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    # --- Slack -----------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = SLACK_API_DEFAULT

    # --- Storage ---------------------------------------------------------------------------------
    database_url: str = Field(default="sqlite:///./runctl.db", validation_alias="DATABASE_URL")

    # --- AWS (the boto3 chain's own names) -------------------------------------------------------
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_profile: str | None = Field(default=None, validation_alias="AWS_PROFILE")
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    aws_read_timeout: Duration = timedelta(seconds=30)

    # --- HTTP server -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    workers: int = Field(default=8, ge=1, le=256, description="bounded executor for work after ack")
    work_process: bool = Field(
        default=True, description="serve runs the work after each ack in a child process, apart from acks"
    )
    work_process_nice: int = Field(
        default=10, ge=0, le=19, description="CPU niceness added to the work process, so acks come first"
    )

    # --- Who may do what (deny by default) -------------------------------------------------------
    admins: StrList = Field(default_factory=list)
    approvers: StrList = Field(default_factory=list)
    users: StrList = Field(default_factory=list)
    channels: StrList = Field(default_factory=list)
    team_channel: str | None = None

    # --- Providers -------------------------------------------------------------------------------
    providers: StrList = Field(default_factory=lambda: ["aws"])
    ami_id: str | None = None
    iam_instance_profile: str | None = None
    subnet_id: str | None = None
    security_group_ids: StrList = Field(default_factory=list)
    key_name: str | None = None
    root_volume_gb: int = Field(default=30, ge=8, le=16384)
    gpu_root_volume_gb: int = Field(default=100, ge=8, le=16384)
    quota_warn: int = Field(default=10, ge=1)
    quota_refuse: int = Field(default=50, ge=1)
    gpu_metric_namespace: str | None = None
    gpu_metric_name: str | None = None
    gpu_metric_dimension: str = "InstanceId"
    pricing_ttl: Duration = timedelta(hours=24)
    pricing_api: bool = True

    # --- Safety (DESIGN §3) ----------------------------------------------------------------------
    min_age_command: Duration = timedelta(minutes=5)
    min_age_idle: Duration = timedelta(hours=2)
    idle_cpu_threshold: float = Field(default=5.0, gt=0, le=100)
    idle_window: Duration = timedelta(minutes=60)
    idle_min_coverage: float = Field(default=0.8, gt=0, le=1)
    idle_statistic: Literal["max", "mean"] = "max"
    idle_period_seconds: int = Field(default=300, ge=60)
    grace_period: Duration = timedelta(minutes=60)
    breaker_max_actions: int = Field(default=10, ge=0)
    breaker_max_share: float = Field(default=0.25, ge=0, le=1)
    idle_enforce: bool = False
    approval_expiry: Duration = timedelta(minutes=30)
    keep_max_per_machine: int = Field(default=3, ge=0)

    # --- Quiet hours -----------------------------------------------------------------------------
    work_start: str = "08:00"
    work_end: str = "20:00"
    work_days: StrList = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    default_timezone: str = "UTC"

    # --- Cost ------------------------------------------------------------------------------------
    approval_cost_per_hour: float = Field(default=5.0, ge=0)
    user_max_instances: int = Field(default=4, ge=0)
    user_max_cost_per_hour: float = Field(default=10.0, ge=0)
    alert_machine_cost: float = Field(default=50.0, ge=0)
    alert_machine_hours: float = Field(default=24.0, ge=0)
    alert_user_daily_cost: float = Field(default=100.0, ge=0)
    team_monthly_budget: float | None = Field(default=None, ge=0)

    # --- Scheduler -------------------------------------------------------------------------------
    reconcile_interval: Duration = timedelta(minutes=1)
    idle_interval: Duration = timedelta(minutes=5)
    scheduler_lease_ttl: Duration = timedelta(seconds=30)
    outbox_max_age: Duration = timedelta(hours=12)

    # --- Logging ---------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("RUNCTL_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    @field_validator("admins", "approvers", "users")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _USER_ID.match(v)]
        if bad:
            raise ValueError(f"not Slack user IDs (expected U… or W…, e.g. U012ABCDEF): {', '.join(bad)}")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _CHANNEL_ID.match(v)]
        if bad:
            raise ValueError(f"not Slack channel IDs (expected C…, G… or D…): {', '.join(bad)}")
        return value

    @field_validator("team_channel")
    @classmethod
    def _team_channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL_ID.match(value):
            raise ValueError(f"not a Slack channel ID (expected C…): {value}")
        return value

    @field_validator("work_start", "work_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"expected HH:MM on a 24-hour clock, got {value!r}")
        return value

    @field_validator("work_days")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        days = [v.lower()[:3] for v in value]
        bad = [v for v, d in zip(value, days, strict=True) if d not in _WEEKDAYS]
        if bad:
            raise ValueError(f"unknown weekdays {', '.join(bad)} (use mon,tue,wed,thu,fri,sat,sun)")
        return days

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("expected sqlite:///path.db or postgresql+psycopg://user:pw@host/db")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("slack_api_url", "aws_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def role_summary(self) -> dict[str, int]:
        return {"admins": len(self.admins), "approvers": len(self.approvers), "users": len(self.users)}


# Which environment variable feeds each field, for error messages that name the variable to fix.
def env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return " or ".join(str(c) for c in alias.choices)
    return f"RUNCTL_{field.upper()}"


class ConfigError(Exception):
    """All configuration problems at once, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(**overrides: Any) -> Settings:
    """Load settings or raise ConfigError listing every bad value with its variable name."""
    toml_path = os.environ.get("RUNCTL_CONFIG")
    if toml_path and not Path(toml_path).is_file():
        raise ConfigError([f"RUNCTL_CONFIG: file {toml_path!r} does not exist"])
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            value = err.get("input")
            shown = "" if "token" in field or "secret" in field else f" (got {value!r})"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}{shown}")
        raise ConfigError(problems) from None
