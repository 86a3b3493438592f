"""Encryption at rest, blind indexes and key rotation."""

from __future__ import annotations

import json
import os
import stat

import pytest
import sqlalchemy as sa

import config
from models import db
from models.crypto import KeyRing, UnreadableValue, keyring, new_key
from models.customer import Customer
from tests.factories import audit_events, failing_after_insert, make_customer


def raw(column: str, customer_id: int) -> str:
    return db.session.execute(
        sa.text(f"SELECT {column} FROM customer WHERE id = :id"), {"id": customer_id}
    ).scalar_one()


def test_value_reads_back_and_is_tagged_with_key_version(app):
    customer = make_customer(name="王小明", notes="偏好周末到店")
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).name == "王小明"
    assert raw("name", customer.id).startswith("v1:")
    assert "王小明" not in raw("name", customer.id)


def test_ciphertext_moved_to_another_column_does_not_open(app):
    """The column is bound in as associated data: a name pasted into notes fails to decrypt."""
    ring = keyring()
    sealed = ring.seal("王小明", "customer.name")
    assert ring.open(sealed, "customer.name") == "王小明"
    with pytest.raises(UnreadableValue):
        ring.open(sealed, "customer.notes")


def test_tampered_ciphertext_is_refused(app):
    ring = keyring()
    sealed = ring.seal("secret", "customer.name")
    version, body = sealed.split(":", 1)
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(UnreadableValue):
        ring.open(f"{version}:{flipped}", "customer.name")


def test_same_value_encrypts_differently_each_time(app):
    ring = keyring()
    assert ring.seal("x", "customer.name") != ring.seal("x", "customer.name")


def test_blind_index_is_keyed_and_separates_purposes(app):
    ring = keyring()
    other = KeyRing.from_material({"encryption_keys": {1: new_key()}, "blind_index_key": new_key()})
    assert ring.blind_index("email", "a@example.com") == ring.blind_index("email", "a@example.com")
    assert ring.blind_index("email", "a@example.com") != other.blind_index("email", "a@example.com")
    assert ring.blind_index("email", "+8613800138000") != ring.blind_index("phone", "+8613800138000")


def test_blind_index_key_must_differ_from_encryption_keys():
    key = new_key()
    with pytest.raises(ValueError):
        KeyRing.from_material({"encryption_keys": {1: key}, "blind_index_key": key})


def test_first_run_generates_private_key_files(tmp_path, monkeypatch):
    monkeypatch.delenv("PATRON_ENCRYPTION_KEYS", raising=False)
    material = config.load_key_material(str(tmp_path))
    path = tmp_path / config.KEYS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert material["encryption_keys"][1]
    config.load_secret_key(str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / config.SECRET_KEY_FILE).st_mode) == 0o600


def test_keys_come_from_the_environment_when_set(tmp_path, monkeypatch):
    key1, key2, blind = new_key(), new_key(), new_key()
    monkeypatch.setenv("PATRON_ENCRYPTION_KEYS", f"1:{key1},2:{key2}")
    monkeypatch.setenv("PATRON_BLIND_INDEX_KEY", blind)
    material = config.load_key_material(str(tmp_path))
    assert material["encryption_keys"] == {1: key1, 2: key2}
    assert not (tmp_path / config.KEYS_FILE).exists()


def test_rotate_keys_then_retire_old_key_keeps_data_readable(app, runner, key_material):
    """After rotate-keys --new-key and retire-key 1, every value still reads."""
    instance = app.instance_path
    os.makedirs(instance, exist_ok=True)
    config.save_key_material(instance, key_material)
    people = [make_customer(name=f"客户{i}", birthday=None) for i in range(7)]
    app.config["PATRON_KEY_MATERIAL"] = None

    refused = runner.invoke(args=["retire-key", "1"])
    assert refused.exit_code != 0 and "newest" in refused.output

    result = runner.invoke(args=["rotate-keys", "--new-key", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    rotated = int(result.output.split("Re-encrypted ")[1].split()[0])
    assert all(raw("email", p.id).startswith("v2:") for p in people)

    result = runner.invoke(args=["retire-key", "1"])
    assert result.exit_code == 0, result.output
    with open(os.path.join(instance, config.KEYS_FILE)) as handle:
        saved = json.load(handle)
    assert list(saved["encryption_keys"]) == ["2"]

    app.extensions["patron.keyring"] = KeyRing.from_material(config.load_key_material(instance))
    db.session.expire_all()
    assert [db.session.get(Customer, p.id).name for p in people] == [f"客户{i}" for i in range(7)]
    # Audited as the command line: the new key, each batch (naming its column), the retired key.
    assert [(e.object_id, e.actor) for e in audit_events("key.add")] == [("2", "cli")]
    assert [(e.object_id, e.actor) for e in audit_events("key.retire")] == [("1", "cli")]
    batches = audit_events("key.rotate")
    assert {e.actor for e in batches} == {"cli"}
    assert sum(int(e.detail.removeprefix("rows=")) for e in batches) == rotated


def test_a_rotation_batch_that_fails_after_it_was_written_keeps_neither_it_nor_its_audit_event(
    app, runner, key_material
):
    instance = app.instance_path
    os.makedirs(instance, exist_ok=True)
    config.save_key_material(instance, key_material)
    people = [make_customer(name=f"客户{i}", birthday=None) for i in range(3)]
    app.config["PATRON_KEY_MATERIAL"] = None
    with failing_after_insert("audit_event", "NEW.action = 'key.rotate'"):
        result = runner.invoke(args=["rotate-keys", "--new-key", "--batch-size", "3"])
    assert result.exit_code != 0
    db.session.expire_all()
    assert all(raw(column, p.id).startswith("v1:") for p in people for column in ("name", "email"))
    assert audit_events("key.rotate") == []


def test_retire_key_refuses_while_values_still_use_it(app, runner, key_material):
    instance = app.instance_path
    os.makedirs(instance, exist_ok=True)
    config.save_key_material(instance, key_material)
    make_customer()
    material = config.load_key_material(instance)
    material["encryption_keys"][2] = new_key()
    config.save_key_material(instance, material)
    app.extensions["patron.keyring"] = KeyRing.from_material(material)
    result = runner.invoke(args=["retire-key", "1"])
    assert result.exit_code != 0
    assert "still use key 1" in result.output
