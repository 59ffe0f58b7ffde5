"""The subject-request pages inside the admin (``ops/urls.py`` mounts them behind
``admin_view``): look a person up, see what is held, download the export, erase it after a
confirmation, read the receipt.

The person's identifier travels only in POST bodies (the lookup form, then hidden fields of the
export and erase forms), never in a URL: URLs end up in access logs and browser history. The
receipt's URL carries its number only. Looking up needs one of ``ops.export_subject`` and
``ops.erase_subject``; exporting and erasing need their own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.models import ChatSession, SessionArchive
from ops.models import REVIEW_QUEUES, SubjectRequest
from ops.subject_export import export_subject
from ops.subjects import (
    KIND_LABELS,
    USER_ID_MAX,
    ErasureIncomplete,
    Holdings,
    Subject,
    SubjectError,
    clean_reference,
    erase_subject,
    find_holdings,
    subject_from,
)

EXPORT = "ops.export_subject"
ERASE = "ops.erase_subject"
SHOWN_ROWS = 100  # per list of the preview; the counts are always whole
TEMPLATE = "ops/subjects.html"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SubjectForm(forms.Form):
    """Who (exactly one of userId and address) and the staff's own reference."""

    user_id = forms.CharField(
        label="userId",
        required=False,
        widget=forms.TextInput(attrs={"maxlength": USER_ID_MAX, "autocomplete": "off"}),
        help_text="Exactly as the client sent it when opening sessions.",
    )
    email = forms.CharField(
        label="or e-mail address",
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text="Matched, in any case, with tickets' and hand-offs' contact address.",
    )
    reference = forms.CharField(
        label="Your reference",
        required=False,
        widget=forms.TextInput(attrs={"maxlength": 100}),
        help_text="Optional: your own record of the request, e.g. a ticket number. It is kept "
        "on the receipt: never enter the person's name, address or other personal data.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "user_id" in self.errors or "email" in self.errors:
            return data  # the field's own error (a NUL character) says it
        try:
            subject = subject_from(user_id=data.get("user_id"), email=data.get("email"))
        except SubjectError as exc:
            self.add_error(exc.field or None, exc.message)
            return data
        data["subject"] = subject
        try:
            data["reference"] = clean_reference(data.get("reference"), subject=subject)
        except SubjectError as exc:
            self.add_error("reference", exc.message)
        return data


class EraseForm(SubjectForm):
    """The confirmation: the identifier typed again."""

    confirm = forms.CharField(label="Type it again to confirm", required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        subject = data.get("subject")
        if subject is not None and not _same(subject, data.get("confirm") or ""):
            self.add_error(
                "confirm",
                f"Type the {subject.label} again, exactly as above, to confirm the erasure.",
            )
        return data


def _same(subject: Subject, typed: str) -> bool:
    typed = typed.strip()
    if subject.matched_by == SubjectRequest.MatchedBy.EMAIL:
        return typed.casefold() == subject.value.casefold()
    return typed == subject.value


def _require(request: HttpRequest, *permissions: str) -> None:
    """403 unless the user has one of ``permissions``."""
    if not any(request.user.has_perm(p) for p in permissions):
        raise PermissionDenied


def _page(request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
    request.current_app = admin.site.name
    full = {
        **admin.site.each_context(request),
        "title": "Subject requests",
        "can_export": request.user.has_perm(EXPORT),
        "can_erase": request.user.has_perm(ERASE),
        "receipts_url": reverse("admin:ops_subjectrequest_changelist"),
        **context,
    }
    return TemplateResponse(request, TEMPLATE, full, status=status)


@require_http_methods(["GET", "POST"])
def subjects(request: HttpRequest) -> HttpResponse:
    """GET: the lookup form. POST: what is held about the person named, with the export and
    erase buttons (or the form's errors)."""
    _require(request, EXPORT, ERASE)
    if request.method == "GET":
        return _page(request, form=SubjectForm())
    form = SubjectForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, form=form)
    subject = form.cleaned_data["subject"]
    held = preview(find_holdings(subject))
    carry = _carry(subject, form.cleaned_data["reference"])
    return _page(request, form=form, preview=held, carry=carry)


@require_POST
def export(request: HttpRequest) -> HttpResponse:
    """The export as a JSON attachment; its receipt is recorded."""
    _require(request, EXPORT)
    form = SubjectForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, form=form)
    document = export_subject(
        subject=form.cleaned_data["subject"],
        requested_by=request.user.get_username(),
        reference=form.cleaned_data["reference"],
    )
    body = json.dumps(document, ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    # The receipt's number names the file: never the person.
    filename = f"subject-export-{document['receipt']}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
def erase(request: HttpRequest) -> HttpResponse:
    """First POST (from the preview): the confirmation step. Second POST (``step=confirm``, the
    identifier typed again): the erasure, then its receipt."""
    _require(request, ERASE)
    confirming = request.POST.get("step") == "confirm"
    form = EraseForm(request.POST) if confirming else SubjectForm(request.POST)
    valid = form.is_valid()
    subject = form.cleaned_data.get("subject")
    if subject is None or "reference" in form.errors:
        return _page(request, status=400, form=SubjectForm(request.POST))
    context = {
        "confirm": True,
        "carry": _carry(subject, form.cleaned_data.get("reference", "")),
        "confirm_errors": form.errors.get("confirm", []) if confirming else [],
    }
    if not confirming or not valid:
        held = preview(find_holdings(subject))
        return _page(request, status=400 if confirming else 200, preview=held, **context)
    try:
        done = erase_subject(
            subject=subject,
            requested_by=request.user.get_username(),
            reference=form.cleaned_data["reference"],
        )
    except ErasureIncomplete as exc:
        held = preview(find_holdings(subject))
        return _page(request, status=503, preview=held, incomplete=exc, **context)
    messages.success(request, f"Erased: receipt #{done.pk}.")
    return redirect("ops:subject_receipt", pk=done.pk)


def _carry(subject: Subject, reference: str) -> dict[str, str]:
    """The hidden fields of the export and erase forms: the identifier, in a POST body only."""
    email = subject.matched_by == SubjectRequest.MatchedBy.EMAIL
    return {
        "user_id": "" if email else subject.value,
        "email": subject.value if email else "",
        "reference": reference,
    }


@require_GET
def receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """One receipt: what was asked, by whom, and the counts (no personal data)."""
    _require(request, EXPORT, ERASE, "ops.view_subjectrequest")
    found = get_object_or_404(SubjectRequest, pk=pk)
    request.current_app = admin.site.name
    context = {
        **admin.site.each_context(request),
        "title": f"Receipt #{found.pk}",
        "receipt": found,
        "counts": _count_rows(found.counts),
        "subjects_url": reverse("ops:subjects"),
        "receipts_url": reverse("admin:ops_subjectrequest_changelist"),
    }
    return TemplateResponse(request, "ops/subject_receipt.html", context)


# --- the preview --------------------------------------------------------------------------------


def _count_rows(counts: dict[str, Any]) -> list[tuple[str, Any]]:
    known = [(KIND_LABELS[k], counts[k]) for k in KIND_LABELS if k in counts]
    return known + [(k, v) for k, v in counts.items() if k not in KIND_LABELS]


def _admin_url(name: str, pk: Any) -> str:
    try:
        return reverse(name, args=[quote(pk)])
    except NoReverseMatch:
        return ""


def preview(held: Holdings) -> dict[str, Any]:
    """What the page lists about the person: counts, and the sessions, tickets, archives and
    review items with links (each list cut at ``SHOWN_ROWS``)."""
    counts = held.counts()
    archives = list(held.archives[:SHOWN_ROWS])
    queue_of = {model.queue_kind: model._meta.model_name for model in REVIEW_QUEUES}
    return {
        "subject": held.subject,
        "nothing_held": not held.session_ids and not any(counts.values()),
        "counts": _count_rows(counts),
        "sessions": _sessions(held),
        "session_total": len(held.session_ids),
        "tickets": [
            {"ticket": t, "url": _admin_url("admin:tools_ticket_change", t.pk)}
            for t in held.tickets[:SHOWN_ROWS]
        ],
        "archives": [
            {"archive": a, "url": _admin_url("admin:chat_sessionarchive_change", a.pk)}
            for a in archives
        ],
        "review_items": [
            {"item": i, "url": _admin_url(f"admin:ops_{queue_of.get(i.kind)}_change", i.pk)}
            for i in held.review_items.order_by("-created_at")[:SHOWN_ROWS]
        ],
        "other_user_ids": _other_user_ids(held),
        "shown_rows": SHOWN_ROWS,
    }


def _sessions(held: Holdings) -> list[dict[str, Any]]:
    shown = sorted(held.session_ids)[:SHOWN_ROWS]
    rows = {s.pk: s for s in ChatSession.objects.filter(pk__in=shown)}
    archived = {
        a.session_id: a for a in SessionArchive.objects.filter(session_id__in=shown).order_by("pk")
    }
    found = []
    for session_id in shown:
        session = rows.get(session_id)
        archive = archived.get(session_id)
        started: datetime | None
        if session is not None:
            state = "restored" if session.is_restored else session.status
            url = _admin_url("admin:chat_chatsession_change", session_id)
            started = session.created_at
        else:
            state = "archived" if archive is not None else "known from a ticket or review item"
            url = ""
            started = archive.started_at if archive is not None else None
        found.append(
            {
                "id": session_id,
                "state": state,
                "session": session,
                "archive": archive,
                "url": url,
                "started": started,
            }
        )
    return sorted(found, key=lambda row: row["started"] or _EPOCH, reverse=True)


def _other_user_ids(held: Holdings) -> list[str]:
    """The userIds the sessions found by e-mail address carry: the same person, perhaps, to
    look up as well."""
    if held.subject.matched_by != SubjectRequest.MatchedBy.EMAIL:
        return []
    ids = set(held.sessions.exclude(user_id="").values_list("user_id", flat=True)[:20])
    ids.update(held.archives.exclude(user_id="").values_list("user_id", flat=True)[:20])
    return sorted(ids)[:20]
