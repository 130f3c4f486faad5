"""Settings: every one is an environment variable (README: Configuration).

A bad value stops the start with one line naming the setting, never a traceback.
"""

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, AnyUrl, Field, ValidationError, field_validator, model_validator
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


class TraceparentTrust(StrEnum):
    IGNORE = "ignore"
    TRUST = "trust"
    LIMIT = "limit"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5000
    environment: str = "local"
    database_url: str | None = None
    database_read_url: str | None = None
    relay_database_url: str | None = None
    data_dir: Path = Path(".data")
    broker_url: str | None = None
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.AUTO
    telemetry_enabled: bool = True
    trace_sample_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    trace_slow_seconds: Annotated[float, Field(gt=0, le=600)] = 0.25
    traceparent_trust: TraceparentTrust = TraceparentTrust.IGNORE
    traceparent_trust_limit: Annotated[float, Field(gt=0, le=100_000)] = 10.0
    db_pool_min_size: Annotated[int, Field(ge=0, le=100)] = 2
    db_pool_max_size: Annotated[int, Field(ge=1, le=100)] = 10
    db_pool_timeout: Annotated[float, Field(gt=0, le=60)] = 1.5
    db_connect_timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    db_statement_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    db_list_concurrency: Annotated[int | None, Field(ge=1, le=100)] = None  # None: half the pool
    db_statement_cache_size: Annotated[int | None, Field(ge=0, le=100_000)] = None
    outbox_batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    outbox_poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    outbox_retention_hours: Annotated[float, Field(ge=0)] = 24.0
    idempotency_key_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 24.0
    shutdown_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    http_header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    http_max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 64 * 1024
    http_max_headers: Annotated[int, Field(ge=8, le=10_000)] = 100
    http_body_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    http_body_min_rate: Annotated[float, Field(ge=0, le=100 * 1024 * 1024)] = 1024.0
    # WEB_CONCURRENCY (what platforms set to the CPUs a container may use) counts when WORKERS is unset.
    workers: Annotated[
        int, Field(ge=1, le=64, validation_alias=AliasChoices("workers", "web_concurrency"))
    ] = 1
    prometheus_multiproc_dir: Path | None = None
    # `user-service relay`'s /metrics and /healthcheck (on HOST); 0: none.
    relay_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9464

    @property
    def log_json(self) -> bool | None:
        """JSON lines (True), the console form (False), or None: JSON unless stdout is a terminal."""
        return None if self.log_format is LogFormat.AUTO else self.log_format is LogFormat.JSON

    @field_validator("log_level", "log_format", "traceparent_trust", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _writable_folder(cls, value: Path | None) -> Path | None:
        if value is not None and str(value) and not (value.is_dir() and os.access(value, os.W_OK | os.X_OK)):
            raise ValueError(f"{value} is not a folder this process can write to")
        return value or None

    @property
    def relay_url(self) -> str | None:
        """Where the relay holds its lock and listens: a session of its own, never a transaction pooler."""
        return self.relay_database_url or self.database_url

    @field_validator("database_url", "database_read_url", "relay_database_url")
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
        parts = urlsplit(value)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError("must be an amqp:// or amqps:// URL")
        if not parts.hostname:
            raise ValueError("names no host (amqp://user:password@host:5672/)")
        return value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> "Settings":
        if self.environment.lower() == "production":
            for name in ("database_url", "database_read_url", "relay_database_url", "broker_url"):
                url = getattr(self, name)
                if url is None:
                    if name == "database_url":
                        raise ValueError("DATABASE_URL must be set in production (no embedded database)")
                    continue
                if (urlsplit(url).password or "") in DEFAULT_PASSWORDS:
                    raise ValueError(f"{name.upper()} uses a default password, refused in production")
        for name in ("database_read_url", "relay_database_url"):
            if getattr(self, name) is not None and self.database_url is None:
                raise ValueError(f"{name.upper()} needs DATABASE_URL (the embedded database has no replica)")
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if self.db_list_concurrency is not None and self.db_list_concurrency >= self.db_pool_max_size > 1:
            raise ValueError("DB_LIST_CONCURRENCY must leave connections free: below DB_POOL_MAX_SIZE")
        return self


class SettingsError(Exception):
    """A setting is wrong; the message is one line that names it."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        where = _variable(where, overrides).upper()
        message = error["msg"].removeprefix("Value error, ")
        raise SettingsError(
            f"invalid setting {where}: {message}" if where else f"invalid settings: {message}"
        ) from None


def _variable(field: str, overrides: dict[str, object]) -> str:
    """The variable a field's value came from: for a field with several names, the one that is set."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if field in overrides or not isinstance(alias, AliasChoices):
        return field
    names = [str(choice) for choice in alias.choices]
    return next((name for name in names if name.upper() in os.environ), field)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
