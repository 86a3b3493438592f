"""Work done in separate processes by the concurrency tests (importable for `spawn`)."""

from __future__ import annotations

from decimal import Decimal


def hammer(config: dict, task: str, customer_id: int, reward_id: int, attempts: int, worker: int) -> dict:
    """Run one kind of operation `attempts` times in a fresh app; count the outcomes."""
    from app import create_app
    from models import db
    from models.loyalty import InsufficientPoints, NewPurchase, record_purchase
    from models.rewards import OutOfStock, redeem

    app = create_app(config)
    outcome = {"ok": 0, "refused": 0, "errors": []}
    with app.app_context():
        for attempt in range(attempts):
            try:
                if task == "redeem":
                    redeem(customer_id, reward_id, actor=f"worker-{worker}")
                else:  # the same orders from every worker: each must be recorded once
                    spec = NewPurchase(customer_id, "pos", f"ORDER-{attempt}", Decimal("10"), "CNY")
                    if record_purchase(spec).created:
                        outcome["ok"] += 1
                    continue
                outcome["ok"] += 1
            except (InsufficientPoints, OutOfStock):
                db.session.rollback()
                outcome["refused"] += 1
            except Exception as exc:  # anything else is a failure the test reports
                db.session.rollback()
                outcome["errors"].append(repr(exc))
        db.session.remove()
        db.engine.dispose()
    return outcome
