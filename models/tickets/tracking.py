"""Public tracking codes: how they are made and the normalised form they are looked up by."""

from __future__ import annotations

import secrets


def new_tracking_code() -> str:
    """A tracking code with 160 random bits, in groups that can be read out on the phone."""
    raw = secrets.token_hex(20).upper()
    return "-".join(raw[i : i + 5] for i in range(0, len(raw), 5))


def tracking_lookup_key(code: str) -> str | None:
    """The normalised form a tracking code is hashed in (case and separators do not matter).

    None when the text cannot be a tracking code, so that it is never looked up.
    """
    key = "".join(ch for ch in code.upper() if ch.isalnum())
    return key if len(key) >= 20 else None
