"""Valid objects in one call."""

from __future__ import annotations

import itertools

from models import db
from models.customer import Customer

_serial = itertools.count(1)


def make_customer(**fields) -> Customer:
    """A committed customer; any field can be overridden."""
    n = next(_serial)
    values = {
        "name": f"Test Customer {n}",
        "email": f"customer{n}@example.com",
        "phone": f"+86 138 0013 {n % 10000:04d}",
        "city": "上海",
        "language": "zh_Hans_CN",
        "source_channel": "store",
    }
    values.update(fields)
    customer = Customer(**values)
    db.session.add(customer)
    db.session.commit()
    return customer


def make_ticket(now=None, **fields):
    """A committed ticket (and its tracking code); any NewTicket field can be overridden."""
    from models.ticket import NewTicket, category_by_code, open_ticket

    values = {
        "subject": "Parcel late",
        "channel": "phone",
        "priority": "normal",
        "category": category_by_code("complaint"),
        "first_message": "Where is my parcel?",
    }
    values.update(fields)
    ticket, code = open_ticket(NewTicket(**values), now=now)
    db.session.commit()
    return ticket, code


def make_reward(**fields):
    """A committed reward (a tote bag for 100 points, 5 in stock); any field can be overridden."""
    from models.rewards import Reward

    values = {"name_en": "Tote bag", "name_zh": "帆布袋", "points_cost": 100, "stock": 5}
    reward = Reward(**(values | fields))
    db.session.add(reward)
    db.session.commit()
    return reward


def audit_events(action: str) -> list:
    """The audit events of one action, oldest first."""
    import sqlalchemy as sa

    from models.audit import AuditEvent

    return list(
        db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )
