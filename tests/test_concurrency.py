"""Staff, visitors and an integrator at once against a real server: no error, nothing lost or doubled.

gunicorn (2 workers x 4 threads) serves a freshly migrated database: SQLite, or PostgreSQL when
TEST_DATABASE_URL is set (the suite's `database_url`). For about 12 seconds three staff members
open customers, reply to tickets and move them along the workflow (the manager also adjusts
points), four visitors send the feedback form, two visitors answer survey invitations and the
anonymous link, and two integrators post purchases (some order references twice, some at the
same moment). Any 5xx, any "database is locked" and any failed request fails the test; then the
database must hold every acknowledged submission exactly once, every page view's audit event,
and every balance must equal the sum of its ledger.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from models import db
from models.uow import SYSTEM, unit_of_work
from tests.conftest import TEST_PASSWORD, csrf_token, make_staff
from tests.factories import make_customer, make_ticket
from tests.live_server import first_traceback, patron_server, server_environment

SECONDS = 12.0
ROUNDS = {"staff": 60, "feedback": 100, "survey": 60, "purchase": 250}  # per thread, at most
STAFF = [("agent", "agent1@test.example"), ("agent", "agent2@test.example"), ("manager", "boss@test.example")]
FEEDBACK_VISITORS, SURVEY_VISITORS, INTEGRATORS = 4, 2, 2
SOURCE = "conc-pos"
THANKS = "Thank you for answering the concurrency survey."
REFERENCE = re.compile(r"T-\d{4}-\d{6,}")
# Pages whose every showing to staff leaves an audit event, and the event's action.
AUDITED_PAGES = [
    (re.compile(r"^/admin/customers/details/$"), "customer.view"),
    (re.compile(r"^/admin/tickets/ticket/\d+$"), "ticket.view"),
]


@dataclass(frozen=True)
class Seeded:
    """What the clients work with: ids, tokens and keys of the seeded rows."""

    staff: dict[str, int]  # email -> staff id
    customers: list[int]
    emails: list[str]
    members: list[str]
    tickets: list[int]
    questions: dict[str, int]  # question kind -> id
    slug: str
    invitations: dict[str, int]  # token -> invitation id
    api_key: str


def seed() -> Seeded:
    """Staff, customers with tickets, an open survey with invitations and an anonymous link, an API key."""
    from models.api_key import create_api_key
    from models.surveys.builder import Question, Survey
    from models.surveys.invitations import create_invitation

    staff = {email: make_staff(role, email).id for role, email in STAFF}
    customers = [make_customer() for _ in range(12)]
    tickets = [make_ticket(customer_id=customer.id)[0].id for customer in customers[:6]]
    questions = [
        Question(position=1, kind="nps", prompt="How likely are you to recommend us?", required=True),
        Question(position=2, kind="rating", prompt="How satisfied are you?", required=True),
        Question(position=3, kind="text", prompt="Anything else?", required=False),
    ]
    survey = Survey(
        title="Concurrency survey",
        thank_you=THANKS,
        language="en",
        public_link=True,
        public_slug="concurrency",
        send_on_resolution=True,  # resolving a seeded ticket invites its customer, in the same transaction
        questions=questions,
    )
    with unit_of_work(SYSTEM) as uow:
        uow.add(survey)
        db.session.flush()
        invited = [create_invitation(survey, customer.id) for customer in customers * 4]
        _key, api_key = create_api_key("Concurrency test", SOURCE, ["purchases:write"])
    return Seeded(
        staff=staff,
        customers=[customer.id for customer in customers],
        emails=[customer.email for customer in customers],
        members=[customer.member_no for customer in customers],
        tickets=tickets,
        questions={question.kind: question.id for question in questions},
        slug="concurrency",
        invitations={token: invitation.id for invitation, token in invited},
        api_key=api_key,
    )


def order(ref: str, members: list[str]) -> dict:
    """The purchase an order reference stands for: the same payload whoever posts it, however often."""
    crc = zlib.crc32(ref.encode())
    return {
        "order_ref": ref,
        "customer": {"member_no": members[crc % len(members)]},
        "amount": f"{10 + crc % 90}.50",
        "currency": "CNY",
    }


@dataclass
class Traffic:
    """The clients' shared record: every answer, every problem, and what the server acknowledged."""

    base: str
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter = field(default_factory=Counter)  # (kind, status) -> count
    problems: list[str] = field(default_factory=list)
    views: Counter = field(default_factory=Counter)  # (staff id, audit action) -> pages shown
    replies: list[str] = field(default_factory=list)
    adjustments: list[str] = field(default_factory=list)  # reasons
    feedback: list[tuple[str, str]] = field(default_factory=list)  # (reference, message)
    answered: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # key -> (invitation, text)
    created: Counter = field(default_factory=Counter)  # order ref -> 201 answers
    replayed: Counter = field(default_factory=Counter)  # order ref -> 200 answers
    unused: list[str] = field(default_factory=list)  # invitation tokens not yet taken

    def more(self, n: int, kind: str) -> bool:
        return n < ROUNDS[kind] and time.monotonic() < self.deadline

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def call(
        self, session: requests.Session, kind: str, method: str, path: str, expect=(200,), **kwargs
    ) -> requests.Response | None:
        """Send one request (redirects followed); the final answer if its status was expected."""
        try:
            response = session.request(method, self.base + path, timeout=60, **kwargs)
        except requests.RequestException as exc:
            self.problem(f"{kind}: {method} {path} failed: {exc!r}")
            return None
        with self.lock:
            self.answers[kind, response.status_code] += 1
        for hop in (*response.history, response):
            if hop.status_code >= 500 or "database is locked" in hop.text:
                self.problem(f"{kind}: {hop.request.method} {urlsplit(hop.url).path} -> {hop.status_code}")
                return None
        if response.status_code not in expect:
            self.problem(f"{kind}: {method} {path} -> {response.status_code}, expected {expect}")
            return None
        return response

    def shown(self, staff_id: int, response: requests.Response | None) -> None:
        """Count a customer or ticket page shown to a member of staff: each must leave an audit event."""
        path = urlsplit(response.url).path if response is not None else ""
        action = next((action for page, action in AUDITED_PAGES if page.match(path)), None)
        if action:
            with self.lock:
                self.views[staff_id, action] += 1

    def take_invitation(self) -> str | None:
        with self.lock:
            return self.unused.pop() if self.unused else None


# The clients ----------------------------------------------------------------------------------


def staff_member(
    traffic: Traffic, session: requests.Session, seeded: Seeded, email: str, rng: random.Random
) -> None:
    """Sign in, then open customers and work tickets until time is up."""
    if not sign_in(traffic, session, email):
        traffic.problem(f"{email} could not sign in")
        return
    staff_id, n = seeded.staff[email], 0
    while traffic.more(n, "staff"):
        customer_id = rng.choice(seeded.customers)
        page = traffic.call(session, "customer page", "GET", f"/admin/customers/details/?id={customer_id}")
        traffic.shown(staff_id, page)
        if page and 'name="points"' in page.text and n % 3 == 0:  # the manager's points form
            adjust_points(traffic, session, staff_id, page, customer_id, f"{email}-{n}")
        work_ticket(traffic, session, staff_id, rng.choice(seeded.tickets), rng, f"{email}-{n}")
        n += 1


def sign_in(traffic: Traffic, session: requests.Session, email: str) -> bool:
    """Sign in with the login form; a failed try is a problem, but the member of staff tries again."""
    for _attempt in range(3):
        page = traffic.call(session, "sign-in", "GET", "/login")
        if page and urlsplit(page.url).path != "/login":
            return True  # the last try signed in after all
        form = {
            "email": email,
            "password": TEST_PASSWORD,
            "csrf_token": csrf_token(page.text) if page else "",
        }
        home = page and traffic.call(session, "sign-in", "POST", "/login", data=form)
        if home and urlsplit(home.url).path != "/login":
            return True
    return False


def adjust_points(
    traffic: Traffic, session: requests.Session, staff_id: int, page, customer_id: int, label: str
) -> None:
    reason = f"Concurrency adjust {label} {uuid.uuid4().hex[:8]}"
    form = {"csrf_token": csrf_token(page.text), "points": "7", "reason": reason}
    done = traffic.call(session, "points adjust", "POST", f"/admin/customers/adjust/{customer_id}", data=form)
    traffic.shown(staff_id, done)
    if done and "Points adjusted." in done.text:
        with traffic.lock:
            traffic.adjustments.append(reason)


def work_ticket(
    traffic: Traffic, session: requests.Session, staff_id: int, ticket_id: int, rng: random.Random, label: str
) -> None:
    """Open a ticket, reply to it, then move it to one of the statuses its page offers."""
    path = f"/admin/tickets/ticket/{ticket_id}"
    page = traffic.call(session, "ticket page", "GET", path)
    traffic.shown(staff_id, page)
    if page is None:
        return
    token, body = csrf_token(page.text), f"Reply {label} {uuid.uuid4().hex[:8]}"
    form = {"csrf_token": token, "kind": rng.choice(["outbound", "note"]), "body": body}
    replied = traffic.call(session, "ticket reply", "POST", f"{path}/reply", data=form)
    traffic.shown(staff_id, replied)
    if replied and body in replied.text:
        with traffic.lock:
            traffic.replies.append(body)
    elif replied:
        traffic.problem(f"ticket reply: {body!r} not shown on the ticket page")
    moves = re.findall(r'name="to_status" value="(\w+)"', page.text)
    if moves:
        form = {"csrf_token": token, "to_status": rng.choice(moves)}
        traffic.shown(staff_id, traffic.call(session, "ticket move", "POST", f"{path}/move", data=form))


def feedback_visitor(
    traffic: Traffic, session: requests.Session, seeded: Seeded, label: str, rng: random.Random
) -> None:
    """Send the public feedback form again and again; note each reference the thank-you page shows."""
    n = 0
    while traffic.more(n, "feedback"):
        page = traffic.call(session, "feedback form", "GET", "/feedback")
        message = f"Feedback {label}-{n} {uuid.uuid4().hex[:8]}"
        form = {
            "csrf_token": csrf_token(page.text) if page else "",
            "kind": rng.choice(["complaint", "suggestion", "praise"]),
            "message": message,
            "name": "",
            "email": rng.choice(seeded.emails) if n % 3 == 0 else "",  # a known customer: a blind-index match
            "phone": "",
            "website": "",
        }
        sent = page and traffic.call(session, "feedback", "POST", "/feedback", data=form)
        reference = REFERENCE.search(sent.text) if sent else None
        if reference:
            with traffic.lock:
                traffic.feedback.append((reference.group(), message))
        elif sent:
            traffic.problem(f"feedback: no reference on the page after sending {message!r}")
        n += 1


def survey_visitor(
    traffic: Traffic, session: requests.Session, seeded: Seeded, label: str, rng: random.Random
) -> None:
    """Answer invitations and the anonymous link in turn; every fourth form is sent twice."""
    n = 0
    while traffic.more(n, "survey"):
        token = traffic.take_invitation() if n % 2 == 0 else None
        path = f"/s/{token}" if token else f"/p/{seeded.slug}"
        page = traffic.call(session, "survey page", "GET", path)
        if page is None:
            n += 1
            continue
        key, text = csrf_token(page.text, "submission_key"), f"Answer {label}-{n} {uuid.uuid4().hex[:8]}"
        form = {
            "csrf_token": csrf_token(page.text),
            "submission_key": key,
            "website": "",
            f"q{seeded.questions['nps']}": str(rng.randint(0, 10)),  # detractors open a follow-up ticket
            f"q{seeded.questions['rating']}": str(rng.randint(1, 5)),
            f"q{seeded.questions['text']}": text,
        }
        for _attempt in range(2 if n % 4 == 3 else 1):  # the same form sent again is stored once
            answered = traffic.call(session, "survey answer", "POST", path, data=form)
            if answered and THANKS in answered.text:
                with traffic.lock:
                    traffic.answered[key] = (seeded.invitations.get(token or ""), text)
            elif answered:
                traffic.problem(f"survey answer: no thank-you page for {path}")
        n += 1


def integrator(
    traffic: Traffic, session: requests.Session, seeded: Seeded, worker: int, rng: random.Random
) -> None:
    """Post purchases; some replay an acknowledged order, some race the other integrator to the same one."""
    n = 0
    session.headers["Authorization"] = f"Bearer {seeded.api_key}"
    while traffic.more(n, "purchase"):
        with traffic.lock:
            done = sorted(traffic.created)
        if n % 10 == 0:
            ref = f"shared-{n // 10}"  # both integrators post it at about the same moment
        elif n % 5 == 4 and done:
            ref = rng.choice(done)
        else:
            ref = f"w{worker}-{n}"
        payload = order(ref, seeded.members)
        answer = traffic.call(session, "purchase", "POST", "/api/v1/purchases", (200, 201), json=payload)
        if answer is not None:
            created = answer.json()["created"]
            if created != (answer.status_code == 201):
                traffic.problem(f"purchase {ref}: {answer.status_code} with created={created}")
            with traffic.lock:
                (traffic.created if created else traffic.replayed)[ref] += 1
        n += 1


def guarded(traffic: Traffic, client: Callable[..., None], *args) -> Callable[[], None]:
    """A client in a thread with its own HTTP session; an exception in it is a problem of the run."""

    def run() -> None:
        try:
            with requests.Session() as session:
                client(traffic, session, *args)
        except Exception as exc:  # reported with the others; the test fails on it
            traffic.problem(f"{client.__name__} crashed: {exc!r}")

    return run


def run_clients(base: str, seeded: Seeded) -> tuple[Traffic, float]:
    """Every client at once until the time or its rounds run out; returns the record and the seconds."""
    traffic = Traffic(base, time.monotonic() + SECONDS, unused=sorted(seeded.invitations))
    clients = [
        guarded(traffic, staff_member, seeded, email, random.Random(i)) for i, (_r, email) in enumerate(STAFF)
    ]
    clients += [
        guarded(traffic, feedback_visitor, seeded, f"v{i}", random.Random(10 + i))
        for i in range(FEEDBACK_VISITORS)
    ]
    clients += [
        guarded(traffic, survey_visitor, seeded, f"s{i}", random.Random(20 + i))
        for i in range(SURVEY_VISITORS)
    ]
    clients += [guarded(traffic, integrator, seeded, i, random.Random(30 + i)) for i in range(INTEGRATORS)]
    threads = [threading.Thread(target=client) for client in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return traffic, time.monotonic() - started


# What the database holds ----------------------------------------------------------------------


def table(name: str) -> sa.Table:
    """A table by name: encrypted columns keep their type, so selecting them decrypts."""
    return db.metadata.tables[name]


def stored_feedback() -> list[tuple[str, str]]:
    ticket, message = table("ticket"), table("ticket_message")
    rows = db.session.execute(
        sa.select(ticket.c.reference, message.c.body).join(ticket, ticket.c.id == message.c.ticket_id)
    )
    return sorted((reference, body) for reference, body in rows if body.startswith("Feedback "))


def stored_answers(survey_slug: str) -> list[tuple[str, int | None, str]]:
    survey, response, answer = table("survey"), table("survey_response"), table("survey_answer")
    rows = db.session.execute(
        sa.select(response.c.submission_key, response.c.invitation_id, answer.c.text)
        .join(survey, survey.c.id == response.c.survey_id)
        .outerjoin(answer, sa.and_(answer.c.response_id == response.c.id, answer.c.text.is_not(None)))
        .where(survey.c.public_slug == survey_slug)
    )
    return sorted(tuple(row) for row in rows)


def stored_purchases() -> list[tuple[str, str, str]]:
    purchase, customer = table("purchase"), table("customer")
    rows = db.session.execute(
        sa.select(purchase.c.order_ref, customer.c.member_no, purchase.c.amount)
        .join(customer, customer.c.id == purchase.c.customer_id)
        .where(purchase.c.source == SOURCE)
    )
    return sorted((ref, member_no, f"{amount:.2f}") for ref, member_no, amount in rows)


def purchases_without_one_ledger_entry() -> list[str]:
    purchase, entry = table("purchase"), table("points_entry")
    entries = sa.func.count(entry.c.id)
    rows = db.session.execute(
        sa.select(purchase.c.order_ref)
        .outerjoin(entry, entry.c.purchase_id == purchase.c.id)
        .group_by(purchase.c.id, purchase.c.order_ref, purchase.c.points)
        .having(entries != sa.case((purchase.c.points > 0, 1), else_=0))
    )
    return sorted(rows.scalars())


def balances_off_their_ledger() -> list[tuple[int, int, int]]:
    """(customer, balance, ledger sum) wherever they differ, accounts without entries included."""
    account, entry = table("loyalty_account"), table("points_entry")
    ledger = (
        sa.select(entry.c.customer_id, sa.func.sum(entry.c.points).label("total"))
        .group_by(entry.c.customer_id)
        .subquery()
    )
    customers = sa.union(sa.select(account.c.customer_id), sa.select(entry.c.customer_id)).subquery()
    balance, total = sa.func.coalesce(account.c.balance, 0), sa.func.coalesce(ledger.c.total, 0)
    rows = db.session.execute(
        sa.select(customers.c.customer_id, balance, total)
        .outerjoin(account, account.c.customer_id == customers.c.customer_id)
        .outerjoin(ledger, ledger.c.customer_id == customers.c.customer_id)
        .where(balance != total)
    )
    return sorted(tuple(row) for row in rows)


def stored_bodies(prefix: str) -> list[str]:
    message = table("ticket_message")
    return sorted(body for body in db.session.scalars(sa.select(message.c.body)) if body.startswith(prefix))


def stored_adjustments() -> list[str]:
    entry = table("points_entry")
    return sorted(
        db.session.scalars(sa.select(entry.c.reason).where(entry.c.reason.like("Concurrency adjust %")))
    )


def audited_views() -> Counter:
    audit = table("audit_event")
    rows = db.session.execute(
        sa.select(audit.c.actor_id, audit.c.action, sa.func.count())
        .where(audit.c.action.in_(["customer.view", "ticket.view"]))
        .group_by(audit.c.actor_id, audit.c.action)
    )
    return Counter({(actor_id, action): count for actor_id, action, count in rows})


def summary(dialect: str, traffic: Traffic, seconds: float) -> str:
    """One line: requests by kind and status, and what was acknowledged."""
    kinds = ", ".join(f"{kind} {status}x{count}" for (kind, status), count in sorted(traffic.answers.items()))
    return (
        f"concurrency on {dialect}: {traffic.answers.total()} requests in {seconds:.1f} s ({kinds}); "
        f"acknowledged: {len(traffic.feedback)} feedback, {len(traffic.answered)} survey answers, "
        f"{len(traffic.created)} purchases + {traffic.replayed.total()} replays, "
        f"{len(traffic.replies)} replies, {len(traffic.adjustments)} adjustments; "
        f"{len(traffic.problems)} problems"
    )


def test_staff_visitors_and_the_api_at_once_lose_nothing(app, database_url, key_material, tmp_path, capsys):
    """Under a real server with several users at once: no 5xx, no lock error, nothing lost or stored twice."""
    seeded = seed()
    db.session.remove()  # no snapshot of the test's own may outlive the server's writes
    env = server_environment(database_url, tmp_path, key_material)
    with patron_server(env, tmp_path) as base:
        traffic, seconds = run_clients(base, seeded)
    with capsys.disabled():
        print("\n" + summary(db.engine.dialect.name, traffic, seconds))
    problems = [f"{count} x {problem}" for problem, count in Counter(traffic.problems).most_common()]
    assert problems == [], "\n".join([*problems, first_traceback(tmp_path)])

    db.session.remove()
    assert stored_feedback() == sorted(traffic.feedback)
    assert stored_answers(seeded.slug) == sorted((key, *answer) for key, answer in traffic.answered.items())
    assert [ref for ref, count in traffic.created.items() if count != 1] == []
    assert set(traffic.replayed) <= set(traffic.created)
    expected = [order(ref, seeded.members) for ref in traffic.created]
    assert stored_purchases() == sorted(
        (o["order_ref"], o["customer"]["member_no"], o["amount"]) for o in expected
    )
    assert purchases_without_one_ledger_entry() == []
    assert balances_off_their_ledger() == []
    assert stored_bodies("Reply ") == sorted(traffic.replies)
    assert stored_adjustments() == sorted(traffic.adjustments)
    assert audited_views() == traffic.views
