"""The database handle, the declarative base, and engine set-up per dialect."""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming scheme (Alembic batch mode needs names)."""

    if t.TYPE_CHECKING:
        # Every model maps one Table (DeclarativeBase types it as any FromClause).
        __table__: t.ClassVar[sa.Table]

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)

# Models subclass `Model`: Flask-SQLAlchemy's `db.Model` at run time (Base plus its bind and
# table-name handling), which the type checker cannot follow, so it is told that it is `Base`.
if t.TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class BilingualName:
    """Mixin for rows named in English and Chinese (name_en, name_zh): str() follows the reader."""

    if t.TYPE_CHECKING:
        name_en: str
        name_zh: str

    def __str__(self) -> str:
        from flask_babel import get_locale

        return self.name_zh if str(get_locale() or "en").startswith("zh") else self.name_en


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; store UTC-aware times")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def one_of(column: str, values, name: str) -> sa.CheckConstraint:
    """A CHECK that a column holds one of the given values (named by the naming convention)."""
    return sa.CheckConstraint(f"{column} IN ({', '.join(repr(str(v)) for v in values)})", name=name)


def configure_engine(engine: sa.Engine) -> None:
    """Tune SQLite for a web app: WAL, NORMAL sync, busy timeout, foreign keys, explicit BEGIN.

    pysqlite begins transactions lazily and deferred; we take over BEGIN so that a
    transaction started with execution option ``sqlite_immediate`` takes the write lock
    up front (otherwise two read-then-write transactions fail with "database is locked").
    """
    if engine.dialect.name != "sqlite":
        return
    from flask import current_app, has_app_context

    # How long a writer queues for the write lock before giving up (WriteBusy): config key
    # SQLITE_BUSY_TIMEOUT_MS, 10 seconds by default.
    busy_ms = int(current_app.config.get("SQLITE_BUSY_TIMEOUT_MS", 10000)) if has_app_context() else 10000

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def stamp_after_insert(connection: sa.Connection, target, column: str, value) -> None:
    """Set a column derived from a new row's id, inside the insert's flush (after_insert hook)."""
    table = type(target).__table__
    connection.execute(
        sa.update(table)
        .where(table.c.id == target.id)
        .values({column: value, "updated_at": target.updated_at})
    )
    sa.orm.attributes.set_committed_value(target, column, value)
