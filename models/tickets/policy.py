"""SLA policies per priority and the business-hours calendar they are counted on."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column

from models import Model, db, one_of
from models.tickets.sla import Calendar, add_business_time

PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_LABELS = {
    "low": _l("Low"),
    "normal": _l("Normal"),
    "high": _l("High"),
    "urgent": _l("Urgent"),
}
# priority: (first response minutes, resolution minutes, escalate to)
DEFAULT_POLICIES = {
    "urgent": (30, 4 * 60, None),
    "high": (60, 8 * 60, "urgent"),
    "normal": (4 * 60, 24 * 60, "high"),
    "low": (8 * 60, 72 * 60, "normal"),
}


class SlaPolicy(Model):
    """Response and resolution targets for one priority, in business minutes."""

    __tablename__ = "sla_policy"
    __table_args__ = (
        one_of("priority", PRIORITIES, "priority"),
        sa.CheckConstraint("first_response_minutes > 0 AND resolution_minutes > 0", name="positive"),
        sa.CheckConstraint(
            "escalate_to IS NULL OR escalate_to IN ('low', 'normal', 'high', 'urgent')", name="escalate_to"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[str] = mapped_column(sa.String(16), unique=True)
    first_response_minutes: Mapped[int]
    resolution_minutes: Mapped[int]
    escalate_to: Mapped[str | None] = mapped_column(sa.String(16))

    def __str__(self) -> str:
        return str(PRIORITY_LABELS.get(self.priority, self.priority))


class BusinessCalendar(Model):
    """The team's opening hours (one row). Empty hours mean 24×7."""

    __tablename__ = "business_calendar"

    id: Mapped[int] = mapped_column(primary_key=True)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    # JSON: {"0": ["09:00", "18:00"], ...} with weekday 0 = Monday; "" or "{}" = 24×7.
    weekly_hours: Mapped[str] = mapped_column(sa.Text, default="")

    def __str__(self) -> str:
        return f"{self.timezone}: {self.weekly_hours or '24×7'}"


class Holiday(Model):
    """A day on which the team is closed and SLA clocks do not run."""

    __tablename__ = "holiday"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")

    def __str__(self) -> str:
        return f"{self.day.isoformat()} {self.name}"


def parse_weekly_hours(text: str) -> dict[int, tuple[time, time]] | None:
    """Opening hours from their JSON form; None means 24×7. Raises ValueError when malformed."""
    if not text or not text.strip() or text.strip() == "{}":
        return None
    try:
        raw = json.loads(text)
        hours = {
            int(day): (time.fromisoformat(span[0]), time.fromisoformat(span[1])) for day, span in raw.items()
        }
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f'opening hours must look like {{"0": ["09:00", "18:00"]}}: {exc}') from None
    if not hours or any(day not in range(7) for day in hours):
        raise ValueError("weekdays run from 0 (Monday) to 6 (Sunday)")
    return hours


def load_calendar() -> Calendar:
    """The business calendar stored in the database (24×7 in UTC when none is set)."""
    row = db.session.scalar(sa.select(BusinessCalendar).limit(1))
    holidays = frozenset(db.session.scalars(sa.select(Holiday.day)))
    if row is None:
        return Calendar(holidays=holidays)
    hours = parse_weekly_hours(row.weekly_hours)
    if hours is None:
        return Calendar(timezone=row.timezone, holidays=holidays)
    return Calendar(timezone=row.timezone, hours=hours, holidays=holidays)


def policy_for(priority: str) -> SlaPolicy:
    """The SLA policy of a priority; built-in defaults if the table lacks it."""
    policy = db.session.scalar(sa.select(SlaPolicy).where(SlaPolicy.priority == priority))
    if policy is None:
        first, resolution, escalate = DEFAULT_POLICIES[priority]
        policy = SlaPolicy(
            priority=priority,
            first_response_minutes=first,
            resolution_minutes=resolution,
            escalate_to=escalate,
        )
    return policy


def due_at(start: datetime, minutes: int, paused: timedelta, calendar: Calendar) -> datetime:
    """When a target of `minutes` business minutes falls due, after time spent paused."""
    return add_business_time(start, timedelta(minutes=minutes) + paused, calendar)
