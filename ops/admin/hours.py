"""Support hours in the admin (``/admin/chat/supportschedule/``): the weekly schedule, its dated
exceptions, and whether support is open right now.

The hours decide whether a customer who asks for a person is promised one (``chat.hours``), so
the forms refuse what would otherwise be read silently one way or another: an unknown time zone,
an opening that starts and ends at the same time, special hours without both times, a second
active schedule (which the database refuses too, but as a server error).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.contrib import admin

from chat.hours import next_open_text, schedule_zone, support_hours
from chat.models import SupportException, SupportHours, SupportSchedule

# Names zoneinfo can load that are not a place's zone: "localtime" is whatever this machine is
# set to, "posixrules" a compiler default, "Factory" a placeholder with no offset rules.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})

SCHEDULE_HELP = (
    "With no active schedule, support is always open: a person is promised whenever a customer "
    "asks. With one, people are promised only during its hours; outside them, the customer is "
    "offered a ticket and told when support opens next. Hours are wall-clock times in the "
    "schedule's time zone; an opening whose closing time is not after its opening time runs past "
    "midnight (closes 00:00 = end of the day). An exception replaces the weekly hours of its "
    "date: closed all day, or open only during its own hours."
)


class SupportScheduleForm(forms.ModelForm):
    """A schedule: a real IANA zone, and at most one active schedule."""

    class Meta:
        model = SupportSchedule
        fields = ["name", "timezone", "active"]
        help_texts = {
            "timezone": "An IANA time zone such as Europe/Paris, America/New_York or UTC.",
            "active": "The hours in use. Only one schedule can be active; none means always open.",
        }

    def clean_timezone(self) -> str:
        name = str(self.cleaned_data["timezone"]).strip()
        if name in NOT_ZONES or name not in available_timezones():
            raise forms.ValidationError(
                f"“{name}” is not a known time zone. Use an IANA name such as Europe/Paris."
            )
        return name

    def clean_active(self) -> bool:
        active = bool(self.cleaned_data["active"])
        others = SupportSchedule.objects.filter(active=True).exclude(pk=self.instance.pk)
        # Two saves at the same instant can both pass this check; the database's constraint
        # then refuses the second, which is rare enough to leave as an error page.
        current = others.first()
        if active and current is not None:
            raise forms.ValidationError(
                f"Only one schedule can be active, and “{current.name}” is. Make it inactive "
                "first, or save this one inactive."
            )
        return active


class SupportHoursForm(forms.ModelForm):
    class Meta:
        model = SupportHours
        fields = ["weekday", "opens", "closes"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if opens is not None and opens == closes:
            raise forms.ValidationError(
                "An opening cannot close at the time it opens. For a whole day, use two rows "
                "(00:00 to 12:00 and 12:00 to 00:00): openings that touch merge."
            )
        return cleaned


class SupportExceptionForm(forms.ModelForm):
    class Meta:
        model = SupportException
        fields = ["date", "closed", "opens", "closes", "note"]
        help_texts = {
            "closed": "Closed all day. Untick and give hours for special hours that day.",
            "opens": "Special hours only.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        closed = cleaned.get("closed")
        opens, closes = cleaned.get("opens"), cleaned.get("closes")
        if closed and (opens is not None or closes is not None):
            raise forms.ValidationError(
                "A day closed all day has no hours: clear them, or untick “closed” for special "
                "hours."
            )
        if not closed:
            if opens is None or closes is None:
                raise forms.ValidationError(
                    "Special hours need both an opening and a closing time (or tick “closed”)."
                )
            if opens == closes:
                raise forms.ValidationError("Special hours cannot close when they open.")
        return cleaned


class SupportHoursInline(admin.TabularInline):
    model = SupportHours
    form = SupportHoursForm
    extra = 0


class SupportExceptionInline(admin.TabularInline):
    model = SupportException
    form = SupportExceptionForm
    extra = 0
    verbose_name = "exception (holiday or special hours)"
    verbose_name_plural = "exceptions (each replaces the weekly hours of its date)"


@admin.register(SupportSchedule)
class SupportScheduleAdmin(admin.ModelAdmin):
    form = SupportScheduleForm
    inlines = (SupportHoursInline, SupportExceptionInline)
    list_display = ("name", "timezone", "active", "open_now")
    list_filter = ("active",)
    fieldsets = ((None, {"fields": ("name", "timezone", "active"), "description": SCHEDULE_HELP}),)

    @admin.display(description="Open now")
    def open_now(self, obj: SupportSchedule) -> str:
        # Only the active schedule is read (at most one row per page computes this).
        if not obj.active:
            return "Not in use"
        hours = support_hours()
        if hours.open:
            if hours.closes_at is None:
                return "Open"
            closes = hours.closes_at.astimezone(schedule_zone(obj)[1])
            return f"Open until {closes:%a %H:%M} ({hours.timezone})"
        when = next_open_text(hours)
        return f"Closed; opens {when}" if when else "Closed; no opening within a year"
