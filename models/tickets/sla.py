"""Business-hours arithmetic for SLA clocks: pure functions, no database.

A calendar has a time zone, opening hours per weekday and holidays. Durations are
counted only inside opening hours; 24×7 is the calendar open all day, every day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS_SEARCHED = 3660  # ten years: a calendar with no opening hours at all is refused


@dataclass(frozen=True)
class Calendar:
    """Opening hours: weekday (0 = Monday) → (open, close) in local time, or absent when closed."""

    timezone: str = "UTC"
    hours: dict[int, tuple[time, time]] = field(
        default_factory=lambda: {day: (time(0), time(0)) for day in range(7)}
    )
    holidays: frozenset[date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The open interval of a local day in UTC, or None when the day is closed."""
        if day in self.holidays or day.weekday() not in self.hours:
            return None
        opens, closes = self.hours[day.weekday()]
        start = datetime.combine(day, opens, self.zone)
        # A closing time at or before the opening time means "until midnight".
        end = datetime.combine(day + timedelta(days=1) if closes <= opens else day, closes, self.zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def windows_from(self, moment: datetime):
        """Open intervals (UTC) from the local day of `moment` onwards, clipped to start at it."""
        day = moment.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS_SEARCHED):
            window = self.window(day)
            day += timedelta(days=1)
            if window is None or window[1] <= moment:
                continue
            yield max(window[0], moment), window[1]
        raise ValueError("the business calendar has no opening hours")


TWENTY_FOUR_SEVEN = Calendar()


def add_business_time(start: datetime, duration: timedelta, calendar: Calendar) -> datetime:
    """The moment `duration` of open time after `start`."""
    remaining = duration
    if remaining <= timedelta(0):
        return start
    for opens, closes in calendar.windows_from(start):
        if closes - opens >= remaining:
            return opens + remaining
        remaining -= closes - opens
    raise AssertionError("unreachable")  # pragma: no cover


def business_time_between(start: datetime, end: datetime, calendar: Calendar) -> timedelta:
    """Open time between two moments (zero if end is not after start)."""
    total = timedelta(0)
    if end <= start:
        return total
    for opens, closes in calendar.windows_from(start):
        if opens >= end:
            break
        total += min(closes, end) - opens
    return total
