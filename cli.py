"""Management commands. Each is thin: it parses, calls a domain function, reports."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import sqlalchemy as sa
from click.core import ParameterSource
from flask import current_app
from flask.cli import with_appcontext

from jobs.command import run_jobs_command
from models import db
from models.api_key import SCOPES, create_api_key
from models.crypto import keyring
from models.keys import KeyChangeRefused, add_key_version, retire_key_version
from models.uow import Actor, UnitOfWork, WriteBusy, unit_of_work
from models.user import PasswordPolicyError, Role, StaffUser, create_staff_user

# The actors of commands in audit events: a person at the command line, and the demo data.
CLI = Actor.system("cli")
DEMO = Actor.system("demo")


@contextmanager
def command_unit_of_work(actor: Actor = CLI) -> Iterator[UnitOfWork]:
    """A command's unit of work; a database still busy after the timeout is a clear error."""
    try:
        with unit_of_work(actor) as uow:
            yield uow
    except WriteBusy:
        raise click.ClickException("The database was busy; nothing was saved. Please try again.") from None


def _read_password() -> str:
    """Prompt twice without echo on a terminal; read one line from standard input otherwise."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError("no password on standard input")
    return line.rstrip("\r\n")


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", default="", help="Display name.")
@with_appcontext
def create_user_command(email: str, role: str, name: str) -> None:
    """Create a staff account; the password is prompted for (or read from stdin)."""
    password = _read_password()
    try:
        with command_unit_of_work():
            create_staff_user(email, password, role, display_name=name)
    except (PasswordPolicyError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {role} {email.strip().lower()}")


def generated_password() -> str:
    """A random password that satisfies the policy."""
    return secrets.token_urlsafe(15)


DEMO_SIZES = ("customers", "tickets", "buyers", "responses")


@click.command("bootstrap")
@click.option(
    "--demo",
    is_flag=True,
    help="Also add demo data, three demo staff accounts and a demo API key (never on a real database).",
)
@click.option("--customers", default=300, show_default=True, help="Demo customers (with --demo).")
@click.option(
    "--tickets",
    default=60,
    show_default=True,
    help="Demo tickets in hand (with --demo); as many again resolved over the past 12 weeks.",
)
@click.option("--buyers", default=120, show_default=True, help="Demo customers with purchases (with --demo).")
@click.option(
    "--responses",
    default=240,
    show_default=True,
    help="Demo survey responses and ticket ratings (with --demo).",
)
@with_appcontext
def bootstrap_command(demo: bool, customers: int, tickets: int, buyers: int, responses: int) -> None:
    """First run only: create the admin (password printed once); --demo adds demo data and accounts."""
    context = click.get_current_context()
    given = [name for name in DEMO_SIZES if context.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given and not demo:
        raise click.UsageError(f"--{given[0]} only applies with --demo")
    if db.session.scalar(sa.select(sa.func.count(StaffUser.id))):
        click.echo("Patron is set up already; sign in with your account.")
        return
    password = generated_password()
    with command_unit_of_work():
        create_staff_user("admin@patron.local", password, Role.ADMIN, display_name="Admin")
    if not demo:
        click.echo("=" * 64)
        click.echo("  Admin sign-in:  admin@patron.local")
        click.echo(f"  Password:       {password}")
        click.echo("  The password is shown only now; store it safely.")
        click.echo(f"  {TWO_FACTOR_AT_FIRST_SIGN_IN}")
        click.echo("  No demo data or demo accounts were added (flask bootstrap --demo adds them).")
        click.echo("=" * 64)
        return
    # Shown before the demo data: if seeding stops half-way, the admin can still sign in.
    click.echo(f"Admin account: admin@patron.local / {password} (shown again below)")
    _bootstrap_demo(password, customers, tickets, buyers, responses)


TWO_FACTOR_AT_FIRST_SIGN_IN = "At the first sign-in the admin sets up two-factor sign-in (authenticator app)"


def _bootstrap_demo(admin_password: str, customers: int, tickets: int, buyers: int, responses: int) -> None:
    """Demo data, demo staff and a demo API key with every scope, and their sign-ins printed once."""
    staff = _seed_with_progress(customers, tickets, buyers, responses)
    with command_unit_of_work(DEMO):
        _key, api_key = create_api_key("Demo POS", "demo-pos", list(SCOPES))
    click.echo("")
    click.echo("=" * 64)
    click.echo("  Patron is ready at http://127.0.0.1:5000")
    click.echo("  Admin sign-in:  admin@patron.local")
    click.echo(f"  Password:       {admin_password}")
    for email, role, staff_password in staff:
        click.echo(f"  Demo {role:<8}  {email}  {staff_password}")
    click.echo(f"  Demo API key:   {api_key}")
    if responses:
        click.echo(f"  Demo surveys:   {_survey_summary()}")
    click.echo("  (API: http://127.0.0.1:5000/api/v1/openapi.json)")
    click.echo("  These passwords and the key are shown only now; store them safely.")
    click.echo(f"  {TWO_FACTOR_AT_FIRST_SIGN_IN} (the demo manager too)")
    click.echo("=" * 64)


def _seed_with_progress(
    customers: int, tickets: int = 0, buyers: int = 0, responses: int = 0, seed: int | None = None
) -> list[tuple[str, str, str]]:
    from demo import seed_demo

    steps = customers + tickets + buyers + responses  # customers, then tickets, buyers, responses
    with click.progressbar(length=steps, label="Demo data") as bar:
        return seed_demo(
            customers,
            progress=bar.update,
            seed=seed,
            tickets=tickets,
            purchases=buyers,
            survey_responses=responses,
        )


def _survey_summary() -> str:
    from demo import demo_survey_totals

    surveys, responses, rated = demo_survey_totals()
    return f"{surveys} surveys, {responses} responses, {rated} tickets rated by their customers"


@click.command("seed-demo")
@click.option("--customers", default=300, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--tickets", default=0, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option(
    "--buyers",
    default=0,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Customers given a year of purchases, points, refunds and redemptions.",
)
@click.option(
    "--responses",
    default=0,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Survey responses over the past 12 weeks, and ratings of resolved tickets (surveys made once).",
)
@click.option("--seed", type=int, default=None, help="Random seed, for the same data every time.")
@with_appcontext
def seed_demo_command(customers: int, tickets: int, buyers: int, responses: int, seed: int | None) -> None:
    """Add realistic demo data: customers, tickets, loyalty activity and surveys in zh_CN and en."""
    staff = _seed_with_progress(customers, tickets, buyers, responses, seed)
    for email, role, password in staff:
        click.echo(f"Demo {role}: {email} / {password}")
    click.echo(f"Added {customers} customers and {tickets} tickets.")
    if responses:
        click.echo(f"Surveys now: {_survey_summary()}.")


@click.command("rotate-keys")
@click.option("--new-key", "add_key", is_flag=True, help="First add a new key version to instance/keys.json.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@with_appcontext
def rotate_keys_command(add_key: bool, batch_size: int) -> None:
    """Re-encrypt every encrypted value under the newest key, in batches."""
    from models.keys import rotate_keys, stale_value_count

    if add_key:
        try:
            with command_unit_of_work():
                version = add_key_version(current_app.instance_path)
            click.echo(f"Added key version {version}.")
        except KeyChangeRefused as exc:
            raise click.ClickException(str(exc)) from None
    total = stale_value_count()
    ring = keyring()
    click.echo(f"Newest key: version {ring.current_version}; {total} values to re-encrypt.")
    with click.progressbar(length=total, label="Re-encrypting") as bar:
        done = rotate_keys(batch_size=batch_size, progress=bar.update)
    click.echo(f"Re-encrypted {done} values. Older key versions can now be retired.")


@click.command("retire-key")
@click.argument("version", type=int)
@with_appcontext
def retire_key_command(version: int) -> None:
    """Remove an old key version from instance/keys.json once no value uses it."""
    try:
        with command_unit_of_work():
            retire_key_version(current_app.instance_path, version)
    except KeyChangeRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Key version {version} retired.")


@click.command("key-status")
@with_appcontext
def key_status_command() -> None:
    """How many stored values each key version seals."""
    from models.keys import count_by_key_version

    ring = keyring()
    for version, count in sorted(count_by_key_version().items()):
        marker = " (newest)" if version == ring.current_version else ""
        click.echo(f"key v{version}{marker}: {count} values")


@click.command("escalate-sla")
@with_appcontext
def escalate_sla_command() -> None:
    """Flag tickets that breached their SLA and raise their priority by policy."""
    from models.tickets.ticket import escalate_breaches

    with command_unit_of_work():
        escalated = escalate_breaches()
    for reference, priority in escalated.items():
        click.echo(f"{reference}: breached, priority now {priority}")
    click.echo(f"{len(escalated)} tickets escalated.")


@click.command("create-api-key")
@click.argument("name")
@click.option("--source", required=True, help="Short name of the integration (orders are unique per source).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(list(SCOPES)),
)
@with_appcontext
def create_api_key_command(name: str, source: str, scopes: tuple[str, ...]) -> None:
    """Create an API key for an integration; the key is printed once."""
    try:
        with command_unit_of_work():
            _key, text = create_api_key(name, source, list(scopes))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(text)


@click.command("recompute-tiers")
@with_appcontext
def recompute_tiers_command() -> None:
    """Put every member in the tier their rolling 12-month spend earns."""
    from models.loyalty.tiers import recompute_tiers

    with command_unit_of_work():
        moved = recompute_tiers()
    click.echo(f"{moved} members changed tier.")


@click.command("expire-points")
@with_appcontext
def expire_points_command() -> None:
    """Expire points older than POINTS_EXPIRE_MONTHS, oldest first, as ledger entries."""
    from models.loyalty.ledger import expire_points

    with command_unit_of_work():
        expired = expire_points()
    click.echo(f"{sum(expired.values())} points expired for {len(expired)} members.")


@click.command("expire-invitations")
@with_appcontext
def expire_invitations_command() -> None:
    """Mark survey invitations past their expiry, and never answered, as expired."""
    from models.surveys.invitations import expire_invitations

    with command_unit_of_work():
        changed = expire_invitations()
    click.echo(f"{changed} invitations expired.")


@click.command("import-purchases")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--source", default="csv", show_default=True)
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@with_appcontext
def import_purchases_command(csv_file, source: str, dry_run: bool) -> None:
    """Import purchases from CSV (order_ref, customer, amount[, currency, channel, purchased_at])."""
    from models.loyalty.imports import check_import, record_import

    # Checking reads only: done before the write transaction, which then only records.
    checked = check_import(csv_file.read(), source, current_app.config["LOYALTY_CURRENCY"])
    report = checked.report
    if report.ok and not dry_run:
        with command_unit_of_work():
            report = record_import(checked)
    for problem in report.errors:
        click.echo(f"line {problem.line}: {problem.message}", err=True)
    if not report.ok:
        raise click.ClickException(f"{len(report.errors)} problems; nothing was imported.")
    verb = "would be imported" if dry_run else "imported"
    click.echo(
        f"{report.rows} rows checked; {report.recorded} {verb}; {report.skipped_existing} already there."
    )


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@with_appcontext
def backup_command(path: Path) -> None:
    """Write an encrypted, checked backup of the database to PATH (a new file, or into a folder)."""
    from models.backup import BackupError, backup_file_name, record_backup, write_backup

    target = path / backup_file_name() if path.is_dir() else path
    try:
        info = write_backup(target)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    with command_unit_of_work():
        record_backup(info)
    click.echo(
        f"Backup written and checked: {info.path} ({info.size} bytes, key version {info.header.key_version})."
    )
    click.echo("It cannot be read without that key: keep the keys safe, and apart from the backups.")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Restore without asking for confirmation.")
@with_appcontext
def restore_command(path: Path, yes: bool) -> None:
    """Restore a backup into this installation's database, which must be empty."""
    from models.backup import BackupError, check_restorable, read_header, record_restore, restore_backup

    try:
        header = read_header(path)
        check_restorable(header)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Backup of a {header.dialect} database made {header.created_at}, sealed with key version "
        f"{header.key_version}."
    )
    target = db.engine.url.render_as_string(hide_password=True)
    if not yes:
        click.confirm(f"Restore it into {target}?", abort=True)
    try:
        report = restore_backup(path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    with command_unit_of_work():
        record_restore(report, path)
    click.echo("Integrity check: ok. Rows restored per table:")
    for table, count in report.row_counts.items():
        click.echo(f"  {table}: {count}")
    if report.values_without_key:
        click.echo(
            f"Warning: {report.values_without_key} stored values are sealed with key versions this "
            "installation does not have; add those keys (instance/keys.json or PATRON_ENCRYPTION_KEYS).",
            err=True,
        )
    head = _migration_head()
    if report.revision != head:
        click.echo(
            f"The backup's schema is revision {report.revision}; `flask db upgrade` brings it to {head}."
        )


def _migration_head() -> str | None:
    """The newest migration revision of this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(current_app.extensions["migrate"].directory).get_current_head()


commands = [
    create_user_command,
    bootstrap_command,
    seed_demo_command,
    rotate_keys_command,
    retire_key_command,
    key_status_command,
    escalate_sla_command,
    create_api_key_command,
    recompute_tiers_command,
    expire_points_command,
    expire_invitations_command,
    import_purchases_command,
    run_jobs_command,
    backup_command,
    restore_command,
]


def _security_commands() -> list[click.Command]:
    import cli_security  # imported late: its commands use this module's command_unit_of_work

    return cli_security.commands


commands += _security_commands()
