"""Staff sessions in every request: the hooks that record, limit and end them."""

from __future__ import annotations

from flask import Flask


def register_session_hooks(app: Flask) -> None:
    """Attach the staff-session hooks to this app."""
