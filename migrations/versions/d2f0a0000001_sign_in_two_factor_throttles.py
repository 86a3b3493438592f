"""two-factor sign-in, trusted devices and sign-in throttles

Revision ID: d2f0a0000001
Revises: c9a1d0e5f002
Create Date: 2026-12-02 07:15:00.000000
"""

# revision identifiers, used by Alembic.
revision = "d2f0a0000001"
down_revision = "c9a1d0e5f002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
