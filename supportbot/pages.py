"""Pages: the views that answer a browser with HTML of the project's own, refusals included.

API.md's one error shape is JSON, and ``ErrorShapeMiddleware`` gives it to every error response
that is not JSON already: a client of the API never meets an HTML page. A page a person opens in
a browser (the chat page, the widget) is the other way round: it must never show raw JSON, and
its refusals (a session limit) are pages that say in words how long to wait. A view declares
itself a page with ``@html_page``; the middleware then leaves its HTML answers alone, renders
an HTML error page for what it would otherwise shape as JSON, and API routes stay JSON. The
mark is on the view, not on a list of paths, so a new page is a page wherever it is routed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from supportbot.errors import ApiError, wait_in_words

_MARK = "serves_html_page"
_RESPONSE_MARK = "is_page_refusal"
# The page of a refusal that arrives before the view runs, or from a page without its own.
ERROR_TEMPLATE = "page_error.html"


def html_page[View: Callable[..., Any]](view: View) -> View:
    """Mark ``view`` as a page: its errors reach the browser as HTML, never as JSON.

    Put it outermost (or innermost: ``functools.wraps`` carries the mark through decorators)."""
    setattr(view, _MARK, True)
    return view


def is_html_page_view(view: Any) -> bool:
    """Whether ``view`` (a resolved view function) was marked with ``@html_page``."""
    return bool(getattr(view, _MARK, False))


def page_refusal(
    request: HttpRequest,
    error: ApiError,
    *,
    template: str = ERROR_TEMPLATE,
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """``error`` as an HTML page: its message, its code (the one the log records), the wait in
    words and ``Retry-After`` when it has one, and the request id to quote to support."""
    wait = wait_in_words(error.retry_after) if error.retry_after is not None else ""
    response = render(
        request,
        template,
        {
            "message": error.message,
            "code": error.code,
            "wait": wait,
            "request_id": getattr(request, "request_id", ""),
            **(context or {}),
        },
        status=error.status,
    )
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    setattr(response, _RESPONSE_MARK, True)
    return response


def is_page_refusal(response: HttpResponse) -> bool:
    """Whether ``response`` is a refusal page rendered by ``page_refusal`` (kept as it is)."""
    return bool(getattr(response, _RESPONSE_MARK, False))
