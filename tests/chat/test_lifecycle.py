"""Ending and expiring sessions archive the whole conversation before anything is deleted."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from celery.signals import task_retry
from django.core.files.storage import storages
from django.utils import timezone

from chat.lifecycle import expire_sessions
from chat.models import ChatSession, Message, SessionArchive
from chat.tasks import archive_session_task
from tests.chat.conftest import new_session, send

pytestmark = pytest.mark.django_db(transaction=True)


def read_archive(archive: SessionArchive) -> tuple[bytes, dict]:
    with storages["archives"].open(archive.key) as handle:
        payload = handle.read()
    return payload, json.loads(gzip.decompress(payload))


async def test_ending_a_session_archives_it(api, kb):
    session_id = await new_session(api)
    await send(api, session_id, "How do I export my data?")
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    archive = await SessionArchive.objects.aget(session_id=session_id)
    payload, document = await sync_to_async(read_archive)(archive)
    assert archive.reason == "ended" and archive.message_count == 2
    assert archive.size == len(payload) and archive.sha256 == hashlib.sha256(payload).hexdigest()
    assert document["messages"][0]["content"] == "How do I export my data?"
    assert document["status"] == "ended"
    # Ended, not expired: the rows stay readable.
    assert await Message.objects.filter(session_id=session_id).acount() == 2


async def test_expiry_archives_then_deletes(api, kb):
    session_id = await new_session(api)
    await send(api, session_id, "Where is my invoice?")
    await ChatSession.objects.filter(pk=session_id).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    keep = await new_session(api)
    assert await sync_to_async(expire_sessions)() == 1
    archive = await SessionArchive.objects.aget(session_id=session_id)
    _, document = await sync_to_async(read_archive)(archive)
    assert archive.reason == "expired" and len(document["messages"]) == 2
    assert not await ChatSession.objects.filter(pk=session_id).aexists()
    assert not await Message.objects.filter(session_id=session_id).aexists()
    assert await ChatSession.objects.filter(pk=keep).aexists()


async def test_an_ended_and_archived_session_is_not_archived_again_at_expiry(api, kb):
    session_id = await new_session(api)
    await send(api, session_id, "How do I export my data?")
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    await ChatSession.objects.filter(pk=session_id).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert await sync_to_async(expire_sessions)() == 1
    archives = [a async for a in SessionArchive.objects.filter(session_id=session_id)]
    assert [a.reason for a in archives] == ["ended"]
    assert not await ChatSession.objects.filter(pk=session_id).aexists()


async def test_archives_are_private_to_the_service_user(api, kb, _archives_in_tmp):
    """Archives hold whole conversations: 0600 files in 0700 folders, whatever the umask."""
    session_id = await new_session(api)
    await send(api, session_id, "How do I export my data?")
    assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    archive = await SessionArchive.objects.aget(session_id=session_id)
    path = _archives_in_tmp / archive.key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    folder = path.parent
    while folder != _archives_in_tmp.parent:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        folder = folder.parent


def test_archiving_a_missing_session_is_not_retried(settings):
    """A session that does not exist will not appear: the task ends at once, no retry."""
    retries: list[object] = []

    def count(**kwargs: object) -> None:
        retries.append(kwargs.get("reason"))

    task_retry.connect(count)
    try:
        result = archive_session_task.apply(args=("sess_" + "M" * 32, "ended"))
    finally:
        task_retry.disconnect(count)
    assert retries == []
    assert result.successful() and result.result == ""
    assert not SessionArchive.objects.exists()
