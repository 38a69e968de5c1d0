"""accounts: deactivation, single sign-on identities, temporary locks, per-address throttling, CLI audit

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

USER_COLUMNS = (
    sa.Column("lock_level", sa.Integer(), nullable=False, server_default="0"),  # locks in a row
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),  # a temporary lock
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),  # False: deactivated
    sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("auth_provider", sa.String(100), nullable=True),  # single sign-on: st.secrets [auth] name
    sa.Column("auth_subject", sa.String(255), nullable=True),  # single sign-on: the "sub" claim
)
# Before 0008 an account locked for good at LOGIN_MAX_ATTEMPTS failures; a lock is now temporary
# and starts over, so the old counts (which only an admin's set-password cleared) are let go.
FORGET_FAILURES = "UPDATE users SET failed_logins = 0"
# Going down: a single sign-on user has no password; '!' is a hash no password matches.
NO_ACTOR = "DELETE FROM audit_log WHERE actor_id IS NULL"  # going down: the command line's entries
NO_PASSWORD = "UPDATE users SET password_hash = '!' WHERE password_hash IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        for column in USER_COLUMNS:
            batch.add_column(column)
        batch.alter_column("password_hash", existing_type=sa.String(200), nullable=True)
        batch.create_unique_constraint("uq_users_auth_identity", ["auth_provider", "auth_subject"])
    op.execute(FORGET_FAILURES)
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(320), nullable=False),  # "address:10.0.0.7" or "name:bob"
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("lock_level", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_login_throttle_updated_at", "login_throttle", ["updated_at"])
    # The command line's account changes are audited too, with no user behind them.
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute(NO_ACTOR)
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("actor_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_login_throttle_updated_at", table_name="login_throttle")
    op.drop_table("login_throttle")
    op.execute(NO_PASSWORD)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_auth_identity", type_="unique")
        batch.alter_column("password_hash", existing_type=sa.String(200), nullable=False)
        for column in reversed(USER_COLUMNS):
            batch.drop_column(column.name)
