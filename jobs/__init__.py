"""Scheduled work in one place: one function per job, how often each runs, and the runner.

Each job is idempotent and safe to run twice at once: it runs in its own unit of work as
the system actor "job:<name>" and changes only what is still due (a ticket already flagged,
an invitation already expired, is left alone). `flask run-jobs`, called by cron or a
systemd timer every few minutes on any number of hosts, runs the jobs that are due; the
claim in models.jobs makes sure each due job runs once. A later job is one more `register`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
import typing as t
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l

from models import backup as backups
from models import staff_session, utcnow
from models.jobs import ClaimAnswer, Outcome, RunStatus, claim_job, due_time, ensure_scheduled, finish_job
from models.loyalty import ledger, tiers
from models.surveys import invitations
from models.tickets import ticket
from models.uow import Actor, unit_of_work

log = logging.getLogger(__name__)

Counts = dict[str, int]
# The runner's own bookkeeping (claims, run records); the jobs' changes carry "job:<name>".
RUNNER = Actor.system("job-runner")


@dataclass(frozen=True)
class Job:
    """A scheduled job: what it runs, how often, how long a claim on it lasts, and its words."""

    name: str
    run: Callable[[datetime | None], Counts]
    every: timedelta
    title: t.Any  # a lazy translated string
    labels: Mapping[str, t.Any] = field(default_factory=dict)  # what its counts mean
    # Longer than the job ever takes: a runner that crashed holds the job this long at most.
    lease: timedelta = timedelta(minutes=30)


class JobSkipped(Exception):  # noqa: N818 (it is an answer, not an error)
    """Raised by a job that has nothing it may do now (e.g. no mail server configured)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


JOBS: dict[str, Job] = {}


def register(job: Job) -> Job:
    """Add a job to the schedule (or replace the job of the same name)."""
    JOBS[job.name] = job
    return job


def interval(job: Job) -> timedelta:
    """How often the job runs: config JOB_INTERVALS (minutes by job name, e.g. from
    PATRON_JOB_INTERVALS='{"escalate-sla": 10}'), else the job's own default."""
    minutes = (current_app.config.get("JOB_INTERVALS") or {}).get(job.name)
    if minutes is None:
        return job.every
    if float(minutes) <= 0:
        raise ValueError(f"JOB_INTERVALS[{job.name!r}] must be a positive number of minutes")
    return timedelta(minutes=float(minutes))


# The jobs. Each takes `now` (None: the current time) and returns counts, never personal data.
def escalate_sla(now: datetime | None = None) -> Counts:
    """Flag tickets that breached their SLA and raise their priority by policy."""
    with unit_of_work(Actor.system("job:escalate-sla")):
        escalated = ticket.escalate_breaches(now)
    return {"tickets_escalated": len(escalated)}


def expire_points(now: datetime | None = None) -> Counts:
    """Expire lapsed loyalty points as ledger entries."""
    with unit_of_work(Actor.system("job:expire-points")):
        expired = ledger.expire_points(now)
    return {"members": len(expired), "points_expired": sum(expired.values())}


def recompute_tiers(now: datetime | None = None) -> Counts:
    """Put every member in the tier their rolling 12-month spend earns."""
    with unit_of_work(Actor.system("job:recompute-tiers")):
        moved = tiers.recompute_tiers(now)
    return {"members_moved": moved}


def expire_invitations(now: datetime | None = None) -> Counts:
    """Mark survey invitations past their expiry, and never answered, as expired."""
    with unit_of_work(Actor.system("job:expire-invitations")):
        changed = invitations.expire_invitations(now)
    return {"invitations_expired": changed}


def close_staff_sessions(now: datetime | None = None) -> Counts:
    """Mark lapsed staff sessions ended; delete ended ones after 90 days (and their addresses)."""
    limits = staff_session.SessionLimits.from_config(current_app.config)
    with unit_of_work(Actor.system("job:close-staff-sessions")):
        return staff_session.close_lapsed_sessions(now or utcnow(), limits, keep=timedelta(days=90))


def backup(now: datetime | None = None) -> Counts:
    """Write an encrypted, checked backup into BACKUP_DIR; keep the newest BACKUP_KEEP of them."""
    folder = backups.private_folder(backups.backup_folder())
    # Named by the clock, not by `now`: the file holds the database as it is at this moment.
    info = backups.write_backup(folder / backups.backup_file_name())
    kept, removed = backups.prune_backups(folder, int(current_app.config.get("BACKUP_KEEP", 7)))
    with unit_of_work(Actor.system("job:backup")):
        backups.record_backup(info)
        backups.record_pruned(removed)
    return {"backups_kept": len(kept), "backups_removed": len(removed)}


register(
    Job(
        "escalate-sla",
        escalate_sla,
        timedelta(minutes=5),
        _l("Escalate SLA breaches"),
        {"tickets_escalated": _l("tickets escalated")},
        lease=timedelta(minutes=10),
    )
)
register(
    Job(
        "expire-invitations",
        expire_invitations,
        timedelta(hours=1),
        _l("Expire survey invitations"),
        {"invitations_expired": _l("invitations expired")},
    )
)
register(
    Job(
        "expire-points",
        expire_points,
        timedelta(days=1),
        _l("Expire loyalty points"),
        {"members": _l("members"), "points_expired": _l("points expired")},
        lease=timedelta(hours=1),
    )
)
register(
    Job(
        "recompute-tiers",
        recompute_tiers,
        timedelta(days=1),
        _l("Recompute member tiers"),
        {"members_moved": _l("members changed tier")},
        lease=timedelta(hours=1),
    )
)
register(
    Job(
        "close-staff-sessions",
        close_staff_sessions,
        timedelta(hours=1),
        _l("Close lapsed staff sessions"),
        {
            "sessions_invalidated": _l("sessions signed out elsewhere"),
            "sessions_closed": _l("sessions lapsed"),
            "sessions_removed": _l("old sessions removed"),
        },
    )
)
register(
    Job(
        "backup",
        backup,
        timedelta(days=1),
        _l("Back up the database"),
        {"backups_kept": _l("backups kept"), "backups_removed": _l("old backups removed")},
        lease=timedelta(hours=3),
    )
)


# The runner.
Answer = t.Literal["ran", "skipped", "failed", "not_due", "claimed_elsewhere"]
ANSWER_LABELS = {
    "ran": _l("ran"),
    "skipped": _l("skipped"),
    "failed": _l("failed"),
    "not_due": _l("not due"),
    "claimed_elsewhere": _l("claimed elsewhere"),
}


@dataclass(frozen=True)
class JobResult:
    """What the runner did with one job."""

    job: Job
    answer: Answer
    outcome: Outcome = field(default_factory=dict)
    next_due_at: datetime | None = None


def describe(job: Job | None, outcome: Outcome) -> str:
    """An outcome in words: "tickets escalated: 3", or the error's class name."""
    labels = job.labels if job else {}
    if "error" in outcome:
        return str(outcome["error"])
    if "reason" in outcome:
        return str(outcome["reason"])
    return ", ".join(f"{labels.get(key, key)}: {value}" for key, value in outcome.items())


def runner_identity() -> str:
    """Who holds a claim: host, process and a random part (two runners in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[-128:]


def run_due_jobs(
    now: datetime | None = None, *, names: Iterable[str] | None = None, force: bool = False
) -> list[JobResult]:
    """Run every due job once (or only the named ones; `force`: even if not due yet)."""
    chosen = [JOBS[name] for name in names] if names else list(JOBS.values())
    holder = runner_identity()
    with unit_of_work(RUNNER):
        ensure_scheduled([job.name for job in chosen], now or utcnow())
    return [run_job(job, now, holder=holder, force=force) for job in chosen]


def run_job(job: Job, now: datetime | None = None, *, holder: str, force: bool = False) -> JobResult:
    """Claim the job, run it, record the run; a job someone else holds, or not due, is left alone."""
    started = now or utcnow()
    with unit_of_work(RUNNER):
        claim: ClaimAnswer = claim_job(job.name, holder, started, job.lease, force=force)
    if claim != "claimed":
        return JobResult(job, claim, next_due_at=due_time(job.name))
    clock = time.monotonic()
    status, outcome = _run(job, started)
    finished = started + timedelta(seconds=time.monotonic() - clock)
    with unit_of_work(RUNNER):
        finish_job(
            job.name,
            holder,
            started_at=started,
            finished_at=finished,
            status=status,
            outcome=outcome,
            host=socket.gethostname(),
            interval=interval(job),
        )
    answer: Answer = "ran" if status == "ok" else status
    return JobResult(job, answer, outcome, due_time(job.name))


def _run(job: Job, now: datetime) -> tuple[RunStatus, Outcome]:
    """Run one job; a failure is an answer (recorded, retried next time), not the runner's end."""
    try:
        return "ok", job.run(now)
    except JobSkipped as skipped:
        return "skipped", {"reason": skipped.reason}
    except Exception as exc:
        # The traceback goes to the log for the operator; the run record keeps the class only.
        log.exception("job %s failed", job.name)
        return "failed", {"error": type(exc).__name__}
