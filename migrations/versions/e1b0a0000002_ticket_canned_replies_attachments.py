"""tickets: canned replies per language, attachments on messages

Revision ID: e1b0a0000002
Revises: e1b0a0000001
Create Date: 2026-12-02 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

# Copied, not imported, so that this migration keeps its meaning when the models change.
LANGUAGES = "'zh_Hans_CN', 'en'"

# revision identifiers, used by Alembic.
revision = "e1b0a0000002"
down_revision = "e1b0a0000001"
branch_labels = None
depends_on = None


def upgrade():
    # A web ticket's summary of the customer's own words: sealed like the message it comes from.
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=True))
    op.create_table(
        "canned_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"language IN ({LANGUAGES})", name=op.f("ck_canned_reply_language")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_reply")),
    )
    with op.batch_alter_table("canned_reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_canned_reply_language"), ["language"], unique=False)

    op.create_table(
        "ticket_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("stored_name", sa.String(length=64), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["ticket_message.id"],
            name=op.f("fk_ticket_attachment_message_id_ticket_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_attachment")),
        sa.UniqueConstraint("stored_name", name=op.f("uq_ticket_attachment_stored_name")),
    )
    with op.batch_alter_table("ticket_attachment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_attachment_message_id"), ["message_id"], unique=False)


def downgrade():
    with op.batch_alter_table("ticket_attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_attachment_message_id"))
    op.drop_table("ticket_attachment")
    with op.batch_alter_table("canned_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canned_reply_language"))
    op.drop_table("canned_reply")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("summary")
