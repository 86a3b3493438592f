"""Work done in separate processes by the concurrency tests (importable for `spawn`)."""

from __future__ import annotations

from decimal import Decimal


def hammer(config: dict, task: str, customer_id: int, reward_id: int, attempts: int, worker: int) -> dict:
    """Run one kind of operation `attempts` times in a fresh app; count the outcomes."""
    from app import create_app
    from models import db
    from models.loyalty.programme import InsufficientPoints
    from models.loyalty.purchases import NewPurchase, record_purchase
    from models.loyalty.rewards import OutOfStock, redeem
    from models.uow import Actor, unit_of_work

    app = create_app(config)
    actor = Actor.system(f"worker-{worker}")
    outcome: dict = {"ok": 0, "refused": 0, "errors": []}
    with app.app_context():
        for attempt in range(attempts):
            try:
                with unit_of_work(actor):
                    if task == "redeem":
                        redeem(customer_id, reward_id)
                        created = True
                    else:  # the same orders from every worker: each must be recorded once
                        spec = NewPurchase(customer_id, "pos", f"ORDER-{attempt}", Decimal("10"), "CNY")
                        created = record_purchase(spec).created
                outcome["ok"] += created
            except (InsufficientPoints, OutOfStock):
                outcome["refused"] += 1
            except Exception as exc:  # anything else (a WriteBusy too) is a failure the test reports
                outcome["errors"].append(repr(exc))
        db.session.remove()
        db.engine.dispose()
    return outcome
