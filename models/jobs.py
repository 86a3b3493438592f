"""Scheduled jobs: each job's schedule and claim, and the record of its runs.

A runner claims a due job with one conditional UPDATE in a short transaction of its own,
so that however many runners start together, on however many hosts, each due job runs
once. A claim lasts a lease: the job of a runner that crashed can be claimed again once
the lease is over. Run records hold counts only, never personal data.
"""

from __future__ import annotations

import json
import typing as t
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, UTCDateTime, db, one_of

RUN_STATUSES = ("ok", "failed", "skipped")
STATUS_LABELS = {"ok": _l("OK"), "failed": _l("Failed"), "skipped": _l("Skipped")}
RunStatus = t.Literal["ok", "failed", "skipped"]
# What a claim attempt found: the job is ours now, not due yet, or held by a live claim.
ClaimAnswer = t.Literal["claimed", "not_due", "claimed_elsewhere"]
# What a run did: counts by name ({"tickets_escalated": 3}); {"error": "ClassName"} for a
# failed run; {"reason": "..."} for a skipped one.
Outcome = Mapping[str, int | str]


class ScheduledJob(Model):
    """One scheduled job: when it is next due, who holds its claim, how its last run went."""

    __tablename__ = "scheduled_job"
    __table_args__ = (
        one_of("last_status", RUN_STATUSES, "last_status"),
        sa.CheckConstraint("(claimed_by IS NULL) = (claimed_until IS NULL)", name="claim_complete"),
    )

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(sa.String(16))
    last_outcome: Mapped[str] = mapped_column(sa.Text, default="", server_default="")

    def __str__(self) -> str:
        return self.name


class JobRun(Model):
    """One finished run of a job: when, on which host, how it ended and what it counted."""

    __tablename__ = "job_run"
    __table_args__ = (
        one_of("status", RUN_STATUSES, "status"),
        sa.CheckConstraint("finished_at >= started_at", name="finished_after_start"),
        sa.Index("ix_job_run_job_name_started_at", "job_name", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_name: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("scheduled_job.name"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    host: Mapped[str] = mapped_column(sa.String(128), default="", server_default="")

    def __str__(self) -> str:
        return f"{self.job_name} {self.started_at:%Y-%m-%d %H:%M} {self.status}"


def encode_outcome(outcome: Outcome) -> str:
    """An outcome as stored: a JSON object of counts (or the error's class name), nothing else."""
    for key, value in outcome.items():
        if not isinstance(value, int) and key not in ("error", "reason"):
            raise TypeError(f"a job reports counts only; {key!r} is {type(value).__name__}")
    return json.dumps(dict(sorted(outcome.items())), separators=(",", ":"))


def decode_outcome(text: str) -> dict[str, int | str]:
    """A stored outcome read back ({} for none)."""
    return json.loads(text) if text else {}


def ensure_scheduled(names: Iterable[str], now: datetime) -> None:
    """Give every named job a schedule row, due at once, unless it has one (safe to run at once).

    Rows go in by name, whatever order the caller gave: two runners inserting the same new
    names in opposite orders would otherwise each wait on the other's unique key (a deadlock
    on PostgreSQL).
    """
    rows = [{"name": name, "next_due_at": now, "last_outcome": ""} for name in sorted(set(names))]
    if not rows:
        return
    table = ScheduledJob.__table__
    dialect = db.session.get_bind().dialect.name
    statement: sa.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=["name"])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=["name"])
    else:
        known = set(db.session.scalars(sa.select(ScheduledJob.name)))
        rows = [row for row in rows if row["name"] not in known]
        statement = sa.insert(table)
    if rows:
        db.session.execute(statement, rows)


def claim_job(name: str, holder: str, now: datetime, lease: timedelta, *, force: bool = False) -> ClaimAnswer:
    """Claim the job for `holder` until now + lease if it is due (or forced) and nobody holds it.

    One conditional UPDATE decides: on SQLite the unit of work holds the write lock
    (BEGIN IMMEDIATE); on PostgreSQL a second runner's UPDATE waits for the first one's
    row lock and then finds the claim taken, so only one of them counts a row.
    """
    free = sa.or_(ScheduledJob.claimed_until.is_(None), ScheduledJob.claimed_until < now)
    statement = sa.update(ScheduledJob).where(ScheduledJob.name == name, free)
    if not force:
        statement = statement.where(ScheduledJob.next_due_at <= now)
    result = t.cast(
        "sa.CursorResult[t.Any]",
        db.session.execute(
            statement.values(claimed_by=holder, claimed_until=now + lease, last_started_at=now),
            execution_options={"synchronize_session": False},
        ),
    )
    if result.rowcount == 1:
        return "claimed"
    until = db.session.scalar(sa.select(ScheduledJob.claimed_until).where(ScheduledJob.name == name))
    return "claimed_elsewhere" if until is not None and until >= now else "not_due"


def next_due(previous_due: datetime, interval: timedelta, now: datetime) -> datetime:
    """The first time after `now` on the job's cadence (the previous due time plus whole intervals).

    Keeping the cadence, instead of counting from when the run started, stops a job that
    runs every 5 minutes from a cron line every 5 minutes from slipping to every 10.
    """
    if previous_due > now:
        return previous_due
    return previous_due + ((now - previous_due) // interval + 1) * interval


def finish_job(
    name: str,
    holder: str,
    *,
    started_at: datetime,
    finished_at: datetime,
    status: RunStatus,
    outcome: Outcome,
    host: str,
    interval: timedelta,
) -> JobRun:
    """Record a run and release the claim; a run that did not fail moves the job to its next due time.

    A failed job keeps its due time, so the next runner retries it. If our lease ran out and
    another runner holds the job now, its claim and schedule are left to it.
    """
    text = encode_outcome(outcome)
    due = db.session.scalar(sa.select(ScheduledJob.next_due_at).where(ScheduledJob.name == name))
    values: dict[str, t.Any] = {
        "claimed_by": None,
        "claimed_until": None,
        "last_finished_at": finished_at,
        "last_status": status,
        "last_outcome": text,
    }
    if status != "failed" and due is not None:
        values["next_due_at"] = next_due(due, interval, started_at)
    db.session.execute(
        sa.update(ScheduledJob)
        .where(ScheduledJob.name == name, ScheduledJob.claimed_by == holder)
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    run = JobRun(
        job_name=name,
        started_at=started_at,
        finished_at=finished_at,
        status=status,
        outcome=text,
        host=host[:128],
    )
    db.session.add(run)
    return run


def due_time(name: str) -> datetime | None:
    """When the job is next due (None for a job never scheduled)."""
    return db.session.scalar(sa.select(ScheduledJob.next_due_at).where(ScheduledJob.name == name))


def schedules() -> dict[str, ScheduledJob]:
    """Every job's schedule row, by name."""
    return {job.name: job for job in db.session.scalars(sa.select(ScheduledJob))}


def recent_runs(limit: int = 50) -> list[JobRun]:
    """The latest runs of every job, newest first."""
    return list(
        db.session.scalars(
            sa.select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
        )
    )
