"""Customer list and exact-email search: our encrypted, audited view against a bare ModelView.

Both views run on the same app, in the same database, over the same rows (ours sealed, the
baseline a plaintext copy), timed interleaved in one loop. Prints `ratio NAME: VALUE` lines
(ours / bare; lower is better). See docs/PERFORMANCE.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

# `python bench/admin_list.py` puts bench/ on the path, not the project root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from common import csrf_token, say, source_revision
from flask import Flask
from flask.testing import FlaskClient
from flask_admin.contrib.sqla import ModelView
from flask_migrate import upgrade
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from admin.customers import CustomerView
from app import create_app
from demo import seed_demo
from models import UTCDateTime, db
from models.audit import AuditEvent
from models.crypto import UnreadableValue, new_key
from models.customer import Customer
from models.uow import Actor, unit_of_work
from models.user import Role, StaffUser, create_staff_user

BENCH = Actor.system("bench")

TARGETS = {"list": 1.5, "search": 1.0}
BARE_URL = "/admin/bench-plain"
BENCH_AGENT = "bench-agent@patron.local"
SEED = 20251122


class BenchBase(DeclarativeBase):
    """Metadata of the bench's own table, kept apart from the app's models and migrations."""


class PlainCustomer(BenchBase):
    """A plaintext copy of a customer: what a panel without encryption would store."""

    __tablename__ = "bench_plain_customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_no: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str | None] = mapped_column(sa.Text)
    email: Mapped[str | None] = mapped_column(sa.Text)
    phone: Mapped[str | None] = mapped_column(sa.Text)
    birthday: Mapped[str | None] = mapped_column(sa.Text)
    address: Mapped[str | None] = mapped_column(sa.Text)
    notes: Mapped[str | None] = mapped_column(sa.Text)
    city: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    gender: Mapped[str] = mapped_column(sa.String(16))
    language: Mapped[str] = mapped_column(sa.String(16))
    source_channel: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    tags: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __str__(self) -> str:
        return self.member_no or f"#{self.id}"


class BareCustomerView(ModelView):
    """The baseline: Flask-Admin as it comes, over the plaintext copy, open to whoever asks."""

    column_list = CustomerView.column_list
    column_default_sort = CustomerView.column_default_sort
    # What a plaintext panel searches: ours by ILIKE, plus email and phone (ours by blind index).
    column_searchable_list = ["member_no", "email", "phone", "city", "tags"]
    page_size = 20

    def is_accessible(self) -> bool:
        return True


@dataclass
class Probe:
    """One page timed on both views; `expect` is text both pages must show."""

    name: str
    ours: str
    bare: str
    expect: str
    timings: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "bare": []})

    def median_ms(self, side: str) -> float:
        return statistics.median(self.timings[side]) * 1000

    def ratio(self) -> float:
        return self.median_ms("ours") / self.median_ms("bare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="rows to measure (default 100000)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page and view")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page and view first")
    parser.add_argument("--database-url", help="e.g. postgresql+psycopg://...; default SQLite in the workdir")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep keys and the SQLite file here and reuse them next run (default: a temp dir, removed)",
    )
    return parser.parse_args(argv)


def key_material(workdir: Path) -> dict:
    """The bench's encryption and blind-index keys, made once per workdir."""
    path = workdir / "keys.json"
    if not path.exists():
        path.write_text(json.dumps({"encryption_keys": {"1": new_key()}, "blind_index_key": new_key()}))
        path.chmod(0o600)
    return json.loads(path.read_text())


def database_url(args: argparse.Namespace, workdir: Path) -> str:
    """The URL to measure against (PostgreSQL URLs mean psycopg 3)."""
    url = args.database_url or f"sqlite:///{workdir / 'admin_list.sqlite'}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def build_app(url: str, workdir: Path) -> Flask:
    """Our app as configured in production, plus the baseline view on its Admin."""
    app = create_app(
        {
            "SECRET_KEY": secrets.token_urlsafe(32),
            "SQLALCHEMY_DATABASE_URI": url,
            "PATRON_KEY_MATERIAL": key_material(workdir),
            "INSTANCE_PATH": str(workdir / "instance"),
            "RATELIMIT_STORAGE_URI": "memory://",
            "SESSION_COOKIE_SECURE": False,
            "PROPAGATE_EXCEPTIONS": True,
            # The bench searches far more often than a person may (the limit is for people).
            "CONTACT_SEARCH_RATE_LIMIT": "1000000 per hour",
        }
    )
    admin = app.extensions["admin"][0]
    admin.add_view(
        BareCustomerView(PlainCustomer, db, name="Bench baseline", endpoint="bench_plain", url=BARE_URL)
    )
    return app


def seed_customers(target: int) -> None:
    """Top the customer table up to `target` rows with demo data, reporting progress."""
    have = db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0
    if have:
        check_keys()
    missing = max(0, target - have)
    say(f"customers: {have:,} present, seeding {missing:,}")
    done, started = 0, time.perf_counter()

    def progress(size: int) -> None:
        nonlocal done
        done += size
        if done % 10_000 < size or done == missing:
            rate = done / (time.perf_counter() - started)
            say(f"  seeded {done:,}/{missing:,} ({rate:,.0f}/s)")

    if missing:
        seed_demo(missing, progress=progress, seed=SEED + have)


def check_keys() -> None:
    """Stop early if the customers already present were sealed with keys other than ours."""
    try:
        db.session.scalar(sa.select(Customer).where(Customer.name.is_not(None)).limit(1))
    except UnreadableValue:
        raise SystemExit(
            "the customers in this database were sealed with other keys: pass the --workdir "
            "of the run that seeded them, or use an empty database"
        ) from None


def plain_values(customer: Customer) -> dict:
    """A customer's row with every personal field decrypted."""
    birthday = customer.birthday.isoformat() if customer.birthday else None
    values = {c.key: getattr(customer, c.key) for c in PlainCustomer.__table__.columns if c.key != "birthday"}
    return values | {"birthday": birthday}


def copy_plaintext(batch_size: int = 2000) -> None:
    """(Re)build the plaintext copy of every customer unless it is complete already."""
    # DDL on the session's own connection: on SQLite (WAL) another connection's new table
    # stays invisible to the session's open read snapshot.
    connection = db.session.connection()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Customer))
    if sa.inspect(connection).has_table(PlainCustomer.__tablename__):
        if db.session.scalar(sa.select(sa.func.count()).select_from(PlainCustomer)) == total:
            return
        PlainCustomer.__table__.drop(connection)
    PlainCustomer.__table__.create(connection)
    db.session.commit()  # the DDL, before the copy's own units of work begin
    last_id, copied = 0, 0
    while True:
        query = sa.select(Customer).where(Customer.id > last_id).order_by(Customer.id).limit(batch_size)
        rows = db.session.scalars(query).all()
        if not rows:
            break
        values = [plain_values(c) for c in rows]
        last_id, copied = rows[-1].id, copied + len(rows)
        with unit_of_work(BENCH):
            db.session.execute(sa.insert(PlainCustomer), values)
        db.session.expunge_all()
        if copied % 20_000 < batch_size:
            say(f"  copied {copied:,}/{total:,} in plaintext")


def settle_tables() -> None:
    """On PostgreSQL, VACUUM ANALYZE both tables, as autovacuum would after a bulk load.

    Without it the visibility map is empty and every COUNT(*) reads the whole heap, which
    punishes the wider (encrypted) table for a state a running server does not stay in.
    """
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in (Customer.__tablename__, PlainCustomer.__tablename__):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def bench_agent_password() -> str:
    """A fresh password for the bench's agent account (created the first time)."""
    password = secrets.token_urlsafe(18)
    with unit_of_work(BENCH):
        user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == BENCH_AGENT))
        if user is None:
            create_staff_user(BENCH_AGENT, password, Role.AGENT, display_name="Bench Agent")
        else:
            user.set_password(password)
    return password


def sign_in(client: FlaskClient, email: str, password: str) -> None:
    """Sign the client in through the real login form."""
    token = csrf_token(client.get("/login").text)
    assert token, "no csrf_token on /login"
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, f"sign-in failed: {response.status_code}"


def make_probes() -> list[Probe]:
    """The list page (newest first) and a search for one existing customer's exact email."""
    newest = db.session.scalar(sa.select(Customer).order_by(Customer.created_at.desc()).limit(1))
    middle = db.session.scalar(sa.select(sa.func.max(Customer.id))) // 2
    target = db.session.scalar(
        sa.select(Customer).where(Customer.id >= middle, Customer.email_bidx.is_not(None)).limit(1)
    )
    assert newest is not None and target is not None and target.email, "no customers to measure"
    search = "?" + urlencode({"search": target.email})
    # Ours takes the term in a POST (never in an address) and shows the result after a redirect.
    return [
        Probe("list", "/admin/customers/", f"{BARE_URL}/", newest.member_no or ""),
        Probe("search", POSTED_SEARCH + target.email, f"{BARE_URL}/{search}", target.email),
    ]


POSTED_SEARCH = "POST /admin/customers/search/ "


def fetch(client: FlaskClient, url: str, expect: str) -> float:
    """Seconds to GET a page (or post a search and follow it); the page must be a 200 showing `expect`."""
    token = ""
    if url.startswith(POSTED_SEARCH):
        token = csrf_token(client.get("/admin/customers/").text) or ""
    started = time.perf_counter()
    if url.startswith(POSTED_SEARCH):
        action, _, term = url.removeprefix("POST ").partition(" ")
        response = client.post(action, data={"search": term, "csrf_token": token}, follow_redirects=True)
    else:
        response = client.get(url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, f"{url}: {response.status_code}"
    assert expect in response.text, f"{url}: {expect!r} not on the page"
    return elapsed


def measure(client: FlaskClient, probes: list[Probe], warmup: int, repeat: int) -> None:
    """Time each probe on both views, interleaved, alternating which side goes first."""
    for round_no in range(warmup + repeat):
        sides = ("ours", "bare") if round_no % 2 == 0 else ("bare", "ours")
        for probe in probes:
            for side in sides:
                elapsed = fetch(client, getattr(probe, side), probe.expect)
                if round_no >= warmup:
                    probe.timings[side].append(elapsed)


def audited_lists() -> int:
    """How many customer-list disclosures the audit log holds (ours must pay that cost)."""
    query = sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "customer.list")
    return db.session.scalar(query) or 0


def describe_setup() -> str:
    """One line naming the dataset, the database and the machine."""
    customers = db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0
    dialect = db.engine.dialect
    if dialect.name == "sqlite":
        database = f"SQLite {sqlite3.sqlite_version}"
    else:
        database = f"{dialect.name} {'.'.join(map(str, dialect.server_version_info or ()))}"
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    return f"{customers:,} customers, {database}, Python {platform.python_version()}, {machine}"


def report(probes: list[Probe], setup: str, repeat: int) -> None:
    """A table of medians, then one `ratio NAME: VALUE` line per probe."""
    print(f"# {setup}")
    print(f"# patron {source_revision()}; median of {repeat} interleaved requests each")
    print(f"{'page':<8} {'ours ms':>9} {'bare ms':>9} {'ratio':>7} {'target':>8}")
    for p in probes:
        verdict = "met" if p.ratio() <= TARGETS[p.name] else "MISSED"
        print(
            f"{p.name:<8} {p.median_ms('ours'):>9.2f} {p.median_ms('bare'):>9.2f} "
            f"{p.ratio():>7.2f} {'<= ' + str(TARGETS[p.name]):>8} {verdict}"
        )
    for p in probes:
        print(f"ratio {p.name}: {p.ratio():.2f}")


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Prepare the data, sign in as an agent, measure and report."""
    app = build_app(database_url(args, workdir), workdir)
    with app.app_context():
        upgrade()
        seed_customers(args.customers)
        copy_plaintext()
        db.session.commit()
        settle_tables()
        password = bench_agent_password()
        probes = make_probes()
        before = audited_lists()
        db.session.remove()
    client = app.test_client()
    sign_in(client, BENCH_AGENT, password)
    say(f"measuring: {args.warmup} warm-up + {args.repeat} timed rounds")
    measure(client, probes, args.warmup, args.repeat)
    with app.app_context():
        disclosed = audited_lists() - before
        setup = describe_setup()
        db.engine.dispose()
    assert disclosed >= args.warmup + args.repeat, "our list pages were not audited"
    report(probes, setup, args.repeat)


@contextmanager
def workdir_for(path: Path | None) -> Iterator[Path]:
    """The given workdir (kept), or a temporary one removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    temp = Path(tempfile.mkdtemp(prefix="patron-bench-"))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python bench/admin_list.py [--customers N] [--repeat N] ...`."""
    args = parse_args(argv)
    with workdir_for(args.workdir) as workdir:
        run(args, workdir)


if __name__ == "__main__":
    main()
