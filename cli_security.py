"""Commands for sign-in security (two-factor reset for a locked-out member of staff)."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from models import db
from models.sign_in_guard import clear_account_throttles
from models.two_factor import reset_two_factor, two_factor_required
from models.user import StaffUser


def _staff(email: str) -> StaffUser:
    user = db.session.scalar(
        sa.select(StaffUser).where(sa.func.lower(StaffUser.email) == email.strip().lower())
    )
    if user is None:
        raise click.ClickException(f"No staff account for {email.strip().lower()}.")
    return user


@click.command("reset-2fa")
@click.argument("email")
@with_appcontext
def reset_two_factor_command(email: str) -> None:
    """Remove a member of staff's two-factor sign-in (a lost phone), audited; ends their sessions."""
    from cli import command_unit_of_work  # cli imports this module; late, so that both load

    user = _staff(email)
    with command_unit_of_work():
        had = reset_two_factor(user)
    name = user.email
    if not had:
        click.echo(f"{name} had no two-factor sign-in; their sessions were ended all the same.")
    elif two_factor_required(user):
        click.echo(f"Two-factor sign-in reset for {name}: they set it up again at their next sign-in.")
    else:
        click.echo(f"Two-factor sign-in reset for {name}: they sign in with their password alone.")


@click.command("unlock-sign-in")
@click.argument("email")
@with_appcontext
def unlock_sign_in_command(email: str) -> None:
    """Clear the sign-in throttles of one account (failed attempts by whoever typed its email), audited."""
    from cli import command_unit_of_work

    with command_unit_of_work():
        count = clear_account_throttles(email)
    click.echo(f"Throttles cleared: {count}.")


commands: list[click.Command] = [reset_two_factor_command, unlock_sign_in_command]
