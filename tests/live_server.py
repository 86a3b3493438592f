"""A real Patron server for tests: gunicorn on a free 127.0.0.1 port, against a database the test made."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import gunicorn, server_errors_logged

# Limits a deployment sets per client address; here every client is 127.0.0.1.
GENEROUS_LIMITS = {
    "PATRON_PUBLIC_FORM_RATE_LIMIT": "100000 per minute",
    "PATRON_SURVEY_RATE_LIMIT": "100000 per minute",
    "PATRON_TRACKING_RATE_LIMIT": "100000 per minute",
    "PATRON_SIGN_IN_FREE_FAILURES_PER_ADDRESS": "1000",
}
# The test servers' staff sign in with their password alone (see base_config in tests/conftest.py).
TWO_FACTOR_OFF = {"PATRON_TWO_FACTOR_REQUIRED_ROLES": "[]"}


def server_environment(database_url: str, workdir: Path, key_material: dict) -> dict[str, str]:
    """What a deployment gives Patron: the database, an instance folder, the test's keys, a secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATRON_") and k != "DATABASE_URL"}
    keys = ",".join(f"{version}:{key}" for version, key in key_material["encryption_keys"].items())
    env.update(
        DATABASE_URL=database_url,
        PATRON_INSTANCE_PATH=str(workdir / "instance"),
        PATRON_SECRET_KEY=secrets.token_urlsafe(32),
        PATRON_ENCRYPTION_KEYS=keys,
        PATRON_BLIND_INDEX_KEY=key_material["blind_index_key"],
        RATELIMIT_STORAGE_URI="memory://",
        **GENEROUS_LIMITS,
        **TWO_FACTOR_OFF,
    )
    return env


@contextmanager
def patron_server(env: dict[str, str], workdir: Path, workers: int = 2, threads: int = 4) -> Iterator[str]:
    """Serve Patron with gunicorn's threaded workers until the block ends; yields the base URL."""
    threaded = ("--worker-class", "gthread", "--threads", str(threads))
    with gunicorn(env, workdir, workers, options=threaded) as server:
        yield f"http://127.0.0.1:{server.port}"


def first_traceback(workdir: Path) -> str:
    """The first traceback the server logged ("" if none), to explain a 5xx."""
    return server_errors_logged(workdir)
