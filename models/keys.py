"""Key rotation: re-seal every encrypted value under the newest key, in batches."""

from __future__ import annotations

import typing as t
from collections.abc import Callable

import sqlalchemy as sa
from flask import current_app

import config
from models import db
from models.crypto import (
    EXTENSION_KEY,
    SEALED_FILES,
    EncryptedText,
    KeyRing,
    encrypted_columns,
    keyring,
    new_key,
)
from models.uow import Actor, current_uow, unit_of_work

# Key rotation runs from the command line, batch after batch.
CLI = Actor.system("cli")


def _raw(column: sa.Column) -> sa.ColumnElement:
    """The stored ciphertext of an encrypted column, without decrypting it."""
    return sa.type_coerce(column, sa.Text)


def count_by_key_version() -> dict[int, int]:
    """How many stored values each key version seals, over every encrypted column and sealed file."""
    counts: dict[int, int] = {}
    for version in keyring().keys:
        total = sum(files.count_sealed_with(version) for files in SEALED_FILES)
        for table, column in encrypted_columns(db.metadata):
            total += (
                db.session.scalar(
                    sa.select(sa.func.count()).select_from(table).where(_raw(column).like(f"v{version}:%"))
                )
                or 0
            )
        counts[version] = total
    return counts


def stale_value_count() -> int:
    """Values (and sealed files) not yet sealed under the newest key."""
    prefix = f"v{keyring().current_version}:%"
    total = sum(files.count_stale(keyring().current_version) for files in SEALED_FILES)
    for table, column in encrypted_columns(db.metadata):
        total += (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(column.isnot(None), sa.not_(_raw(column).like(prefix)))
            )
            or 0
        )
    return total


def _stale_batch(table: sa.Table, column: sa.Column, after: object, batch_size: int) -> list:
    """The next rows (pk, ciphertext) still sealed under an older key, after primary key `after`."""
    (pk,) = table.primary_key.columns
    prefix = f"v{keyring().current_version}:%"
    query = (
        sa.select(pk, _raw(column))
        .where(column.isnot(None), sa.not_(_raw(column).like(prefix)))
        .order_by(pk)
        .limit(batch_size)
        # Read in the write transaction and locked (PostgreSQL; SQLite's BEGIN IMMEDIATE
        # already keeps other writers out), so that an edit made meanwhile is not overwritten.
        .with_for_update()
    )
    if after is not None:
        query = query.where(pk > after)
    return list(db.session.execute(query).all())


def rotate_keys(
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    actor: Actor = CLI,
) -> int:
    """Re-seal every value under the newest key; one unit of work per batch. Returns the count."""
    ring = keyring()
    done = 0
    for table, column in encrypted_columns(db.metadata):
        (pk,) = table.primary_key.columns
        context = t.cast(EncryptedText, column.type).context
        last = None
        while True:
            with unit_of_work(actor) as uow:
                rows = _stale_batch(table, column, last, batch_size)
                if rows:
                    updates = [
                        {"pk_": row[0], "sealed": ring.seal(ring.open(row[1], context), context)}
                        for row in rows
                    ]
                    db.session.execute(
                        sa.update(table)
                        .where(pk == sa.bindparam("pk_"))
                        .values({column.name: sa.bindparam("sealed", type_=sa.Text)}),
                        updates,
                    )
                    uow.audit("key.rotate", table.name, None, [column.name], detail=f"rows={len(rows)}")
            if not rows:
                break
            last = rows[-1][0]
            done += len(rows)
            if progress:
                progress(len(rows))
    for files in SEALED_FILES:
        while True:
            with unit_of_work(actor) as uow:
                count = files.reseal_batch(batch_size)
                if count:
                    uow.audit("key.rotate", files.name, None, ["file"], detail=f"rows={count}")
            if not count:
                break
            done += count
            if progress:
                progress(count)
    return done


class KeyChangeRefused(ValueError):
    """A key version cannot be added or retired; the message says why."""


def _instance_material(instance_path: str) -> dict:
    material = config.load_key_material(instance_path)
    if material["source"] == "environment":
        raise KeyChangeRefused("Keys come from the environment: change PATRON_ENCRYPTION_KEYS instead.")
    return material


def add_key_version(instance_path: str) -> int:
    """Add a new newest key to instance/keys.json and load it, audited; returns its version."""
    uow = current_uow()
    material = _instance_material(instance_path)
    version = max(material["encryption_keys"]) + 1
    material["encryption_keys"][version] = new_key()
    config.save_key_material(instance_path, material)
    current_app.extensions[EXTENSION_KEY] = KeyRing.from_material(material)
    uow.audit("key.add", "encryption_key", version)
    return version


def retire_key_version(instance_path: str, version: int) -> None:
    """Remove an old key from instance/keys.json, only once no stored value uses it; audited."""
    uow = current_uow()
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
    uow.audit("key.retire", "encryption_key", version)
