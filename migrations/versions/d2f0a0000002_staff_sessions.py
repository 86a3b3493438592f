"""staff sessions: one row per signed-in browser, with idle and absolute limits

Revision ID: d2f0a0000002
Revises: d2f0a0000001
Create Date: 2026-12-02 07:15:00.000000
"""

import sqlalchemy as sa
from alembic import op

# Copied, not imported, so that this migration keeps its meaning when the models change.
END_REASONS = "'revoked', 'idle', 'expired', 'signed_out', 'invalidated', 'replaced'"

# revision identifiers, used by Alembic.
revision = "d2f0a0000002"
down_revision = "d2f0a0000001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("browser", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.CheckConstraint(f"end_reason IN ({END_REASONS})", name=op.f("ck_staff_session_end_reason")),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (end_reason IS NULL)", name=op.f("ck_staff_session_end_complete")
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_user.id"],
            name=op.f("fk_staff_session_staff_user_id_staff_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_session_token_hash")),
    )
    with op.batch_alter_table("staff_session", schema=None) as batch_op:
        batch_op.create_index(
            "ix_staff_session_staff_user_id_ended_at", ["staff_user_id", "ended_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("staff_session", schema=None) as batch_op:
        batch_op.drop_index("ix_staff_session_staff_user_id_ended_at")

    op.drop_table("staff_session")
