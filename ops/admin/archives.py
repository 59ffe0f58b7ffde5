"""The archive browser (``/admin/chat/sessionarchive/``): every archived conversation, found by
session id, ``userId`` or ticket id (the search box) and by the day it ended (``since`` and
``until``), each opening on its page (``ops.archive_views.archive_page``), which checks the
stored object before showing anything of it.

Read-only: an archive changes only through its page's actions (restore, release, verify), which
``ops.archive_views`` records in the admin history. The list stays fast over many archives: the
search and the date range go through ``chat.archives.search_archives`` (each through its index),
no full count, and one query per page for which of the listed sessions are in the database.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cached_property
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat.archives import search_archives
from chat.models import SessionArchive
from ops.archive_status import (
    BAD_INTEGRITY,
    archive_url,
    session_admin_url,
    sessions_in_database,
)
from ops.archive_views import CHANGE_PERM, archive_page

Integrity = SessionArchive.Integrity
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The range a day may take: the day after ``until`` must still be a date.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
# Longer than any session id, userId or ticket id: such a search matches nothing.
MAX_SEARCH = 200
# Characters of a session id the list shows (the rest is in its title).
SHORT_ID = 14
# The list counts its rows up to here (a bounded query); past it, it says "more than".
COUNT_CAP = 10_000


def parse_day(name: str, raw: str) -> tuple[date | None, str]:
    """``raw`` (YYYY-MM-DD or empty) as a date, or an error that says what is wrong."""
    raw = raw.strip()
    if not raw:
        return None, ""
    shown = raw[:40]
    try:
        day = date.fromisoformat(raw) if _DAY.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None:
        return None, f"“{name}” must be a date as YYYY-MM-DD, not “{shown}”."
    if not FIRST_DAY <= day <= LAST_DAY:
        return None, f"“{name}” must be a day between {FIRST_DAY} and {LAST_DAY}, not “{shown}”."
    return day, ""


def _say_once(request: HttpRequest, text: str) -> None:
    """An error above the list, once per request (the admin may build a filter twice)."""
    said: set[str] = request.__dict__.setdefault("_archive_errors_said", set())
    if text not in said:
        said.add(text)
        messages.error(request, text)


class EndedRangeFilter(admin.ListFilter):
    """Archives by the day their conversation ended: ``since`` and ``until``, both inclusive,
    as two date inputs. A bad date lists nothing and says why (never the admin's ``?e=1``)."""

    title = "day the conversation ended"
    template = "admin/ops/archive_date_filter.html"
    parameters = ("since", "until")

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        self.since, since_error = parse_day("since", str(self.used_parameters.get("since", "")))
        self.until, until_error = parse_day("until", str(self.used_parameters.get("until", "")))
        self.error = " ".join(e for e in (since_error, until_error) if e)
        if not self.error and self.since and self.until and self.since > self.until:
            self.error = f"“since” ({self.since}) is after “until” ({self.until}): no day is both."
        if self.error:
            _say_once(request, f"{self.error} No archives are listed until it is corrected.")

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.error:
            return queryset.none()
        if self.since is None and self.until is None:
            return queryset
        # order_by(): the list keeps its own ordering (the column staff sorted by).
        return queryset & search_archives(since=self.since, until=self.until).order_by()

    def choices(self, changelist: Any) -> Any:
        keep = {k: v for k, v in changelist.params.items() if k not in self.parameters}
        yield {
            "since": self.used_parameters.get("since", ""),
            "until": self.used_parameters.get("until", ""),
            "error": self.error,
            "hidden": sorted(keep.items()),
            "active": bool(self.used_parameters),
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
        }


class IntegrityFilter(admin.SimpleListFilter):
    """Archives by their last check's verdict, with every problem at once first."""

    title = "integrity"
    parameter_name = "integrity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("bad", "Any problem (missing, altered, unreadable)"),
            *((value or "unchecked", str(label)) for value, label in Integrity.choices),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "bad":
            return queryset.filter(integrity__in=BAD_INTEGRITY)
        if value == "unchecked":
            return queryset.filter(integrity=Integrity.UNCHECKED)
        if value in Integrity.values:
            return queryset.filter(integrity=value)
        return queryset


class CappedPaginator(Paginator):
    """Counts at most ``COUNT_CAP + 1`` rows: counting every archive of a wide search would
    be the slowest part of the page, and nobody pages that far."""

    @cached_property
    def count(self) -> int:
        rows = cast("QuerySet[Any]", self.object_list)  # the admin pages a queryset
        return rows[: COUNT_CAP + 1].count()


class ArchiveChangeList(ChangeList):
    """The admin's list, with a bounded count, plus one query for which listed sessions are
    in the database."""

    capped = False

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if self.result_count > COUNT_CAP:
            # Shown as "more than 10000" (templates/admin/chat/sessionarchive/*.html).
            self.capped, self.result_count = True, COUNT_CAP
        page = list(self.result_list)  # evaluated once; the template reuses these rows
        found = sessions_in_database(archive.session_id for archive in page)
        # One reverse() for the page: a reverse per row costs as much as the rest of the row.
        prefix, suffix = archive_url(0).rsplit("/0/", 1)
        for archive in page:
            archive.in_database = found.get(archive.session_id)
            archive.page_url = f"{prefix}/{archive.pk}/{suffix}"


@admin.register(SessionArchive)
class SessionArchiveAdmin(admin.ModelAdmin):
    change_list_template = "admin/ops/archive_change_list.html"
    # Integrity early (a problem must not hide past the fold of a narrow screen), the long
    # storage key last.
    list_display = (
        "session_column",
        "integrity_badge",
        "user_column",
        "started",
        "ended",
        "messages_column",
        "human_size",
        "reason",
        "backend",
        "key_link",
    )
    # Each row links to its page through the key column (key_link): the admin's own row links
    # resolve the URL once per row to keep filters, which costs more than the rest of the row.
    list_display_links = None
    list_filter = (EndedRangeFilter, IntegrityFilter)
    # The box needs a search field to show; the search itself is search_archives (below).
    search_fields = ("=session_id",)
    search_help_text = "An exact session id, userId or ticket id."
    show_full_result_count = False  # no second COUNT(*) over every archive
    ordering = ("-ended_at", "-pk")
    sortable_by = ("started", "ended", "messages_column", "human_size")
    show_facets = admin.ShowFacets.NEVER  # a count per choice would read every archive
    actions = None
    # The admin renders a row in about a millisecond: 25 keep a page of a wide range of days
    # well within the 100 ms the browser is allowed ("Show all" lists up to 200).
    list_per_page = 25

    class Media:
        css = {"all": ("ops/archives.css",)}

    # --- read-only: no add, change or delete through the admin's forms ---------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ArchiveChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: Any,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        return CappedPaginator(queryset, per_page, orphans, allow_empty_first_page)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if len(term) > MAX_SEARCH:
            _say_once(request, "Search for one exact session id, userId or ticket id.")
            return queryset.none(), False
        return queryset & search_archives(term).order_by(), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "title": "Session archives",
            "can_verify": request.user.has_perm(CHANGE_PERM),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse | TemplateResponse:
        """An archive's page: its record, the check made now, and its transcript if intact."""
        return archive_page(request, object_id)

    # --- list columns -----------------------------------------------------------------------

    @admin.display(description="Session")
    def session_column(self, obj: SessionArchive) -> SafeString:
        # The id shortened (whole in its title and on the archive's page): the list stays narrow.
        short = obj.session_id[:SHORT_ID] + ("…" if len(obj.session_id) > SHORT_ID else "")
        found = getattr(obj, "in_database", None)
        if found is None:
            return format_html('<code title="{}">{}</code>', obj.session_id, short)
        return format_html(
            '<a href="{}"><code title="{}">{}</code></a> '
            '<span class="archive-tag archive-tag-{}">{}</span>',
            session_admin_url(obj.session_id),
            obj.session_id,
            short,
            "restored" if found.restored else "in-db",
            found.label,
        )

    @admin.display(description="userId")
    def user_column(self, obj: SessionArchive) -> str:
        return obj.user_id or "—"

    @admin.display(description="Started", ordering="started_at")
    def started(self, obj: SessionArchive) -> SafeString:
        return _minute(obj.started_at)

    @admin.display(description="Ended", ordering="ended_at")
    def ended(self, obj: SessionArchive) -> SafeString:
        return _minute(obj.ended_at)

    @admin.display(description="Messages", ordering="message_count")
    def messages_column(self, obj: SessionArchive) -> int:
        return obj.message_count

    @admin.display(description="Storage key")
    def key_link(self, obj: SessionArchive) -> SafeString:
        url = getattr(obj, "page_url", "") or archive_url(obj.pk)
        return format_html('<a href="{}">{}</a>', url, obj.key)

    @admin.display(description="Size", ordering="size")
    def human_size(self, obj: SessionArchive) -> str:
        return str(filesizeformat(obj.size))

    @admin.display(description="Integrity")
    def integrity_badge(self, obj: SessionArchive) -> SafeString:
        state = obj.integrity or "unchecked"
        label = "Not checked" if not obj.integrity else obj.get_integrity_display()
        return format_html('<span class="integrity-badge integrity-{}">{}</span>', state, label)


def _minute(value: datetime | None) -> SafeString:
    """A list's time, to the minute in the site's time zone (cheaper than the admin's
    localized formatting, which is most of a row's cost); it wraps between day and time."""
    if value is None:
        return SafeString("—")
    local = timezone.localtime(value)
    return format_html(
        '<span class="nowrap">{}</span> <span class="nowrap">{}</span>',
        local.strftime("%Y-%m-%d"),
        local.strftime("%H:%M"),
    )
