"""Request context (request id, structured access log) and the one error shape for HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from supportbot import metrics, ratelimit
from supportbot.clients import client_ip, client_label
from supportbot.errors import ApiError, body_too_large, error_body
from supportbot.ids import CLIENT_REQUEST_ID_RE, new_request_id
from supportbot.pages import is_html_page_view, is_page_refusal, page_refusal
from supportbot.storable import may_hold_unstorable, refuse_unstorable, unstorable

log = structlog.get_logger("supportbot.access")

# Django's own pages (admin, static files) keep their HTML; so do the views marked as pages
# (``supportbot.pages``), whose errors become HTML pages; everything else speaks JSON.
_HTML_PREFIXES = ("/admin/", "/static/")
_CODE_BY_STATUS = {
    400: "INVALID_REQUEST_FORMAT",
    401: "ACCESS_DENIED",
    403: "ACCESS_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "MESSAGE_TOO_LONG",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_DEGRADED",
}
_MESSAGE_BY_STATUS = {
    400: "The request is malformed.",
    401: "Authentication is required.",
    403: "Access to this resource is denied.",
    404: "No such resource.",
    405: "This method is not allowed on this resource.",
    413: "The request body is larger than 64 KiB.",
}


def json_error(request: HttpRequest, error: ApiError) -> JsonResponse:
    """Render ``error`` in the shape of API.md."""
    body = error_body(
        error,
        request_id=getattr(request, "request_id", "") or new_request_id(),
        path=request.path,
        method=request.method or "GET",
    )
    response = JsonResponse(body, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


class _AsyncCapable:
    """Base for middleware usable on both the sync and async paths without a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        early = self.before(request)
        response = early if early is not None else self.get_response(request)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        early = self.before(request)
        if early is not None:
            return self.after(request, early)
        response = await self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class RequestContextMiddleware(_AsyncCapable):
    """Give every request an id (the client's X-Request-ID when sane) and log it when done."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        supplied = request.headers.get("X-Request-ID", "")
        request.request_id = (  # type: ignore[attr-defined]
            supplied if CLIENT_REQUEST_ID_RE.match(supplied) else new_request_id()
        )
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request.request_id)  # type: ignore[attr-defined]
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code >= 400 and not _is_json(response) and _host_refused(request):
            # DisallowedHost is raised by a middleware outside ErrorShapeMiddleware (Common,
            # CSRF, Security's redirect) and rendered as Django's HTML 400 (DEBUG: its debug
            # page); whatever the path, the client gets API.md's shape instead.
            refused = ApiError(
                "INVALID_REQUEST_FORMAT", "This server does not answer to that Host header."
            )
            response = _shaped(request, response, refused)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        latency_ms = (time.perf_counter() - request.started_at) * 1000  # type: ignore[attr-defined]
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            latency_ms=round(latency_ms, 2),
            session_id=getattr(request, "log_session_id", None),
            client_ip=client_ip(request),
        )
        match = getattr(request, "resolver_match", None)
        metrics.record_request(
            route=match.route if match is not None else "unmatched",
            method=request.method or "",
            status=response.status_code,
            latency_ms=latency_ms,
        )
        return response


class RateLimitMiddleware(_AsyncCapable):
    """Every API request takes a unit of its client's per-IP limit; every API response carries
    the ``X-RateLimit-*`` headers of the tightest limit the request touched (API.md)."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        if not request.path.startswith("/api/") or not ratelimit.enabled():
            return None
        request.rate_limit_states = ratelimit.collect_states()  # type: ignore[attr-defined]
        ip = client_ip(request)
        try:
            ratelimit.hit(("ip_api_requests", client_label(ip)), client_ip=ip)
        except ApiError as refused:
            return json_error(request, refused)
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        states = getattr(request, "rate_limit_states", None)
        if not states:
            return response
        state = ratelimit.tightest(states)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response


class ErrorShapeMiddleware(_AsyncCapable):
    """Refuse oversized bodies; give every non-JSON error outside the admin API.md's shape, or,
    for a view marked as a page (``supportbot.pages``), an HTML page: a browser never gets JSON
    from a page, and an API client never gets HTML."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            refused = ApiError("INVALID_REQUEST_FORMAT", "Content-Length is not a number.")
            return _refusal(request, refused)
        if length > settings.MAX_BODY_BYTES:
            return _refusal(request, body_too_large(settings.MAX_BODY_BYTES))
        try:
            _refuse_unstorable_input(request)
        except ApiError as refused:
            return _refusal(request, refused)
        except RequestDataTooBig:
            return _refusal(request, body_too_large(settings.MAX_BODY_BYTES))
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code < 400 or request.path.startswith(_HTML_PREFIXES):
            return response
        if _is_json(response) or is_page_refusal(response):
            return response
        status = response.status_code
        code = _CODE_BY_STATUS.get(
            status, "INTERNAL_ERROR" if status >= 500 else "INVALID_REQUEST_FORMAT"
        )
        message = _MESSAGE_BY_STATUS.get(status, "The request could not be completed.")
        converted = _refusal(request, ApiError(code, message, status=status))
        if "Allow" in response:
            converted["Allow"] = response["Allow"]
        return converted

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApiError):
            return _refusal(request, exception)
        if isinstance(exception, RequestDataTooBig):
            return _refusal(request, body_too_large(settings.MAX_BODY_BYTES))
        if isinstance(exception, Http404) and not request.path.startswith(_HTML_PREFIXES):
            return _refusal(request, ApiError("NOT_FOUND", _MESSAGE_BY_STATUS[404]))
        if request.path.startswith(_HTML_PREFIXES):
            return None
        log.exception("unhandled_exception", path=request.path)
        return _refusal(
            request, ApiError("INTERNAL_ERROR", "Something went wrong on our side.", status=500)
        )


def _refusal(request: HttpRequest, error: ApiError) -> HttpResponse:
    """``error`` as an HTML page for a page view, else in API.md's JSON shape."""
    if _serves_html_page(request):
        return page_refusal(request, error)
    return json_error(request, error)


def _serves_html_page(request: HttpRequest) -> bool:
    """Whether the request is for a view marked as a page. Resolved here when the refusal comes
    before Django resolved the URL (a bad body or query): only refusals pay for it."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
    return is_html_page_view(match.func)


def _is_json(response: HttpResponse) -> bool:
    return str(response.get("Content-Type", "")).startswith("application/json")


def _host_refused(request: HttpRequest) -> bool:
    try:
        request.get_host()
    except DisallowedHost:
        return True
    return False


def _shaped(request: HttpRequest, response: HttpResponse, error: ApiError) -> HttpResponse:
    """``error`` in API.md's shape, keeping the headers the middleware gave ``response``."""
    converted = json_error(request, error)
    for name, value in response.items():
        if name.lower() not in ("content-type", "content-length"):
            converted[name] = value
    return converted


def _refuse_unstorable_input(request: HttpRequest) -> None:
    """A NUL or a lone surrogate in the path, the query string or a JSON body is refused here,
    for every route at once (``supportbot.storable``): the databases cannot hold them."""
    problem = unstorable(request.path)
    if problem:
        raise ApiError("INVALID_FIELD_VALUE", f"path {problem}.", details={"field": "path"})
    for name, values in request.GET.lists():
        refuse_unstorable({name: values[0] if len(values) == 1 else values})
    if request.path.startswith(_HTML_PREFIXES) or request.method in ("GET", "HEAD", "OPTIONS"):
        return  # the admin's forms check their own fields; these methods carry no body
    raw = request.body
    if raw and may_hold_unstorable(raw):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            return  # not JSON: the view says so in its own words
        refuse_unstorable(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(schema: Any, *, required: bool = True) -> dict[str, Any]:
    """A route's ``openapi_extra``: its JSON body is ``schema`` (a pydantic model), which the
    view parses itself with ``parse_json_object`` (so a bad body gets the API's error shape)."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema.model_json_schema()}},
        }
    }


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    try:
        value = json.loads(raw or b"null", parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser's stack (a 64 KiB body allows it).
        raise ApiError("INVALID_REQUEST_FORMAT", "The body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise ApiError("INVALID_REQUEST_FORMAT", "The body must be a JSON object.")
    return value
