"""Alerts: rules over the shared metrics fire once, repeat at most every N minutes, resolve, and
reach the log, the admin banner, e-mail and a webhook (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from ops.alerts import evaluate_alerts
from ops.models import Alert
from supportbot import metrics
from supportbot.env import env_rules
from tests.chat.conftest import new_session, send, use_models
from tests.fakes.openai_server import HttpError, Reply, refusing_socket


class Webhook:
    """A Slack-style incoming webhook: it keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def states(self, rule: str) -> list[str]:
        return [b["state"] for b in self.bodies if b["rule"] == rule]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings) -> Iterator[Webhook]:
    hook = Webhook()
    settings.ALERT_WEBHOOK_URL = hook.url
    yield hook
    hook.close()


def _rules(settings, **changes: dict) -> None:
    rules = {name: dict(params) for name, params in settings.ALERT_RULES.items()}
    for name, params in changes.items():
        rules[name].update(params)
    settings.ALERT_RULES = rules


def _failing_turns(count: int) -> None:
    for _ in range(count):
        metrics.record_turn(
            transport="rest",
            ok=False,
            total_ms=50.0,
            first_token_ms=None,
            error_code="AI_SERVICE_UNAVAILABLE",
        )


@pytest.mark.django_db
def test_an_alert_fires_once_repeats_after_the_interval_and_resolves(
    settings, memory_metrics, webhook
):
    settings.ALERT_REPEAT_MINUTES = 30
    _rules(settings, error_rate={"min_samples": 3})
    _failing_turns(4)
    now = time.time()

    assert evaluate_alerts(now=now)["error_rate"] == "fired"
    assert evaluate_alerts(now=now + 60)["error_rate"] == "firing"  # no repeat within 30 min
    assert webhook.states("error_rate") == ["firing"]
    # Still failing half an hour later (the window moves: fail again in "that" minute).
    _failing_turns(4)
    later = time.time()
    alert = Alert.objects.get(rule="error_rate")
    assert alert.last_notified_at is not None
    Alert.objects.filter(pk=alert.pk).update(
        last_notified_at=alert.last_notified_at - timedelta(minutes=31)
    )
    assert evaluate_alerts(now=later)["error_rate"] == "repeated"
    assert webhook.states("error_rate") == ["firing", "still firing"]
    # Ten minutes on, the five-minute window holds nothing: too few turns to judge, so it ends.
    assert evaluate_alerts(now=later + 600)["error_rate"] == "resolved"
    assert webhook.states("error_rate") == ["firing", "still firing", "resolved"]
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert alert.notifications == 3
    assert alert.deliveries["webhook"]["ok"] is True
    assert "100 % of 4 turns failed" in webhook.bodies[0]["text"]


@pytest.mark.django_db
def test_alert_email_goes_through_django_mail(settings, memory_metrics):
    settings.ALERT_EMAILS = ["oncall@example.com"]
    settings.ALERT_WEBHOOK_URL = ""
    _rules(settings, error_rate={"min_samples": 1})
    _failing_turns(2)
    evaluate_alerts()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["oncall@example.com"]
    assert "FIRING" in mail.outbox[0].subject and "error_rate" in mail.outbox[0].subject


@pytest.mark.django_db
def test_a_dead_webhook_is_recorded_and_stops_nothing(settings, memory_metrics):
    sock = refusing_socket()
    try:
        settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        settings.ALERT_EMAILS = ["oncall@example.com"]
        _rules(settings, error_rate={"min_samples": 1})
        _failing_turns(2)
        assert evaluate_alerts()["error_rate"] == "fired"
    finally:
        sock.close()
    alert = Alert.objects.get(rule="error_rate")
    assert alert.deliveries["webhook"] == {
        "ok": False,
        "at": alert.deliveries["webhook"]["at"],
        "error": "ConnectError",
    }
    assert alert.deliveries["email"]["ok"] is True
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_firing_alerts_show_on_every_admin_page(settings, memory_metrics):
    settings.ALERT_WEBHOOK_URL = ""
    _rules(settings, error_rate={"min_samples": 1})
    _failing_turns(2)
    evaluate_alerts()
    staff = User.objects.create_user(
        "ops", password="pw-ops-123456", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(staff)
    for path in ("/admin/", "/admin/chat/chatsession/", "/admin/ops/alert/"):
        html = client.get(path).content.decode()
        assert 'id="alert-banner"' in html, path
        assert "Share of turns that failed" in html
    # The history lists it.
    assert "error_rate" in client.get("/admin/ops/alert/").content.decode()


def test_alert_rules_from_the_environment_are_checked(monkeypatch):
    defaults: dict[str, dict[str, object]] = {
        "error_rate": {"threshold": 10.0, "window_minutes": 5}
    }
    monkeypatch.setenv("ALERT_RULES", '{"error_rate": {"threshold": 3}}')
    assert env_rules("ALERT_RULES", defaults)["error_rate"] == {"threshold": 3, "window_minutes": 5}
    for bad in ('{"nope": {}}', '{"error_rate": {"thresh": 1}}', "[1]", "not json"):
        monkeypatch.setenv("ALERT_RULES", bad)
        with pytest.raises(ImproperlyConfigured):
            env_rules("ALERT_RULES", defaults)


@pytest.fixture
def model(settings, fake_llm):
    """The fake model as the only real model, the offline assistant behind it."""
    use_models(settings, primary=fake_llm.base_url)
    return fake_llm


@pytest.mark.django_db(transaction=True)
async def test_a_failing_model_fires_alerts_to_the_webhook_and_they_resolve(
    api, model, kb, settings, webhook
):
    """End to end: the fake model fails, the offline assistant answers in its place; the
    fallback rate and every-model-down rules fire to the webhook, then resolve once the model
    answers again and the window has moved on."""
    await sync_to_async(metrics.reset)()
    settings.LLM_BREAKER_THRESHOLD = 2
    settings.LLM_BREAKER_RESET_SECONDS = 0.5
    _rules(settings, fallback_rate={"min_samples": 3}, error_rate={"enabled": False})
    model.set_default(HttpError(500))
    session_id = await new_session(api)
    for question in ("How do I reset my password?", "What is NB-1042?", "Do you refund?"):
        response = await send(api, session_id, question)
        assert response.status_code == 200
        assert response.json()["metadata"]["fallbackUsed"] is True

    outcomes = await sync_to_async(evaluate_alerts)()
    assert outcomes["fallback_rate"] == "fired"
    assert outcomes["models_down"] == "fired"
    assert webhook.states("fallback_rate") == ["firing"]
    assert webhook.states("models_down") == ["firing"]
    assert "every model link is down" in webhook.bodies[-1]["text"] or any(
        "every model link is down" in b["text"] for b in webhook.bodies
    )

    model.set_default(Reply("Back again."))
    await asyncio.sleep(0.6)  # the breaker lets a probe through
    response = await send(api, session_id, "Are you back?")
    assert response.json()["response"] == "Back again."
    outcomes = await sync_to_async(evaluate_alerts)(now=time.time() + 20 * 60)
    assert outcomes["fallback_rate"] == "resolved"
    assert outcomes["models_down"] == "resolved"
    assert webhook.states("fallback_rate") == ["firing", "resolved"]
    assert webhook.states("models_down") == ["firing", "resolved"]


@pytest.mark.django_db
def test_queue_backlog_archive_failures_and_long_waits_fire(settings, memory_metrics, tmp_path):
    settings.ALERT_WEBHOOK_URL = ""
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    _rules(settings, queue_backlog={"threshold": 2}, handoff_wait={"threshold": 60})
    for index in range(3):  # three tasks nobody has taken
        (tmp_path / f"task-{index}.msg").write_text("{}")
    metrics.incr("archive_failures", reason="ended")
    from chat.models import ChatSession, Handoff

    session = ChatSession.objects.create()
    Handoff.objects.create(
        session=session, requested_at=timezone.now() - timedelta(minutes=5), reason="customer"
    )

    outcomes = evaluate_alerts()

    assert outcomes["queue_backlog"] == "fired"
    assert outcomes["archive_failures"] == "fired"
    assert outcomes["handoff_wait"] == "fired"
    assert outcomes["error_rate"] == "skipped"  # no turns: nothing to judge
    summaries = dict(Alert.objects.values_list("rule", "summary"))
    assert summaries["queue_backlog"].startswith("3 tasks waiting")
    assert "the longest for 5 min" in summaries["handoff_wait"]
