"""the owner's 👍 and 👎 counted on each conversation, as message_count is

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The history table shows the counts and filters on them; counting feedback rows for each
# page was a join over the page's messages on every rerun.
COUNTED = (
    "(SELECT count(*) FROM feedback JOIN messages ON messages.id = feedback.message_id "
    "WHERE messages.conversation_id = conversations.id AND feedback.user_id = conversations.owner_id "
    "AND feedback.score = {score})"
)


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: SQLite (3.35+) adds and drops columns in place, where
    # a batch copy would drop the table that messages reference.
    op.add_column("conversations", sa.Column("thumbs_up", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("conversations", sa.Column("thumbs_down", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        f"UPDATE conversations SET thumbs_up = {COUNTED.format(score=1)}, thumbs_down = {COUNTED.format(score=0)}"
    )


def downgrade() -> None:
    op.drop_column("conversations", "thumbs_down")
    op.drop_column("conversations", "thumbs_up")
