"""Several processes hammer one account: points are never spent twice, stock never oversold."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import sqlalchemy as sa

from models import db
from models.audit import AuditEvent
from models.loyalty.ledger import LoyaltyAccount, PointsEntry, adjust_points, balance_of, ledger_sum
from models.loyalty.purchases import Purchase
from models.loyalty.rewards import Redemption, Reward
from models.uow import SYSTEM, unit_of_work
from tests.conftest import base_config
from tests.factories import make_customer
from tests.loyalty_worker import hammer

WORKERS = 4


def run_workers(config: dict, task: str, customer_id: int, reward_id: int, attempts: int) -> list[dict]:
    db.session.commit()  # no snapshot of the database may outlive the workers' writes
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        futures = [
            pool.submit(hammer, config, task, customer_id, reward_id, attempts, worker)
            for worker in range(WORKERS)
        ]
        results = [future.result(timeout=240) for future in futures]
    db.session.commit()
    return results


def worker_config(app, tmp_path, database_url, key_material) -> dict:
    config = base_config(tmp_path, database_url, key_material)
    config.pop("SERVER_NAME")
    return config


def test_concurrent_redemptions_never_spend_the_same_points_twice(app, tmp_path, database_url, key_material):
    customer = make_customer()
    with unit_of_work(SYSTEM) as uow:
        adjust_points(customer.id, 300, "test balance")
        reward = uow.add(Reward(name_en="Coffee", name_zh="咖啡", points_cost=30, stock=None))
    results = run_workers(
        worker_config(app, tmp_path, database_url, key_material), "redeem", customer.id, reward.id, attempts=8
    )
    assert [r["errors"] for r in results] == [[]] * WORKERS
    assert sum(r["ok"] for r in results) == 10  # 300 points / 30 each
    assert sum(r["refused"] for r in results) == WORKERS * 8 - 10
    assert balance_of(customer.id) == 0 == ledger_sum(customer.id)
    assert db.session.scalar(sa.select(sa.func.count(Redemption.id))) == 10
    events = sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "redemption.create")
    assert db.session.scalar(events) == 10


def test_concurrent_redemptions_never_oversell_stock(app, tmp_path, database_url, key_material):
    customer = make_customer()
    with unit_of_work(SYSTEM) as uow:
        adjust_points(customer.id, 1000, "test balance")
        reward = uow.add(Reward(name_en="Umbrella", name_zh="雨伞", points_cost=1, stock=5))
    results = run_workers(
        worker_config(app, tmp_path, database_url, key_material), "redeem", customer.id, reward.id, attempts=5
    )
    assert [r["errors"] for r in results] == [[]] * WORKERS
    assert sum(r["ok"] for r in results) == 5
    assert db.session.get(Reward, reward.id).stock == 0
    assert balance_of(customer.id) == 995 == ledger_sum(customer.id)


def test_concurrent_posts_of_the_same_orders_record_each_once(app, tmp_path, database_url, key_material):
    customer = make_customer()
    results = run_workers(
        worker_config(app, tmp_path, database_url, key_material), "purchase", customer.id, 0, attempts=10
    )
    assert [r["errors"] for r in results] == [[]] * WORKERS
    assert sum(r["ok"] for r in results) == 10
    assert db.session.scalar(sa.select(sa.func.count(Purchase.id))) == 10
    assert db.session.scalar(sa.select(sa.func.count(PointsEntry.id))) == 10
    assert db.session.get(LoyaltyAccount, customer.id).balance == 100 == ledger_sum(customer.id)
    events = sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == "purchase.create")
    assert db.session.scalar(events) == 10
