"""Alembic, driven from code: `user-service migrate`, the embedded start-up and the tests use it."""

from pathlib import Path

from alembic import command
from alembic.config import Config

# The repository's migrations/ folder (the package is installed from the source tree).
MIGRATIONS_DIR = Path(__file__).resolve().parents[4] / "migrations"


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
