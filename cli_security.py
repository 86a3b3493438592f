"""Commands for sign-in security: two-factor reset, throttle unlock, password reset links."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import current_app, url_for
from flask.cli import with_appcontext

from models import db
from models.password_reset import LINK_MINUTES, PasswordResetError, issue_password_reset
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


def reset_link(token: str, base_url: str | None) -> str:
    """The full address of a reset link: under --base-url, else the configured server name."""
    base = base_url or current_app.config.get("PUBLIC_BASE_URL")
    if not base and current_app.config.get("SERVER_NAME"):
        return url_for("staff_auth.reset_with_link", token=token, _external=True)
    with current_app.test_request_context(base_url=base or "http://localhost:5000"):
        return url_for("staff_auth.reset_with_link", token=token, _external=True)


@click.command("reset-password")
@click.argument("email")
@click.option("--base-url", help="The panel's address as staff reach it, e.g. https://care.example.com.")
@with_appcontext
def reset_password_command(email: str, base_url: str | None) -> None:
    """Print a single-use link (30 minutes) for a member of staff to set a new password, audited."""
    from cli import command_unit_of_work

    user = _staff(email)
    try:
        with command_unit_of_work():
            _reset, token = issue_password_reset(user, "cli")
    except PasswordResetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Password reset link for {user.email} (works once, for {LINK_MINUTES} minutes):")
    click.echo(reset_link(token, base_url))
    click.echo("Give it to them over a private channel; any earlier link of theirs stops working.")


commands: list[click.Command] = [reset_two_factor_command, unlock_sign_in_command, reset_password_command]
