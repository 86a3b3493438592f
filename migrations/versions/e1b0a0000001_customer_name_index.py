"""customers: a blind index on the normalised full name

Revision ID: e1b0a0000001
Revises: d2f0a0000002
Create Date: 2026-12-02 12:00:00.000000

Existing customers get their index here, in the migration: it runs inside the app (Flask-Migrate),
whose key ring opens each sealed name and computes the index in Python, the same on SQLite and
PostgreSQL (neither database can decrypt). The normalisation and the index's purpose are copied
from models/contact.py and models/customer.py as they were at this revision, so that a later
change there cannot change what this migration did.
"""

import re
import unicodedata

import sqlalchemy as sa
from alembic import op
from flask import current_app

# revision identifiers, used by Alembic.
revision = "e1b0a0000001"
down_revision = "d2f0a0000002"
branch_labels = None
depends_on = None

KEYRING_EXTENSION = "patron.keyring"  # models.crypto.EXTENSION_KEY
NAME_CONTEXT = "customer.name"  # the sealed column's associated data
NAME_INDEX_PURPOSE = "name"  # models.customer.NAME_INDEX_PURPOSE
BATCH = 500
_SPACE_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff]) (?=[\u3400-\u9fff\uf900-\ufaff])")

customer = sa.table(
    "customer",
    sa.column("id", sa.Integer),
    sa.column("name", sa.Text),
    sa.column("name_bidx", sa.String(64)),
)


def normalise_name(raw: str) -> str:
    """models.contact.normalise_name at this revision."""
    folded = unicodedata.normalize("NFKC", raw).casefold()
    return _SPACE_BETWEEN_HAN.sub("", " ".join(folded.split()))


def upgrade():
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_bidx", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_customer_name_bidx"), ["name_bidx"], unique=False)
    index_existing_names()


def index_existing_names():
    """Compute the index of every stored name, in batches by id."""
    connection = op.get_bind()
    ring = current_app.extensions[KEYRING_EXTENSION]
    last = 0
    while True:
        rows = connection.execute(
            sa.select(customer.c.id, customer.c.name)
            .where(customer.c.id > last, customer.c.name.isnot(None))
            .order_by(customer.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        updates = []
        for customer_id, sealed in rows:
            name = ring.open(sealed, NAME_CONTEXT).strip()
            if name:
                index = ring.blind_index(NAME_INDEX_PURPOSE, normalise_name(name))
                updates.append({"id_": customer_id, "index": index})
        if updates:
            connection.execute(
                customer.update()
                .where(customer.c.id == sa.bindparam("id_"))
                .values(name_bidx=sa.bindparam("index")),
                updates,
            )
        last = rows[-1][0]


def downgrade():
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_name_bidx"))
        batch_op.drop_column("name_bidx")
