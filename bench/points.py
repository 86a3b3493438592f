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
import os
import platform
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
# `python bench/points.py` puts bench/ on the path, not the project root.
sys.path.insert(0, str(ROOT))

from common import source_revision  # noqa: E402  (bench/common.py)

from models.crypto import new_key  # noqa: E402

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


@dataclass
class Tally:
    """What clients saw: answers by kind and status, and each completed request's latency."""

    answers: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def server_errors(self) -> int:
        return sum(n for (_kind, status, _code), n in self.answers.items() if status >= 500)

    def conflicts(self, code: str) -> int:
        return sum(n for (_kind, status, got), n in self.answers.items() if (status, got) == (409, code))

    def created(self, kind: str) -> int:
        return self.answers[kind, 201, ""]

    def odd(self) -> dict[str, int]:
        """Answers other than 2xx and the expected 409s, as "kind status code": count."""
        return {" ".join(map(str, a)).strip(): n for a, n in self.answers.items() if not completed(*a[1:])}

    def add(self, other: Tally) -> None:
        self.answers.update(other.answers)
        self.latencies.extend(other.latencies)


@dataclass
class Phase:
    """One timed stretch of one workload."""

    workload: str
    seconds: float
    tally: Tally
    client_cpu: float = 0.0  # CPU seconds the clients themselves used (they share the machine)
    server_cpu: float | None = None  # CPU seconds the gunicorn workers used (None: not on Linux)


@dataclass
class Target:
    """A database under test: its name, URL, and what happened to it."""

    name: str
    url: str
    version: str = ""
    load: float = 0.0  # the machine's 1-minute load average just before measuring
    phases: list[Phase] = field(default_factory=list)
    everything: Tally = field(default_factory=Tally)  # warm-up included: what the database must hold
    checks: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def timed(self, workload: str) -> list[Phase]:
        return [p for p in self.phases if p.workload == workload]

    def rate(self, workload: str) -> float:
        """Completed requests per second over every timed phase of a workload."""
        phases = self.timed(workload)
        return sum(p.tally.completed for p in phases) / sum(p.seconds for p in phases)

    def client_load(self, workload: str) -> float:
        """The clients' own CPU use during a workload, in percent of one CPU."""
        phases = self.timed(workload)
        return 100 * sum(p.client_cpu for p in phases) / sum(p.seconds for p in phases)

    def app_cpu_ms(self, workload: str) -> float | None:
        """The gunicorn workers' CPU time per completed request (the database server's not included)."""
        phases = self.timed(workload)
        if any(p.server_cpu is None for p in phases):
            return None
        return 1000 * sum(p.server_cpu for p in phases) / sum(p.tally.completed for p in phases)

    def cpu_bound_ratio(self) -> float | None:
        """The ratio CPU cost alone allows: ping's app CPU per request over mixed's."""
        ping, mixed = self.app_cpu_ms("ping"), self.app_cpu_ms("mixed")
        return ping / mixed if ping and mixed else None

    def merged(self, workload: str) -> Tally:
        tally = Tally()
        for phase in self.timed(workload):
            tally.add(phase.tally)
        return tally

    def ratio(self) -> float:
        return self.rate("mixed") / self.rate("ping")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each timed phase (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="ping + mixed rounds per database (default 2)")
    parser.add_argument("--warmup", type=float, default=1, help="untimed seconds of each workload first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--customers", type=int, default=300, help="demo customers to seed (default 300)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="measure one database only")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help=f"PostgreSQL server; the bench creates and drops the database {BENCH_DATABASE} on it",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.clients < 1 or args.workers < 1 or args.customers < 1:
        parser.error("--seconds, --rounds, --clients, --workers and --customers must be positive")
    return args


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


# Databases ----------------------------------------------------------------------------------


def postgres_urls(server: str) -> tuple[sa.URL, sa.URL]:
    """The server's maintenance database (to create and drop ours) and the bench database."""
    base = sa.make_url(server).set(drivername="postgresql+psycopg")
    return base.set(database="postgres"), base.set(database=BENCH_DATABASE)


def recreate_postgres(server: str) -> str:
    """Drop and create the throwaway bench database; returns its URL (raises if unreachable)."""
    maintenance, bench = postgres_urls(server)
    engine = sa.create_engine(maintenance, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {BENCH_DATABASE}")
    engine.dispose()
    return bench.render_as_string(hide_password=False)


def drop_postgres(server: str) -> None:
    """Drop the bench database again."""
    maintenance, _bench = postgres_urls(server)
    engine = sa.create_engine(maintenance, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
    engine.dispose()


def server_env(url: str, workdir: Path) -> dict[str, str]:
    """The environment a deployment would give Patron: database, instance folder, fresh keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATRON_")}
    env.update(
        DATABASE_URL=url,
        FLASK_APP="app",
        PATRON_INSTANCE_PATH=str(workdir / "instance"),
        PATRON_SECRET_KEY=secrets.token_urlsafe(32),
        PATRON_ENCRYPTION_KEYS=f"1:{new_key()}",
        PATRON_BLIND_INDEX_KEY=new_key(),
        RATELIMIT_STORAGE_URI="memory://",
    )
    return env


def flask(env: dict[str, str], *args: str) -> str:
    """Run a `flask --app app` command in the project root; returns its standard output."""
    command = [sys.executable, "-m", "flask", "--app", "app", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


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


def database_version(conn: sa.Connection) -> str:
    """'SQLite 3.40.1' or 'PostgreSQL 15.20'."""
    if conn.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    return f"PostgreSQL {'.'.join(map(str, conn.dialect.server_version_info or ()))}"


# The server ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Poll /api/v1/openapi.json until it answers 200; stop if gunicorn dies or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s:\n{log.read_text()}")


@dataclass
class Server:
    """A running gunicorn: where it listens and its master's process id."""

    port: int
    pid: int

    def cpu_seconds(self) -> float | None:
        """CPU time the workers (the master's children) have used so far; None without /proc."""
        if not Path("/proc/self/stat").exists():
            return None
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process has gone
            if int(fields[1]) == self.pid:
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def gunicorn(env: dict[str, str], workdir: Path, workers: int) -> Iterator[Server]:
    """Serve `app:create_app()` with gunicorn sync workers until the block ends."""
    port = free_port()
    log = workdir / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_until_ready(port, server, log)
            yield Server(port, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


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


Operation = Callable[[ApiClient, random.Random, int], tuple[str, int, str]]


def client_loop(
    client: ApiClient, operation: Operation, rng: random.Random, clock: dict, tally: Tally
) -> None:
    """Send operations back to back until the deadline, tallying every answer."""
    clock["go"].wait()
    n = 0
    while time.perf_counter() < clock["deadline"]:
        started = time.perf_counter()
        kind, status, code = operation(client, rng, n)
        elapsed = time.perf_counter() - started
        tally.answers[kind, status, code] += 1
        if completed(status, code):
            tally.latencies.append(elapsed)
        n += 1


def run_phase(
    server: Server, workload: Workload, name: str, seconds: float, clients: int, seed: int
) -> Phase:
    """All clients run one workload at once for `seconds`; the phase lasts until the last one stops."""
    operation = getattr(workload, name)
    clock = {"go": threading.Event(), "deadline": 0.0}
    tallies = [Tally() for _ in range(clients)]
    loops = [
        (ApiClient(server.port, workload.key), operation, random.Random(seed + i), clock, tallies[i])
        for i in range(clients)
    ]
    threads = [threading.Thread(target=client_loop, args=loop) for loop in loops]
    for thread in threads:
        thread.start()
    started, cpu, server_cpu = time.perf_counter(), time.process_time(), server.cpu_seconds()
    clock["deadline"] = started + seconds
    clock["go"].set()
    for thread in threads:
        thread.join()
    phase = Phase(name, time.perf_counter() - started, Tally(), time.process_time() - cpu)
    if server_cpu is not None:
        phase.server_cpu = server.cpu_seconds() - server_cpu
    for tally in tallies:
        phase.tally.add(tally)
    return phase


def measure(target: Target, server: Server, workload: Workload, args: argparse.Namespace) -> None:
    """Warm up, then timed rounds of ping and mixed, alternating which goes first."""
    seed = SEED
    if args.warmup > 0:
        for name in ("ping", "mixed"):
            target.everything.add(run_phase(server, workload, name, args.warmup, args.clients, seed).tally)
            seed += args.clients
    for round_no in range(args.rounds):
        order = ("ping", "mixed") if round_no % 2 == 0 else ("mixed", "ping")
        for name in order:
            say(f"  {target.name}: round {round_no + 1}/{args.rounds}, {name} for {args.seconds:g} s")
            phase = run_phase(server, workload, name, args.seconds, args.clients, seed)
            seed += args.clients
            target.phases.append(phase)
            target.everything.add(phase.tally)


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
        "purchases stored": everything.created("purchase"),
        "redemptions stored": everything.created("redemption"),
        "limited stock left": REWARDS[1]["stock"] - issued,
    }
    for name, want in expected.items():
        if found[name] != want:
            target.problems.append(f"{name}: {found[name]}, expected {want}")
    if everything.server_errors:
        target.problems.append(f"{everything.server_errors} responses were 5xx")
    if everything.odd():
        target.problems.append(f"unexpected answers: {everything.odd()}")


def server_errors_logged(workdir: Path, limit: int = 40) -> str:
    """The first traceback gunicorn logged, if any, to explain 5xx answers."""
    lines = (workdir / "gunicorn.log").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
    return "" if start is None else "\n".join(lines[start : start + limit])


# Running ------------------------------------------------------------------------------------


def bench(target: Target, args: argparse.Namespace, workdir: Path) -> None:
    """Set up one database, serve it, load it, check it."""
    env = server_env(target.url, workdir)
    say(f"{target.name}: migrating, seeding {args.customers} customers, creating key and rewards")
    key, reward_ids, members = prepare(target, env, args.customers)
    workload = Workload(key, reward_ids, members)
    with gunicorn(env, workdir, args.workers) as server:
        target.load = os.getloadavg()[0]
        measure(target, server, workload, args)
    check(target, reward_ids)
    if target.problems:
        logged = server_errors_logged(workdir)
        say(f"{target.name}: PROBLEMS: {'; '.join(target.problems)}" + (f"\n{logged}" if logged else ""))


@contextmanager
def database(name: str, args: argparse.Namespace) -> Iterator[tuple[Target, Path] | None]:
    """A fresh database and work dir for one target (None if PostgreSQL cannot be reached)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"patron-points-{name}-"))
    try:
        if name == "sqlite":
            yield Target(name, f"sqlite:///{workdir / 'points.sqlite'}"), workdir
            return
        try:
            url = recreate_postgres(args.postgres)
        except sa.exc.OperationalError as exc:
            say(f"postgresql: skipped, cannot reach {args.postgres}: {str(exc.orig).strip()}")
            yield None
            return
        try:
            yield Target(name, url), workdir
        finally:
            drop_postgres(args.postgres)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def optional(value: float | None, spec: str = ".2f") -> str:
    """A number formatted, or "n/a"."""
    return "n/a" if value is None else format(value, spec)


def milliseconds(latencies: list[float], quantile: int) -> float:
    """The given percentile (50 or 95) of the latencies, in ms."""
    if len(latencies) < 2:
        return float("nan")
    return statistics.quantiles(latencies, n=100)[quantile - 1] * 1000


def print_setup(targets: list[Target], skipped: list[str], args: argparse.Namespace) -> None:
    """Comment lines naming the databases, the machine, the code and the load."""
    versions = ", ".join(t.version for t in targets)
    print(f"# {versions}, Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(
        f"# patron {source_revision()}; gunicorn {args.workers} sync workers, {args.clients} client threads, "
        f"{args.customers} customers; {args.rounds} x {args.seconds:g} s of each workload, interleaved"
    )
    loads = ", ".join(f"{t.name} {t.load:.1f}" for t in targets)
    print(f"# load average when measuring began (other processes included): {loads}")
    for name in skipped:
        print(f"# {name}: skipped (server unreachable)")


def print_table(targets: list[Target]) -> None:
    """One row per database and workload: completed requests, rate, latency, conflicts, errors."""
    print(
        f"{'database':<11} {'workload':<8} {'done':>7} {'ops/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'409 pts':>8} {'409 stock':>9} {'5xx':>4} {'app CPU ms':>10} {'client CPU':>10}"
    )
    for t in targets:
        for workload in ("ping", "mixed"):
            tally = t.merged(workload)
            print(
                f"{t.name:<11} {workload:<8} {tally.completed:>7} {t.rate(workload):>8.1f} "
                f"{milliseconds(tally.latencies, 50):>7.1f} {milliseconds(tally.latencies, 95):>7.1f} "
                f"{tally.conflicts('insufficient_points'):>8} {tally.conflicts('out_of_stock'):>9} "
                f"{tally.server_errors:>4} {optional(t.app_cpu_ms(workload), '.2f'):>10} "
                f"{t.client_load(workload):>9.0f}%"
            )


def print_checks(target: Target) -> None:
    """What the tables hold against what the clients were told."""
    c, everything = target.checks, target.everything
    verdict = (
        "FAILED: " + "; ".join(target.problems)
        if target.problems
        else "ok, every balance = its ledger sum and running balance, none negative, 0 5xx"
    )
    print(f"# check {target.name}: {verdict}")
    print(
        f"#   {c['accounts']} accounts, {c['entries']} ledger entries; "
        f"{c['purchases stored']} purchases stored for {everything.created('purchase')} x 201, "
        f"{c['redemptions stored']} redemptions for {everything.created('redemption')} x 201"
    )


def report(targets: list[Target], skipped: list[str], args: argparse.Namespace) -> None:
    """Setup lines, the table, verdicts and checks, then one `ratio NAME: VALUE` line per database."""
    print_setup(targets, skipped, args)
    print_table(targets)
    for t in targets:
        verdict = "met" if t.ratio() >= TARGET else "MISSED"
        print(f"# {t.name}: mixed ops/s / ping ops/s = {t.ratio():.2f}, target >= {TARGET} {verdict}")
        bound = optional(t.cpu_bound_ratio())
        print(f"#   CPU-bound ratio (ping app CPU / mixed app CPU per request): {bound}")
    for t in targets:
        print_checks(t)
    for t in targets:
        print(f"ratio {t.name}: {t.ratio():.2f}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python bench/points.py [--seconds N] [--only sqlite|postgresql] ...`."""
    args = parse_args(argv)
    targets, skipped = [], []
    for name in [args.only] if args.only else ["sqlite", "postgresql"]:
        with database(name, args) as prepared:
            if prepared is None:
                skipped.append(name)
                continue
            target, workdir = prepared
            bench(target, args, workdir)
            targets.append(target)
    if not targets:
        raise SystemExit("nothing measured")
    report(targets, skipped, args)
    if any(t.problems for t in targets):
        sys.exit(1)


if __name__ == "__main__":
    main()
