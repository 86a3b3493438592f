"""Backups that restore: taken under write load, sealed with the key ring, restored into an empty database."""

from __future__ import annotations

import base64
import multiprocessing
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from jobs import describe, run_due_jobs
from models import db
from models.backup import (
    MAGIC,
    BackupError,
    BackupUnreadable,
    database_tables,
    decrypt_backup,
    read_header,
    verify_backup,
    write_backup,
)
from models.crypto import EXTENSION_KEY, KeyRing, new_key
from models.customer import Customer
from models.uow import Actor, unit_of_work
from tests.conftest import base_config, postgres_url, require_service
from tests.factories import audit_events, make_customer

WRITERS = 3
BEFORE = 40  # writes each writer has acknowledged before the backup begins
AFTER = 20  # writes each writer makes once the backup is done, so that it ran under load


def write_customers(config: dict, worker: int, ready, backed_up, ack_file: str) -> None:
    """Add customers one unit of work at a time; note each write once it is acknowledged, with its time."""
    app = create_app(config)
    with app.app_context(), open(ack_file, "a", encoding="utf-8") as acks:
        written = after = 0
        while after < AFTER:
            label = f"w{worker}-{written}"
            with unit_of_work(Actor.system(f"writer-{worker}")) as uow:
                uow.add(Customer(name=f"Writer {label}", email=f"{label}@example.com", city="上海"))
            acks.write(f"{label} {time.time()!r}\n")  # the commit returned: acknowledged
            acks.flush()
            written += 1
            if written == BEFORE:
                ready.release()
            after += backed_up.is_set()
        db.session.remove()
        db.engine.dispose()


def worker_config(tmp_path: Path, database_url: str, key_material: dict) -> dict:
    config = base_config(tmp_path, database_url, key_material)
    config.pop("SERVER_NAME")
    return config


def backup_under_load(tmp_path: Path, database_url: str, key_material: dict) -> tuple[Path, float, dict]:
    """Take a backup while writer processes add customers; the acknowledged writes and their times."""
    db.session.commit()
    context = multiprocessing.get_context("spawn")
    ready, backed_up = context.Semaphore(0), context.Event()
    config = worker_config(tmp_path, database_url, key_material)
    writers = [
        context.Process(
            target=write_customers, args=(config, n, ready, backed_up, str(tmp_path / f"acks-{n}.txt"))
        )
        for n in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    try:
        for _ in writers:
            assert ready.acquire(timeout=120), "a writer did not get going"
        began = time.time()
        info = write_backup(tmp_path / "under-load.backup")
        backed_up.set()
        for writer in writers:
            writer.join(timeout=240)
        assert [writer.exitcode for writer in writers] == [0] * WRITERS
    finally:
        backed_up.set()
        for writer in writers:
            if writer.is_alive():
                writer.kill()
    acknowledged = {}
    for n in range(WRITERS):
        for line in (tmp_path / f"acks-{n}.txt").read_text().splitlines():
            label, at = line.split()
            acknowledged[label] = float(at)
    return info.path, began, acknowledged


@contextmanager
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the kind under test: a new SQLite file, or a new PostgreSQL database."""
    url = postgres_url()
    if not url:
        folder = tmp_path / "restored"
        folder.mkdir()
        yield f"sqlite:///{folder / 'patron.sqlite'}"
        return
    name = f"patron_restore_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def other_app(tmp_path: Path, url: str, key_material: dict) -> Iterator:
    """Another installation (its own database and keys), in its own app context."""
    app = create_app(base_config(tmp_path / secrets.token_hex(4), url, key_material))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def pg_tools():
    """PostgreSQL backups need pg_dump and pg_restore."""
    if postgres_url():
        require_service(bool(shutil.which("pg_dump") and shutil.which("pg_restore")), "pg_dump not installed")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_backup_under_write_load_restores_every_write_acknowledged_before_it_began(
    app, tmp_path, database_url, key_material
):
    backup, began, acknowledged = backup_under_load(tmp_path, database_url, key_material)
    before = {label for label, at in acknowledged.items() if at < began}
    assert len(before) >= WRITERS * BEFORE and len(acknowledged) > len(before)
    with empty_database(tmp_path) as url, other_app(tmp_path, url, key_material) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
        assert result.exit_code == 0, result.output
        emails = db.session.scalars(sa.select(Customer.email)).all()  # decrypted: the keys open them
        labels = {email.removesuffix("@example.com") for email in emails}
        assert before <= labels <= set(acknowledged)
        assert f"  customer: {len(emails)}\n" in result.output
        assert "Integrity check: ok" in result.output
        assert [(e.actor, e.object_id) for e in audit_events("backup.restore")] == [("cli", backup.name)]


def test_the_backup_and_restore_commands_take_and_bring_back_the_data_audited(
    app, runner, tmp_path, key_material
):
    customer_id = make_customer(email="li.na@example.com", phone="+86 138 0013 8000").id
    folder = tmp_path / "backups"
    folder.mkdir()
    result = runner.invoke(args=["backup", str(folder)])
    assert result.exit_code == 0, result.output
    (backup,) = folder.iterdir()
    assert backup.name.startswith("patron-") and backup.suffix == ".backup"
    assert mode_of(backup) == 0o600
    assert [(e.actor, e.object_id) for e in audit_events("backup.create")] == [("cli", backup.name)]
    assert read_header(backup).key_version == 1
    with empty_database(tmp_path) as url, other_app(tmp_path, url, key_material) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup)], input="y\n")
        assert result.exit_code == 0, result.output
        again = db.session.get(Customer, customer_id)
        assert (again.email, again.phone) == ("li.na@example.com", "+8613800138000")
        assert "  customer: 1\n" in result.output and "  alembic_version: 1\n" in result.output


def test_restore_asks_first_and_does_nothing_when_told_no(app, tmp_path, key_material):
    make_customer()
    backup = write_backup(tmp_path / "one.backup").path
    with empty_database(tmp_path) as url, other_app(tmp_path, url, key_material) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup)], input="n\n")
        assert result.exit_code == 1 and "Aborted" in result.output
        assert database_tables() == []


def test_restore_refuses_a_database_that_is_not_empty(app, runner, tmp_path):
    make_customer()
    backup = write_backup(tmp_path / "one.backup").path
    make_customer()
    result = runner.invoke(args=["restore", str(backup), "--yes"])
    assert result.exit_code == 1
    assert (
        "The database is not empty" in result.output and "only goes into an empty database" in result.output
    )
    assert db.session.scalar(sa.select(sa.func.count(Customer.id))) == 2
    assert audit_events("backup.restore") == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("body", "Part 1 of the backup failed its check"),
        ("header", "is not the key this backup was made with (or the backup's header was changed)"),
        ("end", "The backup is cut short; nothing of it can be trusted."),
    ],
)
def test_a_changed_byte_fails_the_check_and_restores_nothing(app, tmp_path, key_material, where, message):
    make_customer()
    backup = write_backup(tmp_path / "one.backup").path
    data = bytearray(backup.read_bytes())
    if where == "end":
        data = data[:-1]  # cut short by one byte
    else:
        position = {"body": len(data) // 2, "header": data.index(b'"key_check": "') + 20}[where]
        data[position] ^= 0x01
    backup.write_bytes(bytes(data))
    with pytest.raises(BackupUnreadable, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify_backup(backup)
    with empty_database(tmp_path) as url, other_app(tmp_path, url, key_material) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
        assert result.exit_code == 1 and message in result.output
        assert database_tables() == []


@pytest.mark.parametrize("change", ["last part dropped", "two parts swapped"])
def test_parts_dropped_or_reordered_fail_the_check(app, tmp_path, monkeypatch, change):
    import models.backup

    monkeypatch.setattr(models.backup, "CHUNK", 4096)  # many small parts
    backup = write_backup(tmp_path / "one.backup").path
    data = backup.read_bytes()
    header_end = len(MAGIC) + 4 + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")
    parts, at = [], header_end
    while at < len(data):
        size = 4 + int.from_bytes(data[at : at + 4], "big")
        parts.append(data[at : at + size])
        at += size
    assert len(parts) > 3
    if change == "last part dropped":
        parts = parts[:-1]
    else:
        parts[1], parts[2] = parts[2], parts[1]
    backup.write_bytes(data[:header_end] + b"".join(parts))
    failing = len(parts) if change == "last part dropped" else 2
    with pytest.raises(BackupUnreadable, match=f"^Part {failing} of the backup failed its check"):
        verify_backup(backup)


def test_a_backup_cannot_be_read_without_the_key_it_was_made_with(app, tmp_path, key_material):
    backup = write_backup(tmp_path / "one.backup").path
    another_key = key_material | {"encryption_keys": {1: new_key()}}
    newer_keys_only = key_material | {"encryption_keys": {2: new_key()}}
    with empty_database(tmp_path) as url:
        with other_app(tmp_path, url, another_key) as restored:
            result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
            assert result.exit_code == 1
            assert "key version 1 is not the key this backup was made with" in result.output
            assert database_tables() == []
        with other_app(tmp_path, url, newer_keys_only) as restored:
            result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
            assert result.exit_code == 1
            assert "sealed with key version 1, which this installation does not have" in result.output
            assert "instance/keys.json or PATRON_ENCRYPTION_KEYS" in result.output


def test_restore_refuses_an_installation_whose_blind_index_key_differs(app, tmp_path, key_material):
    backup = write_backup(tmp_path / "one.backup").path
    other_blind_key = key_material | {"blind_index_key": new_key()}
    with empty_database(tmp_path) as url, other_app(tmp_path, url, other_blind_key) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
        assert result.exit_code == 1
        assert "blind-index key is not the one the backup was made with" in result.output
        assert database_tables() == []


def test_restore_warns_of_values_sealed_with_a_key_this_installation_lacks(app, tmp_path, key_material):
    make_customer(email="old.key@example.com", phone=None)  # name and email, sealed with key 1
    newer = {1: key_material["encryption_keys"][1], 2: new_key()}
    app.extensions[EXTENSION_KEY] = KeyRing.from_material(key_material | {"encryption_keys": newer})
    make_customer(email="new.key@example.com", phone=None)  # sealed with key 2, as is the backup
    backup = write_backup(tmp_path / "one.backup").path
    only_newest = key_material | {"encryption_keys": {2: newer[2]}}
    with empty_database(tmp_path) as url, other_app(tmp_path, url, only_newest) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
        assert result.exit_code == 0, result.output
        assert "Warning: 2 stored values are sealed with key versions this installation does not have" in (
            result.output
        )


def test_the_newest_key_seals_and_its_version_is_named_in_the_header(app, tmp_path, key_material):
    rotated = key_material | {"encryption_keys": {1: key_material["encryption_keys"][1], 2: new_key()}}
    app.extensions[EXTENSION_KEY] = KeyRing.from_material(rotated)
    backup = write_backup(tmp_path / "one.backup").path
    assert read_header(backup).key_version == 2
    with empty_database(tmp_path) as url, other_app(tmp_path, url, key_material) as restored:
        result = restored.test_cli_runner().invoke(args=["restore", str(backup), "--yes"])
        assert "sealed with key version 2, which this installation does not have" in result.output


def test_no_key_is_inside_a_backup(app, tmp_path, key_material):
    make_customer(email="wang.fang@example.com")
    backup = write_backup(tmp_path / "one.backup").path
    plain = tmp_path / "plain"
    decrypt_backup(backup, plain)
    keys = [*key_material["encryption_keys"].values(), key_material["blind_index_key"]]
    forms = [form for key in keys for form in (key.encode(), base64.urlsafe_b64decode(key))]
    for content in (backup.read_bytes(), plain.read_bytes()):
        assert [form for form in forms if form in content] == []
    assert backup.read_bytes().startswith(MAGIC)
    assert b"wang.fang" not in backup.read_bytes()


def test_a_backup_never_overwrites_a_file(app, tmp_path):
    existing = tmp_path / "one.backup"
    existing.write_text("keep me")
    with pytest.raises(BackupError, match="exists already"):
        write_backup(existing)
    assert existing.read_text() == "keep me"


NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("app_config", [{"BACKUP_KEEP": 2, "BACKUP_DIR": "nightly"}])
def test_the_backup_job_keeps_the_newest_backup_keep_backups(app, tmp_path):
    folder = tmp_path / "instance" / "nightly"
    made = []
    for day in range(4):
        [result] = run_due_jobs(NOW + timedelta(days=day), names=["backup"])
        assert result.answer == "ran", result.outcome
        made.append(audit_events("backup.create")[-1].object_id)
        if day == 0:
            (folder / "notes.txt").write_text("not a backup")
    assert describe(result.job, result.outcome) == "backups kept: 2, old backups removed: 1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(made[-2:] + ["notes.txt"])
    assert {mode_of(folder / name) for name in made[-2:]} == {0o600} and mode_of(folder) == 0o700
    assert {e.actor for e in audit_events("backup.create")} == {"job:backup"}
    assert [e.detail for e in audit_events("backup.remove")] == made[:2]
    verify_backup(folder / made[-1])


def test_the_backup_job_writes_into_instance_backups_by_default(app, tmp_path):
    [result] = run_due_jobs(NOW, names=["backup"])
    assert result.answer == "ran", result.outcome
    (backup,) = (tmp_path / "instance" / "backups").iterdir()
    assert read_header(backup).dialect == db.engine.dialect.name
    assert os.access(backup, os.R_OK) and mode_of(backup) == 0o600
