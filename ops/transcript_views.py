"""The live transcript's rows: ``GET /admin/ops/sessions/<id>/rows?after=<seq>``.

A session page that follows a conversation (``static/chat/watch.js``) asks here for the rows after
the last one it shows, so a live row is the same server-rendered, sanitised HTML as the page's
own rows instead of a second renderer in JavaScript. ``ops/urls.py`` wraps the view in
``admin.site.admin_view`` (staff login, never cached); reading messages also needs
``chat.view_message``, as the Message admin does.
"""

from __future__ import annotations

import re

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
)
from django.views.decorators.http import require_GET

from chat.models import ChatSession
from ops.transcripts import session_rows_after

# A seq is a whole number; ten digits bound it below what the database's integer column takes.
_SEQ = re.compile(r"[0-9]{1,10}")
_TEXT = "text/plain; charset=utf-8"


@require_GET
def transcript_rows(request: HttpRequest, session_id: str) -> HttpResponse:
    """The transcript rows (``<tr>`` only) after ``after``, at most a page of them; the header
    ``X-More-Rows: 1`` says another fetch from the last row's seq gets the rest."""
    if not request.user.has_perm("chat.view_message"):
        return HttpResponseForbidden("You may not view messages.", content_type=_TEXT)
    after = request.GET.get("after", "0")
    if not _SEQ.fullmatch(after):
        return HttpResponseBadRequest(
            "after must be a whole number, 0 or more.", content_type=_TEXT
        )
    if not ChatSession.objects.filter(pk=session_id).exists():
        return HttpResponseNotFound("No such session (it may be archived).", content_type=_TEXT)
    rows, more = session_rows_after(session_id, after=int(after))
    response = HttpResponse(rows, content_type="text/html; charset=utf-8")
    response["X-More-Rows"] = "1" if more else "0"
    return response
