"""Helpers shared by the benchmarks: git, scratch databases, gunicorn, client threads, reports."""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import re
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
# `python bench/<name>.py` puts bench/ on the path, not the project root.
sys.path.insert(0, str(ROOT))

from models.crypto import new_key  # noqa: E402


def git(*args: str) -> str:
    """The output of a git command run in the project root ("" if git is unavailable)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def source_revision() -> str:
    """The commit measured, marked when tracked files have uncommitted changes."""
    revision = git("rev-parse", "--short", "HEAD") or "unknown revision"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return revision + (" with uncommitted changes" if dirty else "")


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(page: str) -> str | None:
    """The CSRF token of the form in a page (attributes in either order), or None."""
    match = CSRF_RE.search(page)
    return (match.group(1) or match.group(2)) if match else None


def say(message: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    print(message, file=sys.stderr, flush=True)


# Command line -------------------------------------------------------------------------------


def add_load_options(parser: argparse.ArgumentParser, rounds_help: str) -> None:
    """Options of a load bench: phase length, rounds, warm-up, clients and gunicorn workers."""
    parser.add_argument("--seconds", type=float, default=10, help="length of each timed phase (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help=rounds_help)
    parser.add_argument("--warmup", type=float, default=1, help="untimed seconds of each workload first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")


def add_database_options(parser: argparse.ArgumentParser, database: str) -> None:
    """Options choosing the databases: one of them only, and which PostgreSQL server."""
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="measure one database only")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help=f"PostgreSQL server; the bench creates and drops the database {database} on it",
    )


# Databases ----------------------------------------------------------------------------------


def postgres_urls(server: str, database: str) -> tuple[sa.URL, sa.URL]:
    """The server's maintenance database (to create and drop ours) and the bench database."""
    base = sa.make_url(server).set(drivername="postgresql+psycopg")
    return base.set(database="postgres"), base.set(database=database)


def recreate_postgres(server: str, database: str) -> str:
    """Drop and create the throwaway bench database; returns its URL (raises if unreachable)."""
    maintenance, bench = postgres_urls(server, database)
    engine = sa.create_engine(maintenance, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    engine.dispose()
    return bench.render_as_string(hide_password=False)


def drop_postgres(server: str, database: str) -> None:
    """Drop the bench database again."""
    maintenance, _bench = postgres_urls(server, database)
    engine = sa.create_engine(maintenance, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    engine.dispose()


@contextmanager
def scratch_database(
    name: str, label: str, postgres: str, database: str
) -> Iterator[tuple[str, Path] | None]:
    """A fresh database URL and work dir for "sqlite" or "postgresql" (None: PostgreSQL unreachable)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"patron-{label}-{name}-"))
    try:
        if name == "sqlite":
            yield f"sqlite:///{workdir / f'{label}.sqlite'}", workdir
            return
        try:
            url = recreate_postgres(postgres, database)
        except sa.exc.OperationalError as exc:
            say(f"postgresql: skipped, cannot reach {postgres}: {str(exc.orig).strip()}")
            yield None
            return
        try:
            yield url, workdir
        finally:
            drop_postgres(postgres, database)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def database_version(conn: sa.Connection) -> str:
    """'SQLite 3.40.1' or 'PostgreSQL 15.20'."""
    if conn.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    return f"PostgreSQL {'.'.join(map(str, conn.dialect.server_version_info or ()))}"


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


# The server ---------------------------------------------------------------------------------

PATRON = ("app:create_app()",)  # what gunicorn serves, in the project root
PATRON_READY = "/api/v1/openapi.json"  # answers 200 once Patron is up


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(port: int, server: subprocess.Popen, log: Path, path: str, timeout: float = 60) -> None:
    """Poll `path` until it answers 200; stop if gunicorn dies or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
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
def gunicorn(
    env: dict[str, str],
    workdir: Path,
    workers: int,
    app: tuple[str, ...] = PATRON,
    ready: str = PATRON_READY,
    log_name: str = "gunicorn",
    options: tuple[str, ...] = (),
) -> Iterator[Server]:
    """Serve `app` (by default `app:create_app()`) with gunicorn until the block ends.

    Sync workers unless `options` say otherwise (e.g. `--worker-class gthread --threads 4`).
    """
    port = free_port()
    log = workdir / f"{log_name}.log"
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", *options]
    with log.open("w") as out:
        server = subprocess.Popen([*command, *app], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(port, server, log, ready)
            yield Server(port, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def server_errors_logged(workdir: Path, limit: int = 40, log_name: str = "gunicorn") -> str:
    """The first traceback gunicorn logged, if any, to explain 5xx answers."""
    lines = (workdir / f"{log_name}.log").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
    return "" if start is None else "\n".join(lines[start : start + limit])


# Clients ------------------------------------------------------------------------------------


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


Answer = tuple[str, int, str]  # kind of request, HTTP status, error code ("" if none)
Operation = Callable[[object, random.Random, int], Answer]
Completed = Callable[[int, str], bool]  # (status, code) → whether the request did its job


def client_loop(
    client: object, operation: Operation, rng: random.Random, clock: dict, tally: Tally, completed: Completed
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
    server: Server,
    name: str,
    clients: list,
    operation: Operation,
    seconds: float,
    seed: int,
    completed: Completed,
) -> Phase:
    """Each client runs one workload at once for `seconds`; the phase lasts until the last one stops."""
    clock = {"go": threading.Event(), "deadline": 0.0}
    tallies = [Tally() for _ in clients]
    loops = [
        (client, operation, random.Random(seed + i), clock, tallies[i], completed)
        for i, client in enumerate(clients)
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


# A database under test ----------------------------------------------------------------------


@dataclass
class Target:
    """A database under test: its name, URL, the two workloads compared, and what happened."""

    name: str
    url: str
    baseline: str  # the workload the measured one is compared with
    measured: str
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
        """The ratio CPU cost alone allows: the baseline's app CPU per request over the measured one's."""
        baseline, measured = self.app_cpu_ms(self.baseline), self.app_cpu_ms(self.measured)
        return baseline / measured if baseline and measured else None

    def merged(self, workload: str) -> Tally:
        tally = Tally()
        for phase in self.timed(workload):
            tally.add(phase.tally)
        return tally

    def ratio(self) -> float:
        return self.rate(self.measured) / self.rate(self.baseline)


def measure(
    target: Target, run: Callable[[str, float, int], Phase], args: argparse.Namespace, seed: int
) -> None:
    """Warm up, then timed rounds of the baseline and the measured workload, alternating which goes first.

    `run(workload, seconds, seed)` runs one phase; each phase gets seeds of its own.
    """
    workloads = (target.baseline, target.measured)
    target.load = os.getloadavg()[0]
    if args.warmup > 0:
        for name in workloads:
            target.everything.add(run(name, args.warmup, seed).tally)
            seed += args.clients
    for round_no in range(args.rounds):
        order = workloads if round_no % 2 == 0 else workloads[::-1]
        for name in order:
            say(f"  {target.name}: round {round_no + 1}/{args.rounds}, {name} for {args.seconds:g} s")
            phase = run(name, args.seconds, seed)
            seed += args.clients
            target.phases.append(phase)
            target.everything.add(phase.tally)


def run_benchmark(
    args: argparse.Namespace,
    label: str,
    database: str,
    bench: Callable[[str, str, Path], Target],
    report: Callable[[list[Target], list[str]], None],
) -> None:
    """`bench(name, url, workdir)` on SQLite, then PostgreSQL (or the --only one), then `report`.

    Exits with status 1 if a check failed on any database (a missed target does not count).
    """
    targets, skipped = [], []
    for name in [args.only] if args.only else ["sqlite", "postgresql"]:
        with scratch_database(name, label, args.postgres, database) as prepared:
            if prepared is None:
                skipped.append(name)
                continue
            target = bench(name, *prepared)
            report_problems(target, prepared[1])
            targets.append(target)
    if not targets:
        raise SystemExit("nothing measured")
    report(targets, skipped)
    if any(t.problems for t in targets):
        sys.exit(1)


def report_problems(target: Target, workdir: Path) -> None:
    """Say what failed the checks, with the first traceback the servers logged."""
    if not target.problems:
        return
    logs = sorted(log.stem for log in workdir.glob("*.log"))
    logged = next(filter(None, (server_errors_logged(workdir, log_name=name) for name in logs)), "")
    say(f"{target.name}: PROBLEMS: {'; '.join(target.problems)}" + (f"\n{logged}" if logged else ""))


# Reports ------------------------------------------------------------------------------------


def optional(value: float | None, spec: str = ".2f") -> str:
    """A number formatted, or "n/a"."""
    return "n/a" if value is None else format(value, spec)


def milliseconds(latencies: list[float], quantile: int) -> float:
    """The given percentile (50 or 95) of the latencies, in ms."""
    if len(latencies) < 2:
        return float("nan")
    return statistics.quantiles(latencies, n=100)[quantile - 1] * 1000


def print_setup(targets: list[Target], skipped: list[str], setup: str) -> None:
    """Comment lines naming the databases, the machine, the code, the bench's `setup` and the load."""
    versions = ", ".join(t.version for t in targets)
    print(f"# {versions}, Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"# patron {source_revision()}; {setup}")
    loads = ", ".join(f"{t.name} {t.load:.1f}" for t in targets)
    print(f"# load average when measuring began (other processes included): {loads}")
    for name in skipped:
        print(f"# {name}: skipped (server unreachable)")


Column = tuple[str, int, Callable[[Tally], int]]  # heading, width, count from a workload's answers


def print_table(targets: list[Target], columns: list[Column]) -> None:
    """One row per database and workload: completed requests, rate, latency, the bench's counts, errors."""
    headings = "".join(f" {heading:>{width}}" for heading, width, _count in columns)
    print(
        f"{'database':<11} {'workload':<8} {'done':>7} {'ops/s':>8} {'p50 ms':>7} {'p95 ms':>7}{headings} "
        f"{'5xx':>4} {'app CPU ms':>10} {'client CPU':>10}"
    )
    for t in targets:
        for workload in (t.baseline, t.measured):
            tally = t.merged(workload)
            counts = "".join(f" {count(tally):>{width}}" for _heading, width, count in columns)
            p50, p95 = milliseconds(tally.latencies, 50), milliseconds(tally.latencies, 95)
            print(
                f"{t.name:<11} {workload:<8} {tally.completed:>7} {t.rate(workload):>8.1f} "
                f"{p50:>7.1f} {p95:>7.1f}{counts} "
                f"{tally.server_errors:>4} {optional(t.app_cpu_ms(workload), '.2f'):>10} "
                f"{t.client_load(workload):>9.0f}%"
            )


def print_verdicts(targets: list[Target], goals: dict[str, float]) -> None:
    """Each database's ratio against its goal (if it has one), and the ratio CPU cost alone allows."""
    for t in targets:
        goal = goals.get(t.name)
        verdict = "" if goal is None else f", target >= {goal} {'met' if t.ratio() >= goal else 'MISSED'}"
        print(f"# {t.name}: {t.measured} ops/s / {t.baseline} ops/s = {t.ratio():.2f}{verdict}")
        bound = optional(t.cpu_bound_ratio())
        print(f"#   CPU-bound ratio ({t.baseline} app CPU / {t.measured} app CPU per request): {bound}")


def print_report(
    targets: list[Target],
    skipped: list[str],
    setup: str,
    columns: list[Column],
    goals: dict[str, float],
    checked: str,
    found: Callable[[Target], str],
) -> None:
    """Setup lines, the table, verdicts and checks, then one `ratio NAME: VALUE` line per database.

    A check line says `ok, <checked>` or what failed; under it, `found(target)` says what the tables hold.
    """
    print_setup(targets, skipped, setup)
    print_table(targets, columns)
    print_verdicts(targets, goals)
    for t in targets:
        print(f"# check {t.name}: {'FAILED: ' + '; '.join(t.problems) if t.problems else 'ok, ' + checked}")
        print(f"#   {found(t)}")
    for t in targets:
        print(f"ratio {t.name}: {t.ratio():.2f}")
