"""Key rotation: re-seal every encrypted value under the newest key, in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sqlalchemy as sa

from models import db
from models.crypto import encrypted_columns, keyring


def _raw(column: sa.Column) -> sa.ColumnElement:
    """The stored ciphertext of an encrypted column, without decrypting it."""
    return sa.type_coerce(column, sa.Text)


def count_by_key_version() -> dict[int, int]:
    """How many stored values each key version seals, over every encrypted column."""
    counts: dict[int, int] = {}
    for version in keyring().keys:
        total = 0
        for table, column in encrypted_columns(db.metadata):
            total += db.session.scalar(
                sa.select(sa.func.count()).select_from(table).where(_raw(column).like(f"v{version}:%"))
            )
        counts[version] = total
    return counts


def stale_value_count() -> int:
    """Values not yet sealed under the newest key."""
    prefix = f"v{keyring().current_version}:%"
    total = 0
    for table, column in encrypted_columns(db.metadata):
        total += db.session.scalar(
            sa.select(sa.func.count())
            .select_from(table)
            .where(column.isnot(None), sa.not_(_raw(column).like(prefix)))
        )
    return total


def _stale_batches(table: sa.Table, column: sa.Column, batch_size: int) -> Iterator[list]:
    """Rows (pk, ciphertext) still sealed under an older key, keyset-paginated by primary key."""
    (pk,) = table.primary_key.columns
    prefix = f"v{keyring().current_version}:%"
    last = None
    while True:
        query = (
            sa.select(pk, _raw(column))
            .where(column.isnot(None), sa.not_(_raw(column).like(prefix)))
            .order_by(pk)
            .limit(batch_size)
        )
        if last is not None:
            query = query.where(pk > last)
        rows = db.session.execute(query).all()
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def rotate_keys(batch_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Re-seal every value under the newest key; one transaction per batch. Returns the count."""
    ring = keyring()
    done = 0
    for table, column in encrypted_columns(db.metadata):
        (pk,) = table.primary_key.columns
        context = column.type.context
        for rows in _stale_batches(table, column, batch_size):
            updates = [
                {"pk_": row[0], "sealed": ring.seal(ring.open(row[1], context), context)} for row in rows
            ]
            db.session.execute(
                sa.update(table)
                .where(pk == sa.bindparam("pk_"))
                .values({column.name: sa.bindparam("sealed", type_=sa.Text)}),
                updates,
            )
            db.session.commit()
            done += len(rows)
            if progress:
                progress(len(rows))
    return done
