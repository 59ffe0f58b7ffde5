"""``{% alert_banner %}``: the alerts firing now, on every admin page (admin/base_site.html)."""

from __future__ import annotations

from typing import Any

import structlog
from django import template

log = structlog.get_logger("ops.alerts")
register = template.Library()


@register.inclusion_tag("ops/_alert_banner.html", takes_context=True)
def alert_banner(context: template.Context) -> dict[str, Any]:
    """The firing alerts, for staff only; a database that cannot be read shows no banner."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {"alerts": []}
    from ops.alerts import RULES, firing_alerts

    try:
        alerts = firing_alerts()
    except Exception as exc:  # the page itself matters more than its banner
        log.warning("alert_banner_failed", error=type(exc).__name__)
        return {"alerts": []}
    return {
        "alerts": [
            {
                "title": RULES[a.rule].description if a.rule in RULES else a.rule,
                "summary": a.summary,
                "severity": a.severity,
                "started_at": a.started_at,
            }
            for a in alerts
        ]
    }
