"""Fixtures: a fresh app and database per test (SQLite by default, PostgreSQL when configured)."""

from __future__ import annotations

import contextvars
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from flask.globals import _cv_app
from flask.testing import FlaskClient
from flask_migrate import upgrade

from app import create_app
from models import db, utcnow
from models.crypto import new_key
from models.two_factor import enable_two_factor, new_secret
from models.uow import SYSTEM, unit_of_work
from models.user import Role, StaffUser, create_staff_user

TEST_PASSWORD = "correct horse battery staple 42"


def require_service(available: bool, reason: str) -> None:
    """Skip a test whose outside service is missing, unless CI demands that it runs."""
    if available:
        return
    if os.environ.get("PATRON_REQUIRE_SERVICES"):
        pytest.fail(f"{reason} (PATRON_REQUIRE_SERVICES is set, so this may not be skipped)")
    pytest.skip(reason)


def postgres_url() -> str | None:
    """The PostgreSQL URL to test against, if one is configured."""
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url and url.startswith("postgres"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return None


@pytest.fixture(scope="session")
def key_material() -> dict:
    return {"encryption_keys": {1: new_key()}, "blind_index_key": new_key(), "source": "test"}


def base_config(tmp_path: Path, url: str, key_material: dict) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": url,
        "PATRON_KEY_MATERIAL": key_material,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "RATELIMIT_STORAGE_URI": "memory://",
        "SERVER_NAME": "localhost",
        # Two-factor sign-in is off for every role here, so that the helpers below sign an admin
        # or a manager in with the password alone; tests/test_two_factor.py and the e2e flow
        # turn it on (TWO_FACTOR_REQUIRED_ROLES as deployed: admin and manager).
        "TWO_FACTOR_REQUIRED_ROLES": [],
    }


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory, key_material):
    """Run the real migrations once: into a template SQLite file, or into the PostgreSQL database.

    Returns the URL and, for PostgreSQL, the rows the migrations inserted (defaults such as
    ticket categories), which each test's truncation puts back.
    """
    tmp = tmp_path_factory.mktemp("template")
    url = postgres_url()
    if url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp / 'template.sqlite'}"
    app = create_app(base_config(tmp, url, key_material))
    with app.app_context():
        upgrade()
        seeded = {
            table.name: [dict(row._mapping) for row in db.session.execute(sa.select(table))]
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
        db.engine.dispose()
    return url, {name: rows for name, rows in seeded.items() if rows}


@pytest.fixture
def database_url(migrated_database, tmp_path) -> str:
    """A database in its freshly migrated state for this test."""
    return fresh_database(migrated_database, tmp_path)


def fresh_database(migrated_database: tuple[str, dict], directory: Path) -> str:
    """A database in its freshly migrated state (a copy of the template in `directory` on SQLite)."""
    url, seeded = migrated_database
    if url.startswith("sqlite"):
        target = directory / "patron.sqlite"
        shutil.copyfile(url.removeprefix("sqlite:///"), target)
        return f"sqlite:///{target}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [name for name in sa.inspect(conn).get_table_names() if name != "alembic_version"]
        conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        for table in db.metadata.sorted_tables:
            if table.name in seeded:
                conn.execute(table.insert(), seeded[table.name])
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"
                    )
                )
    engine.dispose()
    return url


class IsolatedClient(FlaskClient):
    """A test client whose requests each get their own app context, as in production.

    The `app` fixture keeps an app context pushed for the test body; without this, every
    request would share its `g` (CSRF token cache, Flask-Login's user) and its db session.
    """

    def open(self, *args, **kwargs):
        # End the test body's transaction: it must not hold an old snapshot of the database.
        db.session.commit()

        def in_fresh_context():
            _cv_app.set(None)
            # Streamed bodies are read here, inside the request's own context.
            kwargs["buffered"] = True
            return super(IsolatedClient, self).open(*args, **kwargs)

        return contextvars.copy_context().run(in_fresh_context)


@pytest.fixture
def app_config() -> dict:
    """Extra configuration for the test's app; a test sets it with @pytest.mark.parametrize."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, key_material, app_config):
    app = create_app(base_config(tmp_path, database_url, key_material) | app_config)
    app.test_client_class = IsolatedClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(html: str, field: str = "csrf_token") -> str:
    """The CSRF token of the form field with this name in a page."""
    for tag in re.findall(r"<input[^>]*>", html):
        if f'name="{field}"' in tag:
            return re.search(r'value="([^"]+)"', tag).group(1)
    raise AssertionError(f"no {field} in the page")


def make_staff(role: Role | str, email: str | None = None) -> StaffUser:
    """A committed staff account with the test password."""
    email = email or f"{Role(role).value}@test.example"
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == email))
    if user is None:
        with unit_of_work(SYSTEM):
            user = create_staff_user(email, TEST_PASSWORD, role, display_name=f"Test {role}")
    return user


# Deployed settings: two-factor sign-in required for admins and managers (base_config turns it off).
TWO_FACTOR_AS_DEPLOYED = {"TWO_FACTOR_REQUIRED_ROLES": ["admin", "manager"]}


def enrol_two_factor(user: StaffUser) -> tuple[pyotp.TOTP, list[str]]:
    """Turn two-factor sign-in on for an account; returns its authenticator and recovery codes.

    Enrolled ten minutes ago (its code of then), so that the current code is fresh for a sign-in.
    """
    secret = new_secret()
    totp = pyotp.TOTP(secret)
    then = utcnow() - timedelta(minutes=10)
    with unit_of_work(SYSTEM):
        codes = enable_two_factor(user, secret, totp.at(then), now=then)
    assert codes is not None
    return totp, codes


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next time step: accepted now (one step of drift), and fresh after the current one."""
    return totp.at(utcnow() + timedelta(seconds=totp.interval))


class AuthActions:
    """Sign a test client in and out as a member of staff."""

    def __init__(self, client):
        self.client = client

    def login(self, role: Role | str = Role.ADMIN, email: str | None = None, password: str = TEST_PASSWORD):
        user = make_staff(role, email)
        page = self.client.get("/login")
        return self.client.post(
            "/login",
            data={"email": user.email, "password": password, "csrf_token": csrf_token(page.text)},
        )

    def code(self, code: str, trust: bool = False):
        """Post the second-factor step of a sign-in (after a password step that asked for it)."""
        page = self.client.get("/login/code")
        data = {"code": code, "csrf_token": csrf_token(page.text)}
        if trust:
            data["trust"] = "y"
        return self.client.post("/login/code", data=data)

    def logout(self):
        page = self.client.get("/admin/account/")
        token = csrf_token(page.text, "logout_token")
        return self.client.post("/logout", data={"logout_token": token})

    def account_form(self, form: str, **fields: str):
        """Post one of the forms on the account page ("pw" or "lang"), with its CSRF token."""
        page = self.client.get("/admin/account/")
        data = {f"{form}-{name}": value for name, value in fields.items()}
        data[f"{form}-csrf_token"] = csrf_token(page.text, f"{form}-csrf_token")
        data[f"{form}-submit_{'password' if form == 'pw' else 'language'}"] = "1"
        return self.client.post("/admin/account/", data=data)

    def change_password(self, current: str, new: str):
        return self.account_form("pw", current=current, new=new, confirm=new)


@pytest.fixture
def auth(client):
    return AuthActions(client)
