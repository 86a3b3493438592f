"""Configuration: defaults here, secrets and keys from the environment or the instance folder."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

DEFAULTS = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "RATELIMIT_STORAGE_URI": "memory://",
    # Said explicitly: the limiter is shared by every app of a process, and an app made with
    # limits off would otherwise leave them off for the next one.
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_HEADERS_ENABLED": True,
    "PUBLIC_FORM_RATE_LIMIT": "5 per 10 minutes",
    "TRACKING_RATE_LIMIT": "30 per minute",
    "PASSWORD_RESET_RATE_LIMIT": "5 per 15 minutes",
    "SURVEY_RATE_LIMIT": "20 per 10 minutes",
    "SURVEY_SETTINGS_TTL": 5,
    "LOYALTY_CURRENCY": "CNY",
    "POINTS_EXPIRE_MONTHS": 24,
    "LOYALTY_SETTINGS_TTL": 5,
    "DEFAULT_PHONE_REGION": "CN",
    "DEFAULT_TIMEZONE": "Asia/Shanghai",
    "BABEL_DEFAULT_LOCALE": "en",
    "BABEL_DEFAULT_TIMEZONE": "UTC",
    # hide_parameters: SQL errors and engine logs never show bound values (an email typed at a
    # failed sign-in, a searched phone number); kept even when a deployment sets other options.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": True},
    "WTF_CSRF_TIME_LIMIT": None,
    # The largest request body (a purchase CSV import is the largest thing anyone sends): 413 above.
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # The largest file attached to a ticket message (below MAX_CONTENT_LENGTH, so that a file
    # too large is refused with a message and the reply typed with it kept).
    "ATTACHMENT_MAX_BYTES": 10 * 1024 * 1024,
    "ADMIN_PAGE_SIZE": 20,
    # Minutes between runs by job name, over the jobs' own defaults
    # (e.g. PATRON_JOB_INTERVALS='{"escalate-sla": 10}').
    "JOB_INTERVALS": {},
    # Roles that must use two-factor sign-in ("*" for every role); minutes a half-done sign-in
    # (password given, code not yet) stays open; the issuer name authenticator apps show;
    # days a browser trusted after a two-factor sign-in stays trusted.
    "TWO_FACTOR_REQUIRED_ROLES": ["admin", "manager"],
    "TWO_FACTOR_PENDING_MINUTES": 10,
    "TWO_FACTOR_ISSUER": "Patron",
    "TRUSTED_DEVICE_DAYS": 90,
    # Sign-in throttles (models/sign_in_guard.py): failures allowed free per address, account
    # and trusted browser, then a delay doubling from the first to the longest; failures are
    # forgotten after this many quiet hours.
    "SIGN_IN_FREE_FAILURES_PER_ADDRESS": 10,
    "SIGN_IN_FREE_FAILURES_PER_ACCOUNT": 3,
    "SIGN_IN_FREE_FAILURES_PER_DEVICE": 5,
    "SIGN_IN_FIRST_DELAY_SECONDS": 2,
    "SIGN_IN_MAX_DELAY_SECONDS": 900,
    "SIGN_IN_FORGET_FAILURES_HOURS": 24,
    # Staff sessions end after this long without a request, and this long after sign-in at most
    # (the session cookie lives as long: PERMANENT_SESSION_LIFETIME follows it); a session's
    # last use is written at most every SESSION_TOUCH_SECONDS.
    "SESSION_IDLE_MINUTES": 30,
    "SESSION_ABSOLUTE_HOURS": 12,
    "SESSION_TOUCH_SECONDS": 60,
    # Searches by email, phone or name per member of staff.
    "CONTACT_SEARCH_RATE_LIMIT": "60 per hour",
    # Reverse proxies in front of the app whose X-Forwarded-* headers are trusted (0: none).
    "TRUSTED_PROXIES": 0,
    # The nightly backup job's folder (inside the instance folder unless absolute) and how many
    # of its backups it keeps.
    "BACKUP_DIR": "backups",
    "BACKUP_KEEP": 7,
}

PRODUCTION = {"SESSION_COOKIE_SECURE": True, "PREFERRED_URL_SCHEME": "https"}

KEYS_FILE = "keys.json"
SECRET_KEY_FILE = "secret_key"
# Files the app creates are its owner's only: the SQLite database and its -wal and -shm files,
# the keys, the secret key, backups, exports written to disk.
PRIVATE_UMASK = 0o077


def engine_options(configured: dict | None) -> dict:
    """The engine options a deployment set, with SQL parameters hidden unless it said otherwise."""
    return {"hide_parameters": True, **(configured or {})}


def make_files_private(instance_path: str, database_uri: str) -> list[Path]:
    """Take group and other access away from the instance files made before the umask was set
    (the database, keys and secret of an older install); returns the files changed."""
    candidates = [Path(instance_path) / KEYS_FILE, Path(instance_path) / SECRET_KEY_FILE]
    if database_uri.startswith("sqlite:///"):
        database = Path(database_uri.removeprefix("sqlite:///").partition("?")[0])
        candidates += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    changed = []
    for path in candidates:
        try:
            status = path.stat()
            if status.st_mode & 0o077 and status.st_uid == os.getuid():
                path.chmod(status.st_mode & 0o700)
                changed.append(path)
        except OSError:
            continue  # missing, or not ours to change
    return changed


def database_url(instance_path: str) -> str:
    """DATABASE_URL from the environment, else SQLite in the instance folder."""
    url = os.environ.get("DATABASE_URL")
    if url:
        # Plain postgres:// URLs (as many hosts hand them out) mean psycopg 3 here.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url
    return "sqlite:///" + os.path.join(instance_path, "patron.sqlite")


def _write_private(path: Path, text: str) -> None:
    """Create a file readable by its owner only (0600) and write text into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def load_secret_key(instance_path: str) -> str:
    """SECRET_KEY from the environment, else from (or generated into) the instance folder."""
    if os.environ.get("PATRON_SECRET_KEY"):
        return os.environ["PATRON_SECRET_KEY"]
    path = Path(instance_path) / SECRET_KEY_FILE
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def load_key_material(instance_path: str) -> dict:
    """Encryption keys and the blind-index key: environment first, else the instance keys file.

    PATRON_ENCRYPTION_KEYS is "version:base64key,version:base64key"; PATRON_BLIND_INDEX_KEY
    is base64. Without them a keys file is generated on first run with mode 0600.
    """
    env_keys = os.environ.get("PATRON_ENCRYPTION_KEYS")
    env_blind = os.environ.get("PATRON_BLIND_INDEX_KEY")
    if env_keys and env_blind:
        keys = {}
        for item in env_keys.split(","):
            version, _, key = item.strip().partition(":")
            keys[int(version)] = key
        return {"encryption_keys": keys, "blind_index_key": env_blind, "source": "environment"}
    path = Path(instance_path) / KEYS_FILE
    if not path.exists():
        from models.crypto import new_key

        _write_private(
            path,
            json.dumps({"encryption_keys": {"1": new_key()}, "blind_index_key": new_key()}, indent=2),
        )
    data = json.loads(path.read_text())
    return {
        "encryption_keys": {int(v): k for v, k in data["encryption_keys"].items()},
        "blind_index_key": data["blind_index_key"],
        "source": str(path),
    }


def save_key_material(instance_path: str, material: dict) -> None:
    """Rewrite the instance keys file (used when adding or retiring a key)."""
    path = Path(instance_path) / KEYS_FILE
    payload = {
        "encryption_keys": {str(v): k for v, k in sorted(material["encryption_keys"].items())},
        "blind_index_key": material["blind_index_key"],
    }
    tmp = path.with_suffix(".tmp")
    if tmp.exists():
        tmp.unlink()
    _write_private(tmp, json.dumps(payload, indent=2))
    os.replace(tmp, path)
