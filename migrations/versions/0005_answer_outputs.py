"""each output of a flow with several Chat Outputs kept on its answer; the stopped status

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Until now only the first output of such a flow was saved; answers stay as they were (their
# content is their only output). "stopped" needs no schema change: status is a plain string.


def upgrade() -> None:
    op.add_column("messages", sa.Column("outputs", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "outputs")
