"""what answered and how: the flow, its version, the model, the run, tweaks, agent steps, files

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MESSAGE_COLUMNS = (
    sa.Column("flow_name", sa.String(200), nullable=True),  # the flow's name in Langflow
    sa.Column("flow_version", sa.String(40), nullable=True),  # "v7", or "v7+" when edited since
    sa.Column("model", sa.String(200), nullable=True),  # Langflow's properties.source.source
    sa.Column("run_id", sa.String(64), nullable=True),  # Langflow's run id
    sa.Column("tweaks", sa.JSON(), nullable=True),  # the tweaks sent with the question
    sa.Column("steps", sa.JSON(), nullable=True),  # an agent's tool calls
    sa.Column("files", sa.JSON(), nullable=True),  # on a question: the files attached to it
)
# Until now every conversation used the one configured engine: each one keeps the flow (or the
# notes engine) that answered it last, which is what last_engine holds.
REMEMBER_FLOW = "UPDATE conversations SET flow = last_engine WHERE last_engine IS NOT NULL"


def upgrade() -> None:
    for column in MESSAGE_COLUMNS:
        op.add_column("messages", column)
    op.add_column("conversations", sa.Column("flow", sa.String(200), nullable=True))
    op.add_column("conversations", sa.Column("last_version", sa.String(250), nullable=True))
    op.execute(REMEMBER_FLOW)
    op.create_index("ix_messages_flow_version", "messages", ["flow_version", "flow_name", "conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_flow_version", table_name="messages")
    for column in ("last_version", "flow"):
        op.drop_column("conversations", column)
    for column in reversed(MESSAGE_COLUMNS):
        op.drop_column("messages", column.name)
