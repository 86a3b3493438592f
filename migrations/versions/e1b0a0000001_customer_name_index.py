"""customers: a blind index on the normalised full name

Revision ID: e1b0a0000001
Revises: d2f0a0000002
Create Date: 2026-12-02 12:00:00.000000
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "e1b0a0000001"
down_revision = "d2f0a0000002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
