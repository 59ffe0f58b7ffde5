"""Alerts: rules over the shared metrics, evaluated every minute by Celery beat.

Each rule (``ALERT_RULES`` in settings, defaults below) reads a figure over its window and
compares it with its threshold. A rule that crosses it opens an ``Alert`` and is delivered once;
while it lasts it is repeated at most every ``ALERT_REPEAT_MINUTES``; when the figure is back
(or there is no longer enough traffic to judge) it resolves, and that is delivered too.

Deliveries: the log (always), the admin banner (every staff page shows firing alerts), e-mail to
``ALERT_EMAILS`` through Django's mail settings, and a Slack-compatible webhook
(``ALERT_WEBHOOK_URL``, a JSON ``{"text": ...}`` POST). A failed delivery is logged and kept on
the alert; it never stops the other deliveries nor the evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import Handoff
from ops import dashboard
from ops.health import active_session_count
from ops.models import Alert
from supportbot import metrics

log = structlog.get_logger("ops.alerts")

WEBHOOK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Reading:
    """One evaluation of a rule: its figure (None: not enough data), and what it means."""

    value: float | None
    firing: bool
    summary: str


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    evaluate: Callable[[dict[str, Any], Minutes], Reading]


# --- reading the figures ----------------------------------------------------------------------


class Minutes:
    """The minute buckets one evaluation reads: fetched once, for the longest window any rule
    asks (the spikes' hour and their own window), and summed per rule from memory."""

    def __init__(self, now: float, *, span: int = 1) -> None:
        self.now = now
        self.span = span  # minutes read at the first ask, however few it asks for
        self._buckets: list[dict[str, float]] = []  # newest first

    def fields(self, minutes: int) -> dict[str, float]:
        """The last ``minutes`` minutes (the current one included) added together."""
        minutes = max(1, int(minutes))
        if len(self._buckets) < minutes:
            current = int(self.now // 60)
            starts = [current - offset for offset in range(max(minutes, self.span))]
            found = metrics.read_buckets("m", starts)
            self._buckets = [found.get(start, {}) for start in starts]
        return metrics.sum_fields(self._buckets[:minutes])


def _turn_rule(
    sample: str, value: str, what: Callable[[float, int, dict[str, Any]], str]
) -> Callable[[dict[str, Any], Minutes], Reading]:
    """A rule over the turns of its window: ``value`` (a key of ``turn_figures``) against the
    threshold, judged only with at least ``min_samples`` of ``sample`` (turns or answers)."""

    def evaluate(params: dict[str, Any], clock: Minutes) -> Reading:
        turns = dashboard.turn_figures(clock.fields(params["window_minutes"]))
        count = int(turns[sample])
        noun = "turns" if sample == "count" else "answers"
        if count < float(params.get("min_samples", 1)):
            return Reading(None, False, f"{count} {noun}: too few to judge")
        figure = float(turns[value] or 0.0)
        return Reading(
            figure,
            figure > float(params["threshold"]),
            f"{what(figure, count, params)} in the last {params['window_minutes']} min",
        )

    return evaluate


_error_rate = _turn_rule(
    "count",
    "errorRatePercent",
    lambda rate, n, p: f"{rate:g} % of {n} turns failed (threshold {p['threshold']} %)",
)
_latency = _turn_rule(
    "count",
    "p95",
    lambda p95, n, p: (
        f"turn p95 {p95:,.0f} ms over {n} turns (threshold {float(p['threshold']):,.0f} ms)"
    ),
)
_fallback_rate = _turn_rule(
    "answered",
    "fallbackRatePercent",
    lambda rate, n, p: (
        f"{rate:g} % of {n} answers came from a fallback model (threshold {p['threshold']} %)"
    ),
)


def _models_down(params: dict[str, Any], clock: Minutes) -> Reading:
    links = [
        row
        for row in dashboard.breaker_table()
        if row["kind"] == "llm" and row["name"] != "offline"
    ]
    if not links:
        return Reading(None, False, "no process reports a real model")
    down = [row for row in links if row["state"] != "closed"]
    names = ", ".join(f"{row['name']} ({row['state'].replace('_', ' ')})" for row in down)
    return Reading(
        float(len(down)),
        len(down) == len(links),
        f"every model link is down: {names}"
        if len(down) == len(links)
        else f"{len(down)} of {len(links)} model links down{': ' + names if names else ''}",
    )


def _handoff_wait(params: dict[str, Any], clock: Minutes) -> Reading:
    oldest = (
        Handoff.objects.filter(status=Handoff.Status.WAITING)
        .order_by("requested_at")
        .values_list("requested_at", flat=True)
        .first()
    )
    if oldest is None:
        return Reading(0.0, False, "nobody is waiting for a person")
    waited = max(0.0, clock.now - oldest.timestamp())
    waiting = Handoff.objects.filter(status=Handoff.Status.WAITING).count()
    return Reading(
        waited,
        waited > float(params["threshold"]),
        f"{waiting} customer{'s' if waiting != 1 else ''} waiting; the longest for "
        f"{waited / 60:.0f} min (threshold {float(params['threshold']) / 60:.0f} min)",
    )


def _spike(counter: str, outcome: str, what: str) -> Callable[[dict[str, Any], Minutes], Reading]:
    def evaluate(params: dict[str, Any], clock: Minutes) -> Reading:
        window = int(params["window_minutes"])
        recent = metrics.counter_total(clock.fields(window), counter, outcome=outcome)
        # The baseline: the same window's average over the hour before it.
        with_hour = clock.fields(60 + window)
        baseline_total = metrics.counter_total(with_hour, counter, outcome=outcome) - recent
        baseline = baseline_total * window / 60.0
        factor = float(params.get("factor", 5))
        firing = recent >= float(params["threshold"]) and recent > factor * max(baseline, 1.0)
        return Reading(
            float(recent),
            firing,
            f"{recent} {what} in the last {window} min (usually {baseline:.1f}; "
            f"threshold {params['threshold']} and {factor:g} times usual)",
        )

    return evaluate


def _queue_backlog(params: dict[str, Any], clock: Minutes) -> Reading:
    length = celery_queue_length()
    if length is None:
        return Reading(None, False, "the broker's queue length cannot be read")
    return Reading(
        float(length),
        length > float(params["threshold"]),
        f"{length} task{'s' if length != 1 else ''} waiting in the Celery queue "
        f"(threshold {params['threshold']})",
    )


def celery_queue_length(queue: str = "celery") -> int | None:
    """Messages waiting in the default queue: the filesystem broker's files, or the broker's
    own count (Redis LLEN, AMQP passive declare); None when it cannot be read."""
    url = settings.CELERY_BROKER_URL
    try:
        if url.startswith("filesystem://"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
            return len(list(Path(str(folder)).glob("*.msg"))) if folder else None
        # current_app is the supportbot app (ops imports no wiring; see ops.health).
        with current_app.connection_for_read() as connection:
            channel = connection.default_channel
            if url.startswith(("redis://", "rediss://")):
                return int(channel.client.llen(queue))
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:
        log.warning("queue_length_unreadable", error=type(exc).__name__)
        return None


def _archive_failures(params: dict[str, Any], clock: Minutes) -> Reading:
    failures = metrics.counter_total(clock.fields(params["window_minutes"]), "archive_failures")
    return Reading(
        float(failures),
        failures >= float(params["threshold"]),
        f"{failures} archive attempt{'s' if failures != 1 else ''} failed in the last "
        f"{params['window_minutes']} min (threshold {params['threshold']})",
    )


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("error_rate", "Share of turns that failed", _error_rate),
        Rule("latency_p95", "Turn latency p95", _latency),
        Rule("fallback_rate", "Share of answers from a fallback model", _fallback_rate),
        Rule("models_down", "Every real model link is down", _models_down),
        Rule("handoff_wait", "The longest wait for a person", _handoff_wait),
        Rule(
            "ratelimit_spike",
            "A spike in rate-limit refusals",
            _spike("guard", "rate_limited", "rate-limit refusals"),
        ),
        Rule("block_spike", "A spike in blocked messages", _spike("guard", "blocked", "blocks")),
        Rule("queue_backlog", "Celery queue backlog", _queue_backlog),
        Rule("archive_failures", "Failed archive attempts", _archive_failures),
    )
}


def configured_rules() -> dict[str, dict[str, Any]]:
    """The enabled rules with their parameters (``ALERT_RULES``; unknown names are ignored)."""
    return {
        name: params
        for name, params in settings.ALERT_RULES.items()
        if name in RULES and params.get("enabled", True)
    }


# --- evaluating, and keeping the episodes ----------------------------------------------------


def sample_gauges() -> None:
    """Once a minute: what is a state rather than an event (active sessions) as a gauge."""
    metrics.gauge("sessions_active", active_session_count())


def evaluate_alerts(*, now: float | None = None) -> dict[str, str]:
    """Evaluate every enabled rule; open, repeat or resolve its alert. Returns each rule's
    outcome (``ok``, ``fired``, ``firing``, ``repeated``, ``resolved``, ``skipped``, ``error``)."""
    now = time.time() if now is None else now
    rules = configured_rules()
    # The spikes compare their window with the hour before it.
    span = max((int(p.get("window_minutes", 1)) + 60 for p in rules.values()), default=1)
    clock = Minutes(now, span=span)
    outcomes: dict[str, str] = {}
    for name, params in rules.items():
        try:
            reading = RULES[name].evaluate(params, clock)
        except Exception as exc:  # a rule that cannot be read is logged, the others go on
            log.warning("alert_rule_failed", rule=name, error=type(exc).__name__)
            outcomes[name] = "error"
            continue
        outcomes[name] = _apply(name, params, reading, now)
    return outcomes


def _apply(name: str, params: dict[str, Any], reading: Reading, now: float) -> str:
    at = datetime.fromtimestamp(now, tz=timezone.get_current_timezone())
    threshold = float(params["threshold"]) if "threshold" in params else None
    open_alert = Alert.objects.filter(rule=name, status=Alert.Status.FIRING).first()
    if reading.firing and open_alert is None:
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=name,
                    severity=str(params.get("severity", "warning")),
                    summary=reading.summary,
                    value=reading.value,
                    threshold=threshold,
                    started_at=at,
                    last_seen_at=at,
                )
        except IntegrityError:  # another evaluator opened it a moment ago
            return "firing"
        deliver(alert, "firing", at=at)
        return "fired"
    if reading.firing and open_alert is not None:
        open_alert.summary = reading.summary
        open_alert.value = reading.value
        open_alert.last_seen_at = at
        repeat = timedelta(minutes=float(settings.ALERT_REPEAT_MINUTES))
        due = open_alert.last_notified_at is None or at - open_alert.last_notified_at >= repeat
        open_alert.save(update_fields=["summary", "value", "last_seen_at"])
        if due:
            deliver(open_alert, "still firing", at=at)
            return "repeated"
        return "firing"
    if open_alert is not None:
        open_alert.status = Alert.Status.RESOLVED
        open_alert.resolved_at = at
        open_alert.summary = f"{open_alert.summary} — now: {reading.summary}"
        open_alert.save(update_fields=["status", "resolved_at", "summary"])
        deliver(open_alert, "resolved", at=at)
        return "resolved"
    return "ok" if reading.value is not None else "skipped"


# --- deliveries --------------------------------------------------------------------------------


def message(alert: Alert, state: str) -> str:
    """The one line every channel gets."""
    rule = RULES.get(alert.rule)
    title = rule.description if rule else alert.rule
    return f"[supportbot] {state.upper()}: {title} ({alert.rule}): {alert.summary}"


def deliver(alert: Alert, state: str, *, at: datetime) -> None:
    """Send the alert's news to every configured channel and note how each went."""
    text = message(alert, state)
    results: dict[str, Any] = {}
    log_method = log.info if state == "resolved" else log.warning
    log_method("alert", rule=alert.rule, state=state, summary=alert.summary, value=alert.value)
    results["log"] = {"ok": True, "at": at.isoformat()}
    if settings.ALERT_EMAILS:
        results["email"] = _attempt(
            lambda: send_mail(
                subject=text[:150],
                message=f"{text}\n\nStarted {alert.started_at:%Y-%m-%d %H:%M %Z}.",
                from_email=None,
                recipient_list=list(settings.ALERT_EMAILS),
                fail_silently=False,
            ),
            at,
            "email",
            alert,
        )
    if settings.ALERT_WEBHOOK_URL:
        results["webhook"] = _attempt(
            lambda: _post_webhook(text, alert, state), at, "webhook", alert
        )
    alert.deliveries = results
    alert.last_notified_at = at
    alert.notifications += 1
    alert.save(update_fields=["deliveries", "last_notified_at", "notifications"])


def _post_webhook(text: str, alert: Alert, state: str) -> None:
    # Slack's incoming webhooks read "text"; the rest is for receivers that want the fields.
    body = {
        "text": text,
        "rule": alert.rule,
        "state": state,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "startedAt": alert.started_at.isoformat(),
    }
    response = httpx.post(settings.ALERT_WEBHOOK_URL, json=body, timeout=WEBHOOK_TIMEOUT_SECONDS)
    response.raise_for_status()


def _attempt(send: Callable[[], Any], at: datetime, channel: str, alert: Alert) -> dict[str, Any]:
    try:
        send()
    except Exception as exc:
        log.warning(
            "alert_delivery_failed", channel=channel, rule=alert.rule, error=type(exc).__name__
        )
        return {"ok": False, "at": at.isoformat(), "error": type(exc).__name__}
    return {"ok": True, "at": at.isoformat()}


def firing_alerts(limit: int = 5) -> list[Alert]:
    """The alerts firing now, newest first (the admin banner)."""
    return list(Alert.objects.filter(status=Alert.Status.FIRING).order_by("-started_at")[:limit])
