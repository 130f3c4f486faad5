"""Settings: every one is an environment variable (README: Configuration).

A bad value stops the start with one line naming the setting, never a traceback.
"""

from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AnyUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Passwords that ship as local defaults (compose, RabbitMQ); refused when ENVIRONMENT=production.
DEFAULT_PASSWORDS = frozenset({"", "postgres", "password", "guest", "changeme", "user-service", "secret"})


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5000
    environment: str = "local"
    database_url: str | None = None
    data_dir: Path = Path(".data")
    broker_url: str | None = None
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    telemetry_enabled: bool = True
    db_pool_min_size: Annotated[int, Field(ge=0, le=100)] = 2
    db_pool_max_size: Annotated[int, Field(ge=1, le=100)] = 10
    db_pool_timeout: Annotated[float, Field(gt=0, le=60)] = 1.5
    db_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    db_statement_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    outbox_batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    outbox_poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    outbox_retention_hours: Annotated[float, Field(ge=0)] = 24.0
    idempotency_key_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 24.0
    shutdown_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    http_header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    workers: Annotated[int, Field(ge=1, le=64)] = 1

    @property
    def log_json(self) -> bool | None:
        """JSON lines (True), the console form (False), or None: JSON unless stdout is a terminal."""
        return None if self.log_format is LogFormat.AUTO else self.log_format is LogFormat.JSON

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if urlsplit(value).scheme not in ("postgresql", "postgresql+asyncpg", "postgres"):
            raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")
        return value.replace("postgres://", "postgresql://", 1)

    @field_validator("broker_url")
    @classmethod
    def _amqp_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        AnyUrl(value)
        if urlsplit(value).scheme not in ("amqp", "amqps"):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> "Settings":
        if self.environment.lower() == "production":
            for name in ("database_url", "broker_url"):
                url = getattr(self, name)
                if url is None:
                    if name == "database_url":
                        raise ValueError("DATABASE_URL must be set in production (no embedded database)")
                    continue
                if (urlsplit(url).password or "") in DEFAULT_PASSWORDS:
                    raise ValueError(f"{name.upper()} uses a default password, refused in production")
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        return self


class SettingsError(Exception):
    """A setting is wrong; the message is one line that names it."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        raise SettingsError(
            f"invalid setting {where}: {message}" if where else f"invalid settings: {message}"
        ) from None


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
