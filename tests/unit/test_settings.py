from pathlib import Path

import pytest

from user_service.infrastructure.db.database import asyncpg_dsn
from user_service.infrastructure.db.migrations import sqlalchemy_url
from user_service.main.settings import SettingsError, load_settings, mask_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db:5432/users",
        "postgresql+asyncpg://u:p@db:5432/users",
        "postgres://u:p@db:5432/users",
    ],
)
def test_database_urls_in_both_spellings_reach_asyncpg_and_alembic(url: str) -> None:
    settings = load_settings(database_url=url)
    assert settings.database_url is not None
    assert asyncpg_dsn(settings.database_url) == "postgresql://u:p@db:5432/users"
    assert sqlalchemy_url(asyncpg_dsn(settings.database_url)) == "postgresql+asyncpg://u:p@db:5432/users"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "DATA_DIR", "DATABASE_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 5000, Path(".data"))
    assert settings.database_url is None
    assert settings.broker_url is None


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"port": "0"}, "PORT"),
        ({"database_url": "mysql://x/y"}, "DATABASE_URL"),
        ({"broker_url": "redis://x"}, "BROKER_URL"),
        ({"environment": "production"}, "DATABASE_URL"),
        ({"environment": "production", "database_url": "postgresql://u:guest@db/x"}, "DATABASE_URL"),
        (
            {
                "environment": "production",
                "database_url": "postgresql://u:s3cr3t-long@db/x",
                "broker_url": "amqp://guest:guest@mq/",
            },
            "BROKER_URL",
        ),
    ],
)
def test_bad_settings_name_themselves(overrides: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_production_accepts_real_secrets() -> None:
    settings = load_settings(
        environment="production",
        database_url="postgresql://u:s3cr3t-long@db/x",
        broker_url="amqp://u:an0ther-s3cret@mq/",
    )
    assert settings.environment == "production"


def test_passwords_are_masked_for_logs() -> None:
    assert mask_url("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert mask_url("postgresql://u@db/x") == "postgresql://u@db/x"


@pytest.mark.parametrize("spelling", ["INFO", "info", "Info"])
def test_log_level_and_format_in_any_case(spelling: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", spelling)
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    settings = load_settings()
    assert (settings.log_level.value, settings.log_format.value) == ("info", "json")


@pytest.mark.parametrize(
    ("env", "workers"),
    [({}, 1), ({"WEB_CONCURRENCY": "3"}, 3), ({"WORKERS": "2", "WEB_CONCURRENCY": "3"}, 2)],
)
def test_web_concurrency_counts_when_workers_is_unset(
    env: dict[str, str], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WORKERS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().workers == workers
    assert load_settings(workers="4").workers == 4  # the command line wins
