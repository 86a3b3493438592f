"""Public tracking codes: how they are made and the normalised form they are looked up by.

A code is 16 characters of Crockford's base32 (digits and capitals without I, L, O and U),
80 random bits, shown in four groups of four: `K7QM-4XN2-PD9R-W3HF`. Read over the phone,
case, spaces and dashes do not matter, and the look-alikes a listener may write down are
read as what they look like (O as 0, I and L as 1).

Codes issued before these (40 hexadecimal characters in groups of five) keep working: their
lookup key is the one they were hashed under, the upper-case letters and digits.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
LENGTH = 16  # 16 × 5 = 80 random bits
GROUP = 4
LEGACY_LENGTH = 40  # the 160-bit hexadecimal codes issued first
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_HEX = frozenset("0123456789ABCDEF")
EXAMPLE = "K7QM-4XN2-PD9R-W3HF"


def new_tracking_code() -> str:
    """A tracking code with 80 random bits, in four groups of four that can be read out on the phone."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return format_tracking_code(raw)


def format_tracking_code(key: str) -> str:
    """A code's characters in groups of four (five for the old 40-character codes), joined by dashes."""
    size = 5 if len(key) == LEGACY_LENGTH else GROUP
    return "-".join(key[i : i + size] for i in range(0, len(key), size))


def tracking_lookup_key(code: str) -> str | None:
    """The normalised form a tracking code is hashed in (case, spaces and dashes do not matter).

    None when the text cannot be a tracking code, so that it is never looked up.
    """
    if not isinstance(code, str) or len(code) > 80:
        return None
    key = "".join(ch for ch in code.upper() if ch.isalnum())  # spaces, dashes, dots dropped
    if not key.isascii():
        return None
    key = key.translate(_LOOK_ALIKES)
    if len(key) == LEGACY_LENGTH and set(key) <= _HEX:
        # An old code: hexadecimal has no O, I or L, so the code as issued is unchanged here.
        return key
    if len(key) == LENGTH and all(ch in ALPHABET for ch in key):
        return key
    return None
