"""Archives on the filesystem: written and proven whole, read back checked, verified, restored for
staff, searched; and expiry that never deletes a conversation it could not archive.

The ``archives`` storage is the real ``FileSystemStorage`` in a folder of the test's own
(``_archives_in_tmp``); objects are damaged the way disks and people damage them (a flipped byte,
a truncated or deleted file, a folder where the file was), never by replacing our code. Storage
that fails does so for real: a location below a regular file cannot be written, and files
written with mode 0200 cannot be read back by the user who wrote them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.files.storage import storages
from django.utils import timezone

from chat.archives import (
    ArchiveError,
    RestoreRefused,
    check_archive,
    encode,
    load_document,
    release_restored,
    restore_archive,
    search_archives,
    session_document,
    sha256,
    verify_archives,
    write_archive,
)
from chat.consumers import CLOSE_INVALID_SESSION
from chat.lifecycle import STOP_AFTER_FAILURES, expire_sessions
from chat.models import ArchiveTicket, ChatSession, Message, SessionArchive
from supportbot.asgi import application
from tests.chat.archive_cast import (
    conversation,
    counted_failures,
    expire_now,
    message_rows,
    session_row,
)
from tools.models import Ticket

pytestmark = pytest.mark.django_db

Integrity = SessionArchive.Integrity
NOBODY = 65534  # the conventional unprivileged uid ("nobody")


# --- storage as it is, and as it fails ---------------------------------------------------------


def object_path(archive: SessionArchive) -> Path:
    return Path(storages["archives"].path(archive.key))


def stored_files(location: Path) -> list[Path]:
    return sorted(p for p in location.rglob("*") if p.is_file()) if location.exists() else []


def use_archive_folder(settings: Any, location: Path, **options: Any) -> None:
    """The ``archives`` storage: a FileSystemStorage at ``location`` with these options."""
    storage = dict(settings.STORAGES)
    current = storage["archives"]
    storage["archives"] = {**current, "OPTIONS": {**current["OPTIONS"], "location": str(location)}}
    storage["archives"]["OPTIONS"].update(options)
    settings.STORAGES = storage


@pytest.fixture
def unwritable_archives(settings: Any, tmp_path: Path) -> Path:
    """Archives go below a regular file: every write fails (NotADirectoryError), as on a
    read-only or full volume; reads of what is not there say "missing"."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the archive folder should be\n")
    use_archive_folder(settings, blocker / "archives")
    return blocker


@contextlib.contextmanager
def as_unprivileged_user(folder: Path) -> Iterator[None]:
    """Run the block as an ordinary user owning ``folder``, as the service runs in production.
    Root reads any file whatever its mode (CAP_DAC_OVERRIDE), so under root a file's mode would
    not be tested at all; the effective uid is switched for the block and back after it."""
    if os.geteuid() != 0:
        yield
        return
    os.chown(folder, NOBODY, NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def failures(settings: Any) -> Iterator[Callable[[], dict[str, int]]]:
    """``archive_failures`` counted so far, by label."""
    yield from counted_failures(settings)


# --- write_archive -----------------------------------------------------------------------------


def test_an_archive_is_read_back_and_recorded_with_what_staff_search_by(_archives_in_tmp):
    session = conversation(escalation="TKT-ESC42424")
    ticket = Ticket.objects.get(session_id=session.id)

    archive = write_archive(session_id=session.id, reason="ended")

    payload = object_path(archive).read_bytes()
    assert stored_files(_archives_in_tmp) == [object_path(archive)]
    assert archive.sha256 == sha256(payload) and archive.size == len(payload)
    assert archive.integrity == Integrity.OK and archive.checked_at is not None
    assert archive.backend == "filesystem" and archive.reason == "ended"
    assert archive.user_id == "cust-0042" and archive.message_count == 6
    assert archive.started_at == session.created_at and archive.ended_at == session.ended_at
    assert sorted(t.ticket_id for t in archive.tickets.all()) == sorted([ticket.pk, "TKT-ESC42424"])
    document = json.loads(gzip.decompress(payload))
    assert document == session_document(session)
    assert [m["content"] for m in document["messages"]][:2] == [
        "Où est ma facture 1 ?",
        "Voici la facture 2 — 12 € TTC.",
    ]


def test_an_archive_is_written_once_per_reason_unless_fresh(_archives_in_tmp):
    session = conversation()

    first = write_archive(session_id=session.id, reason="ended")
    again = write_archive(session_id=session.id, reason="ended")
    expired = write_archive(session_id=session.id, reason="expired")
    fresh = write_archive(session_id=session.id, reason="ended", fresh=True)

    assert again.pk == first.pk
    assert len({first.key, expired.key, fresh.key}) == 3
    assert SessionArchive.objects.filter(session_id=session.id).count() == 3
    assert len(stored_files(_archives_in_tmp)) == 3


def test_an_archive_that_cannot_be_read_back_leaves_no_row_and_no_object(settings):
    """The file is written, but with mode 0200 its writer cannot read it back: nothing is
    recorded and the unreadable object is removed."""
    session = conversation()
    folder = Path(tempfile.mkdtemp(prefix="archives-"))
    try:
        use_archive_folder(settings, folder / "archives", file_permissions_mode=0o200)
        with as_unprivileged_user(folder), pytest.raises(ArchiveError) as refused:
            write_archive(session_id=session.id, reason="ended")
        assert refused.value.state == Integrity.UNREADABLE
        assert "PermissionError" in refused.value.message
        assert stored_files(folder) == []
    finally:
        shutil.rmtree(folder)
    assert not SessionArchive.objects.exists() and not ArchiveTicket.objects.exists()


def test_storage_that_cannot_be_written_raises_and_records_nothing(unwritable_archives):
    session = conversation()

    with pytest.raises(OSError):
        write_archive(session_id=session.id, reason="ended")

    assert not SessionArchive.objects.exists() and not ArchiveTicket.objects.exists()
    assert Message.objects.filter(session=session).count() == 6


# --- reading and checking ----------------------------------------------------------------------


def record(archive: SessionArchive, payload: bytes) -> None:
    """Store ``payload`` as the archive's object and record its sha256, as if written so."""
    object_path(archive).write_bytes(payload)
    archive.sha256, archive.size = sha256(payload), len(payload)
    archive.save(update_fields=["sha256", "size"])


def flip_a_byte(archive: SessionArchive) -> None:
    path = object_path(archive)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(archive: SessionArchive) -> None:
    path = object_path(archive)
    path.write_bytes(path.read_bytes()[: archive.size // 2])


def remove(archive: SessionArchive) -> None:
    object_path(archive).unlink()


def folder_in_its_place(archive: SessionArchive) -> None:
    remove(archive)
    object_path(archive).mkdir()


def plain_json(archive: SessionArchive) -> None:
    record(archive, json.dumps(load_document(archive)).encode())


def another_sessions(archive: SessionArchive) -> None:
    other = conversation(user_id="someone-else")
    record(archive, encode(session_document(other)))


DAMAGE = [
    (flip_a_byte, Integrity.ALTERED, "does not match its record"),
    (truncate, Integrity.ALTERED, "does not match its record"),
    (remove, Integrity.MISSING, "No object"),
    (plain_json, Integrity.ALTERED, "not gzipped JSON"),
    (another_sessions, Integrity.ALTERED, "not this session's archive"),
    (folder_in_its_place, Integrity.UNREADABLE, "IsADirectoryError"),
]


@pytest.mark.parametrize(
    ("damage", "state", "said"), DAMAGE, ids=lambda v: getattr(v, "__name__", v)
)
def test_a_damaged_archive_is_never_read_as_good(_archives_in_tmp, damage, state, said):
    archive = write_archive(session_id=conversation().id, reason="ended")
    damage(archive)

    with pytest.raises(ArchiveError) as refused:
        load_document(archive)

    assert refused.value.state == state
    assert said in refused.value.message


@pytest.mark.parametrize(
    ("damage", "state"),
    [
        (None, Integrity.OK),
        (flip_a_byte, Integrity.ALTERED),
        (remove, Integrity.MISSING),
        (folder_in_its_place, Integrity.UNREADABLE),
    ],
    ids=["intact", "altered", "missing", "unreadable"],
)
def test_check_archive_records_the_verdict_and_counts_bad_ones(
    _archives_in_tmp, failures, damage, state
):
    archive = write_archive(session_id=conversation().id, reason="ended")
    SessionArchive.objects.filter(pk=archive.pk).update(integrity="", checked_at=None)
    if damage is not None:
        damage(archive)
    before = timezone.now()

    assert check_archive(archive) == state

    archive.refresh_from_db()
    assert archive.integrity == state
    assert archive.checked_at is not None and archive.checked_at >= before
    assert failures() == ({} if state == Integrity.OK else {f"reason={state}": 1})


def test_verify_archives_checks_those_checked_longest_ago_first(_archives_in_tmp, failures):
    archives = [
        write_archive(session_id=conversation(user_id=f"cust-{n}").id, reason="ended")
        for n in range(4)
    ]
    now = timezone.now()
    # A row from before checks were recorded, then rows checked 3 days ago, 1 day ago and now.
    for archive, checked_at in zip(
        archives, (None, now - timedelta(days=3), now - timedelta(days=1), now), strict=True
    ):
        SessionArchive.objects.filter(pk=archive.pk).update(checked_at=checked_at)

    report = verify_archives(limit=2)

    assert (report.checked, report.ok, report.bad) == (2, 2, None)
    checked = {a.pk: a.checked_at for a in SessionArchive.objects.all()}
    assert all((checked[a.pk] or now) > now for a in archives[:2])
    assert checked[archives[2].pk] == now - timedelta(days=1)
    assert checked[archives[3].pk] == now

    flip_a_byte(archives[2])
    remove(archives[3])
    report = verify_archives()

    assert (report.checked, report.ok, report.altered, report.missing) == (4, 2, 1, 1)
    assert report.bad == [archives[2].key, archives[3].key]  # checked longest ago first
    assert failures() == {"reason=altered": 1, "reason=missing": 1}


# --- restore and release -----------------------------------------------------------------------


def archived_and_expired(**kwargs: Any) -> tuple[SessionArchive, dict[str, Any], list[Any]]:
    """A conversation archived, then its rows deleted as expiry does; the archive, and the
    session's fields and messages as they were."""
    session = conversation(**kwargs)
    before = session_row(ChatSession.objects.get(pk=session.pk)), message_rows(session.id)
    archive = write_archive(session_id=session.id, reason="expired")
    ChatSession.objects.filter(pk=session.pk).delete()
    assert not Message.objects.filter(session_id=session.id).exists()
    return archive, *before


def test_a_restore_brings_the_conversation_back_exactly(_archives_in_tmp):
    archive, session_before, messages_before = archived_and_expired(escalation="TKT-ESC42424")

    session, created = restore_archive(archive, by="alice")

    assert created is True
    restored = ChatSession.objects.get(pk=archive.session_id)
    assert restored.pk == session.pk
    assert session_row(restored) == session_before
    assert message_rows(archive.session_id) == messages_before
    assert restored.is_restored and restored.restored_by == "alice"
    assert restored.status == ChatSession.Status.ENDED


def test_a_second_restore_changes_nothing(_archives_in_tmp):
    archive, _, messages_before = archived_and_expired()
    first, _ = restore_archive(archive, by="alice")

    again, created = restore_archive(archive, by="bob")

    assert created is False and again.pk == first.pk
    restored = ChatSession.objects.get(pk=archive.session_id)
    assert (restored.restored_at, restored.restored_by) == (first.restored_at, "alice")
    assert message_rows(archive.session_id) == messages_before


def test_a_restore_is_refused_while_the_session_is_live(_archives_in_tmp):
    session = conversation(status=ChatSession.Status.ACTIVE)
    archive = write_archive(session_id=session.id, reason="ended")
    before = session_row(session), message_rows(session.id)

    with pytest.raises(RestoreRefused, match="still in the database"):
        restore_archive(archive, by="alice")

    live = ChatSession.objects.get(pk=session.pk)
    assert (session_row(live), message_rows(session.id)) == before
    assert not live.is_restored


def test_a_restore_of_a_tampered_archive_writes_nothing(_archives_in_tmp):
    archive, _, _ = archived_and_expired()
    flip_a_byte(archive)

    with pytest.raises(ArchiveError) as refused:
        restore_archive(archive, by="alice")

    assert refused.value.state == Integrity.ALTERED
    assert not ChatSession.objects.filter(pk=archive.session_id).exists()
    assert not Message.objects.filter(session_id=archive.session_id).exists()


def test_release_removes_a_restored_session_and_it_can_be_restored_again(_archives_in_tmp):
    archive, _, messages_before = archived_and_expired()
    live = conversation(status=ChatSession.Status.ACTIVE)
    restore_archive(archive, by="alice")

    assert release_restored(archive.session_id) is True

    assert not ChatSession.objects.filter(pk=archive.session_id).exists()
    assert not Message.objects.filter(session_id=archive.session_id).exists()
    assert SessionArchive.objects.filter(pk=archive.pk).exists() and object_path(archive).exists()
    assert release_restored(archive.session_id) is False
    assert release_restored(live.id) is False  # only restored sessions are released
    assert ChatSession.objects.filter(pk=live.id).exists()
    _, created = restore_archive(archive, by="bob")
    assert created is True and message_rows(archive.session_id) == messages_before


@pytest.mark.django_db(transaction=True)
async def test_a_restored_session_stays_unknown_to_clients(api, _archives_in_tmp):
    archive, _, _ = await sync_to_async(archived_and_expired)()
    await sync_to_async(restore_archive)(archive, by="alice")
    session_id = archive.session_id

    read = await api.get(f"/api/session/{session_id}")
    sent = await api.post(
        "/api/chat",
        data=json.dumps({"sessionId": session_id, "message": "Am I back?"}),
        content_type="application/json",
    )
    ended = await api.delete(f"/api/session/{session_id}")

    for response in (read, sent, ended):
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "SESSION_NOT_FOUND"
    assert await Message.objects.filter(session_id=session_id).acount() == 6
    channel_layers.backends.clear()
    ws = WebsocketCommunicator(
        application,
        f"/ws?sessionId={session_id}",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    await ws.connect()
    error = await ws.receive_json_from()
    assert error["type"] == "error" and error["data"]["code"] == "INVALID_SESSION"
    assert await ws.receive_output() == {"type": "websocket.close", "code": CLOSE_INVALID_SESSION}
    channel_layers.backends.clear()


def test_expiry_leaves_a_restored_session_alone(_archives_in_tmp):
    archive, _, messages_before = archived_and_expired()
    restore_archive(archive, by="alice")

    assert expire_sessions(now=timezone.now() + timedelta(days=365)) == 0

    assert ChatSession.objects.get(pk=archive.session_id).is_restored
    assert message_rows(archive.session_id) == messages_before
    assert SessionArchive.objects.filter(session_id=archive.session_id).count() == 1


# --- expiry: nothing deleted that is not archived ----------------------------------------------


def test_a_session_that_cannot_be_archived_is_kept_and_retried_with_backoff(
    settings, unwritable_archives, failures, tmp_path
):
    settings.ARCHIVE_RETRY_MAX_SECONDS = 300
    session = conversation(status=ChatSession.Status.ACTIVE)
    expire_now(session)
    # Backoff counts from the failure, or from the run's ``now`` when that is later: runs an hour
    # ahead of the clock make every delay exact.
    t0 = timezone.now() + timedelta(hours=1)

    def attempt(after: float) -> tuple[int, int, float | None]:
        done = expire_sessions(now=t0 + timedelta(seconds=after))
        kept = ChatSession.objects.get(pk=session.pk)
        retry = kept.archive_retry_at
        return done, kept.archive_attempts, None if retry is None else (retry - t0).total_seconds()

    # Tried, kept, and tried again after 1, 2, 4 minutes ... at most ARCHIVE_RETRY_MAX_SECONDS;
    # never before its time.
    assert attempt(0) == (0, 1, 60)
    assert attempt(59) == (0, 1, 60)
    assert attempt(60) == (0, 2, 60 + 120)
    assert attempt(179) == (0, 2, 180)
    assert attempt(180) == (0, 3, 180 + 240)
    assert attempt(420) == (0, 4, 420 + 300)
    assert failures() == {"reason=expired": 4}
    assert Message.objects.filter(session=session).count() == 6
    assert not SessionArchive.objects.exists()

    use_archive_folder(settings, tmp_path / "archives-back")
    assert expire_sessions(now=t0 + timedelta(seconds=719)) == 0
    assert expire_sessions(now=t0 + timedelta(seconds=720)) == 1

    archive = SessionArchive.objects.get(session_id=session.id)
    assert archive.reason == "expired" and archive.message_count == 6
    assert [m["seq"] for m in load_document(archive)["messages"]] == [1, 2, 3, 4, 5, 6]
    assert not ChatSession.objects.filter(pk=session.pk).exists()


def test_expiry_stops_its_batch_when_storage_keeps_failing(unwritable_archives, failures):
    sessions = [conversation(status=ChatSession.Status.ACTIVE) for _ in range(5)]
    for session in sessions:
        expire_now(session)

    assert expire_sessions() == 0

    attempts = sorted(
        ChatSession.objects.filter(pk__in=[s.pk for s in sessions]).values_list(
            "archive_attempts", flat=True
        )
    )
    # Three failures in a row stop the run: the other two wait for the next one, untouched.
    assert attempts == [0, 0, 1, 1, 1] and STOP_AFTER_FAILURES == 3
    assert failures() == {"reason=expired": 3}
    assert Message.objects.filter(session__in=sessions).count() == 5 * 6


def test_an_ended_session_whose_archive_was_altered_is_archived_afresh_before_it_goes(
    _archives_in_tmp, failures
):
    session = conversation()
    contents = [row[3] for row in message_rows(session.id)]
    ended = write_archive(session_id=session.id, reason="ended")
    flip_a_byte(ended)
    expire_now(session)

    assert expire_sessions() == 1

    ended.refresh_from_db()
    fresh = SessionArchive.objects.get(session_id=session.id, reason="expired")
    assert ended.integrity == Integrity.ALTERED and fresh.integrity == Integrity.OK
    assert [m["content"] for m in load_document(fresh)["messages"]] == contents
    assert not ChatSession.objects.filter(pk=session.pk).exists()
    assert failures() == {"reason=altered": 1}


def test_an_ended_session_with_an_intact_archive_is_not_archived_again(_archives_in_tmp):
    session = conversation()
    ended = write_archive(session_id=session.id, reason="ended")
    expire_now(session)

    assert expire_sessions() == 1

    assert list(SessionArchive.objects.values_list("pk", flat=True)) == [ended.pk]
    assert stored_files(_archives_in_tmp) == [object_path(ended)]
    assert not ChatSession.objects.filter(pk=session.pk).exists()


# --- search ------------------------------------------------------------------------------------


def at(day: date, clock: time) -> datetime:
    return timezone.make_aware(datetime.combine(day, clock))


def test_search_by_session_user_ticket_and_inclusive_days(_archives_in_tmp):
    day1, day2 = date(2026, 3, 9), date(2026, 3, 10)
    first = conversation(user_id="cust-1", ended_at=at(day1, time.min))
    last = conversation(user_id="cust-1", ended_at=at(day2, time.max))
    other = conversation(user_id="cust-2", ended_at=at(day2, time(12)), escalation="TKT-ESC7Q2M9")
    for session in (first, last, other):
        write_archive(session_id=session.id, reason="ended")
    ticket = Ticket.objects.get(session_id=first.id).pk

    def found(query: str = "", **days: date) -> list[str]:
        return list(search_archives(query, **days).values_list("session_id", flat=True))

    assert found(first.id) == [first.id]
    assert found("cust-1") == [last.id, first.id]  # newest first
    assert found("  cust-2 ") == [other.id]
    assert found(ticket) == found(ticket.lower()) == [first.id]
    assert found("TKT-ESC7Q2M9") == found("tkt-esc7q2m9") == [other.id]
    assert found("cust-3") == found("CUST-1") == found("TKT-NOPE0000") == []
    assert found("sess_" + "x" * 32) == []
    # Days are inclusive at both ends: 00:00:00.000 of day1 and 23:59:59.999999 of day2.
    assert found(since=day1, until=day1) == [first.id]
    assert found(since=day2, until=day2) == [last.id, other.id]
    assert found(since=day1, until=day2) == [last.id, other.id, first.id]
    assert found(until=day1 - timedelta(days=1)) == found(since=day2 + timedelta(days=1)) == []
    assert found("cust-1", since=day2) == [last.id]
    assert found("cust-1", until=day1) == [first.id]
    assert found(ticket, since=day2) == []
