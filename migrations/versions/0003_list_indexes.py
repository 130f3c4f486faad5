"""list indexes: pages of live or of deleted users read an index in their order, not the whole table

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_live_created_at_id",
        "users",
        ["created_at", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_users_deleted_created_at_id",
        "users",
        ["created_at", "id"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_users_deleted_created_at_id", table_name="users")
    op.drop_index("ix_users_live_created_at_id", table_name="users")
