"""Business hours (chat.hours): no schedule means always open; weekly hours read in the schedule's
zone; overnight openings; holidays and special hours replace a day's weekly hours; touching
openings merge; DST days give the right UTC instants; a call costs at most three queries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from chat.hours import Hours, next_open_text, support_hours
from chat.models import SupportException, SupportHours, SupportSchedule

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WEEKDAYS = (MON, TUE, WED, THU, FRI)


def schedule(zone: str = "Europe/Paris", *rows: tuple[int, str, str]) -> SupportSchedule:
    """An active schedule with weekly rows (weekday, "HH:MM" opens, "HH:MM" closes)."""
    made = SupportSchedule.objects.create(name="Support", timezone=zone, active=True)
    SupportHours.objects.bulk_create(
        SupportHours(
            schedule=made,
            weekday=weekday,
            opens=time.fromisoformat(opens),
            closes=time.fromisoformat(closes),
        )
        for weekday, opens, closes in rows
    )
    return made


def office_hours(zone: str = "Europe/Paris") -> SupportSchedule:
    """Monday to Friday, 09:00 to 17:00."""
    return schedule(zone, *((day, "09:00", "17:00") for day in WEEKDAYS))


def exception(
    made: SupportSchedule, day: date, hours: tuple[str, str] | None = None
) -> SupportException:
    """A holiday (no hours) or special hours on a date."""
    opens, closes = hours or (None, None)
    return SupportException.objects.create(
        schedule=made,
        date=day,
        closed=hours is None,
        opens=time.fromisoformat(opens) if opens else None,
        closes=time.fromisoformat(closes) if closes else None,
    )


def paris(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- no schedule --------------------------------------------------------------------------------


def test_no_active_schedule_means_always_open():
    SupportSchedule.objects.create(name="Old", timezone="Europe/Paris", active=False)
    now = utc(2025, 6, 15, 3, 0)  # a Sunday night: the inactive schedule is ignored
    hours = support_hours(now=now)
    assert hours == Hours(
        open=True, always_open=True, timezone="UTC", closes_at=None, next_open_at=None, as_of=now
    )
    assert next_open_text(hours) is None


# --- weekly hours -------------------------------------------------------------------------------


def test_open_inside_weekly_hours_read_in_the_schedule_zone():
    office_hours()
    # Wednesday 11 June 2025, Paris is UTC+2: 07:30 UTC is 09:30 there (a UTC reading says closed).
    hours = support_hours(now=utc(2025, 6, 11, 7, 30))
    assert hours.open is True
    assert hours.always_open is False
    assert hours.timezone == "Europe/Paris"
    assert hours.closes_at == utc(2025, 6, 11, 15, 0)
    assert hours.next_open_at is None
    assert next_open_text(hours) is None


def test_closed_before_opening_says_today():
    office_hours()
    hours = support_hours(now=utc(2025, 6, 11, 6, 30))  # 08:30 in Paris
    assert hours.open is False
    assert hours.closes_at is None
    assert hours.next_open_at == utc(2025, 6, 11, 7, 0)
    assert next_open_text(hours) == "today at 09:00 (Europe/Paris)"


def test_closed_after_closing_says_tomorrow():
    office_hours()
    hours = support_hours(now=paris(2025, 6, 11, 17, 0))  # closing time itself is closed
    assert hours.open is False
    assert hours.next_open_at == utc(2025, 6, 12, 7, 0)
    assert next_open_text(hours) == "tomorrow at 09:00 (Europe/Paris)"


def test_local_date_differs_from_the_utc_date():
    office_hours("Asia/Tokyo")
    # Sunday 23:30 UTC is Monday 08:30 in Tokyo: Monday's opening is "today", at 00:00 UTC.
    hours = support_hours(now=utc(2025, 6, 15, 23, 30))
    assert hours.open is False
    assert hours.next_open_at == utc(2025, 6, 16, 0, 0)
    assert next_open_text(hours) == "today at 09:00 (Asia/Tokyo)"
    assert support_hours(now=utc(2025, 6, 16, 0, 0)).open is True


def test_next_opening_over_a_weekend_is_monday():
    office_hours()
    for now in (paris(2025, 6, 13, 17, 30), paris(2025, 6, 14, 12, 0), paris(2025, 6, 16, 8, 59)):
        hours = support_hours(now=now)
        assert hours.open is False, now
        assert hours.next_open_at == utc(2025, 6, 16, 7, 0), now
    assert next_open_text(support_hours(now=paris(2025, 6, 13, 17, 30))) == (
        "Monday 09:00 (Europe/Paris)"
    )


def test_overnight_opening_runs_into_the_next_day():
    schedule("Europe/Paris", (MON, "22:00", "06:00"))
    late = support_hours(now=paris(2025, 6, 16, 23, 0))  # Monday night
    assert late.open is True
    assert late.closes_at == paris(2025, 6, 17, 6, 0)
    early = support_hours(now=paris(2025, 6, 17, 5, 0))  # Tuesday morning, yesterday's opening
    assert early.open is True
    assert early.closes_at == paris(2025, 6, 17, 6, 0)
    after = support_hours(now=paris(2025, 6, 17, 6, 0))
    assert after.open is False
    assert after.next_open_at == paris(2025, 6, 23, 22, 0)
    assert next_open_text(after) == "Monday 22:00 (Europe/Paris)"


def test_touching_and_overlapping_openings_merge():
    schedule(
        "Europe/Paris",
        (MON, "09:00", "13:00"),
        (MON, "12:00", "14:00"),  # overlaps
        (MON, "14:00", "00:00"),  # touches; 00:00 is the end of the day
        (TUE, "00:00", "02:00"),  # touches across midnight
        (TUE, "10:00", "11:00"),
    )
    hours = support_hours(now=paris(2025, 6, 16, 9, 30))
    assert hours.open is True
    assert hours.closes_at == paris(2025, 6, 17, 2, 0)
    gap = support_hours(now=paris(2025, 6, 17, 2, 0))
    assert gap.open is False
    assert gap.next_open_at == paris(2025, 6, 17, 10, 0)


def test_open_all_week_has_no_closing_time():
    schedule(
        "Europe/Paris",
        *((day, "00:00", "12:00") for day in range(7)),
        *((day, "12:00", "00:00") for day in range(7)),
    )
    hours = support_hours(now=paris(2025, 6, 16, 3, 0))
    assert hours.open is True
    assert hours.always_open is False
    assert hours.closes_at is None


def test_no_opening_within_a_year_is_unknown():
    made = schedule("Europe/Paris")  # active, but with no hours at all
    hours = support_hours(now=paris(2025, 6, 16, 10, 0))
    assert hours == Hours(
        open=False,
        always_open=False,
        timezone="Europe/Paris",
        closes_at=None,
        next_open_at=None,
        as_of=paris(2025, 6, 16, 10, 0),
    )
    assert next_open_text(hours) is None
    # Special hours in eleven months are found.
    exception(made, date(2026, 5, 15), ("10:00", "12:00"))
    later = support_hours(now=paris(2025, 6, 16, 10, 0))
    assert later.next_open_at == paris(2026, 5, 15, 10, 0)
    assert next_open_text(later) == "Friday 15 May 10:00 (Europe/Paris)"


# --- exceptions ---------------------------------------------------------------------------------


def test_holiday_is_closed_all_day_and_the_next_opening_follows_it():
    made = office_hours()
    exception(made, date(2025, 7, 14))  # Monday, Bastille Day
    holiday = support_hours(now=paris(2025, 7, 14, 10, 0))
    assert holiday.open is False
    assert holiday.next_open_at == paris(2025, 7, 15, 9, 0)
    assert next_open_text(holiday) == "tomorrow at 09:00 (Europe/Paris)"
    friday = support_hours(now=paris(2025, 7, 11, 18, 0))
    assert friday.next_open_at == paris(2025, 7, 15, 9, 0)
    assert next_open_text(friday) == "Tuesday 09:00 (Europe/Paris)"


def test_a_long_closure_names_the_date():
    made = office_hours()
    for day in range(4, 16):  # closed from Monday 4 to Friday 15 August
        exception(made, date(2025, 8, day))
    hours = support_hours(now=paris(2025, 8, 1, 18, 0))
    assert hours.next_open_at == paris(2025, 8, 18, 9, 0)
    assert next_open_text(hours) == "Monday 18 August 09:00 (Europe/Paris)"


def test_a_holiday_keeps_the_overnight_opening_of_the_evening_before():
    made = schedule("Europe/Paris", *((day, "20:00", "02:00") for day in range(7)))
    exception(made, date(2025, 12, 25))
    early = support_hours(now=paris(2025, 12, 25, 1, 0))  # Christmas Eve's opening still runs
    assert early.open is True
    assert early.closes_at == paris(2025, 12, 25, 2, 0)
    evening = support_hours(now=paris(2025, 12, 25, 21, 0))
    assert evening.open is False
    assert evening.next_open_at == paris(2025, 12, 26, 20, 0)


def test_special_hours_replace_the_weekly_hours_of_their_date():
    made = office_hours()
    exception(made, date(2025, 12, 24), ("09:00", "12:00"))  # Wednesday
    exception(made, date(2025, 12, 25))
    exception(made, date(2025, 12, 27), ("10:00", "14:00"))  # a Saturday
    morning = support_hours(now=paris(2025, 12, 24, 11, 0))
    assert morning.open is True
    assert morning.closes_at == utc(2025, 12, 24, 11, 0)  # noon in Paris (UTC+1)
    afternoon = support_hours(now=paris(2025, 12, 24, 13, 0))  # weekly hours would be open
    assert afternoon.open is False
    assert afternoon.next_open_at == paris(2025, 12, 26, 9, 0)
    saturday = support_hours(now=paris(2025, 12, 27, 10, 30))  # weekly hours would be closed
    assert saturday.open is True
    assert saturday.closes_at == paris(2025, 12, 27, 14, 0)


# --- DST ----------------------------------------------------------------------------------------


def test_spring_forward_day_gives_the_right_utc_instants():
    # Paris, Sunday 30 March 2025: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    schedule(
        "Europe/Paris",
        (FRI, "09:00", "17:00"),
        (SAT, "22:00", "06:00"),
        (MON, "09:00", "17:00"),
    )
    night = support_hours(now=utc(2025, 3, 29, 21, 0))  # Saturday 22:00 CET
    assert night.open is True
    assert night.closes_at == utc(2025, 3, 30, 4, 0)  # 06:00 CEST: a seven-hour night
    friday = support_hours(now=utc(2025, 3, 28, 16, 30))  # Friday 17:30 CET
    assert friday.next_open_at == utc(2025, 3, 29, 21, 0)
    sunday = support_hours(now=utc(2025, 3, 30, 4, 0))  # Sunday 06:00 CEST
    assert sunday.open is False
    assert sunday.next_open_at == utc(2025, 3, 31, 7, 0)  # Monday 09:00 CEST, not 08:00 UTC
    assert next_open_text(sunday) == "tomorrow at 09:00 (Europe/Paris)"


def test_a_time_skipped_by_spring_forward_opens_after_the_jump():
    schedule("Europe/Paris", (SUN, "02:30", "10:00"))
    hours = support_hours(now=utc(2025, 3, 29, 12, 0))
    assert hours.next_open_at == utc(2025, 3, 30, 1, 30)  # 03:30 CEST
    assert support_hours(now=utc(2025, 3, 30, 1, 15)).open is False  # 03:15 CEST
    assert support_hours(now=utc(2025, 3, 30, 1, 30)).open is True


def test_fall_back_day_gives_the_right_utc_instants():
    # Paris, Sunday 26 October 2025: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
    schedule(
        "Europe/Paris",
        (FRI, "09:00", "17:00"),
        (SUN, "00:00", "06:00"),
        (SUN, "09:00", "17:00"),
        (MON, "09:00", "17:00"),
    )
    night = support_hours(now=utc(2025, 10, 25, 22, 0))  # Sunday 00:00 CEST
    assert night.open is True
    assert night.closes_at == utc(2025, 10, 26, 5, 0)  # 06:00 CET: a seven-hour night
    sunday = support_hours(now=utc(2025, 10, 26, 6, 0))
    assert sunday.next_open_at == utc(2025, 10, 26, 8, 0)  # 09:00 CET
    friday = support_hours(now=utc(2025, 10, 24, 15, 30))  # Friday 17:30 CEST
    assert friday.next_open_at == utc(2025, 10, 25, 22, 0)
    assert support_hours(now=utc(2025, 10, 26, 16, 0)).next_open_at == utc(2025, 10, 27, 8, 0)


def test_a_time_repeated_by_fall_back_means_its_first_occurrence():
    schedule("Europe/Paris", (SUN, "02:30", "04:00"))
    hours = support_hours(now=utc(2025, 10, 25, 12, 0))
    assert hours.next_open_at == utc(2025, 10, 26, 0, 30)  # 02:30 CEST, the first one
    during = support_hours(now=utc(2025, 10, 26, 1, 30))  # 02:30 CET, the second one
    assert during.open is True
    assert during.closes_at == utc(2025, 10, 26, 3, 0)  # 04:00 CET


# --- cost and robustness ------------------------------------------------------------------------


def test_a_call_costs_at_most_three_queries(django_assert_max_num_queries):
    made = office_hours()
    for day in range(1, 29):
        exception(made, date(2026, 2, day))
    with django_assert_max_num_queries(3):
        support_hours(now=paris(2026, 2, 10, 10, 0))  # a month of holidays: the long scan
    with django_assert_max_num_queries(3):
        support_hours(now=paris(2026, 3, 4, 10, 0))
    made.active = False
    made.save()
    with django_assert_max_num_queries(1):
        support_hours(now=paris(2026, 3, 4, 10, 0))


def test_an_unknown_stored_zone_reads_as_utc():
    office_hours("Mars/Olympus_Mons")
    hours = support_hours(now=utc(2025, 6, 11, 8, 0))
    assert hours.timezone == "UTC"
    assert hours.open is False
    assert hours.next_open_at == utc(2025, 6, 11, 9, 0)


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        support_hours(now=datetime(2025, 6, 11, 8, 0))
