"""Files attached to ticket messages: checked by content, sealed at rest, kept out of the web root.

A file is accepted when its bytes (not its name) show an allowed type, and when it is no larger
than ATTACHMENT_MAX_BYTES. It is stored in the instance folder under a random name (0600),
sealed with the app's newest key (AES-256-GCM, bound to its stored name), and described by one
row: the message it belongs to, the original name made safe, the detected type, size and
SHA-256. Files are written inside the caller's unit of work and removed again if that unit of
work rolls back, so a failed reply leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import filetype
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, Session, mapped_column, object_session

from models import Model, UTCDateTime, db, utcnow
from models.crypto import NONCE_BYTES, SEALED_FILES, UnreadableValue, keyring

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_FILES_PER_MESSAGE = 5
# Detected type → the extension the stored name gets (whatever the name said).
ALLOWED_TYPES = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "text/plain": "txt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
EXTENSION_ALIASES = {"jpeg": "jpg", "text": "txt", "log": "txt", "csv": "txt"}
ALLOWED_LABEL = "PDF, PNG, JPEG, GIF, WebP, TXT, DOCX, XLSX"
FOLDER = "attachments"
_PENDING = "patron.attachment_files_written"
_DOOMED = "patron.attachment_files_deleted"
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


class AttachmentRefused(ValueError):
    """A file that may not be attached; the message says which and why."""


class TicketAttachment(Model):
    """One file attached to a ticket message; the bytes live sealed in the instance folder."""

    __tablename__ = "ticket_attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        sa.ForeignKey("ticket_message.id", ondelete="CASCADE"), index=True
    )
    stored_name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    original_name: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))
    key_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __str__(self) -> str:
        return self.original_name

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True)
class CheckedFile:
    """An upload that passed the checks: its safe name, detected type and bytes."""

    name: str
    content_type: str
    data: bytes


def max_bytes() -> int:
    """The largest file accepted (config ATTACHMENT_MAX_BYTES)."""
    return int(current_app.config.get("ATTACHMENT_MAX_BYTES", DEFAULT_MAX_BYTES))


def detect_type(data: bytes) -> str | None:
    """The file's type from its bytes if it is an allowed one, else None."""
    kind = filetype.guess(data)
    if kind is not None:
        return kind.mime if kind.mime in ALLOWED_TYPES else None
    return "text/plain" if _is_plain_text(data) else None


def _is_plain_text(data: bytes) -> bool:
    """UTF-8 text without NUL or other control characters than tab and line ends."""
    if b"\x00" in data:
        return False
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return not any(unicodedata.category(ch) == "Cc" and ch not in "\t\r\n\f" for ch in text)


def safe_name(name: str, content_type: str) -> str:
    """The name a person gave the file, without paths or control characters, its extension
    the detected type's (a PNG called invoice.pdf becomes invoice.png)."""
    base = unicodedata.normalize("NFC", re.split(r"[/\\]", name or "")[-1])
    base = _UNSAFE_NAME.sub("_", base).strip(" .") or "attachment"
    stem, dot, extension = base.rpartition(".")
    if not (dot and stem and extension.isalnum() and len(extension) <= 5):
        stem, extension = base, ""  # no extension, or none that looks like one: add the true one
    wanted = ALLOWED_TYPES[content_type]
    if EXTENSION_ALIASES.get(extension.lower(), extension.lower()) != wanted:
        extension = wanted
    return f"{stem[:200]}.{extension}"


def check_upload(name: str, data: bytes) -> CheckedFile:
    """Accept a file by its size and its content, or raise AttachmentRefused saying why."""
    shown = (name or "").rsplit("/", 1)[-1][:100] or "?"
    if not data:
        raise AttachmentRefused(str(_l("“%(name)s” is empty.", name=shown)))
    limit = max_bytes()
    if len(data) > limit:
        raise AttachmentRefused(
            str(_l("“%(name)s” is larger than the limit of %(limit)s.", name=shown, limit=human_size(limit)))
        )
    content_type = detect_type(data)
    if content_type is None:
        raise AttachmentRefused(
            str(_l("“%(name)s” is not an allowed kind of file (%(kinds)s).", name=shown, kinds=ALLOWED_LABEL))
        )
    return CheckedFile(safe_name(name, content_type), content_type, data)


def human_size(size: int) -> str:
    """A size for people: bytes, KB or MB (1024-based), in the reader's number format."""
    if size < 1024:
        return str(_l("%(n)s bytes", n=format_decimal(size)))
    if size < 1024 * 1024:
        return str(_l("%(n)s KB", n=format_decimal(round(size / 1024, 1))))
    return str(_l("%(n)s MB", n=format_decimal(round(size / (1024 * 1024), 1))))


# Storage -------------------------------------------------------------------------------------


def attachments_folder() -> Path:
    """The folder files are kept in: inside the instance folder, never under static/."""
    folder = Path(current_app.instance_path) / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def store_file(session: Session, checked: CheckedFile) -> TicketAttachment:
    """Seal and write a file; its row, to be added to a message. Removed again on rollback."""
    ring = keyring()
    version = ring.current_version
    stored_name = secrets.token_hex(16)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(ring.keys[version]).encrypt(nonce, checked.data, _context(stored_name))
    path = attachments_folder() / stored_name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    session.info.setdefault(_PENDING, []).append(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(nonce + sealed)
    return TicketAttachment(
        stored_name=stored_name,
        original_name=checked.name,
        content_type=checked.content_type,
        size=len(checked.data),
        sha256=hashlib.sha256(checked.data).hexdigest(),
        key_version=version,
    )


def read_file(attachment: TicketAttachment) -> bytes:
    """The file's bytes, opened with the key it was sealed with and checked against its hash."""
    raw = (attachments_folder() / attachment.stored_name).read_bytes()
    try:
        key = keyring().keys[attachment.key_version]
        data = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(attachment.stored_name))
    except Exception:
        raise UnreadableValue(f"attachment {attachment.id} cannot be opened") from None
    if hashlib.sha256(data).hexdigest() != attachment.sha256:
        raise UnreadableValue(f"attachment {attachment.id} does not match its hash")
    return data


class AttachmentFiles:
    """Attachment files as key rotation sees them: counted by key version, re-sealed in batches."""

    name = "ticket_attachment"

    def count_sealed_with(self, version: int) -> int:
        query = sa.select(sa.func.count()).where(TicketAttachment.key_version == version)
        return db.session.scalar(query) or 0

    def count_stale(self, current_version: int) -> int:
        query = sa.select(sa.func.count()).where(TicketAttachment.key_version != current_version)
        return db.session.scalar(query) or 0

    def reseal_batch(self, batch_size: int) -> int:
        """Each file is written again under a new name; the old file goes when the batch commits."""
        session = db.session()
        stale = session.scalars(
            sa.select(TicketAttachment)
            .where(TicketAttachment.key_version != keyring().current_version)
            .order_by(TicketAttachment.id)
            .limit(batch_size)
            .with_for_update()
        ).all()
        for attachment in stale:
            checked = CheckedFile(attachment.original_name, attachment.content_type, read_file(attachment))
            fresh = store_file(session, checked)
            session.info.setdefault(_DOOMED, []).append(attachment.stored_name)
            attachment.stored_name, attachment.key_version = fresh.stored_name, fresh.key_version
        return len(stale)


SEALED_FILES.append(AttachmentFiles())


def _context(stored_name: str) -> bytes:
    return f"ticket_attachment:{stored_name}".encode()


# Files follow their transaction: written ones go again on rollback, deleted rows' files go on commit.


@sa.event.listens_for(Session, "after_rollback")
def _remove_files_of_a_rolled_back_transaction(session: Session) -> None:
    for path in session.info.pop(_PENDING, []):
        Path(path).unlink(missing_ok=True)
    session.info.pop(_DOOMED, None)


@sa.event.listens_for(Session, "after_commit")
def _keep_files_of_a_committed_transaction(session: Session) -> None:
    session.info.pop(_PENDING, None)
    for name in session.info.pop(_DOOMED, []):
        (attachments_folder() / name).unlink(missing_ok=True)


@sa.event.listens_for(TicketAttachment, "after_delete")
def _file_goes_with_its_row(_mapper, connection, target: TicketAttachment) -> None:
    session = object_session(target)
    if session is not None:
        session.info.setdefault(_DOOMED, []).append(target.stored_name)
