"""The schema, in SQLAlchemy: the source Alembic migrations are checked against (`alembic check`)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Constraint names the repository maps to domain conflicts.
USERS_PK = "pk_users"
USERS_LIVE_USERNAME = "uq_users_live_username"

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("middle_name", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # The aggregate's version (User.version): 1 at creation, one more with each change.
    sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
)
sa.Index(
    USERS_LIVE_USERNAME,
    sa.func.lower(users.c.username),
    unique=True,
    postgresql_where=users.c.deleted_at.is_(None),
)
sa.Index("ix_users_created_at_id", users.c.created_at, users.c.id)
# Pages of live users, and of deleted ones (`deleted=false/true`), in their order.
sa.Index(
    "ix_users_live_created_at_id",
    users.c.created_at,
    users.c.id,
    postgresql_where=users.c.deleted_at.is_(None),
)
sa.Index(
    "ix_users_deleted_created_at_id",
    users.c.created_at,
    users.c.id,
    postgresql_where=users.c.deleted_at.isnot(None),
)

outbox = sa.Table(
    "outbox",
    metadata,
    # Commit order of the events of one user: their transactions are serialised by the user's row lock.
    sa.Column("position", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("aggregate_id", UUID(as_uuid=True), nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("traceparent", sa.Text, nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")
    ),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index(
    "ix_outbox_pending",
    outbox.c.position,
    postgresql_where=outbox.c.published_at.is_(None),
)
sa.Index("ix_outbox_published_at", outbox.c.published_at, postgresql_where=outbox.c.published_at.isnot(None))

OUTBOX_CHANNEL = "outbox"

# The answers to creates made with an Idempotency-Key, written in the create's own statement, kept until
# `expires_at` (the keys' lifetime after the create), then purged by the relay with the outbox.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.LargeBinary, nullable=False),  # of the request the key was first sent with
    sa.Column("answer", JSONB, nullable=False),  # what that request was answered
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_idempotency_keys_expires_at", idempotency_keys.c.expires_at)
IDEMPOTENCY_KEYS_PK = "pk_idempotency_keys"
