"""versions of a turn: regenerate and edit keep the earlier answers; an answer knows its question

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Until now Retry appended a second answer after the failed one, so one question could have
# several answers in a row. The backfill makes those the versions of one turn: each answer
# replies to the question before it, the earliest is version 1, and only the newest is current.
REPLY_TO = (
    "UPDATE messages SET reply_to = (SELECT max(q.id) FROM messages q WHERE q.conversation_id = "
    "messages.conversation_id AND q.role = 'user' AND q.id < messages.id) WHERE role = 'assistant'"
)
SIBLINGS = "FROM messages a WHERE a.role = 'assistant' AND a.reply_to = messages.reply_to"
VERSIONS = (
    f"UPDATE messages SET version = (SELECT count(*) {SIBLINGS} AND a.id <= messages.id), "
    f"version_of = (SELECT min(a.id) {SIBLINGS}), "
    f"current = NOT EXISTS (SELECT 1 {SIBLINGS} AND a.id > messages.id) "
    "WHERE role = 'assistant' AND reply_to IS NOT NULL"
)
ROOTS = "UPDATE messages SET version_of = NULL WHERE version_of = id"


def upgrade() -> None:
    op.add_column("messages", sa.Column("reply_to", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("messages", sa.Column("version_of", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("current", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute(REPLY_TO)
    op.execute(VERSIONS)
    op.execute(ROOTS)
    op.create_index("ix_messages_version_of", "messages", ["version_of"])


def downgrade() -> None:
    op.drop_index("ix_messages_version_of", table_name="messages")
    for column in ("current", "version_of", "version", "reply_to"):
        op.drop_column("messages", column)
