"""Key rotation: re-seal every encrypted value under the newest key, in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sqlalchemy as sa
from flask import current_app

import config
from models import db
from models.crypto import EXTENSION_KEY, KeyRing, encrypted_columns, keyring, new_key


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


class KeyChangeRefused(ValueError):
    """A key version cannot be added or retired; the message says why."""


def _instance_material(instance_path: str) -> dict:
    material = config.load_key_material(instance_path)
    if material["source"] == "environment":
        raise KeyChangeRefused("Keys come from the environment: change PATRON_ENCRYPTION_KEYS instead.")
    return material


def add_key_version(instance_path: str) -> int:
    """Add a new newest key to instance/keys.json and load it; returns its version."""
    material = _instance_material(instance_path)
    version = max(material["encryption_keys"]) + 1
    material["encryption_keys"][version] = new_key()
    config.save_key_material(instance_path, material)
    current_app.extensions[EXTENSION_KEY] = KeyRing.from_material(material)
    return version


def retire_key_version(instance_path: str, version: int) -> None:
    """Remove an old key from instance/keys.json, only once no stored value uses it."""
    if version == keyring().current_version:
        raise KeyChangeRefused("The newest key cannot be retired; rotate to a newer one first.")
    in_use = count_by_key_version().get(version)
    if in_use is None:
        raise KeyChangeRefused(f"There is no key version {version}.")
    if in_use:
        raise KeyChangeRefused(f"{in_use} values still use key {version}; run flask rotate-keys.")
    material = _instance_material(instance_path)
    del material["encryption_keys"][version]
    config.save_key_material(instance_path, material)
