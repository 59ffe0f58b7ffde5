"""Business hours: whether people answer now, and when they answer next.

The hand-off asks this before it promises a person: while support is closed it offers a ticket
and tells the customer when people are back. The hours live in the one active
``SupportSchedule`` (staff edit it in the admin); with no active schedule support is always open,
so a deployment that never configures hours never turns customers away.

How a schedule reads:

- Weekly rows are wall-clock times in the schedule's zone. A row whose ``closes`` is not after its
  ``opens`` runs past midnight into the next day (``closes`` 00:00 is the end of the day).
- An opening belongs to the day it starts on. A ``SupportException`` replaces the openings that
  start on its date: closed all day, or only its own hours. An overnight opening that started the
  evening before still runs into the morning of a holiday.
- Openings that touch or overlap merge into one, so "closes at" is when people really leave.
- Wall times become instants through zoneinfo (PEP 495), so DST days come out right: a time the
  spring-forward jump skips is read with the offset from before the jump and lands that much
  later (02:30 on the Paris spring-forward day is 03:30 CEST); a time the autumn repeats means
  its first occurrence.

Nothing is cached: a call reads the schedule, its weekly rows and the exceptions in the scanned
window (three queries), so an admin edit applies to the very next request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from django.utils import timezone

from chat.models import SupportException, SupportSchedule

log = structlog.get_logger("chat.hours")

# How far ahead a next opening is looked for: a year covers any holiday season; a schedule with
# no opening in that time is reported as "no next opening known".
SCAN_DAYS = 366
# A short first scan answers almost every call (the next opening is rarely a week away); the full
# year is computed only when the short scan cannot decide.
SHORT_SCAN_DAYS = 8

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

type Span = tuple[time, time]
type Opening = tuple[datetime, datetime]
type Decision = tuple[bool, datetime | None]


@dataclass(frozen=True)
class Hours:
    """Whether people answer at one instant, and until or from when."""

    open: bool  # people answer now
    always_open: bool  # no active schedule: support is always open
    timezone: str  # the active schedule's IANA zone ("UTC" with none)
    # When open: when the current opening ends (None if always open, or open for the whole year
    # scanned).
    closes_at: datetime | None
    # When closed: start of the next opening (aware, UTC); None if none within SCAN_DAYS.
    next_open_at: datetime | None
    # The instant described; next_open_text() says "today"/"tomorrow" relative to it.
    as_of: datetime | None = None


def support_hours(*, now: datetime | None = None) -> Hours:
    """Whether support is open at ``now`` (default: the current time), and until or from when."""
    now = timezone.now() if now is None else now
    if timezone.is_naive(now):
        raise ValueError("support_hours() needs an aware datetime")
    now = now.astimezone(UTC)
    schedule = SupportSchedule.objects.filter(active=True).order_by("pk").first()
    if schedule is None:
        return Hours(
            open=True,
            always_open=True,
            timezone="UTC",
            closes_at=None,
            next_open_at=None,
            as_of=now,
        )
    zone_name, zone = schedule_zone(schedule)
    today = now.astimezone(zone).date()
    # From yesterday: an overnight opening that started yesterday may still be running.
    first_day = today - timedelta(days=1)
    weekly: dict[int, list[Span]] = {}
    for row in schedule.hours.all():
        weekly.setdefault(row.weekday, []).append((row.opens, row.closes))
    exceptions = {
        exception.date: exception
        for exception in schedule.exceptions.filter(
            date__range=(first_day, today + timedelta(days=SCAN_DAYS))
        )
    }
    for days in (SHORT_SCAN_DAYS, SCAN_DAYS):
        last_day = today + timedelta(days=days)
        spans = _day_spans(first_day, last_day, weekly=weekly, exceptions=exceptions)
        openings = _merge(_openings(spans, zone=zone))
        # An opening reaching the first unscanned day may go on, and a later one may start: past
        # this instant the scan knows nothing.
        horizon = _instant(last_day + timedelta(days=1), time(0), zone)
        is_open, when = _decide(now, openings, horizon=horizon)
        if when is not None:
            break
    return Hours(
        open=is_open,
        always_open=False,
        timezone=zone_name,
        closes_at=when if is_open else None,
        next_open_at=None if is_open else when,
        as_of=now,
    )


def next_open_text(hours: Hours) -> str | None:
    """When support opens next, for a customer ("Monday 09:00 (Europe/Paris)"); None when open
    or unknown."""
    if hours.open or hours.next_open_at is None:
        return None
    zone = _zone(hours.timezone) or UTC
    opens = hours.next_open_at.astimezone(zone)
    today = (hours.as_of or timezone.now()).astimezone(zone).date()
    days = (opens.date() - today).days
    clock = f"{opens:%H:%M}"
    if days <= 0:
        when = f"today at {clock}"
    elif days == 1:
        when = f"tomorrow at {clock}"
    elif days < 7:
        when = f"{WEEKDAYS[opens.weekday()]} {clock}"
    else:
        # A weekday alone would be ambiguous past a week (a long holiday closure).
        when = f"{WEEKDAYS[opens.weekday()]} {opens.day} {MONTHS[opens.month - 1]} {clock}"
    return f"{when} ({hours.timezone})"


def schedule_zone(schedule: SupportSchedule) -> tuple[str, ZoneInfo]:
    """The schedule's zone name and zone; UTC (logged) if the stored name is not a zone."""
    zone = _zone(schedule.timezone)
    if zone is None:
        # The admin refuses unknown zones; a bad value from elsewhere should not break chat.
        log.warning("hours.unknown_timezone", schedule_id=schedule.pk, timezone=schedule.timezone)
        return "UTC", ZoneInfo("UTC")
    return schedule.timezone, zone


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _day_spans(
    first_day: date,
    last_day: date,
    *,
    weekly: dict[int, list[Span]],
    exceptions: dict[date, SupportException],
) -> Iterator[tuple[date, Span]]:
    """Each day's wall-clock openings, with a day's exception in place of its weekly hours."""
    day = first_day
    while day <= last_day:
        exception = exceptions.get(day)
        if exception is None:
            spans = weekly.get(day.weekday(), [])
        elif exception.closed or exception.opens is None or exception.closes is None:
            # Special hours without both times cannot be read (the admin refuses them): the safe
            # reading promises no one.
            spans = []
        else:
            spans = [(exception.opens, exception.closes)]
        for span in spans:
            yield day, span
        day += timedelta(days=1)


def _openings(spans: Iterable[tuple[date, Span]], *, zone: ZoneInfo) -> Iterator[Opening]:
    for day, (opens, closes) in spans:
        start = _instant(day, opens, zone)
        end_day = day if closes > opens else day + timedelta(days=1)
        end = _instant(end_day, closes, zone)
        # A wall-clock span can vanish on a DST day (opens 02:30 in the skipped hour, closes 03:00).
        if end > start:
            yield start, end


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a day in a zone (fold 0: see the module doc)."""
    return datetime.combine(day, clock.replace(tzinfo=None, fold=0), tzinfo=zone).astimezone(UTC)


def _merge(openings: Iterable[Opening]) -> list[Opening]:
    merged: list[Opening] = []
    for start, end in sorted(openings):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _decide(now: datetime, openings: list[Opening], *, horizon: datetime) -> Decision:
    """(True, closes at) while open, else (False, next opening); None where the scan up to
    ``horizon`` cannot tell."""
    for start, end in openings:
        if end <= now:
            continue
        if start <= now:
            return True, (end if end < horizon else None)
        return False, start
    return False, None
