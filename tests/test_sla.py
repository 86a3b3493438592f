"""SLA arithmetic on business calendars: nights, weekends, holidays, time zones (time fixed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.tickets.sla import TWENTY_FOUR_SEVEN, Calendar, add_business_time, business_time_between

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = Calendar(
    timezone="Asia/Shanghai",
    hours={day: (time(9), time(18)) for day in range(5)},
    holidays=frozenset({date(2026, 10, 1), date(2026, 10, 2)}),
)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_round_the_clock_adds_plain_time():
    start = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
    assert add_business_time(start, timedelta(hours=4), TWENTY_FOUR_SEVEN) == start + timedelta(hours=4)


@pytest.mark.parametrize(
    "start, hours, expected",
    [
        (local(2026, 11, 23, 10, 0), 2, local(2026, 11, 23, 12, 0)),  # within one day
        (local(2026, 11, 23, 17, 30), 1, local(2026, 11, 24, 9, 30)),  # across the night
        (local(2026, 11, 20, 17, 0), 2, local(2026, 11, 23, 10, 0)),  # Friday → Monday
        (local(2026, 11, 21, 12, 0), 1, local(2026, 11, 23, 10, 0)),  # opened on Saturday
        (local(2026, 11, 23, 7, 0), 1, local(2026, 11, 23, 10, 0)),  # before opening
        (local(2026, 9, 30, 17, 0), 2, local(2026, 10, 5, 10, 0)),  # holiday Thu–Fri, then weekend
        (local(2026, 11, 23, 9, 0), 9 * 5 + 1, local(2026, 11, 30, 10, 0)),  # a whole week and an hour
    ],
)
def test_business_hours_skip_nights_weekends_and_holidays(start, hours, expected):
    assert add_business_time(start, timedelta(hours=hours), OFFICE) == expected


def test_time_between_counts_only_open_hours():
    assert business_time_between(local(2026, 11, 20, 17, 0), local(2026, 11, 23, 10, 0), OFFICE) == timedelta(
        hours=2
    )
    assert business_time_between(local(2026, 11, 21, 9, 0), local(2026, 11, 22, 18, 0), OFFICE) == timedelta(
        0
    )
    assert business_time_between(local(2026, 11, 23, 12, 0), local(2026, 11, 23, 11, 0), OFFICE) == timedelta(
        0
    )


def test_adding_then_measuring_agrees():
    start = local(2026, 11, 19, 16, 45)
    for minutes in (1, 59, 60, 61, 540, 541, 2000):
        end = add_business_time(start, timedelta(minutes=minutes), OFFICE)
        assert business_time_between(start, end, OFFICE) == timedelta(minutes=minutes)


def test_daylight_saving_change_keeps_local_opening_hours():
    new_york = Calendar("America/New_York", {day: (time(9), time(17)) for day in range(7)})
    # DST ends on 2026-11-01 (UTC offset -4 → -5): 09:00 local is 13:00 UTC before, 14:00 after.
    start = datetime(2026, 10, 31, 20, 0, tzinfo=UTC)  # 16:00 local on Saturday
    due = add_business_time(start, timedelta(hours=2), new_york)
    assert due == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)  # 10:00 local on Sunday


def test_a_calendar_that_never_opens_is_refused():
    with pytest.raises(ValueError):
        add_business_time(local(2026, 11, 23, 9, 0), timedelta(hours=1), Calendar("UTC", hours={}))
