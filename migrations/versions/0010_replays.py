"""replays (issue #17): past questions asked again of another flow, compared side by side

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replays",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("source", sa.String(400), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=True),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("flow_label", sa.String(200), nullable=False),
        sa.Column("tweaks", sa.JSON(), nullable=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_replays_owner_created", "replays", ["owner_id", "created_at"])
    op.create_index("ix_replays_status", "replays", ["status"])
    op.create_table(
        "replay_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("replay_id", sa.Integer(), sa.ForeignKey("replays.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("question_id", sa.Integer(), nullable=True),
        sa.Column("answer_id", sa.Integer(), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("original_answer", sa.Text(), nullable=True),
        sa.Column("original_status", sa.String(20), nullable=True),
        sa.Column("original_flow", sa.String(250), nullable=True),
        sa.Column("original_latency_ms", sa.Integer(), nullable=True),
        sa.Column("original_ttft_ms", sa.Integer(), nullable=True),
        sa.Column("original_tokens", sa.Integer(), nullable=True),
        sa.Column("original_feedback", sa.Integer(), nullable=True),
        sa.Column("original_comment", sa.Text(), nullable=True),
        sa.Column("corrected_answer", sa.Text(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("flow_name", sa.String(200), nullable=True),
        sa.Column("flow_version", sa.String(40), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(120), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.String(10), nullable=True),
        sa.Column("verdict_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("verdict_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("replay_id", "position", name="uq_replay_items_position"),
    )
    op.create_index("ix_replay_items_status", "replay_items", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_replay_items_status", table_name="replay_items")
    op.drop_table("replay_items")
    op.drop_index("ix_replays_status", table_name="replays")
    op.drop_index("ix_replays_owner_created", table_name="replays")
    op.drop_table("replays")
