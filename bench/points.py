"""Points under load: purchases and redemptions through the API, against an authenticated no-op.

Each database gets a fresh Patron (migrations, demo customers, two rewards, one API key) served
by gunicorn. Concurrent clients then post purchases and redemptions for a fixed time, and call
GET /api/v1/ping with the same key for the same time, interleaved. Prints `ratio NAME: VALUE`
lines (mixed ops/s ÷ ping ops/s; higher is better) after checking that every balance equals
its ledger. See docs/PERFORMANCE.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import sqlalchemy as sa
from common import (
    Phase,
    Server,
    Tally,
    Target,
    add_database_options,
    add_load_options,
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

TARGET = 0.3
BENCH_DATABASE = "patron_points_bench"
SOURCE = "bench-pos"
AMOUNT = "88.00"
# Two rewards: one always in stock, and one that runs out (every fourth redemption asks for it)
# so that both expected 409 answers show up without cheap refusals dominating the mix.
REWARDS = [
    {"name_en": "Tote bag", "name_zh": "帆布袋", "points_cost": 150, "stock": None},
    {"name_en": "Spa voucher", "name_zh": "水疗券", "points_cost": 100, "stock": 40},
]
REWARD_TABLE = sa.table(
    "reward", *map(sa.column, ["id", "name_en", "name_zh", "description", "points_cost", "stock", "active"])
)
EXPECTED_CONFLICTS = {"insufficient_points", "out_of_stock"}
SEED = 20251122


def completed(status: int, code: str) -> bool:
    """A request that did its job: a 2xx, or a 409 the rules call for (too few points, no stock)."""
    return 200 <= status < 300 or (status == 409 and code in EXPECTED_CONFLICTS)


def conflicts(tally: Tally, code: str) -> int:
    """409 answers with this error code."""
    return sum(n for (_kind, status, got), n in tally.answers.items() if (status, got) == (409, code))


def created(tally: Tally, kind: str) -> int:
    """201 answers to this kind of request."""
    return tally.answers[kind, 201, ""]


def odd(tally: Tally) -> dict[str, int]:
    """Answers other than 2xx and the expected 409s, as "kind status code": count."""
    return {" ".join(map(str, a)).strip(): n for a, n in tally.answers.items() if not completed(*a[1:])}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_options(parser, "ping + mixed rounds per database (default 2)")
    parser.add_argument("--customers", type=int, default=300, help="demo customers to seed (default 300)")
    add_database_options(parser, BENCH_DATABASE)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.clients < 1 or args.workers < 1 or args.customers < 1:
        parser.error("--seconds, --rounds, --clients, --workers and --customers must be positive")
    return args


# Databases ----------------------------------------------------------------------------------


def prepare(target: Target, env: dict[str, str], customers: int) -> tuple[str, list[int], list[str]]:
    """Migrate, seed customers, add the rewards and an API key; returns key, reward ids, member numbers."""
    flask(env, "db", "upgrade")
    flask(env, "seed-demo", "--customers", str(customers))
    scopes = ["--scope", "purchases:write", "--scope", "points:read", "--scope", "redemptions:write"]
    key = flask(env, "create-api-key", "Points bench", "--source", SOURCE, *scopes).split()[-1]
    engine = sa.create_engine(target.url)
    with engine.begin() as conn:
        insert = sa.insert(REWARD_TABLE).returning(REWARD_TABLE.c.id)
        rows = [r | {"description": "Points bench", "active": True} for r in REWARDS]
        reward_ids = [conn.execute(insert.values(row)).scalar_one() for row in rows]
        members = list(conn.execute(sa.text("SELECT member_no FROM customer ORDER BY id")).scalars())
        target.version = database_version(conn)
    engine.dispose()
    return key, reward_ids, members


# Clients ------------------------------------------------------------------------------------


class ApiClient:
    """One client's HTTP connection to the API, carrying the bench's key."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, str]:
        """Status and error code ("" on success) of one request; status 0 if the connection failed."""
        body = json.dumps(payload) if payload is not None else None
        try:
            self.connection.request(method, path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            return 0, type(exc).__name__
        if response.status < 400:
            return response.status, ""
        try:
            return response.status, json.loads(raw)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return response.status, "not_json"


@dataclass
class Workload:
    """What the clients send: the API key, the rewards and the customers to pick from."""

    key: str
    reward_ids: list[int]
    members: list[str]

    def ping(self, client: ApiClient, _rng: random.Random, _n: int) -> tuple[str, int, str]:
        return ("ping", *client.call("GET", "/api/v1/ping"))

    def mixed(self, client: ApiClient, rng: random.Random, n: int) -> tuple[str, int, str]:
        """Two purchases, then a redemption, for random customers."""
        member_no = rng.choice(self.members)
        if n % 3 == 2:
            unlimited, limited = self.reward_ids
            payload = {"member_no": member_no, "reward_id": limited if n // 3 % 4 == 3 else unlimited}
            return ("redemption", *client.call("POST", "/api/v1/redemptions", payload))
        payload = {
            "order_ref": f"bench-{uuid.uuid4().hex}",
            "customer": {"member_no": member_no},
            "amount": AMOUNT,
            "currency": "CNY",
        }
        return ("purchase", *client.call("POST", "/api/v1/purchases", payload))


def run(server: Server, workload: Workload, clients: int, name: str, seconds: float, seed: int) -> Phase:
    """One phase of a workload ("ping" or "mixed"), each client with its own connection."""
    connections = [ApiClient(server.port, workload.key) for _ in range(clients)]
    return run_phase(server, name, connections, getattr(workload, name), seconds, seed, completed)


# Checks -------------------------------------------------------------------------------------

CHECK_QUERIES = {
    "accounts": "SELECT COUNT(*) FROM loyalty_account",
    "entries": "SELECT COUNT(*) FROM points_entry",
    "balance != ledger sum": """
        SELECT COUNT(*) FROM loyalty_account a
        LEFT JOIN (SELECT customer_id, SUM(points) AS total FROM points_entry GROUP BY customer_id) l
          ON l.customer_id = a.customer_id
        WHERE a.balance <> COALESCE(l.total, 0)""",
    "ledger without account": """
        SELECT COUNT(DISTINCT customer_id) FROM points_entry
        WHERE customer_id NOT IN (SELECT customer_id FROM loyalty_account)""",
    "negative balances": "SELECT COUNT(*) FROM loyalty_account WHERE balance < 0",
    "balance_after != running sum": """
        SELECT COUNT(*) FROM (
          SELECT balance_after, SUM(points) OVER (PARTITION BY customer_id ORDER BY id) AS running
          FROM points_entry) e
        WHERE balance_after <> running""",
    "purchases stored": f"SELECT COUNT(*) FROM purchase WHERE source = '{SOURCE}'",
    "redemptions stored": "SELECT COUNT(*) FROM redemption WHERE reward_id IN (:unlimited, :limited)",
}
STOCK_LEFT = sa.text("SELECT stock FROM reward WHERE id = :limited")
ISSUED = sa.text("SELECT COUNT(*) FROM redemption WHERE reward_id = :limited")


def check(target: Target, reward_ids: list[int]) -> None:
    """Query the tables directly: balances equal ledgers, none negative, nothing lost or extra."""
    engine = sa.create_engine(target.url)
    ids = {"unlimited": reward_ids[0], "limited": reward_ids[1]}
    with engine.connect() as conn:
        found = {name: conn.execute(sa.text(sql), ids).scalar_one() for name, sql in CHECK_QUERIES.items()}
        found["limited stock left"] = conn.execute(STOCK_LEFT, ids).scalar_one()
        issued = conn.execute(ISSUED, ids).scalar_one()
    engine.dispose()
    everything = target.everything
    target.checks = found
    expected = {name: 0 for name in CHECK_QUERIES if name not in ("accounts", "entries")}
    expected |= {
        "purchases stored": created(everything, "purchase"),
        "redemptions stored": created(everything, "redemption"),
        "limited stock left": REWARDS[1]["stock"] - issued,
    }
    for name, want in expected.items():
        if found[name] != want:
            target.problems.append(f"{name}: {found[name]}, expected {want}")
    if everything.server_errors:
        target.problems.append(f"{everything.server_errors} responses were 5xx")
    if odd(everything):
        target.problems.append(f"unexpected answers: {odd(everything)}")


# Running ------------------------------------------------------------------------------------


def bench(name: str, url: str, workdir: Path, args: argparse.Namespace) -> Target:
    """Set up one database, serve it, load it, check it."""
    target = Target(name, url, "ping", "mixed")
    env = server_env(target.url, workdir)
    say(f"{target.name}: migrating, seeding {args.customers} customers, creating key and rewards")
    key, reward_ids, members = prepare(target, env, args.customers)
    workload = Workload(key, reward_ids, members)
    with gunicorn(env, workdir, args.workers) as server:
        measure(target, partial(run, server, workload, args.clients), args, SEED)
    check(target, reward_ids)
    return target


CHECKED = "every balance = its ledger sum and running balance, none negative, 0 5xx"


def found(target: Target) -> str:
    """What the tables hold against what the clients were told."""
    c, everything = target.checks, target.everything
    return (
        f"{c['accounts']} accounts, {c['entries']} ledger entries; "
        f"{c['purchases stored']} purchases stored for {created(everything, 'purchase')} x 201, "
        f"{c['redemptions stored']} redemptions for {created(everything, 'redemption')} x 201"
    )


def report(targets: list[Target], skipped: list[str], args: argparse.Namespace) -> None:
    """Setup lines, the table, verdicts and checks, then one `ratio NAME: VALUE` line per database."""
    setup = (
        f"gunicorn {args.workers} sync workers, {args.clients} client threads, "
        f"{args.customers} customers; {args.rounds} x {args.seconds:g} s of each workload, interleaved"
    )
    columns = [
        ("409 pts", 8, partial(conflicts, code="insufficient_points")),
        ("409 stock", 9, partial(conflicts, code="out_of_stock")),
    ]
    goals = {"sqlite": TARGET, "postgresql": TARGET}
    print_report(targets, skipped, setup, columns, goals, CHECKED, found)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python bench/points.py [--seconds N] [--only sqlite|postgresql] ...`."""
    args = parse_args(argv)
    run_benchmark(args, "points", BENCH_DATABASE, partial(bench, args=args), partial(report, args=args))


if __name__ == "__main__":
    main()
