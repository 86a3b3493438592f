"""The parts that need outside services: PostgreSQL for the suite, Redis for shared rate limits."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from app import create_app
from models import db
from models.user import Role
from tests.conftest import AuthActions, IsolatedClient, base_config, make_staff, postgres_url, require_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def test_suite_runs_on_postgresql_when_asked(app):
    """With TEST_DATABASE_URL/DATABASE_URL pointing at PostgreSQL, every test used it."""
    require_service(postgres_url() is not None, "no PostgreSQL configured (set TEST_DATABASE_URL)")
    assert db.engine.dialect.name == "postgresql"


def test_migrations_go_down_and_up_again(tmp_path, key_material):
    url = f"sqlite:///{tmp_path / 'roundtrip.sqlite'}"
    app = create_app(base_config(tmp_path, url, key_material))
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()
        assert {"customer", "staff_user", "audit_event"} <= set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()


def two_workers(config: dict) -> list:
    """Two app instances on one database and one rate-limit store, as two worker processes are."""
    workers = []
    for _ in range(2):
        worker = create_app(config)
        worker.test_client_class = IsolatedClient
        workers.append(worker)
    return workers


def dispose(workers: list) -> None:
    for worker in workers:
        with worker.app_context():
            db.engine.dispose()


@pytest.mark.redis
def test_rate_limits_are_shared_between_workers_through_redis(database_url, tmp_path, key_material):
    """Two app processes (workers) count one address's tracking look-ups together in Redis."""
    require_service(redis_available(), f"no Redis at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    config = base_config(tmp_path, database_url, key_material) | {
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "TRACKING_RATE_LIMIT": "3 per minute",
    }
    workers = two_workers(config)
    with workers[0].app_context():
        statuses = [workers[n % 2].test_client().get("/track/no-such-code").status_code for n in range(5)]
        db.session.remove()
    dispose(workers)
    assert statuses == [404, 404, 404, 429, 429]
    redis.Redis.from_url(REDIS_URL).flushdb()


def test_sign_in_throttles_are_shared_between_workers_through_the_database(
    database_url, tmp_path, key_material
):
    """Failed sign-ins count in the database, so every worker holds the same account back."""
    workers = two_workers(base_config(tmp_path, database_url, key_material))
    with workers[0].app_context():
        make_staff(Role.AGENT)
        statuses = []
        for attempt in range(5):
            client = workers[attempt % 2].test_client()
            statuses.append(AuthActions(client).login(Role.AGENT, password=f"wrong-{attempt}").status_code)
        db.session.remove()
    dispose(workers)
    # Three failures are free, the fourth starts a delay that the fifth runs into on the other worker.
    assert statuses == [200, 200, 200, 200, 429]
