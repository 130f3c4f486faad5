"""Migrations: every revision upgrades, downgrades and upgrades again; the models agree with them."""

import asyncio
import uuid

from alembic import command
from alembic.script import ScriptDirectory

from loadtest.scratch_db import create_database
from user_service.infrastructure.db import migrations


def test_stairway_and_models_match_migrations(postgres_server: str) -> None:
    url = asyncio.run(create_database(postgres_server, f"stairway_{uuid.uuid4().hex[:8]}"))
    config = migrations.alembic_config(url)
    revisions = list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))
    assert [r.revision for r in revisions] == ["0001", "0002", "0003", "0004"]
    for revision in revisions:
        command.upgrade(config, revision.revision)
        command.downgrade(config, revision.down_revision or "base")
        command.upgrade(config, revision.revision)
    command.check(config)  # raises when tables.py and the migrations disagree
