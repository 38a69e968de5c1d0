"""history page: failed answers by conversation, conversations by activity window, search hits to conversations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FAILED = text("status = 'error'")
# A full-text hit is a message id; the history table needs its conversation. SQLite always
# looks a rowid up in the table itself (wide rows: content), never in a covering index, unless
# told to: the view tells it, and a search reads a few megabytes of index instead of the table.
SQLITE_UP = [
    "CREATE INDEX ix_messages_id_conversation ON messages (id, conversation_id)",
    "CREATE VIEW message_conversations AS "
    "SELECT id, conversation_id FROM messages INDEXED BY ix_messages_id_conversation",
]
SQLITE_DOWN = ["DROP VIEW IF EXISTS message_conversations", "DROP INDEX IF EXISTS ix_messages_id_conversation"]


def upgrade() -> None:
    # "Answers with errors only": a small partial index instead of reading every message.
    op.create_index(
        "ix_messages_failed", "messages", ["conversation_id"], sqlite_where=FAILED, postgresql_where=FAILED
    )
    # A date range is "active after since, started before until": counting reads this index only.
    op.create_index("ix_conversations_activity", "conversations", ["deleted", "updated_at", "created_at"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    op.drop_index("ix_conversations_activity", table_name="conversations")
    op.drop_index("ix_messages_failed", table_name="messages")
