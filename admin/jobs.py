"""The Jobs screen: each scheduled job's schedule and last run, and the latest runs (admins only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_admin import expose
from flask_babel import format_timedelta
from flask_babel import lazy_gettext as _l

from admin.base import StaffView, local_time
from jobs import JOBS, describe, interval
from models import utcnow
from models.jobs import STATUS_LABELS, JobRun, decode_outcome, recent_runs, schedules

STATUS_BADGES = {"ok": "success", "failed": "danger", "skipped": "secondary"}


def every(interval: timedelta) -> str:
    """An interval in the largest unit that holds it whole: "5 minutes", "90 minutes", "1 day"."""
    seconds = interval.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            # A threshold of exactly that many units makes Babel pick this unit, not a larger one.
            return format_timedelta(interval, threshold=seconds / size, granularity=unit)
    return format_timedelta(interval, threshold=max(seconds, 1), granularity="second")


@dataclass(frozen=True)
class JobLine:
    """One job as the screen shows it."""

    name: str
    title: str
    every: str
    last_started: str
    status: str | None
    outcome: str
    next_due: str
    running: bool


@dataclass(frozen=True)
class RunLine:
    """One finished run as the screen shows it."""

    job: str
    started: str
    seconds: float
    status: str
    outcome: str
    host: str


class JobsView(StaffView):
    """Read-only: the runner (`flask run-jobs`) is what changes these rows."""

    right = "jobs.view"

    def _when(self, value: datetime | None) -> str:
        return local_time(self, value, "") if value is not None else "—"

    def _job_lines(self, now: datetime) -> list[JobLine]:
        rows = schedules()
        lines = []
        for job in JOBS.values():
            row = rows.get(job.name)
            due = row.next_due_at if row else None
            lines.append(
                JobLine(
                    name=job.name,
                    title=str(job.title),
                    every=every(interval(job)),
                    last_started=self._when(row.last_started_at if row else None),
                    status=row.last_status if row else None,
                    outcome=describe(job, decode_outcome(row.last_outcome)) if row else "",
                    next_due=str(_l("due now")) if due is None or due <= now else self._when(due),
                    running=bool(row and row.claimed_until and row.claimed_until >= now),
                )
            )
        return lines

    def _run_line(self, run: JobRun) -> RunLine:
        job = JOBS.get(run.job_name)
        return RunLine(
            job=str(job.title) if job else run.job_name,
            started=self._when(run.started_at),
            seconds=(run.finished_at - run.started_at).total_seconds(),
            status=run.status,
            outcome=describe(job, decode_outcome(run.outcome)),
            host=run.host,
        )

    @expose("/")
    def index(self):
        now = utcnow()
        return self.render(
            "admin/jobs.html",
            jobs=self._job_lines(now),
            runs=[self._run_line(run) for run in recent_runs(50)],
            status_labels=STATUS_LABELS,
            status_badges=STATUS_BADGES,
        )
