"""Scheduled jobs: claimed once in the database, run when due, recorded, shown to admins."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from admin.jobs import every
from jobs import JOBS, Job, describe, register, run_due_jobs
from models import db
from models.audit import AuditEvent
from models.jobs import JobRun, ScheduledJob, claim_job, encode_outcome, ensure_scheduled, next_due
from models.uow import Actor, unit_of_work
from models.user import Role, StaffUser, create_staff_user
from tests.factories import audit_events, make_ticket

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EVERY = timedelta(minutes=5)


def work_done(name: str) -> int:
    """How many times a test job's work was committed (it leaves one audit event per run)."""
    return db.session.scalar(
        sa.select(sa.func.count()).where(AuditEvent.action == "test.job.ran", AuditEvent.object_id == name)
    )


def runs_of(name: str) -> list[JobRun]:
    return list(db.session.scalars(sa.select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)))


def schedule_of(name: str) -> ScheduledJob:
    return db.session.execute(
        sa.select(ScheduledJob).where(ScheduledJob.name == name).execution_options(populate_existing=True)
    ).scalar_one()


def counting_job(name: str):
    """A job whose work is one audit event, in its own unit of work as "job:<name>"."""

    def run(now: datetime | None) -> dict[str, int]:
        with unit_of_work(Actor.system(f"job:{name}")) as uow:
            uow.audit("test.job.ran", "job", name)
        return {"things": 1}

    return run


@pytest.fixture
def test_job(app):
    """Register jobs of the test's own for the length of the test."""
    added: list[str] = []

    def add(name: str, run=None, every: timedelta = EVERY) -> Job:
        added.append(name)
        return register(Job(name, run or counting_job(name), every, f"Test {name}", {"things": "things"}))

    yield add
    for name in added:
        JOBS.pop(name, None)


def test_a_due_job_runs_once_and_records_its_run(test_job):
    test_job("count")
    [result] = run_due_jobs(NOW, names=["count"])
    assert (result.answer, dict(result.outcome), result.next_due_at) == ("ran", {"things": 1}, NOW + EVERY)
    assert work_done("count") == 1
    [run] = runs_of("count")
    assert (run.status, run.outcome, run.started_at) == ("ok", '{"things":1}', NOW)
    assert run.finished_at >= run.started_at
    job = schedule_of("count")
    assert (job.last_status, job.claimed_by, job.claimed_until) == ("ok", None, None)
    assert job.next_due_at == NOW + EVERY


def test_a_job_not_due_is_skipped_and_runs_again_when_due(test_job):
    test_job("count")
    run_due_jobs(NOW, names=["count"])
    [early] = run_due_jobs(NOW + timedelta(minutes=4), names=["count"])
    assert (early.answer, early.next_due_at) == ("not_due", NOW + EVERY)
    assert (work_done("count"), len(runs_of("count"))) == (1, 1)
    [due] = run_due_jobs(NOW + timedelta(minutes=5, seconds=3), names=["count"])
    assert due.answer == "ran"
    assert (work_done("count"), schedule_of("count").next_due_at) == (2, NOW + 2 * EVERY)


def test_force_runs_a_job_that_is_not_due(test_job):
    test_job("count")
    run_due_jobs(NOW, names=["count"])
    [forced] = run_due_jobs(NOW + timedelta(minutes=1), names=["count"], force=True)
    assert (forced.answer, work_done("count")) == ("ran", 2)
    # Forcing does not postpone the regular run.
    assert schedule_of("count").next_due_at == NOW + EVERY


def test_a_job_claimed_by_a_live_runner_is_left_alone(test_job):
    test_job("count")
    with unit_of_work(Actor.system("test")):
        ensure_scheduled(["count"], NOW)
        assert claim_job("count", "other-host:1:ab", NOW, timedelta(minutes=30)) == "claimed"
    [result] = run_due_jobs(NOW + timedelta(minutes=10), names=["count"], force=True)
    assert (result.answer, work_done("count"), runs_of("count")) == ("claimed_elsewhere", 0, [])


def test_the_claim_of_a_crashed_runner_is_taken_again_after_its_lease(test_job):
    test_job("count")
    with unit_of_work(Actor.system("test")):
        ensure_scheduled(["count"], NOW)
        assert claim_job("count", "crashed-host:1:ab", NOW, timedelta(minutes=30)) == "claimed"
    [result] = run_due_jobs(NOW + timedelta(minutes=31), names=["count"])
    assert (result.answer, work_done("count")) == ("ran", 1)
    assert schedule_of("count").claimed_by is None


def test_the_interval_can_be_configured(app, test_job):
    test_job("count")
    app.config["JOB_INTERVALS"] = {"count": 90}
    [result] = run_due_jobs(NOW, names=["count"])
    assert result.next_due_at == NOW + timedelta(minutes=90)


def test_the_next_due_time_keeps_the_cadence():
    """A run that starts late does not shift the schedule (a 5-minute job under a 5-minute cron)."""
    assert next_due(NOW, EVERY, NOW + timedelta(seconds=2)) == NOW + EVERY
    assert next_due(NOW, EVERY, NOW + timedelta(minutes=12)) == NOW + 3 * EVERY
    assert next_due(NOW + EVERY, EVERY, NOW) == NOW + EVERY


def test_a_run_records_counts_only():
    with pytest.raises(TypeError):
        encode_outcome({"customer": "zhang.wei@example.com"})


def rendezvous_job(name: str, meet: threading.Barrier):
    """A job that waits, outside its unit of work, until the other runner is inside a job too."""
    work = counting_job(name)

    def run(now: datetime | None) -> dict[str, int]:
        meet.wait(timeout=30)
        return work(now)

    return run


@pytest.mark.parametrize("opposite", [False, True], ids=["same order", "opposite orders"])
def test_two_runners_at_the_same_moment_run_each_due_job_exactly_once(app, test_job, opposite):
    """Two runners (threads, each with its own app context and connection) claim from the same jobs.

    Every run waits for a run of the other runner, so the two are always inside jobs at the
    same time: a job run twice, or a claim that blocks the other runner, breaks the rendezvous.
    """
    names = [f"race-{i}" for i in range(4)]
    meet = threading.Barrier(2)
    for name in names:
        test_job(name, rendezvous_job(name, meet))
    orders = [names, names[::-1] if opposite else names]
    start = threading.Barrier(2)
    answers: list[dict[str, str]] = [{}, {}]
    errors: list[BaseException] = []

    def runner(slot: int) -> None:
        with app.app_context():
            try:
                start.wait(timeout=30)
                results = run_due_jobs(NOW, names=orders[slot])
                answers[slot] = {result.job.name: result.answer for result in results}
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=runner, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for name in names:
        pair = sorted([answers[0][name], answers[1][name]])
        assert pair[1] == "ran" and pair[0] in ("claimed_elsewhere", "not_due"), (name, pair)
        assert (work_done(name), [run.status for run in runs_of(name)]) == (1, ["ok"])
    assert [list(a.values()).count("ran") for a in answers] == [2, 2]
    if not opposite:
        # Whoever claimed the first job was still in it when the other runner came to it.
        assert sorted(a["race-0"] for a in answers) == ["claimed_elsewhere", "ran"]


def failing_once(calls: list[datetime | None]):
    """A job that makes a change (a staff account, with its audit event), then fails the first time."""

    def run(now: datetime | None) -> dict[str, int]:
        calls.append(now)
        with unit_of_work(Actor.system("job:flaky")) as uow:
            create_staff_user("made.by.job@test.example", "a long enough password 42", Role.AGENT)
            uow.audit("test.job.ran", "job", "flaky")
            if len(calls) == 1:
                raise RuntimeError("the job broke after its change")
        return {"things": 1}

    return run


def test_a_failing_job_is_recorded_leaves_nothing_and_is_due_again(app, runner, test_job):
    calls: list[datetime | None] = []
    test_job("flaky", failing_once(calls))
    result = runner.invoke(args=["run-jobs", "--job", "flaky"])
    assert (result.exit_code, result.output) == (1, "flaky: failed (RuntimeError)\n")
    assert work_done("flaky") == 0
    made = sa.select(StaffUser).where(StaffUser.email == "made.by.job@test.example")
    assert db.session.scalar(made) is None
    [run] = runs_of("flaky")
    assert (run.status, run.outcome) == ("failed", '{"error":"RuntimeError"}')
    job = schedule_of("flaky")
    assert (job.last_status, job.claimed_by) == ("failed", None)
    assert job.next_due_at <= datetime.now(UTC)

    again = runner.invoke(args=["run-jobs", "--job", "flaky"])
    assert again.exit_code == 0
    assert again.output.startswith("flaky: ran (things: 1); next due ")
    assert (work_done("flaky"), [r.status for r in runs_of("flaky")]) == (1, ["failed", "ok"])


def test_run_jobs_prints_one_line_per_job(runner, test_job):
    test_job("count")
    first = runner.invoke(args=["run-jobs", "--job", "count"])
    assert (first.exit_code, first.output.split(";")[0]) == (0, "count: ran (things: 1)")
    second = runner.invoke(args=["run-jobs", "--job", "count"])
    assert (second.exit_code, second.output.split(";")[0]) == (0, "count: not due")


def test_run_jobs_refuses_an_unknown_job(runner):
    result = runner.invoke(args=["run-jobs", "--job", "no-such-job"])
    assert result.exit_code == 2
    assert "unknown job no-such-job" in result.output


def test_every_job_is_registered_with_its_interval():
    assert {name: job.every for name, job in JOBS.items()} == {
        "escalate-sla": timedelta(minutes=5),
        "expire-invitations": timedelta(hours=1),
        "expire-points": timedelta(days=1),
        "recompute-tiers": timedelta(days=1),
        "close-staff-sessions": timedelta(hours=1),
        "backup": timedelta(days=1),
    }


def test_the_jobs_run_on_an_empty_database(app):
    results = run_due_jobs(NOW)
    assert {r.job.name: (r.answer, describe(r.job, r.outcome)) for r in results} == {
        "escalate-sla": ("ran", "tickets escalated: 0"),
        "expire-invitations": ("ran", "invitations expired: 0"),
        "expire-points": ("ran", "members: 0, points expired: 0"),
        "recompute-tiers": ("ran", "members changed tier: 0"),
        "close-staff-sessions": (
            "ran",
            "sessions signed out elsewhere: 0, sessions lapsed: 0, old sessions removed: 0",
        ),
        "backup": ("ran", "backups kept: 1, old backups removed: 0"),
    }


def test_the_sla_job_escalates_a_late_ticket_as_the_job(app):
    monday_10 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    late, _ = make_ticket(now=monday_10, priority="normal")
    [result] = run_due_jobs(monday_10 + timedelta(hours=5), names=["escalate-sla"])
    assert (result.answer, dict(result.outcome)) == ("ran", {"tickets_escalated": 1})
    audited = [(e.object_id, e.actor) for e in audit_events("ticket.escalate")]
    assert audited == [(str(late.id), "job:escalate-sla")]


def test_an_admin_sees_the_jobs_and_their_runs(client, auth, test_job):
    test_job("count")
    run_due_jobs(NOW, names=["count"])
    auth.login(Role.ADMIN)
    page = client.get("/admin/jobs/")
    assert page.status_code == 200
    assert 'data-job="escalate-sla"' in page.text
    assert 'data-job="count"' in page.text
    assert "Test count" in page.text and "things: 1" in page.text
    assert "2026-12-01" in page.text  # the run, in the viewer's time zone


def test_a_manager_may_not_open_the_jobs_screen(client, auth):
    auth.login(Role.MANAGER)
    assert client.get("/admin/jobs/").status_code == 403


@pytest.mark.parametrize(
    ("interval", "words"),
    [
        (timedelta(minutes=5), "5 minutes"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(days=1), "1 day"),
    ],
)
def test_the_screen_names_an_interval_in_its_largest_whole_unit(app, interval, words):
    with app.test_request_context():
        assert every(interval) == words
