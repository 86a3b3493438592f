"""staff sessions: one row per signed-in browser, with idle and absolute limits

Revision ID: d2f0a0000002
Revises: d2f0a0000001
Create Date: 2026-12-02 07:15:00.000000
"""

# revision identifiers, used by Alembic.
revision = "d2f0a0000002"
down_revision = "d2f0a0000001"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
