"""`flask run-jobs`: run the scheduled jobs that are due (registered from cli.py)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from jobs import ANSWER_LABELS, JOBS, JobResult, describe, run_due_jobs


def _line(result: JobResult) -> str:
    """One line per job: what happened, what it did, when it is next due."""
    words = str(ANSWER_LABELS[result.answer])
    detail = describe(result.job, result.outcome)
    if detail:
        words += f" ({detail})"
    if result.next_due_at is not None and result.answer != "failed":
        words += f"; next due {result.next_due_at:%Y-%m-%d %H:%M} UTC"
    return f"{result.job.name}: {words}"


@click.command("run-jobs")
@click.option("--job", "names", multiple=True, metavar="NAME", help="Only this job (repeatable).")
@click.option("--force", is_flag=True, help="Run even if not due (never while another runner holds it).")
@with_appcontext
def run_jobs_command(names: tuple[str, ...], force: bool) -> None:
    """Run every scheduled job that is due, once (cron or a systemd timer, every few minutes)."""
    unknown = sorted(set(names) - set(JOBS))
    if unknown:
        raise click.UsageError(f"unknown job {', '.join(unknown)}; the jobs are {', '.join(JOBS)}")
    results = run_due_jobs(names=names or None, force=force)
    for result in results:
        click.echo(_line(result))
    if any(result.answer == "failed" for result in results):
        # A failed job was recorded and stays due; the exit status tells cron and monitoring.
        click.get_current_context().exit(1)
