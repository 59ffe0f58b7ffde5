"""The archive browser in the admin: the list (search by each key, a range of days, a bad day),
an archive's page (the transcript of an intact archive; a tampered, truncated or missing object
shown as what it is, with no transcript), its actions (download, restore, release, verify, verify
all), their permissions and bad requests; and every session page saying where the session is.

Archives are written by the real ``write_archive`` into the test's own folder (the autouse
``_archives_in_tmp`` fixture), and a session leaves the database the way expiry removes it.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pytest
from celery import current_app
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.archives import restore_archive, write_archive
from chat.lifecycle import expire_sessions
from chat.models import (
    ChatSession,
    Handoff,
    HandoffNote,
    Message,
    Rating,
    SessionArchive,
)
from ops.admin.archives import COUNT_CAP
from tools.models import Ticket

pytestmark = pytest.mark.django_db

LIST = reverse("admin:chat_sessionarchive_changelist")
SCRIPT = "<script>alert('archived')</script>"


# --- the cast: who is signed in ---------------------------------------------------------------


def staff(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    """May browse and download archives, and read sessions; nothing more."""
    return staff("vera", "view_sessionarchive", "view_chatsession", "view_message")


@pytest.fixture
def operator() -> Client:
    """May also restore, release and verify."""
    return staff(
        "otto",
        "view_sessionarchive",
        "change_sessionarchive",
        "view_chatsession",
        "view_message",
        "view_handoff",
    )


@pytest.fixture
def outsider() -> Client:
    """Staff without any archive permission."""
    return staff("olga", "view_chatsession")


# --- archives, written and expired by the real code -------------------------------------------


def converse(*, user_id: str = "cust-1", ended_at: datetime | None = None) -> ChatSession:
    """An ended conversation with messages, a ticket, a hand-off, a note and a rating."""
    session = ChatSession.objects.create(user_id=user_id, message_count=3)
    Message.objects.create(session=session, seq=1, role="user", content="My **sync** stopped")
    Message.objects.create(
        session=session,
        seq=2,
        role="assistant",
        content="Let me check the status.",
        model="m1",
        total_tokens=42,
        processing_ms=812,
        tool_calls=[{"name": "fetch_status", "arguments": {"q": "sync"}}],
    )
    Message.objects.create(session=session, seq=3, role="user", content=SCRIPT)
    ticket = Ticket.objects.create(
        session_id=session.pk,
        title="Sync stopped",
        description="-",
        estimated_resolution=timezone.now() + timedelta(days=1),
    )
    Handoff.objects.create(
        session=session,
        status=Handoff.Status.RESOLVED,
        ticket_id=ticket.pk,
        contact_email="cust@example.com",
        topic="Sync",
        resolved_by="alice",
        resolved_at=timezone.now(),
    )
    HandoffNote.objects.create(session=session, author="alice", text="Called the customer back")
    Rating.objects.create(session=session, score=4, comment="Quick and kind", agent="Alice")
    ended_at = ended_at or timezone.now() - timedelta(hours=1)
    ChatSession.objects.filter(pk=session.pk).update(
        status=ChatSession.Status.ENDED, ended_at=ended_at, last_activity=ended_at
    )
    return ChatSession.objects.get(pk=session.pk)


def archived(*, user_id: str = "cust-1", ended_at: datetime | None = None) -> SessionArchive:
    """A conversation archived at its end and then expired: in its archive only."""
    session = converse(user_id=user_id, ended_at=ended_at)
    archive = write_archive(session_id=session.pk, reason="ended")
    ChatSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert expire_sessions() == 1
    assert not ChatSession.objects.filter(pk=session.pk).exists()
    return SessionArchive.objects.get(pk=archive.pk)


@pytest.fixture
def archive() -> SessionArchive:
    return archived()


@pytest.fixture
def stored(archive: SessionArchive, _archives_in_tmp: Path) -> Path:
    """The archive's object on disk."""
    return _archives_in_tmp / archive.key


def page_url(archive: SessionArchive) -> str:
    return reverse("admin:chat_sessionarchive_change", args=[archive.pk])


def action(name: str, archive: SessionArchive) -> str:
    return reverse(f"ops:archive_{name}", args=[archive.pk])


def text_of(response) -> str:
    return response.content.decode()


def listed_keys(response) -> list[str]:
    return [a.key for a in response.context["cl"].result_list]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the list: search, range of days, bad input -----------------------------------------------


def test_search_finds_an_archive_by_session_id_user_id_and_ticket_id(viewer: Client) -> None:
    mine = archived(user_id="cust-42")
    other = archived(user_id="cust-7")
    ticket = mine.tickets.get().ticket_id
    assert viewer.get(LIST).status_code == 200
    for query in (mine.session_id, "cust-42", ticket, ticket.lower(), f"  {ticket} "):
        response = viewer.get(LIST, {"q": query})
        assert response.status_code == 200
        assert listed_keys(response) == [mine.key], query
    assert listed_keys(viewer.get(LIST, {"q": "cust-7"})) == [other.key]
    assert listed_keys(viewer.get(LIST, {"q": "cust-4"})) == []  # exact, never a prefix
    assert sorted(listed_keys(viewer.get(LIST))) == sorted([mine.key, other.key])


def test_the_list_shows_each_column(viewer: Client, archive: SessionArchive) -> None:
    html = text_of(viewer.get(LIST))
    row = re.search(r"<tr>.*?</tr>", html.split("<tbody>")[1], re.S)
    assert row is not None
    cells = row.group(0)
    for expected in (
        archive.session_id,
        "cust-1",
        archive.key,
        "filesystem",
        "integrity-ok",
        "Intact",
        "ended",
        page_url(archive),
    ):
        assert expected in cells, expected
    assert re.search(r"\d+(\.\d)?\s?(bytes|KB)", cells)


def test_a_range_of_days_is_inclusive_on_the_day_the_conversation_ended(viewer: Client) -> None:
    def ending(day: str, hour: int, minute: int) -> SessionArchive:
        # Days are the site's (TIME_ZONE): the edges of a day in its own time.
        local = datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:59")
        return archived(ended_at=timezone.make_aware(local))

    first = ending("2024-03-01", 23, 59)
    second_early, second_late = ending("2024-03-02", 0, 0), ending("2024-03-02", 23, 59)
    third = ending("2024-03-03", 12, 0)

    def keys(**params: str) -> set[str]:
        response = viewer.get(LIST, params)
        assert response.status_code == 200
        assert messages_of(response) == []
        return set(listed_keys(response))

    assert keys(since="2024-03-02", until="2024-03-02") == {second_early.key, second_late.key}
    assert keys(since="2024-03-02") == {second_early.key, second_late.key, third.key}
    assert keys(until="2024-03-01") == {first.key}
    assert keys(since="2024-03-01", until="2024-03-03") == {
        first.key,
        second_early.key,
        second_late.key,
        third.key,
    }
    assert keys(since="", until="") == keys()
    # The range and the search together.
    assert keys(q="cust-1", since="2024-03-03") == {third.key}


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"since": "2024-02-30"}, "“since” must be a date as YYYY-MM-DD, not “2024-02-30”."),
        ({"until": "20240301"}, "“until” must be a date as YYYY-MM-DD, not “20240301”."),
        ({"since": "yesterday"}, "“since” must be a date as YYYY-MM-DD, not “yesterday”."),
        ({"until": "9999-12-31"}, "“until” must be a day between 1900-01-01 and 9998-12-31"),
        (
            {"since": "2024-03-02", "until": "2024-03-01"},
            "“since” (2024-03-02) is after “until” (2024-03-01): no day is both.",
        ),
    ],
)
def test_a_bad_day_lists_nothing_and_says_why(
    viewer: Client, archive: SessionArchive, params: dict[str, str], said: str
) -> None:
    response = viewer.get(LIST, params)
    assert response.status_code == 200  # the list itself, not ?e=1 nor an error page
    assert listed_keys(response) == []
    assert any(said in m for m in messages_of(response)), messages_of(response)
    html = text_of(response)
    assert 'id="archive-date-error"' in html and 'aria-invalid="true"' in html


def test_the_date_filter_renders_two_date_inputs_keeping_the_search(viewer: Client) -> None:
    html = text_of(viewer.get(LIST, {"q": "cust-1", "since": "2024-03-02"}))
    form = html.split('id="archive-date-filter"')[1].split("</form>")[0]
    assert 'type="date" id="archive-since" name="since" value="2024-03-02"' in form
    assert 'type="date" id="archive-until" name="until" value=""' in form
    assert '<input type="hidden" name="q" value="cust-1">' in form


def test_a_search_that_no_id_can_match_says_so(viewer: Client, archive: SessionArchive) -> None:
    response = viewer.get(LIST, {"q": "x" * 300})
    assert response.status_code == 200
    assert listed_keys(response) == []
    assert "Search for one exact session id, userId or ticket id." in messages_of(response)


def test_the_list_marks_sessions_back_in_the_database_with_one_query_per_page(
    viewer: Client,
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(LIST).status_code == 200
        return len(captured)

    archives = [archived(user_id=f"cust-{i}") for i in range(2)]
    few = queries()
    archives += [archived(user_id=f"cust-{i}") for i in range(2, 8)]
    restore_archive(archives[0], by="otto")
    live = converse(user_id="still-here")
    live_archive = write_archive(session_id=live.pk, reason="ended")
    assert queries() == few  # no query per row

    html = text_of(viewer.get(LIST))
    restored_link = reverse("admin:chat_chatsession_change", args=[quote(archives[0].session_id)])
    short = archives[0].session_id[:14] + "…"
    restored_cell = (
        f'<a href="{restored_link}"><code title="{archives[0].session_id}">{short}</code>'
    )
    assert restored_cell in html
    assert '<span class="archive-tag archive-tag-restored">restored</span>' in html
    live_link = reverse("admin:chat_chatsession_change", args=[quote(live_archive.session_id)])
    assert f'<a href="{live_link}">' in html and "in the database</span>" in html
    gone_link = reverse("admin:chat_chatsession_change", args=[quote(archives[1].session_id)])
    assert gone_link not in html  # only in its archive: no link to a page that is not there


def test_the_integrity_filter_picks_problems(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    other = archived(user_id="cust-2")
    SessionArchive.objects.filter(pk=archive.pk).update(integrity="altered")
    assert listed_keys(viewer.get(LIST, {"integrity": "bad"})) == [archive.key]
    assert listed_keys(viewer.get(LIST, {"integrity": "ok"})) == [other.key]
    html = text_of(viewer.get(LIST))
    assert (
        '<span class="integrity-badge integrity-altered">Altered (sha256 mismatch)</span>' in html
    )


# --- an archive's page: intact, tampered, truncated, missing ------------------------------------


def test_an_intact_archive_shows_its_record_transcript_and_staff_records(
    viewer: Client, archive: SessionArchive
) -> None:
    SessionArchive.objects.filter(pk=archive.pk).update(integrity="", checked_at=None)
    response = viewer.get(page_url(archive))
    assert response.status_code == 200
    html = text_of(response)
    assert 'id="archive-intact"' in html and 'id="archive-problem"' not in html
    # The transcript, through the one partial: Markdown rendered, markup escaped, tool calls.
    assert 'class="transcript detail-transcript"' in html
    assert "<strong>sync</strong> stopped" in html
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "Tool calls: fetch_status" in html and "812 ms" in html
    assert re.search(r'<tr class="transcript-user" data-seq="1"><td>1</td><td>User</td>', html)
    # What the archive holds beside the messages.
    for expected in ("cust@example.com", "Called the customer back", "Quick and kind", "alice"):
        assert expected in html, expected
    assert archive.tickets.get().ticket_id in html
    assert archive.sha256 in html and archive.key in html
    archive.refresh_from_db()
    assert archive.integrity == "ok" and archive.checked_at is not None


def tampered_document(archive: SessionArchive) -> bytes:
    """The same session's archive with one message rewritten (a valid gzipped JSON)."""
    return gzip.compress(
        json.dumps(
            {
                "format": "supportbot.session.v2",
                "sessionId": archive.session_id,
                "messages": [{"seq": 1, "role": "user", "content": "FORGED LINE"}],
            }
        ).encode()
    )


def test_a_tampered_object_is_shown_loudly_and_never_as_a_transcript(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    stored.write_bytes(tampered_document(archive))
    response = viewer.get(page_url(archive))
    assert response.status_code == 200
    html = text_of(response)
    box = html.split('id="archive-problem"')[1].split("</div>")[0]
    assert "Altered: the stored object is not the archive that was written" in box
    assert "does not match its record" in box
    assert archive.sha256 in box and f"{archive.size} bytes" in box  # expected
    assert f"of {stored.stat().st_size} bytes" in box  # actual
    assert "FORGED LINE" not in html
    assert 'class="transcript' not in html and "Called the customer back" not in html
    assert 'id="restore"' not in html  # a bad object is not offered for restore
    assert 'id="download-anyway"' in html
    archive.refresh_from_db()
    assert archive.integrity == "altered"


def test_a_truncated_object_is_altered(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    stored.write_bytes(stored.read_bytes()[: archive.size // 2])
    html = text_of(viewer.get(page_url(archive)))
    assert "Altered: the stored object is not the archive that was written" in html
    assert 'class="transcript' not in html and "sync" not in html.split("archive-fields")[-1]
    archive.refresh_from_db()
    assert archive.integrity == "altered"


def test_a_missing_object_says_which(viewer: Client, archive: SessionArchive, stored: Path) -> None:
    stored.unlink()
    html = text_of(viewer.get(page_url(archive)))
    box = html.split('id="archive-problem"')[1].split("</div>")[0]
    assert "Missing: the object is not in archive storage" in box
    assert escape(f"No object {archive.key!r} in archive storage.") in box
    assert 'class="transcript' not in html and 'id="download"' not in html
    archive.refresh_from_db()
    assert archive.integrity == "missing"


# --- download -----------------------------------------------------------------------------------


def test_download_gives_the_gzipped_json_as_stored(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    response = viewer.post(action("download", archive))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/gzip"
    name = archive.key.rsplit("/", 1)[-1]
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response.content == stored.read_bytes()
    assert json.loads(gzip.decompress(response.content))["sessionId"] == archive.session_id
    assert LogEntry.objects.get(object_id=str(archive.pk)).change_message == "Downloaded"


def test_download_of_an_altered_object_is_refused_unless_asked_anyway(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    forged = tampered_document(archive)
    stored.write_bytes(forged)
    refused = viewer.post(action("download", archive))
    assert refused.status_code == 409
    html = text_of(refused)
    assert "Download refused: the object does not match its record" in html
    assert archive.sha256 in html and 'name="anyway" value="1"' in html
    assert not LogEntry.objects.exists()

    anyway = viewer.post(action("download", archive), {"anyway": "1"})
    assert anyway.status_code == 200 and anyway.content == forged
    assert "-ALTERED-does-not-match-its-sha256.json.gz" in anyway["Content-Disposition"]
    archive.refresh_from_db()
    assert archive.integrity == "altered"


def test_download_of_a_missing_object_says_so(
    viewer: Client, archive: SessionArchive, stored: Path
) -> None:
    stored.unlink()
    response = viewer.post(action("download", archive))
    assert response.status_code == 404
    assert escape(f"No object {archive.key!r} in archive storage.") in text_of(response)


# --- restore and release ------------------------------------------------------------------------


def test_restore_asks_first_then_restores_once(operator: Client, archive: SessionArchive) -> None:
    asked = operator.post(action("restore", archive))
    assert asked.status_code == 200
    assert "Restore this conversation?" in text_of(asked)
    assert 'name="confirm" value="yes"' in text_of(asked)
    assert not ChatSession.objects.filter(pk=archive.session_id).exists()

    done = operator.post(action("restore", archive), {"confirm": "yes"}, follow=True)
    session = ChatSession.objects.get(pk=archive.session_id)
    assert session.restored_by == "otto" and session.status == "ended"
    assert list(session.messages.order_by("seq").values_list("seq", flat=True)) == [1, 2, 3]
    assert any("Restored session" in m for m in messages_of(done))
    html = text_of(done)
    assert 'id="restored-banner"' in html and "by otto at" in html
    assert reverse("admin:chat_chatsession_change", args=[quote(session.pk)]) in html
    logged = LogEntry.objects.get(object_id=str(archive.pk))
    assert logged.change_message == f"Restored session {session.pk} from {archive.key}"

    again = operator.post(action("restore", archive), {"confirm": "yes"}, follow=True)
    assert f"Session {session.pk} is already restored: nothing changed." in messages_of(again)
    assert ChatSession.objects.get(pk=session.pk).restored_at == session.restored_at
    assert Message.objects.filter(session_id=session.pk).count() == 3
    assert LogEntry.objects.count() == 1


def test_a_restored_session_stays_unknown_to_clients(
    operator: Client, archive: SessionArchive
) -> None:
    operator.post(action("restore", archive), {"confirm": "yes"})
    assert ChatSession.objects.filter(pk=archive.session_id, restored_at__isnull=False).exists()
    response = Client().get(f"/api/session/{archive.session_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"


def test_restore_is_refused_while_the_session_is_live(operator: Client) -> None:
    session = converse()
    archive = write_archive(session_id=session.pk, reason="ended")
    response = operator.post(action("restore", archive), follow=True)
    said = messages_of(response)
    assert any(f"Session {session.pk} is still in the database (ended)" in m for m in said), said
    assert ChatSession.objects.get(pk=session.pk).restored_at is None
    assert not LogEntry.objects.exists()


def test_restore_of_a_bad_object_gives_its_error(
    operator: Client, archive: SessionArchive, stored: Path
) -> None:
    stored.unlink()
    response = operator.post(action("restore", archive), {"confirm": "yes"}, follow=True)
    assert f"Not restored: No object {archive.key!r} in archive storage." in messages_of(response)
    assert not ChatSession.objects.filter(pk=archive.session_id).exists()


def test_release_asks_first_then_removes_the_restored_session(
    operator: Client, archive: SessionArchive
) -> None:
    restore_archive(archive, by="otto")
    url = reverse("ops:archive_release", args=[archive.session_id])
    asked = operator.post(url)
    assert "Release this session?" in text_of(asked) and archive.key in text_of(asked)
    assert ChatSession.objects.filter(pk=archive.session_id).exists()

    done = operator.post(url, {"confirm": "yes"}, follow=True)
    assert done.redirect_chain[-1][0] == page_url(archive)
    assert not ChatSession.objects.filter(pk=archive.session_id).exists()
    assert SessionArchive.objects.filter(pk=archive.pk).exists()
    assert any("Released session" in m for m in messages_of(done))
    assert 'id="restore"' in text_of(done)  # restorable again
    assert (
        LogEntry.objects.get().change_message == f"Released restored session {archive.session_id}"
    )


def test_release_of_a_session_that_is_not_restored_is_404(operator: Client) -> None:
    live = converse()
    for session_id in (live.pk, "sess_nope"):
        response = operator.post(reverse("ops:archive_release", args=[session_id]))
        assert response.status_code == 404
        assert "is not a restored session in the database" in text_of(response)
    assert ChatSession.objects.filter(pk=live.pk).exists()


# --- verify -------------------------------------------------------------------------------------


def test_verify_now_records_the_verdict(
    operator: Client, archive: SessionArchive, stored: Path
) -> None:
    stored.write_bytes(b"not the archive")
    response = operator.post(action("verify", archive), follow=True)
    assert f"Verified {archive.key}: Altered (sha256 mismatch)." in messages_of(response)
    archive.refresh_from_db()
    assert archive.integrity == "altered"
    assert LogEntry.objects.get().change_message == "Verified: Altered (sha256 mismatch)"


def test_verify_all_queues_the_check_of_every_archive(
    operator: Client, archive: SessionArchive, stored: Path
) -> None:
    other = archived(user_id="cust-2")
    stored.unlink()
    SessionArchive.objects.update(integrity="", checked_at=None)
    html = text_of(operator.get(LIST))
    assert 'id="verify-all"' in html and reverse("ops:archive_verify_all") in html
    response = operator.post(reverse("ops:archive_verify_all"), follow=True)
    assert any("Queued the check of every archive" in m for m in messages_of(response))
    # Tasks run eagerly in tests: the worker's verdicts are recorded already.
    assert dict(SessionArchive.objects.values_list("pk", "integrity")) == {
        archive.pk: "missing",
        other.pk: "ok",
    }


@pytest.fixture
def broker_down() -> Iterator[None]:
    """Tasks go to a broker on a port where nothing listens (the producer pool of the real
    broker is put aside meanwhile, and back afterwards)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = current_app.conf
    saved = (conf.task_always_eager, conf.broker_url)
    pool, current_app.amqp._producer_pool = current_app.amqp._producer_pool, None
    conf.task_always_eager = False
    conf.broker_url = f"redis://127.0.0.1:{port}/0"
    yield
    conf.task_always_eager, conf.broker_url = saved
    current_app.amqp._producer_pool = pool


def test_verify_all_says_when_the_broker_is_down(
    operator: Client, archive: SessionArchive, broker_down: None
) -> None:
    started = time.monotonic()
    response = operator.post(reverse("ops:archive_verify_all"), follow=True)
    # The publish retry policy (the settings' default) gives up within a second or so.
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    said = messages_of(response)
    assert any("The task queue (Celery broker) did not answer" in m for m in said), said
    assert any("was not queued" in m for m in said)


# --- permissions, unknown ids, methods ----------------------------------------------------------


def test_a_viewer_browses_but_may_not_change(viewer: Client, archive: SessionArchive) -> None:
    assert viewer.get(LIST).status_code == 200
    html = text_of(viewer.get(page_url(archive)))
    assert 'id="download"' in html
    assert 'id="restore"' not in html and 'id="verify"' not in html
    assert 'id="verify-all"' not in text_of(viewer.get(LIST))
    for url in (
        action("restore", archive),
        action("verify", archive),
        reverse("ops:archive_verify_all"),
        reverse("ops:archive_release", args=[archive.session_id]),
    ):
        response = viewer.post(url, {"confirm": "yes"})
        assert response.status_code == 403, url
        assert "that needs the “Can change session archive” permission" in text_of(response)
    assert not ChatSession.objects.exists() and not LogEntry.objects.exists()


def test_staff_without_the_view_permission_see_nothing(
    outsider: Client, archive: SessionArchive
) -> None:
    assert outsider.get(LIST).status_code == 403
    for response in (outsider.get(page_url(archive)), outsider.post(action("download", archive))):
        assert response.status_code == 403
        assert "You may not view archives" in text_of(response)
        assert "sync" not in text_of(response)


def test_an_unknown_archive_is_a_404_page(operator: Client, archive: SessionArchive) -> None:
    for raw in ("999999", "abc", "9" * 40, "-1", "²", "\u0663"):
        response = operator.get(reverse("admin:chat_sessionarchive_change", args=[raw]))
        assert response.status_code == 404, raw
        assert "There is no archive with id" in text_of(response)
    for name in ("download", "restore", "verify"):
        response = operator.post(reverse(f"ops:archive_{name}", args=[999999]))
        assert response.status_code == 404
        assert "There is no archive with id “999999”" in text_of(response)


def test_post_only_views_answer_405_to_a_get(operator: Client, archive: SessionArchive) -> None:
    for url in (
        action("download", archive),
        action("restore", archive),
        action("verify", archive),
        reverse("ops:archive_verify_all"),
        reverse("ops:archive_release", args=[archive.session_id]),
    ):
        response = operator.get(url)
        assert response.status_code == 405, url
        assert response["Allow"] == "POST"
        assert "takes only a POST" in text_of(response)


def test_actions_need_the_csrf_token(archive: SessionArchive) -> None:
    user = User.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(action("restore", archive), {"confirm": "yes"}).status_code == 403
    assert not ChatSession.objects.filter(pk=archive.session_id).exists()


# --- every session page says where the session is -----------------------------------------------


def test_the_session_list_says_live_archived_or_restored_without_a_query_per_row(
    operator: Client,
) -> None:
    url = reverse("admin:chat_chatsession_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(url).status_code == 200
        return len(captured)

    live = ChatSession.objects.create(user_id="live-1")
    few = queries()
    ended = converse(user_id="ended-1")
    ended_archive = write_archive(session_id=ended.pk, reason="ended")
    restored = archived(user_id="gone-1")
    restore_archive(restored, by="otto")
    failing = ChatSession.objects.create(
        user_id="failing-1",
        archive_attempts=3,
        archive_retry_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    for _ in range(5):
        ChatSession.objects.create(user_id="more")
    assert queries() == few

    html = text_of(operator.get(url))
    assert '<span class="archive-state archive-state-live">Live</span>' in html
    assert '<span class="archive-state archive-state-archived">Ended, archived</span>' in html
    assert "Restored from archive (read-only)" in html
    for link, reason in ((ended_archive, "ended"), (restored, "ended")):
        assert f'<a href="{page_url(link)}" title="{link.key}">archive ({reason})</a>' in html
    assert "archive failing: 3 attempts, next try at 2030-01-02" in html
    assert live.pk in html and failing.pk in html


def test_a_restored_session_page_has_the_banner_and_release(
    operator: Client, archive: SessionArchive
) -> None:
    session, _ = restore_archive(archive, by="otto")
    html = text_of(operator.get(reverse("admin:chat_chatsession_change", args=[quote(session.pk)])))
    banner = html.split('id="restored-banner"')[1].split("</div>")[0]
    link = f'<a href="{page_url(archive)}"><code>{archive.key}</code></a>'
    assert f"Restored from archive {link} by otto at " in banner and ": read-only." in banner
    assert reverse("ops:archive_release", args=[session.pk]) in banner
    assert 'id="release"' in banner

    conversation = operator.get(reverse("ops:conversation", args=[session.pk]))
    assert conversation.status_code == 200
    html = text_of(conversation)
    assert 'id="restored-banner"' in html and "by otto at" in html
    assert '<form id="note-form" class="note-form" hidden>' in html  # read-only: no new notes
    assert "Let me check the status." in html  # the restored transcript


def test_a_live_session_page_says_it_is_live(operator: Client) -> None:
    session = ChatSession.objects.create(user_id="live-1")
    html = text_of(operator.get(reverse("admin:chat_chatsession_change", args=[quote(session.pk)])))
    assert '<span class="archive-state archive-state-live">Live</span>' in html
    assert 'id="restored-banner"' not in html
    html = text_of(operator.get(reverse("ops:conversation", args=[session.pk])))
    assert '<span class="archive-state archive-state-live">Live</span>' in html


def test_an_archived_session_leads_to_its_archive(
    operator: Client, archive: SessionArchive
) -> None:
    response = operator.get(
        reverse("admin:chat_chatsession_change", args=[quote(archive.session_id)]), follow=True
    )
    assert response.redirect_chain[-1][0] == f"{LIST}?q={archive.session_id}"
    assert listed_keys(response) == [archive.key]
    assert "This session is no longer in the database: it is archived." in messages_of(response)

    gone = operator.get(reverse("ops:conversation", args=[archive.session_id]))
    assert gone.status_code == 404
    assert f'<a href="{page_url(archive)}">{archive.key}</a>' in text_of(gone)


def test_the_index_and_sidebar_link_the_archive_browser(viewer: Client, outsider: Client) -> None:
    html = text_of(viewer.get(reverse("admin:index")))
    assert f'<tr id="ops-archives-link"><th scope="row"><a href="{LIST}">Archives</a>' in html
    sidebar = text_of(viewer.get(LIST))  # the index has no sidebar; every other page has
    assert f'<tr class="model-archives"><th scope="row"><a href="{LIST}">Archives</a>' in sidebar
    assert 'id="ops-archives-link"' not in text_of(outsider.get(reverse("admin:index")))
    session_list = text_of(outsider.get(reverse("admin:chat_chatsession_changelist")))
    assert 'class="model-archives"' not in session_list


def test_a_wide_list_counts_only_so_far(viewer: Client) -> None:
    ended = timezone.now() - timedelta(days=1)
    SessionArchive.objects.bulk_create(
        SessionArchive(
            session_id=f"sess_{i:032d}",
            key=f"bulk/{i}.json.gz",
            size=100,
            sha256="0" * 64,
            message_count=1,
            reason="expired",
            ended_at=ended,
        )
        for i in range(COUNT_CAP + 5)
    )
    response = viewer.get(LIST)
    assert response.status_code == 200
    html = text_of(response)
    assert f"More than {COUNT_CAP} session archives: narrow the search or the days" in html
    assert len(listed_keys(response)) == 25
    # A narrow search counts exactly.
    assert "1 session archive\n" in text_of(viewer.get(LIST, {"q": "sess_" + "0" * 32}))


def test_the_session_list_filters_restored_and_failing_sessions(
    operator: Client, archive: SessionArchive
) -> None:
    restored, _ = restore_archive(archive, by="otto")
    failing = ChatSession.objects.create(user_id="failing-1", archive_attempts=1)
    ChatSession.objects.create(user_id="fine-1")
    url = reverse("admin:chat_chatsession_changelist")

    def listed(where: str) -> list[str]:
        response = operator.get(url, {"where": where})
        assert response.status_code == 200
        return [s.pk for s in response.context["cl"].result_list]

    assert listed("restored") == [restored.pk]
    assert listed("failing") == [failing.pk]
    assert "archive failing: 1 attempt" in text_of(operator.get(url, {"where": "failing"}))
