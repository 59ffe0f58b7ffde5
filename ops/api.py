"""REST endpoints of the ops app."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router

from ops.health import status_report

router = Router(tags=["ops"])


@router.get("/status", summary="Service status, headline metrics and configured limits")
def status(request: HttpRequest) -> dict[str, Any]:
    """GET /api/status (API.md): no probes, so it is cheap enough to poll."""
    return status_report()
