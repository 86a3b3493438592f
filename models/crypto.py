"""Encryption at rest: the key ring, encrypted column types and blind indexes.

Values are sealed with AES-256-GCM. The column's name ("customer.email") is bound in as
associated data, so a ciphertext copied into another column fails to open. Every stored
value starts with its key's version ("v2:..."), which lets `flask rotate-keys` find and
re-seal old values and lets `flask retire-key` prove that a key is no longer used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import typing as t
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

NONCE_BYTES = 12
EXTENSION_KEY = "patron.keyring"


class UnreadableValue(Exception):
    """A value cannot be opened: its key is missing or it was tampered with."""


def new_key() -> str:
    """A fresh random 256-bit key, base64-encoded."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _decode_key(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text.encode())
    if len(raw) != 32:
        raise ValueError("keys must be 32 bytes (base64 of 256 bits)")
    return raw


@dataclass
class KeyRing:
    """Versioned encryption keys (newest seals, all open) and the blind-index key."""

    keys: dict[int, bytes]
    blind_key: bytes

    @classmethod
    def from_material(cls, material: dict) -> KeyRing:
        """Build a key ring from config.load_key_material()'s result."""
        keys = {int(v): _decode_key(k) for v, k in material["encryption_keys"].items()}
        if not keys:
            raise ValueError("at least one encryption key is required")
        blind = _decode_key(material["blind_index_key"])
        if blind in keys.values():
            raise ValueError("the blind-index key must differ from every encryption key")
        return cls(keys=keys, blind_key=blind)

    @property
    def current_version(self) -> int:
        return max(self.keys)

    def seal(self, plaintext: str, context: str) -> str:
        """Encrypt text under the newest key, bound to its column."""
        version = self.current_version
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[version]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"v{version}:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str:
        """Decrypt a value sealed by seal() for the same column."""
        version_text, _, body = token.partition(":")
        try:
            key = self.keys[int(version_text[1:])]
        except (KeyError, ValueError):
            raise UnreadableValue(f"no key for version {version_text!r} ({context})") from None
        raw = base64.urlsafe_b64decode(body.encode())
        try:
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except Exception:
            raise UnreadableValue(f"value in {context} failed authentication") from None
        return plain.decode()

    def blind_index(self, purpose: str, normalised: str) -> str:
        """Keyed HMAC-SHA256 of a normalised value; purpose keeps indexes of columns apart."""
        message = purpose.encode() + b"\x00" + normalised.encode()
        return hmac.new(self.blind_key, message, hashlib.sha256).hexdigest()


def keyring() -> KeyRing:
    """The current app's key ring."""
    return current_app.extensions[EXTENSION_KEY]


def blind_index(purpose: str, normalised: str | None) -> str | None:
    """Blind index of a normalised value with the current app's key (None stays None)."""
    if normalised is None:
        return None
    return keyring().blind_index(purpose, normalised)


class EncryptedText(sa.TypeDecorator):
    """A text column sealed with AES-GCM; `context` names the column ("customer.email")."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, context: str):
        super().__init__()
        self.context = context

    def encode(self, value) -> str:
        return str(value)

    def decode(self, text: str):
        return text

    def process_bind_param(self, value, dialect):
        if value is None or value == "":
            return None
        return keyring().seal(self.encode(value), self.context)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return self.decode(keyring().open(value, self.context))

    def __repr__(self) -> str:
        return f"EncryptedText({self.context!r})"


class EncryptedDate(EncryptedText):
    """A date sealed like EncryptedText (stored as ISO text inside the ciphertext)."""

    cache_ok = True

    def encode(self, value) -> str:
        return value.isoformat()

    def decode(self, text: str):
        return date.fromisoformat(text)

    def __repr__(self) -> str:
        return f"EncryptedDate({self.context!r})"


def encrypted_columns(metadata: sa.MetaData) -> list[tuple[sa.Table, sa.Column]]:
    """Every encrypted column in the schema, for key rotation and retirement."""
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedText):
                found.append((table, column))
    return found


class SealedFiles(t.Protocol):
    """Files sealed with the key ring outside the database, as key rotation and retirement see them."""

    name: str

    def count_sealed_with(self, version: int) -> int:
        """How many files the key version seals."""
        ...

    def count_stale(self, current_version: int) -> int:
        """How many files are sealed with an older key than the newest."""
        ...

    def reseal_batch(self, batch_size: int) -> int:
        """Re-seal up to batch_size stale files under the newest key, in the caller's unit of work."""
        ...


# Filled by the modules that keep sealed files, when they are imported.
SEALED_FILES: list[SealedFiles] = []
