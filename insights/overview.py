"""The figures on the staff home page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.customer import Customer


@dataclass
class CustomerOverview:
    total: int
    new_last_30_days: int
    by_source: list[tuple[str, int]]
    top_cities: list[tuple[str, int]]
    by_language: list[tuple[str, int]]


def _grouped(session: Session, column, limit: int | None = None) -> list[tuple[str, int]]:
    count = sa.func.count(Customer.id)
    query = sa.select(column, count).group_by(column).order_by(count.desc())
    if limit:
        query = query.limit(limit)
    return [(value or "", n) for value, n in session.execute(query)]


def customer_overview(session: Session, now: datetime) -> CustomerOverview:
    """Counts of customers: all, recent, by source channel, city and language."""
    total = session.scalar(sa.select(sa.func.count(Customer.id))) or 0
    recent = (
        session.scalar(
            sa.select(sa.func.count(Customer.id)).where(Customer.created_at >= now - timedelta(days=30))
        )
        or 0
    )
    return CustomerOverview(
        total=total,
        new_last_30_days=recent,
        by_source=_grouped(session, Customer.source_channel),
        top_cities=_grouped(session, Customer.city, limit=8),
        by_language=_grouped(session, Customer.language),
    )
