"""An external ticketing system behind the ticket functions (``TICKETING_API_URL``).

When it is configured, every ticket is opened there first and mirrored here (our ``TKT-`` id,
the session it belongs to, its history), so the session scoping, the admin and ``fetch_status``
work the same; reads refresh the mirror from the external system. The protocol (JSON over
HTTPS, ``Authorization: Bearer TICKETING_API_KEY``):

- ``POST /tickets`` ``{title, description, priority, category, userEmail, metadata, reference}``
  with an ``Idempotency-Key`` header → 200/201 ``{id, status, updates?: [...]}``
- ``GET /tickets/{id}`` → ``{id, status, priority?, updates: [{id, message, status, createdAt}]}``
- ``POST /tickets/{id}/cancel`` ``{reason}`` → ``{id, status}``

A timeout, a connection error, a 429 or a 5xx is transient (``ToolFailure`` retried by the
registry); any other 4xx is permanent. Nothing of the key or the response body reaches clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from django.conf import settings

from tools.models import Ticket
from tools.registry import ToolFailure

log = structlog.get_logger("tools.ticketing")

STATUSES = frozenset(Ticket.Status.values)


@dataclass(frozen=True)
class ExternalUpdate:
    id: str
    message: str
    status: str


@dataclass(frozen=True)
class ExternalTicket:
    id: str
    status: str
    updates: tuple[ExternalUpdate, ...] = ()


def configured() -> bool:
    return bool(settings.TICKETING_API_URL)


def _client() -> httpx.Client:
    return httpx.Client(
        base_url=settings.TICKETING_API_URL.rstrip("/"),
        timeout=settings.TICKETING_TIMEOUT_SECONDS,
        headers={"Authorization": f"Bearer {settings.TICKETING_API_KEY}"},
        follow_redirects=False,
    )


def _request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    try:
        with _client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        log.warning("ticketing.unreachable", method=method, error=type(exc).__name__)
        raise ToolFailure("The ticketing system did not answer.", permanent=False) from None
    if response.status_code == 429 or response.status_code >= 500:
        log.warning("ticketing.unavailable", method=method, status=response.status_code)
        raise ToolFailure("The ticketing system is unavailable.", permanent=False)
    if response.status_code == 404:
        raise ToolFailure(
            "The ticketing system has no such ticket.", permanent=True, code="NOT_FOUND"
        )
    if response.status_code >= 400:
        log.warning("ticketing.refused", method=method, status=response.status_code)
        raise ToolFailure("The ticketing system refused the request.", permanent=True, fault=True)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str | int):
        raise ToolFailure("The ticketing system sent an unreadable answer.", permanent=False)
    return body


def _ticket(body: dict[str, Any]) -> ExternalTicket:
    status = str(body.get("status") or "open").lower().replace(" ", "_").replace("-", "_")
    updates = []
    for item in body.get("updates") or []:
        if isinstance(item, dict) and item.get("id") is not None:
            updates.append(
                ExternalUpdate(
                    id=str(item["id"])[:128],
                    message=str(item.get("message") or "")[:4000],
                    status=str(item.get("status") or "")[:32],
                )
            )
    return ExternalTicket(
        id=str(body["id"])[:128],
        status=status if status in STATUSES else "open",
        updates=tuple(updates),
    )


def external_create(
    *, reference: str, fields: dict[str, Any], idempotency_key: str
) -> ExternalTicket:
    body = _request(
        "POST",
        "/tickets",
        json={**fields, "reference": reference},
        headers={"Idempotency-Key": idempotency_key},
    )
    return _ticket(body)


def external_get(external_id: str) -> ExternalTicket:
    return _ticket(_request("GET", f"/tickets/{quote(external_id, safe='')}"))


def external_cancel(external_id: str, *, reason: str) -> ExternalTicket:
    path = f"/tickets/{quote(external_id, safe='')}/cancel"
    return _ticket(_request("POST", path, json={"reason": reason}))
