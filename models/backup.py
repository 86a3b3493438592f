"""Backups that restore: a consistent snapshot, sealed with the key ring, checked after writing.

A backup is one file. SQLite is copied with its online backup API (one read transaction:
writers carry on, and every write committed before the copy began is in it); PostgreSQL is
dumped by `pg_dump` (custom format), which reads one snapshot. The snapshot is sealed in
chunks with AES-256-GCM under a file key derived from the key ring's newest key, so a large
database streams through in bounded memory. The file starts with a header naming the key
version (never a key): the header is bound into every chunk, each chunk's nonce carries its
number and whether it is the last, so a changed, reordered or cut-short file fails to open.

Restoring needs the keys the backup was made with (instance/keys.json or
PATRON_ENCRYPTION_KEYS), and only ever goes into an empty database.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import typing as t
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from models import db, utcnow
from models.crypto import encrypted_columns, keyring
from models.uow import current_uow

MAGIC = b"PATRONBK"
FORMAT = 1
CHUNK = 1024 * 1024  # plaintext bytes per sealed chunk
TAG = 16
MAX_HEADER = 64 * 1024
NONCE_PREFIX = 7  # + 4 bytes chunk number + 1 byte "last chunk" = the 12-byte GCM nonce
SUFFIX = ".backup"
_LENGTH = struct.Struct(">I")


class BackupError(Exception):
    """A backup could not be made or restored; the message says why and what to do."""


class BackupUnreadable(BackupError):
    """A backup cannot be opened: not a backup, the wrong key, or a changed or damaged file."""


class RestoreRefused(BackupError):
    """A restore that must not go ahead (the database is not empty, or of another kind)."""


@dataclass(frozen=True)
class BackupHeader:
    """What a backup says about itself, in the clear: never a key, never personal data."""

    key_version: int
    dialect: str
    created_at: str
    revision: str | None
    salt: bytes
    nonce_prefix: bytes
    key_check: str
    blind_check: str

    def to_bytes(self) -> bytes:
        fields = {
            "format": FORMAT,
            "key_version": self.key_version,
            "dialect": self.dialect,
            "created_at": self.created_at,
            "revision": self.revision,
            "salt": base64.b64encode(self.salt).decode(),
            "nonce_prefix": base64.b64encode(self.nonce_prefix).decode(),
            "key_check": self.key_check,
            "blind_check": self.blind_check,
        }
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> BackupHeader:
        try:
            fields = json.loads(raw)
            if fields.get("format") != FORMAT:
                raise BackupUnreadable(
                    f"This backup has format {fields.get('format')!r}; this Patron reads {FORMAT}."
                )
            header = cls(
                key_version=int(fields["key_version"]),
                dialect=str(fields["dialect"]),
                created_at=str(fields["created_at"]),
                revision=fields.get("revision"),
                salt=base64.b64decode(fields["salt"]),
                nonce_prefix=base64.b64decode(fields["nonce_prefix"]),
                key_check=str(fields["key_check"]),
                blind_check=str(fields["blind_check"]),
            )
        except (ValueError, KeyError, TypeError):
            raise BackupUnreadable("The backup's header is damaged or was changed.") from None
        if len(header.nonce_prefix) != NONCE_PREFIX:
            raise BackupUnreadable("The backup's header is damaged or was changed.")
        return header


@dataclass(frozen=True)
class BackupInfo:
    """A backup written and checked: where, its header, its size in bytes."""

    path: Path
    header: BackupHeader
    size: int


@dataclass(frozen=True)
class RestoreReport:
    """A restore done: the backup's header, the rows of each table restored, and how many stored
    values are sealed with a key version this installation lacks (they cannot be opened)."""

    header: BackupHeader
    row_counts: dict[str, int]
    revision: str | None
    values_without_key: int


# The sealing: a file key per backup, chunks numbered and the last one marked.
def _file_key(version: int, salt: bytes) -> bytes:
    """The backup's own key, derived from key ring version `version` and the file's salt."""
    try:
        ring_key = keyring().keys[version]
    except KeyError:
        raise BackupUnreadable(
            f"This backup was sealed with key version {version}, which this installation does not "
            "have. Restore needs the keys the backup was made with (instance/keys.json or "
            "PATRON_ENCRYPTION_KEYS)."
        ) from None
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"patron backup 1")
    return hkdf.derive(ring_key)


def _key_check(file_key: bytes) -> str:
    """A value that tells the right key from a wrong one, and reveals nothing of either."""
    return hmac.new(file_key, b"patron backup key check", hashlib.sha256).hexdigest()[:32]


def _blind_check(salt: bytes) -> str:
    """A value that tells whether the blind-index key is the one the backup was made with."""
    return hmac.new(keyring().blind_key, b"patron backup blind check" + salt, hashlib.sha256).hexdigest()[:32]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def _read_up_to(source: t.IO[bytes], size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end (pipes hand data over in pieces)."""
    parts = []
    wanted = size
    while wanted:
        part = source.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _seal_stream(source: t.IO[bytes], out: t.IO[bytes], seal: _Seal, aad: bytes) -> None:
    """Seal everything `source` gives, chunk by chunk, into `out`."""
    aead = AESGCM(seal.key)
    index = 0
    current = _read_up_to(source, CHUNK)
    while True:
        following = _read_up_to(source, CHUNK) if len(current) == CHUNK else b""
        last = not following
        sealed = aead.encrypt(_nonce(seal.prefix, index, last), current, aad)
        out.write(_LENGTH.pack(len(sealed)) + sealed)
        if last:
            return
        current, index = following, index + 1


def _next_sealed(handle: t.IO[bytes]) -> bytes | None:
    """The next sealed chunk, or None at the end of the file."""
    length = _read_up_to(handle, _LENGTH.size)
    if not length:
        return None
    if len(length) < _LENGTH.size:
        raise BackupUnreadable("The backup is cut short; nothing of it can be trusted.")
    (size,) = _LENGTH.unpack(length)
    if size < TAG or size > CHUNK + TAG:
        raise BackupUnreadable("The backup is damaged or was changed; nothing of it can be trusted.")
    sealed = _read_up_to(handle, size)
    if len(sealed) < size:
        raise BackupUnreadable("The backup is cut short; nothing of it can be trusted.")
    return sealed


def _read_header(handle: t.IO[bytes]) -> tuple[BackupHeader, bytes]:
    """The header and the bytes bound into every chunk (magic, length and header)."""
    start = _read_up_to(handle, len(MAGIC) + _LENGTH.size)
    if len(start) < len(MAGIC) + _LENGTH.size or not start.startswith(MAGIC):
        raise BackupUnreadable("This file is not a Patron backup.")
    (size,) = _LENGTH.unpack(start[len(MAGIC) :])
    if size > MAX_HEADER:
        raise BackupUnreadable("The backup's header is damaged or was changed.")
    raw = _read_up_to(handle, size)
    if len(raw) < size:
        raise BackupUnreadable("The backup is cut short; nothing of it can be trusted.")
    return BackupHeader.from_bytes(raw), start + raw


def _opened_key(header: BackupHeader) -> bytes:
    """The file key for a header, refusing a key that is not the one the backup was made with."""
    file_key = _file_key(header.key_version, header.salt)
    if not hmac.compare_digest(_key_check(file_key), header.key_check):
        raise BackupUnreadable(
            f"This installation's key version {header.key_version} is not the key this backup was "
            "made with (or the backup's header was changed). Restore needs the keys the backup was "
            "made with (instance/keys.json or PATRON_ENCRYPTION_KEYS)."
        )
    return file_key


def read_header(path: Path) -> BackupHeader:
    """A backup's header, once the key it names is known to be the right one."""
    with _open_backup(path) as handle:
        header, _aad = _read_header(handle)
    _opened_key(header)
    return header


@contextmanager
def _open_backup(path: Path) -> Iterator[t.IO[bytes]]:
    try:
        with open(path, "rb") as handle:
            yield handle
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise BackupError(f"Cannot read {path}: {exc.strerror}.") from None


def _open_stream(path: Path) -> Iterator[bytes]:
    """The plaintext of a backup, chunk by chunk, each checked before it is handed on."""
    with _open_backup(path) as handle:
        header, aad = _read_header(handle)
        aead = AESGCM(_opened_key(header))
        index = 0
        pending = _next_sealed(handle)
        if pending is None:
            raise BackupUnreadable("The backup is cut short; nothing of it can be trusted.")
        while pending is not None:
            following = _next_sealed(handle)
            try:
                plain = aead.decrypt(_nonce(header.nonce_prefix, index, following is None), pending, aad)
            except InvalidTag:
                raise BackupUnreadable(
                    f"Part {index + 1} of the backup failed its check: the file was changed, damaged "
                    "or cut short, and cannot be trusted."
                ) from None
            yield plain
            pending, index = following, index + 1


def decrypt_backup(path: Path, target: Path) -> BackupHeader:
    """Open a whole backup into a new private file; every chunk is checked on the way."""
    header = read_header(path)
    with _private_file(target) as out:
        for plain in _open_stream(path):
            out.write(plain)
    return header


@contextmanager
def _private_file(path: Path) -> Iterator[t.IO[bytes]]:
    """A new file only its owner may read (0600), written through and synced to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _scratch(near: Path | None = None) -> Iterator[Path]:
    """A private (0700) folder for plaintext copies, removed afterwards whatever happens."""
    with tempfile.TemporaryDirectory(prefix=".patron-backup-", dir=near) as folder:
        yield Path(folder)


# Taking a backup.
def backup_file_name(now: datetime | None = None) -> str:
    """patron-20261201-090000-123456.backup: names sort by the time they were made."""
    return f"patron-{(now or utcnow()):%Y%m%d-%H%M%S-%f}{SUFFIX}"


def write_backup(target: Path) -> BackupInfo:
    """Take a consistent backup of the database into a new file `target` (0600), sealed and checked.

    The file appears under its name only once it is complete and has been opened again and
    checked (SQLite: `PRAGMA integrity_check`; PostgreSQL: `pg_restore --list`).
    """
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists already; a backup never overwrites a file.")
    if not target.parent.is_dir():
        raise BackupError(f"There is no folder {target.parent}.")
    # Everything is made in a private folder beside the target (so on the same file system),
    # which goes away afterwards whatever happens; the checked file is then linked into place.
    with _scratch(target.parent) as scratch:
        sealed = scratch / "sealed"
        header = _write_sealed(sealed, scratch, _Seal.new())
        verify_backup(sealed, scratch)
        try:
            os.link(sealed, target)  # unlike a rename, never replaces a file that appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{target} exists already; a backup never overwrites a file.") from None
    _sync_folder(target.parent)
    return BackupInfo(target, header, target.stat().st_size)


@dataclass(frozen=True)
class _Seal:
    """How one backup is sealed: the key ring's newest version, a fresh salt and nonce prefix."""

    version: int
    salt: bytes
    prefix: bytes
    key: bytes

    @classmethod
    def new(cls) -> _Seal:
        version, salt = keyring().current_version, os.urandom(16)
        return cls(version, salt, os.urandom(NONCE_PREFIX), _file_key(version, salt))

    def header(self, dialect: str, revision: str | None) -> BackupHeader:
        created = utcnow().isoformat(timespec="seconds")
        checks = _key_check(self.key), _blind_check(self.salt)
        return BackupHeader(self.version, dialect, created, revision, self.salt, self.prefix, *checks)


def _write_sealed(partial: Path, scratch: Path, seal: _Seal) -> BackupHeader:
    """Snapshot the database and seal it into `partial`; plaintext only ever in `scratch`."""
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        snapshot = _sqlite_snapshot(scratch / "snapshot.sqlite")
        header = seal.header(dialect, _sqlite_revision(snapshot))
        with _private_file(partial) as out, open(snapshot, "rb") as source:
            _seal_stream(source, out, seal, _write_header(out, header))
        snapshot.unlink()
    elif dialect == "postgresql":
        header = seal.header(dialect, _database_revision())
        with _private_file(partial) as out:
            _pg_dump_into(out, seal, _write_header(out, header))
    else:
        raise BackupError(f"Backups of {dialect} databases are not supported.")
    return header


def _write_header(out: t.IO[bytes], header: BackupHeader) -> bytes:
    raw = header.to_bytes()
    aad = MAGIC + _LENGTH.pack(len(raw)) + raw
    out.write(aad)
    return aad


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_path() -> Path:
    database = db.engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("Only a SQLite database in a file can be backed up.")
    return Path(database)


def _sqlite_snapshot(target: Path) -> Path:
    """Copy the live database with SQLite's backup API: one read, so one consistent state."""
    live = _sqlite_path()
    if not live.is_file():
        raise BackupError(f"There is no database at {live}.")
    source = sqlite3.connect(live, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # all pages in one step, inside one read transaction
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        copy.close()
        source.close()
    return target


def _sqlite_revision(path: Path) -> str | None:
    with _sqlite(path) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            return None
    return row[0] if row else None


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def _database_revision() -> str | None:
    """The migration revision of the app's database (None before any migration)."""
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def pg_tool(name: str) -> str:
    """A PostgreSQL client program: on PATH, else the newest under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    installed = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if installed:
        return max(installed, key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    raise BackupError(
        f"{name} was not found: install the PostgreSQL client programs (the server's version or "
        "newer) or put them on PATH."
    )


def _libpq_target() -> tuple[str, dict[str, str]]:
    """A libpq URI for the app's database without its password, and the environment that carries it."""
    url = db.engine.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    uri = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _pg_dump_into(out: t.IO[bytes], seal: _Seal, aad: bytes) -> None:
    """Stream `pg_dump` (custom format, one snapshot) through the sealing into `out`."""
    uri, env = _libpq_target()
    with tempfile.TemporaryFile() as errors:
        dump = subprocess.Popen(
            [pg_tool("pg_dump"), "--format=custom", "--dbname", uri],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert dump.stdout is not None
        try:
            _seal_stream(dump.stdout, out, seal, aad)
        finally:
            dump.stdout.close()
            code = dump.wait()
        if code != 0:
            errors.seek(0)
            raise BackupError(f"pg_dump failed: {_tail(errors.read())}")


def _tail(output: bytes) -> str:
    return output.decode(errors="replace").strip()[-800:]


def verify_backup(path: Path, scratch: Path | None = None) -> BackupHeader:
    """Open a backup completely and check what is inside; raise BackupError if anything is wrong."""
    with _scratch(scratch) as folder:
        plain = folder / "check"
        header = decrypt_backup(path, plain)
        if header.dialect == "sqlite":
            _check_sqlite(plain)
        else:
            _check_dump(plain)
    return header


def _check_sqlite(path: Path) -> None:
    with _sqlite(path) as conn:
        try:
            answer = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            raise BackupUnreadable(f"The database inside the backup is damaged: {exc}.") from None
    if answer != ["ok"]:
        raise BackupUnreadable(
            "The database inside the backup failed its integrity check: " + "; ".join(answer[:5])
        )


def _check_dump(path: Path) -> None:
    listed = subprocess.run([pg_tool("pg_restore"), "--list", str(path)], capture_output=True)
    if listed.returncode != 0:
        raise BackupUnreadable(f"The dump inside the backup cannot be read: {_tail(listed.stderr)}")


def record_backup(info: BackupInfo) -> None:
    """Audit a backup taken (its file name, key version and size; never a path's folders)."""
    current_uow().audit("backup.create", "backup", info.path.name, detail=_detail(info.header, info.size))


def _detail(header: BackupHeader, size: int | None = None) -> str:
    words = f"{header.dialect} key=v{header.key_version} made={header.created_at}"
    return words + (f" bytes={size}" if size is not None else "")


# The nightly job's folder.
def backup_folder() -> Path:
    """BACKUP_DIR (relative to the instance folder unless absolute), by default instance/backups."""
    return Path(current_app.instance_path) / (current_app.config.get("BACKUP_DIR") or "backups")


def prune_backups(folder: Path, keep: int) -> tuple[list[Path], list[Path]]:
    """Keep the newest `keep` backups the job wrote into `folder`, remove the others: (kept, removed)."""
    if keep < 1:
        raise ValueError("BACKUP_KEEP must be at least 1")
    made = sorted(p for p in folder.glob(f"patron-*{SUFFIX}") if p.is_file())
    kept, removed = made[-keep:], made[:-keep]
    for path in removed:
        path.unlink()
    return kept, removed


def record_pruned(removed: list[Path]) -> None:
    """Audit the old backups the job removed."""
    if removed:
        current_uow().audit("backup.remove", "backup", None, detail=", ".join(p.name for p in removed)[:2000])


def private_folder(folder: Path) -> Path:
    """Make the backup folder if need be, readable by its owner only (0700)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


# Restoring.
def database_tables() -> list[str]:
    """The tables in the app's database (every schema but the system's, on PostgreSQL)."""
    inspector = sa.inspect(db.engine)
    if db.engine.dialect.name != "postgresql":
        return sorted(inspector.get_table_names())
    schemas = [
        s for s in inspector.get_schema_names() if s != "information_schema" and not s.startswith("pg_")
    ]
    return sorted(
        name if schema == inspector.default_schema_name else f"{schema}.{name}"
        for schema in schemas
        for name in inspector.get_table_names(schema=schema)
    )


def check_restorable(header: BackupHeader) -> None:
    """Refuse a restore into a database of another kind, or one that is not empty."""
    dialect = db.engine.dialect.name
    if header.dialect != dialect:
        raise RestoreRefused(
            f"This is a backup of a {header.dialect} database; this installation uses {dialect}. "
            "Restore it into the same kind of database."
        )
    if not hmac.compare_digest(_blind_check(header.salt), header.blind_check):
        raise RestoreRefused(
            "This installation's blind-index key is not the one the backup was made with: searches "
            "by email and phone would not find the restored customers. Restore with the keys the "
            "backup was made with (PATRON_BLIND_INDEX_KEY or instance/keys.json)."
        )
    db.session.remove()
    tables = database_tables()
    if tables:
        raise RestoreRefused(
            f"The database is not empty ({len(tables)} tables); a restore only goes into an empty "
            "database. Create a new, empty database (or move the SQLite file away) and point "
            "DATABASE_URL at it."
        )


def restore_backup(path: Path) -> RestoreReport:
    """Restore a backup into the app's database, which must be empty; check it, count its rows."""
    header = read_header(path)
    check_restorable(header)
    with _scratch() as folder:
        plain = folder / "restore"
        decrypt_backup(path, plain)
        db.session.remove()
        db.engine.dispose()
        if header.dialect == "sqlite":
            _check_sqlite(plain)
            _restore_sqlite(plain)
        else:
            _check_dump(plain)
            _restore_dump(plain)
    db.engine.dispose()
    return RestoreReport(header, row_counts(), _database_revision(), values_without_key())


def _restore_sqlite(plain: Path) -> None:
    """Copy the checked snapshot into the (empty) database file with the backup API."""
    target = _sqlite_path()
    if not target.exists():
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with _sqlite(plain) as source, _sqlite(target) as conn:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise RestoreRefused("The database stopped being empty; nothing was restored.")
        conn.execute("PRAGMA journal_mode=DELETE")  # the copy brings its own; no WAL to carry over
        source.backup(conn)
        answer = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    os.chmod(target, 0o600)
    if answer != ["ok"]:
        raise BackupError("The restored database failed its integrity check: " + "; ".join(answer[:5]))


def _restore_dump(plain: Path) -> None:
    """pg_restore into the (empty) database, all in one transaction: all of it or nothing."""
    uri, env = _libpq_target()
    command = [
        pg_tool("pg_restore"),
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        "--dbname",
        uri,
        str(plain),
    ]
    restored = subprocess.run(command, capture_output=True, env=env)
    if restored.returncode != 0:
        raise BackupError(f"pg_restore failed; nothing was restored: {_tail(restored.stderr)}")


def row_counts() -> dict[str, int]:
    """Rows per table of the app's database."""
    counts = {}
    with db.engine.connect() as conn:
        for name in database_tables():
            schema, _, table = name.rpartition(".")
            query = sa.select(sa.func.count()).select_from(sa.table(table, schema=schema or None))
            counts[name] = conn.execute(query).scalar_one()
    return counts


def values_without_key() -> int:
    """Stored encrypted values whose key version is not in the key ring (present in the schema)."""
    known = [f"v{version}:%" for version in keyring().keys]
    inspector = sa.inspect(db.engine)
    present = set(inspector.get_table_names())
    total = 0
    with db.engine.connect() as conn:
        for table, column in encrypted_columns(db.metadata):
            # A backup from an older schema may lack a table or column of today's.
            if table.name not in present or column.name not in {
                c["name"] for c in inspector.get_columns(table.name)
            }:
                continue
            stored = sa.type_coerce(column, sa.Text)  # the ciphertext, not opened
            query = sa.select(sa.func.count()).select_from(table).where(stored.isnot(None))
            total += conn.execute(query.where(*[sa.not_(stored.like(k)) for k in known])).scalar_one()
    return total


def record_restore(report: RestoreReport, source: Path) -> None:
    """Audit a restore, into the database just restored."""
    current_uow().audit("backup.restore", "backup", source.name, detail=_detail(report.header))
