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


@pytest.mark.redis
def test_login_throttle_is_shared_between_workers_through_redis(database_url, tmp_path, key_material):
    """Two app processes (workers) count one account's failures together in Redis."""
    require_service(redis_available(), f"no Redis at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    config = base_config(tmp_path, database_url, key_material) | {"RATELIMIT_STORAGE_URI": REDIS_URL}
    workers = []
    for _ in range(2):
        worker = create_app(config)
        worker.test_client_class = IsolatedClient
        workers.append(worker)
    with workers[0].app_context():
        make_staff(Role.AGENT)
        statuses = []
        for attempt in range(6):
            client = workers[attempt % 2].test_client()
            statuses.append(AuthActions(client).login(Role.AGENT, password=f"wrong-{attempt}").status_code)
        db.session.remove()
    for worker in workers:
        with worker.app_context():
            db.engine.dispose()
    assert statuses == [200] * 5 + [429]
    redis.Redis.from_url(REDIS_URL).flushdb()
