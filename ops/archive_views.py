"""The archive browser's pages beyond the list (``ops.admin.archives``): an archive's page, and
its actions, each a small POST-only view.

Opening an archive checks its object against the recorded sha256 (``load_document``) and
records the verdict as ``check_archive`` does; only an intact archive's transcript is rendered,
a missing, altered or unreadable one is shown as what it is. ``ops/urls.py`` wraps each action
in ``admin.site.admin_view`` (staff login, CSRF, never cached); every view checks its own
permission: browsing and downloading need ``chat.view_sessionarchive``, restore, release and
verify need ``chat.change_sessionarchive``. What staff do goes into the admin history.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import structlog
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import content_disposition_header

from chat.archives import (
    ArchiveError,
    RestoreRefused,
    load_document,
    read_object,
    record_integrity,
    release_restored,
    restore_archive,
    sha256,
)
from chat.models import ArchiveTicket, ChatSession, SessionArchive
from chat.tasks import verify_archives_task
from ops.archive_records import archived_records
from ops.archive_status import (
    archive_url,
    archives_of,
    session_admin_url,
    sessions_in_database,
)
from ops.transcripts import archive_transcript, render_transcript, staff_time

log = structlog.get_logger("ops.archive_views")

VIEW_PERM = "chat.view_sessionarchive"
CHANGE_PERM = "chat.change_sessionarchive"
Integrity = SessionArchive.Integrity
# Archive ids are positive 64-bit integers: anything else is no archive (and never a query).
_ARCHIVE_ID = re.compile(r"[0-9]{1,18}")

View = Callable[..., HttpResponse]


# --- plain pages: refusals, confirmations ------------------------------------------------------


def message_page(
    request: HttpRequest,
    *,
    status: int,
    title: str,
    text: str,
    archive: SessionArchive | None = None,
    **extra: Any,
) -> TemplateResponse:
    """A page that says one thing (a refusal, an error) inside the admin, with ``status``."""
    request.current_app = admin.site.name
    context = {
        **admin.site.each_context(request),
        "title": title,
        "text": text,
        "archive": archive,
        "archive_url": archive_url(archive.pk) if archive else "",
        **extra,
    }
    return TemplateResponse(request, "ops/archive_message.html", context, status=status)


def post_only(view: View) -> View:
    """A POST-only action: any other method is told so (405, with ``Allow``) on a page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            response = message_page(
                request,
                status=405,
                title="Use the buttons",
                text="This address takes only a POST from the buttons of an archive's page.",
            )
            response["Allow"] = "POST"
            return response
        return view(request, *args, **kwargs)

    return wrapper


def _denied(request: HttpRequest, perm: str) -> HttpResponse | None:
    if request.user.has_perm(perm):
        return None
    what = "view archives" if perm == VIEW_PERM else "restore, release or verify archives"
    name = "Can view session archive" if perm == VIEW_PERM else "Can change session archive"
    return message_page(
        request,
        status=403,
        title="Not allowed",
        text=f"You may not {what}: that needs the “{name}” permission.",
    )


def find_archive(raw: object) -> SessionArchive | None:
    """The archive with this id, or None (an id that is not a number is no archive)."""
    text = str(raw)
    if not _ARCHIVE_ID.fullmatch(text):
        return None
    return SessionArchive.objects.filter(pk=int(text)).first()


def _not_found(request: HttpRequest, raw: object) -> HttpResponse:
    return message_page(
        request,
        status=404,
        title="No such archive",
        text=f"There is no archive with id “{str(raw)[:40]}”: it may have been deleted by "
        "retention or erasure. Search the archive list by session id, userId or ticket id.",
        list_url=reverse("admin:chat_sessionarchive_changelist"),
    )


def _log(request: HttpRequest, archive: SessionArchive, message: str) -> None:
    """Into the admin history of the archive (as ``chat.handoff.log_staff_action`` does)."""
    LogEntry.objects.log_actions(
        user_id=str(request.user.pk),
        queryset=[archive],
        action_flag=CHANGE,
        change_message=message,
    )


def _archive_for(
    request: HttpRequest, archive_id: object, perm: str
) -> SessionArchive | HttpResponse:
    """The archive, or the page that refuses (403 without ``perm``, 404 without the archive)."""
    refused = _denied(request, perm)
    if refused is not None:
        return refused
    archive = find_archive(archive_id)
    return archive if archive is not None else _not_found(request, archive_id)


# --- the archive's page ------------------------------------------------------------------------


def archive_page(request: HttpRequest, object_id: str) -> HttpResponse:
    """An archive: its record, the integrity check made now, and (only when intact) the
    transcript and the hand-offs, notes and ratings it holds."""
    archive = _archive_for(request, object_id, VIEW_PERM)
    if not isinstance(archive, SessionArchive):
        return archive
    request.current_app = admin.site.name
    context = {**admin.site.each_context(request), **_record_context(request, archive)}
    try:
        document = load_document(archive)
    except ArchiveError as exc:
        record_integrity(archive, exc.state)
        context["problem"] = {"state": exc.state, "message": exc.message}
    else:
        record_integrity(archive, Integrity.OK)
        transcript = archive_transcript(document, archive.session_id)
        context.update(
            transcript=render_transcript(transcript),
            transcript_total=transcript["total"],
            transcript_truncated=transcript["truncated"],
            transcript_limit=transcript["limit"],
            summary=str(document.get("summary") or ""),
            records=archived_records(document),
        )
    context["checked_at"] = staff_time(archive.checked_at)
    return TemplateResponse(request, "ops/archive.html", context)


def _record_context(request: HttpRequest, archive: SessionArchive) -> dict[str, Any]:
    in_database = sessions_in_database([archive.session_id]).get(archive.session_id)
    others = [a for a in archives_of(archive.session_id) if a.pk != archive.pk]
    return {
        "title": f"Archive of {archive.session_id}",
        "opts": SessionArchive._meta,
        "archive": archive,
        "tickets": list(
            ArchiveTicket.objects.filter(archive=archive)
            .order_by("ticket_id")
            .values_list("ticket_id", flat=True)
        ),
        "in_database": in_database,
        "session_url": session_admin_url(archive.session_id) if in_database else "",
        "conversation_url": (
            reverse("ops:conversation", args=[archive.session_id]) if in_database else ""
        ),
        "restored": ChatSession.objects.filter(
            pk=archive.session_id, restored_at__isnull=False
        ).first(),
        "other_archives": others,
        "can_change": request.user.has_perm(CHANGE_PERM),
        "started": staff_time(archive.started_at),
        "ended": staff_time(archive.ended_at),
        "recorded": staff_time(archive.created_at),
        "history_url": reverse("admin:chat_sessionarchive_history", args=[archive.pk]),
        "list_url": reverse("admin:chat_sessionarchive_changelist"),
    }


# --- actions -----------------------------------------------------------------------------------


@post_only
def download(request: HttpRequest, archive_id: int) -> HttpResponse:
    """The gzipped JSON as stored, once it matches its sha256; ``anyway=1`` downloads an
    altered object as it is, under a name that says so."""
    archive = _archive_for(request, archive_id, VIEW_PERM)
    if not isinstance(archive, SessionArchive):
        return archive
    try:
        payload = read_object(archive.key)
    except ArchiveError as exc:
        record_integrity(archive, exc.state)
        return message_page(
            request,
            status=404 if exc.state == Integrity.MISSING else 503,
            title="Nothing to download",
            text=exc.message,
            archive=archive,
            alarm=True,
        )
    intact = sha256(payload) == archive.sha256
    record_integrity(archive, Integrity.OK if intact else Integrity.ALTERED)
    anyway = request.POST.get("anyway") == "1"
    if not intact and not anyway:
        return message_page(
            request,
            status=409,
            title="Download refused: the object does not match its record",
            text=f"The stored object ({len(payload)} bytes, sha256 {sha256(payload)}) is not "
            f"the archive that was written ({archive.size} bytes, sha256 {archive.sha256}).",
            archive=archive,
            alarm=True,
            download_anyway=True,
        )
    name = archive.key.rsplit("/", 1)[-1]
    if not intact:
        name = name.replace(".json.gz", "") + "-ALTERED-does-not-match-its-sha256.json.gz"
    _log(request, archive, "Downloaded" + ("" if intact else " an altered object (anyway)"))
    response = HttpResponse(payload, content_type="application/gzip")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


@post_only
def restore(request: HttpRequest, archive_id: int) -> HttpResponse:
    """Confirm, then bring the conversation back as a read-only ended session for staff."""
    archive = _archive_for(request, archive_id, CHANGE_PERM)
    if not isinstance(archive, SessionArchive):
        return archive
    # A session already in the database is refused (or was restored) without asking first.
    in_database = ChatSession.objects.filter(pk=archive.session_id).exists()
    if not in_database and request.POST.get("confirm") != "yes":
        return _confirm(request, archive, "restore")
    try:
        session, created = restore_archive(archive, by=request.user.get_username())
    except RestoreRefused as exc:
        messages.error(request, str(exc))
    except ArchiveError as exc:
        record_integrity(archive, exc.state)
        messages.error(request, f"Not restored: {exc.message}")
    else:
        if created:
            record_integrity(archive, Integrity.OK)  # restore read it back whole just now
            _log(request, archive, f"Restored session {session.pk} from {archive.key}")
            messages.success(
                request,
                f"Restored session {session.pk} ({session.message_count} messages): it is "
                "read-only for staff, unknown to clients, and stays until you release it.",
            )
        else:
            messages.info(request, f"Session {session.pk} is already restored: nothing changed.")
    return redirect(archive_url(archive.pk))


@post_only
def release(request: HttpRequest, session_id: str) -> HttpResponse:
    """Confirm, then take a restored session out of the database again (its archive stays)."""
    refused = _denied(request, CHANGE_PERM)
    if refused is not None:
        return refused
    session = ChatSession.objects.filter(pk=session_id[:80]).first()
    if session is None or not session.is_restored:
        return message_page(
            request,
            status=404,
            title="No restored session",
            text=f"Session “{session_id[:80]}” is not a restored session in the database: "
            "only a session restored from its archive can be released.",
            list_url=reverse("admin:chat_sessionarchive_changelist"),
        )
    archives = archives_of(session.pk)
    if request.POST.get("confirm") != "yes":
        return _confirm(request, None, "release", session=session, archives=archives)
    release_restored(session.pk)
    back = find_archive(archives[0].pk) if archives else None
    if back is not None:
        _log(request, back, f"Released restored session {session.pk}")
    messages.success(request, f"Released session {session.pk}: its archive is all that is kept.")
    return redirect(archive_url(back.pk) if back else reverse("admin:chat_chatsession_changelist"))


@post_only
def verify(request: HttpRequest, archive_id: int) -> HttpResponse:
    """Check this archive's object against its sha256 now and record the verdict."""
    archive = _archive_for(request, archive_id, CHANGE_PERM)
    if not isinstance(archive, SessionArchive):
        return archive
    state: str = Integrity.OK
    try:
        load_document(archive)
    except ArchiveError as exc:
        state = exc.state
    record_integrity(archive, state)
    _log(request, archive, f"Verified: {Integrity(state).label}")
    level = messages.SUCCESS if state == Integrity.OK else messages.ERROR
    messages.add_message(request, level, f"Verified {archive.key}: {Integrity(state).label}.")
    return redirect(archive_url(archive.pk))


@post_only
def verify_all(request: HttpRequest) -> HttpResponse:
    """Queue the check of every archive (``chat.verify_archives`` with no limit)."""
    refused = _denied(request, CHANGE_PERM)
    if refused is not None:
        return refused
    back = reverse("admin:chat_sessionarchive_changelist")
    try:
        result = verify_archives_task.delay(None)
    except Exception as exc:
        # Optional infrastructure degrades loudly: the broker is down, nothing was queued.
        log.warning("verify_archives_not_queued", error=type(exc).__name__)
        messages.error(
            request,
            f"The task queue (Celery broker) did not answer ({type(exc).__name__}): the check "
            "of every archive was not queued. Try again when it is back; “Verify now” on an "
            "archive's page still checks that one.",
        )
        return redirect(back)
    messages.success(
        request,
        f"Queued the check of every archive (task {result.id}): each verdict shows in the "
        "Integrity column as the worker records it.",
    )
    return redirect(back)


def _confirm(
    request: HttpRequest, archive: SessionArchive | None, action: str, **extra: Any
) -> HttpResponse:
    request.current_app = admin.site.name
    titles = {"restore": "Restore this conversation?", "release": "Release this session?"}
    context = {
        **admin.site.each_context(request),
        "title": titles[action],
        "action": action,
        "archive": archive,
        "archive_url": archive_url(archive.pk) if archive else "",
        **extra,
    }
    return TemplateResponse(request, "ops/archive_confirm.html", context)
