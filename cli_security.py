"""Commands for sign-in security (two-factor reset for a locked-out member of staff)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
