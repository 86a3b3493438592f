"""staff: single-use password reset links

Revision ID: e1b0a0000003
Revises: e1b0a0000002
Create Date: 2026-12-02 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

# Copied, not imported, so that this migration keeps its meaning when the models change.
END_REASONS = "'used', 'replaced'"
SOURCES = "'admin', 'cli', 'mail'"

# revision identifiers, used by Alembic.
revision = "e1b0a0000003"
down_revision = "e1b0a0000002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff_password_reset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.CheckConstraint(f"end_reason IN ({END_REASONS})", name=op.f("ck_staff_password_reset_end_reason")),
        sa.CheckConstraint(f"source IN ({SOURCES})", name=op.f("ck_staff_password_reset_source")),
        sa.CheckConstraint(
            "(ended_at IS NULL) = (end_reason IS NULL)", name=op.f("ck_staff_password_reset_end_complete")
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_staff_password_reset_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["staff_user_id"],
            ["staff_user.id"],
            name=op.f("fk_staff_password_reset_staff_user_id_staff_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["staff_user.id"],
            name=op.f("fk_staff_password_reset_created_by_id_staff_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_password_reset")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_staff_password_reset_token_hash")),
    )
    with op.batch_alter_table("staff_password_reset", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_staff_password_reset_staff_user_id"), ["staff_user_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("staff_password_reset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_password_reset_staff_user_id"))

    op.drop_table("staff_password_reset")
