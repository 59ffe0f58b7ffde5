"""The REST API (django-ninja): routers from each app, and API.md's one error shape."""

from __future__ import annotations

import structlog
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

from chat.api import router as chat_router
from chat.feedback_api import router as feedback_router
from chat.handoff_api import router as handoff_router
from chat.tools_api import router as chat_tools_router
from chat.widget_api import router as widget_router
from ops.api import router as ops_router
from ops.staff_api import router as staff_router
from supportbot.errors import ApiError, describe_validation_errors
from supportbot.middleware import json_error, parse_json_object

log = structlog.get_logger("supportbot.api")

api = NinjaAPI(
    title="supportbot",
    version="1",
    description="REST API of supportbot; the wire contract is API.md.",
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("", chat_router)
api.add_router("", chat_tools_router)
api.add_router("", feedback_router)
api.add_router("", handoff_router)
api.add_router("", widget_router)
api.add_router("", ops_router)
api.add_router("", staff_router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return json_error(request, exc)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if request.method in ("POST", "PUT", "PATCH") and request.body.strip():
        # A JSON array or scalar fails as "fields missing"; say what is really wrong.
        try:
            parse_json_object(request.body)
        except ApiError as error:
            return json_error(request, error)
    return json_error(request, describe_validation_errors(exc.errors))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:
        return json_error(
            request, ApiError("INVALID_REQUEST_FORMAT", "The body is not valid JSON.")
        )
    code = {
        401: "ACCESS_DENIED",
        403: "ACCESS_DENIED",
        404: "NOT_FOUND",
        429: "RATE_LIMIT_EXCEEDED",
    }
    return json_error(
        request,
        ApiError(code.get(exc.status_code, "INTERNAL_ERROR"), str(exc), status=exc.status_code),
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return json_error(request, ApiError("NOT_FOUND", "No such resource."))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return json_error(
        request,
        ApiError("MESSAGE_TOO_LONG", "The request body is larger than 64 KiB.", status=413),
    )


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled_exception", path=request.path)
    return json_error(request, ApiError("INTERNAL_ERROR", "Something went wrong on our side."))
