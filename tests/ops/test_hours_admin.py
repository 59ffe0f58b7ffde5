"""Support hours in the admin: a superuser adds a schedule with weekly hours and an exception in
one form, and chat.hours reads it; unknown zones, empty openings, incomplete special hours and a
second active schedule are form errors (never a 500, nothing saved); the changelist says whether
support is open now; staff with only the view permission can look but not add."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from chat.hours import support_hours
from chat.models import SupportException, SupportHours, SupportSchedule

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:chat_supportschedule_add")
CHANGELIST_URL = reverse("admin:chat_supportschedule_changelist")


def schedule_form(
    *,
    name: str = "Paris office",
    timezone: str = "Europe/Paris",
    active: bool = True,
    hours: Sequence[tuple[int, str, str]] = (),
    exceptions: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The add form's POST body, with both inlines' management forms."""
    data: dict[str, Any] = {"name": name, "timezone": timezone, "_save": "Save"}
    if active:
        data["active"] = "on"
    for prefix, rows in (("hours", hours), ("exceptions", exceptions)):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": str(len(rows)),
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    for index, (weekday, opens, closes) in enumerate(hours):
        data[f"hours-{index}-weekday"] = str(weekday)
        data[f"hours-{index}-opens"] = opens
        data[f"hours-{index}-closes"] = closes
    for index, row in enumerate(exceptions):
        data.update({f"exceptions-{index}-{field}": value for field, value in row.items()})
    return data


def form_errors(response) -> str:
    """The page re-rendered with its errors."""
    assert response.status_code == 200
    assert "errornote" in response.text, "the form should have been refused"
    return response.text


def test_superuser_adds_a_schedule_with_hours_and_an_exception(admin_client: Client):
    data = schedule_form(
        hours=[(day, "09:00", "17:00") for day in range(5)] + [(5, "22:00", "02:00")],
        exceptions=[
            {"date": "2025-12-25", "closed": "on", "note": "Christmas"},
            {"date": "2025-12-24", "opens": "09:00", "closes": "12:00"},
        ],
    )
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 302, response.text
    made = SupportSchedule.objects.get()
    assert (made.name, made.timezone, made.active) == ("Paris office", "Europe/Paris", True)
    rows = SupportHours.objects.filter(schedule=made).values_list("weekday", "opens", "closes")
    assert list(rows) == [(day, time(9), time(17)) for day in range(5)] + [(5, time(22), time(2))]
    christmas, eve = SupportException.objects.filter(schedule=made).order_by("-date")
    assert (christmas.date, christmas.closed, christmas.note) == (
        date(2025, 12, 25),
        True,
        "Christmas",
    )
    assert (eve.closed, eve.opens, eve.closes) == (False, time(9), time(12))

    # And it is what decides: Christmas Eve afternoon is closed until Friday the 26th, 09:00 CET.
    hours = support_hours(now=datetime(2025, 12, 24, 13, 0, tzinfo=UTC))
    assert hours.open is False
    assert hours.next_open_at == datetime(2025, 12, 26, 8, 0, tzinfo=UTC)


def test_an_unknown_time_zone_is_a_form_error(admin_client: Client):
    for zone in ("Europe/Pariss", "localtime", "../etc/passwd"):
        response = admin_client.post(
            ADD_URL, schedule_form(timezone=zone, hours=[(0, "09:00", "17:00")])
        )
        assert "is not a known time zone" in form_errors(response), zone
    assert not SupportSchedule.objects.exists()
    assert not SupportHours.objects.exists()


def test_a_second_active_schedule_is_a_form_error_not_a_500(admin_client: Client):
    SupportSchedule.objects.create(name="Current hours", timezone="UTC", active=True)
    response = admin_client.post(ADD_URL, schedule_form(name="New hours"))
    text = form_errors(response)
    assert "Only one schedule can be active, and “Current hours” is." in text
    assert list(SupportSchedule.objects.values_list("name", flat=True)) == ["Current hours"]

    # Saved inactive, it is accepted; the active one can still be edited.
    response = admin_client.post(ADD_URL, schedule_form(name="New hours", active=False))
    assert response.status_code == 302
    current = SupportSchedule.objects.get(name="Current hours")
    change_url = reverse("admin:chat_supportschedule_change", args=[current.pk])
    response = admin_client.post(change_url, schedule_form(name="Current hours (edited)"))
    assert response.status_code == 302, response.text
    assert SupportSchedule.objects.filter(active=True).get().name == "Current hours (edited)"


def test_an_opening_that_closes_when_it_opens_is_a_form_error(admin_client: Client):
    response = admin_client.post(ADD_URL, schedule_form(hours=[(0, "09:00", "09:00")]))
    assert "An opening cannot close at the time it opens." in form_errors(response)
    assert not SupportSchedule.objects.exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"date": "2025-12-24", "opens": "09:00"}, "Special hours need both an opening"),
        ({"date": "2025-12-24"}, "Special hours need both an opening"),
        (
            {"date": "2025-12-24", "closed": "on", "opens": "09:00", "closes": "12:00"},
            "A day closed all day has no hours",
        ),
    ],
)
def test_an_exception_must_be_closed_or_have_both_hours(
    admin_client: Client, row: dict[str, str], message: str
):
    response = admin_client.post(ADD_URL, schedule_form(exceptions=[row]))
    assert message in form_errors(response)
    assert not SupportSchedule.objects.exists()


def test_the_add_page_explains_always_open_and_exceptions(admin_client: Client):
    response = admin_client.get(ADD_URL)
    assert response.status_code == 200
    assert "With no active schedule, support is always open" in response.text
    assert "An exception replaces the weekly hours of its" in response.text


def test_changelist_says_whether_support_is_open_now(admin_client: Client):
    closed = SupportSchedule.objects.create(name="No hours yet", timezone="Europe/Paris")
    SupportSchedule.objects.create(name="Old hours", timezone="UTC", active=False)
    response = admin_client.get(CHANGELIST_URL)
    assert response.status_code == 200
    assert '<td class="field-open_now">Closed; no opening within a year</td>' in response.text
    assert '<td class="field-open_now">Not in use</td>' in response.text
    assert "Europe/Paris" in response.text

    # Open around the clock: every day in two touching halves.
    for weekday in range(7):
        SupportHours.objects.create(
            schedule=closed, weekday=weekday, opens=time(0), closes=time(12)
        )
        SupportHours.objects.create(
            schedule=closed, weekday=weekday, opens=time(12), closes=time(0)
        )
    response = admin_client.get(CHANGELIST_URL)
    assert '<td class="field-open_now">Open</td>' in response.text


def test_view_permission_shows_the_schedule_but_not_the_add_form(client: Client, django_user_model):
    SupportSchedule.objects.create(name="Paris office", timezone="Europe/Paris")
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    client.force_login(viewer)
    assert client.get(CHANGELIST_URL).status_code == 403

    viewer.user_permissions.add(Permission.objects.get(codename="view_supportschedule"))
    response = client.get(CHANGELIST_URL)
    assert response.status_code == 200
    assert "Paris office" in response.text
    assert client.get(ADD_URL).status_code == 403
    assert client.post(ADD_URL, schedule_form(name="Sneaky")).status_code == 403
    assert SupportSchedule.objects.count() == 1


def test_two_exceptions_on_one_date_are_a_form_error(admin_client: Client):
    twice = [{"date": "2025-12-25", "closed": "on"}, {"date": "2025-12-25", "closed": "on"}]
    response = admin_client.post(ADD_URL, schedule_form(exceptions=twice))
    assert "Please correct the duplicate data for date" in form_errors(response)
    assert not SupportSchedule.objects.exists()
