"""Survey submissions under load: answers posted to a public survey link, against a hello-world Flask POST.

Each database gets a fresh Patron (migrations, one survey with an anonymous link) served by gunicorn,
and a hello-world Flask app is served the same way beside it. Each client opens the form once (session
cookie and CSRF token), then posts answers back to back for a fixed time; the same clients post the same
forms to the hello-world app for the same time, interleaved. Prints `ratio NAME: VALUE` lines
(submissions/s ÷ hello-world POSTs/s; higher is better) after checking that every 200 was stored once.
See docs/PERFORMANCE.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
from functools import partial
from pathlib import Path
from unittest import mock
from urllib.parse import urlencode

import sqlalchemy as sa
from common import (
    Phase,
    Server,
    Tally,
    Target,
    add_database_options,
    add_load_options,
    csrf_token,
    database_version,
    flask,
    gunicorn,
    measure,
    print_report,
    run_benchmark,
    run_phase,
    say,
    server_env,
)
from flask import Flask, request

from app import create_app
from models import db
from models.surveys.builder import Question, Survey
from models.uow import SYSTEM, unit_of_work

TARGETS = {"sqlite": 0.5}  # PostgreSQL is measured and reported, with no target of its own
BENCH_DATABASE = "patron_survey_bench"
SLUG = "bench"
PATH = f"/p/{SLUG}"
# What a shop's survey asks; the text question is optional and answered by every other visitor.
QUESTIONS = [
    {"kind": "nps", "prompt": "您向朋友推荐我们的可能性有多大？", "required": True},
    {"kind": "rating", "prompt": "您对这次服务满意吗？", "required": True},
    {"kind": "single", "prompt": "您是在哪家门店购物的？", "required": True, "options": "A\nB\nC"},
    {"kind": "text", "prompt": "还有什么想告诉我们的？", "required": False},
]
COMMENTS = [
    "店员很耐心，结账也快。",
    "Parking was hard to find.",
    "希望周末多开一个收银台。",
    "All good, thanks!",
]
DETRACTORS = 0.2  # the share of answers with a low score: each opens a follow-up ticket
# Hello-world keeps the fields a form page needs, so the same clients can open it and post to it.
HELLO_FORM = (
    '<form method="post"><input type="hidden" name="csrf_token" value="hello">'
    '<input type="hidden" name="submission_key" value=""></form>'
)
SEED = 20251123


def hello_world() -> Flask:
    """The baseline: a Flask app that shows a form and answers its POST with a short page."""
    app = Flask("hello_world")

    @app.route(PATH, methods=["GET", "POST"])
    def survey_form():
        if request.method == "POST":
            return f"Thank you ({len(request.form)} fields)."
        return HELLO_FORM

    return app


HELLO_WORLD = ("--pythonpath", str(Path(__file__).parent), f"{Path(__file__).stem}:hello_world()")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser, "hello + survey rounds per database (default 2)")
    add_database_options(parser, BENCH_DATABASE)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.clients < 1 or args.workers < 1:
        parser.error("--seconds, --rounds, --clients and --workers must be positive")
    return args


# Databases ----------------------------------------------------------------------------------


def prepare(target: Target, env: dict[str, str]) -> tuple[int, dict[str, int]]:
    """Migrate and create the survey with its anonymous link; returns its id and question ids by kind."""
    flask(env, "db", "upgrade")
    # create_app() reads the environment: give it exactly the one the gunicorn workers get.
    with mock.patch.dict(os.environ, env, clear=True):
        app = create_app()
    with app.app_context():
        survey = Survey(title="购物体验调查", language="zh_Hans_CN", public_link=True, public_slug=SLUG)
        survey.questions = [Question(position=n, **q) for n, q in enumerate(QUESTIONS, start=1)]
        with unit_of_work(SYSTEM) as uow:
            uow.add(survey)
        survey_id, questions = survey.id, {q.kind: q.id for q in survey.questions}
        target.version = database_version(db.session.connection())
        db.session.remove()
        db.engine.dispose()
    return survey_id, questions


# Clients ------------------------------------------------------------------------------------


class Visitor:
    """One client: opens the form once (session cookie, CSRF token), then posts it again and again."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.request("GET", PATH)
        response = self.connection.getresponse()
        page = response.read().decode()
        self.token = csrf_token(page)
        if response.status != 200 or self.token is None:
            raise SystemExit(f"GET {PATH} answered {response.status} without a CSRF token:\n{page[:500]}")
        self.headers = {"Content-Type": "application/x-www-form-urlencoded"}
        cookies = [c.partition(";")[0] for c in response.msg.get_all("Set-Cookie") or []]
        if cookies:
            self.headers["Cookie"] = "; ".join(cookies)

    def post(self, fields: dict[str, str]) -> tuple[int, str]:
        """Status of one POST ("" as its code); status 0 and the error's name if the connection failed."""
        try:
            self.connection.request("POST", PATH, body=urlencode(fields), headers=self.headers)
            response = self.connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            return 0, type(exc).__name__
        return response.status, ""


class Answers:
    """What visitors send: a fresh submission key each time, scores of which a fifth are detractors."""

    def __init__(self, questions: dict[str, int]) -> None:
        self.field = {kind: f"q{qid}" for kind, qid in questions.items()}

    def form(self, visitor: Visitor, rng: random.Random, n: int) -> tuple[str, dict[str, str]]:
        """The kind of answer ("detractor" or "other") and the form fields of one submission."""
        detractor = rng.random() < DETRACTORS
        nps, rating = (
            (rng.randint(0, 6), rng.randint(1, 3)) if detractor else (rng.randint(7, 10), rng.randint(3, 5))
        )
        fields = {
            "csrf_token": visitor.token,
            "submission_key": secrets.token_urlsafe(24),
            self.field["nps"]: str(nps),
            self.field["rating"]: str(rating),
            self.field["single"]: rng.choice("ABC"),
        }
        if n % 2:
            fields[self.field["text"]] = rng.choice(COMMENTS)
        return "detractor" if detractor else "other", fields

    def survey(self, visitor: Visitor, rng: random.Random, n: int) -> tuple[str, int, str]:
        """One submission to the survey's anonymous link."""
        kind, fields = self.form(visitor, rng, n)
        return (kind, *visitor.post(fields))

    def hello(self, visitor: Visitor, rng: random.Random, n: int) -> tuple[str, int, str]:
        """The same form, token included, posted to hello-world."""
        _kind, fields = self.form(visitor, rng, n)
        return ("hello", *visitor.post(fields))


def succeeded(status: int, _code: str) -> bool:
    """Every form sent is valid, so only a 200 (the thank-you page) did its job."""
    return status == 200


def run(
    servers: dict[str, Server], answers: Answers, clients: int, name: str, seconds: float, seed: int
) -> Phase:
    """One phase of a workload ("hello" or "survey"): each visitor opens the form, then posts."""
    server = servers[name]
    visitors = [Visitor(server.port) for _ in range(clients)]
    return run_phase(server, name, visitors, getattr(answers, name), seconds, seed, succeeded)


# Checks -------------------------------------------------------------------------------------

CHECK_QUERIES = {
    "responses": sa.text("SELECT COUNT(*) FROM survey_response WHERE survey_id = :survey"),
    "with follow-up": sa.text("""
        SELECT COUNT(*) FROM survey_response
        WHERE survey_id = :survey AND follow_up_ticket_id IS NOT NULL"""),
    "tickets": sa.text("SELECT COUNT(*) FROM ticket"),  # a fresh database: follow-ups are the only ones
    "answers": sa.text("""
        SELECT COUNT(*) FROM survey_answer a JOIN survey_response r ON r.id = a.response_id
        WHERE r.survey_id = :survey"""),
    "text answers": sa.text("""
        SELECT COUNT(*) FROM survey_answer a JOIN survey_question q ON q.id = a.question_id
        WHERE q.survey_id = :survey AND q.kind = 'text' AND a.text IS NOT NULL"""),
    "missing a required answer": sa.text("""
        SELECT COUNT(*) FROM survey_response r WHERE r.survey_id = :survey AND (
          SELECT COUNT(*) FROM survey_answer a JOIN survey_question q ON q.id = a.question_id
          WHERE a.response_id = r.id AND q.required) <> :required"""),
    # The comments sent, as they would be stored without encryption.
    "text in plaintext": sa.text("SELECT COUNT(*) FROM survey_answer WHERE text IN :comments").bindparams(
        sa.bindparam("comments", expanding=True)
    ),
}


def answered(tally: Tally, kind: str) -> int:
    """200 answers to this kind of request."""
    return tally.answers[kind, 200, ""]


def count(tally: Tally, status: int | None) -> int:
    """Answers with this status (None: any status but 200, 422 and 5xx)."""
    if status is None:
        return sum(n for (_k, s, _c), n in tally.answers.items() if s not in (200, 422) and s < 500)
    return sum(n for (_k, s, _c), n in tally.answers.items() if s == status)


def check(target: Target, survey_id: int) -> None:
    """Query the tables directly: every 200 stored once with its answers, each detractor ticketed."""
    engine = sa.create_engine(target.url)
    required = sum(q["required"] for q in QUESTIONS)
    params = {"survey": survey_id, "required": required, "comments": COMMENTS}
    with engine.connect() as conn:
        target.checks = {name: conn.execute(sql, params).scalar_one() for name, sql in CHECK_QUERIES.items()}
    engine.dispose()
    everything, found = target.everything, target.checks
    stored = answered(everything, "detractor") + answered(everything, "other")
    expected = {
        "responses": stored,
        "with follow-up": answered(everything, "detractor"),
        "tickets": answered(everything, "detractor"),
        "answers": required * stored + found["text answers"],
        "missing a required answer": 0,
        "text in plaintext": 0,
    }
    for name, want in expected.items():
        if found[name] != want:
            target.problems.append(f"{name}: {found[name]}, expected {want}")
    if everything.server_errors:
        target.problems.append(f"{everything.server_errors} responses were 5xx")
    others = {" ".join(map(str, a)).strip(): n for a, n in everything.answers.items() if a[1] != 200}
    if others:
        target.problems.append(f"answers other than 200: {others}")


# Running ------------------------------------------------------------------------------------


def bench(name: str, url: str, workdir: Path, args: argparse.Namespace) -> Target:
    """Set up one database, serve it and hello-world side by side, load both, check the tables."""
    target = Target(name, url, "hello", "survey")
    env = server_env(url, workdir) | {"PATRON_SURVEY_RATE_LIMIT": "1000000 per minute"}
    say(f"{name}: migrating, creating the survey")
    survey_id, questions = prepare(target, env)
    with (
        gunicorn(env, workdir, args.workers) as patron,
        gunicorn(env, workdir, args.workers, HELLO_WORLD, PATH, "hello_world") as hello,
    ):
        servers = {"survey": patron, "hello": hello}
        measure(target, partial(run, servers, Answers(questions), args.clients), args, SEED)
    check(target, survey_id)
    return target


CHECKED = "every 200 stored once with its answers, every detractor ticketed, free text sealed, 0 5xx"


def found(target: Target) -> str:
    """What the tables hold against what the clients were told."""
    c, everything = target.checks, target.everything
    stored = answered(everything, "detractor") + answered(everything, "other")
    return (
        f"{c['responses']} responses stored for {stored} x 200 (warm-up included), "
        f"{c['tickets']} follow-up tickets for {answered(everything, 'detractor')} detractors, "
        f"{c['answers']} answers ({c['text answers']} free text)"
    )


def report(targets: list[Target], skipped: list[str], args: argparse.Namespace) -> None:
    """Setup lines, the table, verdicts and checks, then one `ratio NAME: VALUE` line per database."""
    setup = (
        f"gunicorn {args.workers} sync workers per app, {args.clients} client threads; "
        f"{args.rounds} x {args.seconds:g} s of each workload, interleaved; "
        f"{DETRACTORS:.0%} of answers from detractors (follow-up ticket)"
    )
    columns = [("422", 5, partial(count, status=422)), ("other", 5, partial(count, status=None))]
    print_report(targets, skipped, setup, columns, TARGETS, CHECKED, found)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python bench/survey_submit.py [--seconds N] [--only sqlite|postgresql] ...`."""
    args = parse_args(argv)
    run_benchmark(args, "survey", BENCH_DATABASE, partial(bench, args=args), partial(report, args=args))


if __name__ == "__main__":
    main()
