"""Retention per kind of data (``ops.retention``): each kind deletes what is just past its period
and keeps what is just inside it, an unset period keeps everything, deletion goes in batches,
a dry run deletes nothing, sessions go only through expiry (archived first), archives on a dead
S3 keep their row and say so; the command, the Celery task and the admin page (with its
"Apply now" permission) on top.

Every test passes an explicit ``now`` and puts its rows a minute either side of the cutoff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.archives import restore_archive, write_archive
from chat.models import ChatSession, Message, PiiAllowlistEntry, ReviewItem, SessionArchive
from ops.models import RetentionRun
from ops.retention import KINDS, UnknownKind, apply_retention, policy_rows
from ops.tasks import apply_retention_task
from supportbot import metrics, security
from supportbot.models import MetricPoint, UsageDay
from tests.chat.test_archive_s3 import use_s3_archives
from tests.fakes.openai_server import refusing_socket
from tools.models import Ticket, TicketUpdate

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)
CHANGELIST = "/admin/ops/retentionrun/"
APPLY = "/admin/ops/retentionrun/apply/"


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def policy(settings: Any) -> Any:
    """Every period set, batches of 500."""
    settings.RETENTION_ARCHIVES_DAYS = 90.0
    settings.RETENTION_TICKETS_DAYS = 30.0
    settings.RETENTION_SECURITY_EVENTS_DAYS = 30.0
    settings.PII_REVIEW_RETENTION_DAYS = 7.0
    settings.METRICS_RETENTION_DAYS = 35.0
    settings.RETENTION_BATCH_SIZE = 500
    return settings


@pytest.fixture
def s3_down(settings: Any) -> Iterator[None]:
    """Archives go to an S3 endpoint on 127.0.0.1 that refuses every connection."""
    sock = refusing_socket()
    try:
        use_s3_archives(
            settings, endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}", bucket="down"
        )
        yield
    finally:
        sock.close()


# --- makers -------------------------------------------------------------------------------------


def session(*, expires_at: datetime, **fields: Any) -> ChatSession:
    """A session with one message."""
    made = ChatSession.objects.create(expires_at=expires_at, **fields)
    Message.objects.create(session=made, seq=1, role=Message.Role.USER, content="Where is it?")
    ChatSession.objects.filter(pk=made.pk).update(last_seq=1, message_count=1)
    return made


def archive(*, created_at: datetime, restored: bool = False) -> SessionArchive:
    """An archive written to storage the real way, its session gone (as after expiry)."""
    ended = session(expires_at=created_at, status=ChatSession.Status.ENDED, ended_at=created_at)
    written = write_archive(session_id=ended.pk, reason="ended")
    SessionArchive.objects.filter(pk=written.pk).update(created_at=created_at)
    ChatSession.objects.filter(pk=ended.pk).delete()
    written.refresh_from_db()
    if restored:
        restore_archive(written, by="lead")
    return written


def ticket(status: str, *, updated_at: datetime) -> Ticket:
    made = Ticket.objects.create(
        session_id="sess_x",
        title="Refund",
        description="Please refund order 1",
        status=status,
        estimated_resolution=updated_at,
    )
    TicketUpdate.objects.create(ticket=made, kind=TicketUpdate.Kind.STATUS, status=status)
    Ticket.objects.filter(pk=made.pk).update(updated_at=updated_at)
    return made


def review_item(**fields: Any) -> ReviewItem:
    base = {"kind": ReviewItem.Kind.CONTENT, "action": ReviewItem.Action.FLAGGED}
    return ReviewItem.objects.create(**{**base, **fields})


def counted(kind: str) -> int:
    return metrics.counter_total(metrics.read_totals(), "retention_deleted", kind=kind)


def exists(obj: Any) -> bool:
    return type(obj).objects.filter(pk=obj.pk).exists()


# --- each kind ----------------------------------------------------------------------------------


def test_closed_tickets_past_the_period_go_with_their_updates(policy, now):
    cutoff = now - timedelta(days=30)
    past = [ticket(s, updated_at=cutoff - MINUTE) for s in ("resolved", "closed", "cancelled")]
    inside = ticket("closed", updated_at=cutoff + MINUTE)
    still_open = [
        ticket(s, updated_at=cutoff - timedelta(days=400)) for s in ("open", "in_progress")
    ]
    before = counted("tickets")

    result = apply_retention("command", kinds=["tickets"], now=now)

    assert result.deleted == {"tickets": 3}
    assert not any(exists(t) for t in past)
    assert not TicketUpdate.objects.filter(ticket_id__in=[t.pk for t in past]).exists()
    assert exists(inside) and all(exists(t) for t in still_open)
    assert TicketUpdate.objects.count() == 3
    assert counted("tickets") - before == 3


def test_archives_past_the_period_lose_object_and_row(policy, now):
    cutoff = now - timedelta(days=90)
    past, inside = archive(created_at=cutoff - MINUTE), archive(created_at=cutoff + MINUTE)
    store = storages["archives"]
    assert store.exists(past.key) and store.exists(inside.key)

    result = apply_retention("command", kinds=["archives"], now=now)

    assert result.deleted == {"archives": 1} and result.errors == []
    assert not exists(past) and not store.exists(past.key)
    assert exists(inside) and store.exists(inside.key)


def test_a_session_restored_from_a_deleted_archive_is_released(policy, now):
    restored = archive(created_at=now - timedelta(days=91), restored=True)
    assert ChatSession.objects.get(pk=restored.session_id).is_restored

    apply_retention("command", kinds=["archives"], now=now)

    assert not exists(restored)
    assert not ChatSession.objects.filter(pk=restored.session_id).exists()
    assert not Message.objects.filter(session_id=restored.session_id).exists()


def test_archives_with_s3_down_keep_their_row_and_report_the_error(policy, now, s3_down):
    old = [
        SessionArchive.objects.create(
            session_id=f"sess_{n}",
            key=f"2020/01/01/sess_{n}-ended.json.gz",
            size=10,
            sha256="0" * 64,
            message_count=1,
            reason="ended",
            created_at=now - timedelta(days=100),
        )
        for n in range(3)
    ]
    closed = ticket("closed", updated_at=now - timedelta(days=31))
    failures = metrics.counter_total(metrics.read_totals(), "archive_failures", reason="retention")

    result = apply_retention("command", kinds=["archives", "tickets"], now=now)

    assert all(exists(a) for a in old)
    assert result.deleted == {"archives": 0, "tickets": 1} and not exists(closed)
    (error,) = result.errors  # storage that does not answer is tried once per run, not 3 times
    assert error["kind"] == "archives" and error["key"] == old[0].key
    assert "did not answer" in error["error"]
    run = RetentionRun.objects.get()
    assert run.errors == result.errors and run.deleted == {"archives": 0, "tickets": 1}
    totals = metrics.read_totals()
    assert metrics.counter_total(totals, "archive_failures", reason="retention") == failures + 1


def test_archives_on_s3_are_deleted_from_the_bucket(policy, now, settings, s3_server):
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    past = archive(created_at=now - timedelta(days=91))
    assert s3_server.keys() == [f"archives/{past.key}"]

    assert apply_retention("command", kinds=["archives"], now=now).deleted == {"archives": 1}

    assert s3_server.keys() == [] and not exists(past)


def test_sessions_go_only_through_expiry_archived_first(policy, now):
    expired = session(expires_at=now - MINUTE)
    live = session(expires_at=now + MINUTE)
    restored = session(expires_at=now - timedelta(days=3), restored_at=now)
    retrying = session(expires_at=now - MINUTE, archive_retry_at=now + MINUTE)

    result = apply_retention("command", kinds=["sessions"], now=now)

    assert result.deleted == {"sessions": 1} and result.errors == []
    assert not exists(expired) and not Message.objects.filter(session_id=expired.pk).exists()
    (kept,) = SessionArchive.objects.filter(session_id=expired.pk)
    assert kept.message_count == 1 and storages["archives"].exists(kept.key)
    assert exists(live) and exists(restored) and exists(retrying)


def test_a_session_whose_archive_fails_stays(policy, now, s3_down):
    expired = session(expires_at=now - MINUTE)

    result = apply_retention("command", kinds=["sessions"], now=now)

    assert result.deleted == {"sessions": 0}
    assert "could not be archived" in result.errors[0]["error"]
    kept = ChatSession.objects.get(pk=expired.pk)
    assert kept.archive_attempts == 1 and kept.archive_retry_at > now
    assert Message.objects.filter(session_id=expired.pk).count() == 1
    assert not SessionArchive.objects.filter(session_id=expired.pk).exists()


def test_pii_clear_copies_go_at_purge_time_or_when_older_than_the_period(policy, now):
    due = review_item(kind="pii", encrypted_clear=b"secret", purge_after=now - MINUTE)
    kept = review_item(kind="pii", encrypted_clear=b"secret", purge_after=now + MINUTE)
    # Recorded when the period was longer: the shorter one applies to it too.
    shortened = review_item(
        kind="pii",
        encrypted_clear=b"secret",
        purge_after=now + timedelta(days=20),
        created_at=now - timedelta(days=7) - MINUTE,
    )

    result = apply_retention("command", kinds=["pii_review"], now=now)

    assert result.deleted == {"pii_review": 2}
    for item, clear in ((due, None), (kept, b"secret"), (shortened, None)):
        item.refresh_from_db()
        assert (bytes(item.encrypted_clear) if item.encrypted_clear else None) == clear
    assert ReviewItem.objects.count() == 3  # the (redacted) items themselves stay


def test_decided_review_items_and_old_security_events_go(policy):
    security.security_event("content_blocked", session_id="sess_old")
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    security.security_event("content_blocked", session_id="sess_new")
    now = datetime.fromtimestamp(middle, tz=UTC) + timedelta(days=30)
    cutoff = now - timedelta(days=30)
    confirmed = review_item(
        status="confirmed", created_at=cutoff - 2 * MINUTE, reviewed_at=cutoff - MINUTE
    )
    undated = review_item(status="dismissed", created_at=cutoff - MINUTE)
    recent = review_item(status="dismissed", created_at=cutoff - MINUTE, reviewed_at=now)
    still_open = review_item(status="open", created_at=cutoff - timedelta(days=100))
    entry = PiiAllowlistEntry.objects.create(kind="email", fingerprint="f" * 64, source=undated)
    assert KINDS["security_events"].count_due(now) == 3

    result = apply_retention("command", kinds=["security_events"], now=now)

    assert result.deleted == {"security_events": 3}  # two items and one event
    assert not exists(confirmed) and not exists(undated)
    assert exists(recent) and exists(still_open)
    entry.refresh_from_db()
    assert entry.source is None  # the allowlist entry outlives the item it came from
    assert [e["sessionId"] for e in security.recent_events()] == ["sess_new"]


def test_forget_before_keeps_newer_events_in_order(policy):
    for n in range(3):
        security.security_event("rate_limited", session_id=f"sess_{n}", limit="chat")
    assert security.count_before(time.time() - 60) == 0
    assert security.forget_before(time.time() - 60) == 0
    assert [e["sessionId"] for e in security.recent_events()] == ["sess_2", "sess_1", "sess_0"]
    assert security.count_before(time.time() + 1) == 3
    assert security.forget_before(time.time() + 1) == 3
    assert security.recent_events() == []


def test_metric_hours_and_usage_days_past_the_period_go(policy, now):
    keep = 35 * 86400 + 3600  # the metrics store's own rule: the period and an hour
    floor_hour = int(now.timestamp() - keep) // 3600
    floor_day = datetime.fromtimestamp(now.timestamp() - keep, tz=UTC).date()
    old_hour = MetricPoint.objects.create(resolution="h", start=floor_hour - 1, name="x", value=1)
    kept_hour = MetricPoint.objects.create(resolution="h", start=floor_hour, name="x", value=1)
    total = MetricPoint.objects.create(resolution="t", start=0, name="retention_test", value=1)
    old_day = UsageDay.objects.create(day=floor_day - timedelta(days=1), user_id="u1", turns=1)
    kept_day = UsageDay.objects.create(day=floor_day, user_id="u1", turns=1)

    result = apply_retention("command", kinds=["metrics"], now=now)

    assert result.deleted == {"metrics": 2}
    assert not exists(old_hour) and not exists(old_day)
    assert exists(kept_hour) and exists(kept_day) and exists(total)


# --- the run ------------------------------------------------------------------------------------


def test_unset_periods_keep_everything(settings, now):
    settings.RETENTION_ARCHIVES_DAYS = None
    settings.RETENTION_TICKETS_DAYS = None
    settings.RETENTION_SECURITY_EVENTS_DAYS = None
    years = now - timedelta(days=3650)
    kept = [
        archive(created_at=years),
        ticket("closed", updated_at=years),
        review_item(status="confirmed", created_at=years, reviewed_at=years),
    ]
    names = ["archives", "tickets", "security_events"]

    dry = apply_retention("command", dry_run=True, kinds=names, now=now)
    result = apply_retention("command", kinds=names, now=now)

    assert [o.due for o in dry.outcomes] == [0, 0, 0]
    assert [o.period_days for o in result.outcomes] == [None, None, None]
    assert result.deleted == {"archives": 0, "tickets": 0, "security_events": 0}
    assert all(exists(obj) for obj in kept)


def test_more_rows_than_a_batch_go_in_several_batches(policy, settings, now):
    settings.RETENTION_BATCH_SIZE = 2
    old = now - timedelta(days=100)
    tickets = [ticket("closed", updated_at=old) for _ in range(5)]
    archives = [archive(created_at=old) for _ in range(3)]
    for _ in range(3):
        session(expires_at=now - MINUTE)

    one = KINDS["tickets"].delete_batch(now, 2, set())
    assert (one.deleted, one.seen) == (2, 2) and Ticket.objects.count() == 3

    result = apply_retention("command", kinds=["sessions", "archives", "tickets"], now=now)

    # 3 expired sessions in batches of 2, each archived: 3 archives more, all young.
    assert result.deleted == {"sessions": 3, "archives": 3, "tickets": 3}
    assert not Ticket.objects.exists() and not any(exists(a) for a in archives + tickets)
    assert SessionArchive.objects.count() == 3 and not ChatSession.objects.exists()


def test_dry_run_counts_right_and_deletes_nothing(policy, now):
    old = now - timedelta(days=100)
    for _ in range(2):
        ticket("resolved", updated_at=old)
    archive(created_at=old)
    session(expires_at=now - MINUTE)
    review_item(kind="pii", encrypted_clear=b"secret", purge_after=now - MINUTE)
    review_item(status="confirmed", created_at=old, reviewed_at=old)
    UsageDay.objects.create(day=(now - timedelta(days=40)).date(), user_id="u1")
    before = counted("tickets")

    result = apply_retention("command", dry_run=True, now=now)

    due = {o.kind: o.due for o in result.outcomes}
    assert due == {
        "sessions": 1,
        "archives": 1,
        "tickets": 2,
        "pii_review": 1,
        "security_events": 1,
        "metrics": 1,
    }
    assert result.run_id is None and not RetentionRun.objects.exists()
    assert Ticket.objects.count() == 2 and SessionArchive.objects.count() == 1
    assert ChatSession.objects.count() == 1 and UsageDay.objects.count() == 1
    assert ReviewItem.objects.filter(encrypted_clear__isnull=False).count() == 1
    assert counted("tickets") == before


def test_a_spent_time_budget_stops_the_run_and_says_so(policy, now):
    closed = ticket("closed", updated_at=now - timedelta(days=31))

    result = apply_retention("command", kinds=["tickets"], now=now, budget_seconds=0)

    assert exists(closed) and result.deleted == {"tickets": 0}
    assert not result.failed and "time budget" in result.errors[0]["note"]
    assert RetentionRun.objects.get().errors == result.errors


def test_a_real_run_is_recorded(policy, now):
    ticket("closed", updated_at=now - timedelta(days=31))

    result = apply_retention("admin", now=now)

    run = RetentionRun.objects.get()
    assert run.pk == result.run_id and run.trigger == "admin" and run.finished_at is not None
    assert run.deleted == {
        "sessions": 0,
        "archives": 0,
        "tickets": 1,
        "pii_review": 0,
        "security_events": 0,
        "metrics": 0,
    }


def test_unknown_kind_and_trigger_are_refused(policy):
    with pytest.raises(UnknownKind, match="'mail'"):
        apply_retention("command", kinds=["tickets", "mail"])
    with pytest.raises(ValueError, match="trigger"):
        apply_retention("cron")
    assert not RetentionRun.objects.exists()


def test_the_celery_task_applies_it_as_scheduled(policy):
    ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    apply_retention_task.delay()

    assert RetentionRun.objects.get().trigger == "beat" and not Ticket.objects.exists()


# --- the command --------------------------------------------------------------------------------


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("apply_retention", *args, stdout=out)
    return out.getvalue()


def test_command_dry_run_prints_the_policy_table(policy):
    for _ in range(2):
        ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    out = run_command("--dry-run")

    assert "what would go (dry run)" in out
    row = next(line for line in out.splitlines() if " tickets " in line)
    assert "RETENTION_TICKETS_DAYS" in row and "30 days" in row and row.rstrip(" │").endswith("2")
    assert "7 days" in next(line for line in out.splitlines() if "pii_review" in line)
    assert Ticket.objects.count() == 2 and not RetentionRun.objects.exists()


def test_command_applies_the_kinds_asked_and_prints_json(policy, settings):
    settings.RETENTION_ARCHIVES_DAYS = None
    ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    document = json.loads(run_command("--kind", "tickets", "archives", "--json"))

    assert [k["kind"] for k in document["kinds"]] == ["archives", "tickets"]
    assert document["deleted"] == {"archives": 0, "tickets": 1}
    assert document["kinds"][0]["periodDays"] is None and document["dryRun"] is False
    assert document["runId"] == RetentionRun.objects.get().pk
    assert not Ticket.objects.exists()


def test_command_prints_what_went(policy):
    ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    out = run_command("--kind", "tickets")

    assert "what went" in out and "Recorded as retention run #" in out
    assert next(line for line in out.splitlines() if " tickets " in line).rstrip(" │")[-1] == "1"


def test_command_unknown_kind_is_a_clear_error(policy):
    with pytest.raises(CommandError, match=r"No kind of data 'tikets'.*tickets"):
        run_command("--dry-run", "--kind", "tikets")


def test_command_fails_when_storage_fails(policy, now, s3_down):
    SessionArchive.objects.create(
        session_id="sess_1",
        key="2020/01/01/sess_1-ended.json.gz",
        size=10,
        sha256="0" * 64,
        message_count=1,
        reason="ended",
        created_at=now - timedelta(days=100),
    )
    with pytest.raises(CommandError, match="1 error") as failed:
        run_command("--kind", "archives")
    assert failed.value.returncode == 1 and SessionArchive.objects.count() == 1


# --- the admin ----------------------------------------------------------------------------------


def staff(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_changelist_shows_the_policy_and_due_counts(policy, settings, admin_client):
    settings.RETENTION_ARCHIVES_DAYS = None
    for _ in range(3):
        ticket("cancelled", updated_at=timezone.now() - timedelta(days=31))
    apply_retention("command", kinds=["pii_review"])

    page = admin_client.get(CHANGELIST).text

    assert 'id="retention-policy"' in page and 'id="retention-apply"' in page
    tickets = page.split('data-kind="tickets"')[1].split("</tr>")[0]
    assert "RETENTION_TICKETS_DAYS" in tickets and "30 days" in tickets
    assert '<td class="retention-due">3</td>' in tickets
    archives = page.split('data-kind="archives"')[1].split("</tr>")[0]
    assert "kept for ever" in archives
    assert "manage.py apply_retention" in page  # the run's trigger, in the history


def test_apply_now_confirms_then_runs_and_shows_what_went(policy, admin_client):
    closed = ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    confirm = admin_client.post(APPLY)
    assert confirm.status_code == 200 and "Yes, apply the retention policy now" in confirm.text
    assert exists(closed) and not RetentionRun.objects.exists()

    done = admin_client.post(APPLY, {"confirm": "yes"}, follow=True)

    run = RetentionRun.objects.get()
    assert done.redirect_chain[-1][0] == reverse("admin:ops_retentionrun_change", args=[run.pk])
    assert "Deleted: tickets 1." in done.text and not exists(closed)
    assert run.trigger == "admin" and "<th>tickets</th><td>1</td>" in done.text


def test_apply_now_with_a_bad_confirmation_changes_nothing(policy, admin_client):
    closed = ticket("closed", updated_at=timezone.now() - timedelta(days=31))

    response = admin_client.post(APPLY, {"confirm": "maybe"})

    assert response.status_code == 200 and "Nothing was deleted" in response.text
    assert exists(closed) and not RetentionRun.objects.exists()
    assert admin_client.put(APPLY).status_code == 405


def test_apply_now_needs_the_permission(policy):
    closed = ticket("closed", updated_at=timezone.now() - timedelta(days=31))
    viewer = staff("viewer", "view_retentionrun")

    page = viewer.get(CHANGELIST)
    assert page.status_code == 200 and 'id="retention-policy"' in page.text
    assert 'id="retention-apply"' not in page.text
    assert viewer.get(APPLY).status_code == 403
    assert viewer.post(APPLY, {"confirm": "yes"}).status_code == 403
    assert exists(closed) and not RetentionRun.objects.exists()

    applier = staff("applier", "view_retentionrun", "add_retentionrun")
    assert applier.post(APPLY, {"confirm": "yes"}).status_code == 302
    assert not exists(closed)


def test_runs_are_read_only(policy, admin_client):
    run = apply_retention("command")
    change = reverse("admin:ops_retentionrun_change", args=[run.run_id])

    page = admin_client.get(change)

    assert page.status_code == 200 and 'name="_save"' not in page.text
    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    assert (
        admin_client.post(reverse("admin:ops_retentionrun_delete", args=[run.run_id])).status_code
        == 403
    )
    assert RetentionRun.objects.count() == 1


def test_index_and_sidebar_link_to_retention(admin_client):
    index = admin_client.get("/admin/").text
    link = index.split('id="ops-retention-link"')[1].split("</tr>")[0]
    assert f'href="{CHANGELIST}"' in link
    sidebar = admin_client.get("/admin/ops/alert/").text  # the index has no sidebar
    assert f'<tr class="model-retention"><th scope="row"><a href="{CHANGELIST}">' in sidebar


def test_policy_rows_name_every_kind(policy):
    rows = policy_rows()
    assert [row["kind"] for row in rows] == list(KINDS)
    assert all(row["covers"] and row["setting"] for row in rows)
    assert next(r for r in rows if r["kind"] == "sessions")["period"] == "1 day"
