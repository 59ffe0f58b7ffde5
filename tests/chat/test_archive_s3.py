"""Archives on S3: ending and expiring sessions write to a real S3 protocol server (moto), and an
unreachable S3 loses nothing.

The ``archives`` storage is ``S3Storage`` configured as ``supportbot/settings.py`` does when
``AWS_STORAGE_BUCKET_NAME`` is set; what landed in the bucket is read back with plain boto3, never
through our code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from botocore.config import Config
from django.utils import timezone

from chat.lifecycle import expire_sessions
from chat.models import ChatSession, Message, SessionArchive
from tests.chat.conftest import new_session, send
from tests.fakes.openai_server import refusing_socket
from tests.fakes.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Bucket

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "How do I export my data?"


def use_s3_archives(settings: Any, *, endpoint_url: str, bucket: str) -> None:
    """Point the ``archives`` storage at S3 (replacing ``STORAGES`` resets Django's handler)."""
    storages = dict(settings.STORAGES)
    storages["archives"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            # As supportbot/settings.py configures it from AWS_* variables...
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region_name": REGION,
            "default_acl": None,
            "file_overwrite": False,
            "location": "archives",
            "object_parameters": {"ContentType": "application/gzip"},
            # ...plus test-sized timeouts and no retries, so an unreachable endpoint fails in
            # milliseconds. Path-style addressing: the endpoint is an IP, not a bucket domain.
            "client_config": Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=1,
                read_timeout=5,
                retries={"mode": "standard", "total_max_attempts": 1},
            ),
        },
    }
    settings.STORAGES = storages


@pytest.fixture
def s3_archives(settings: Any, s3_server: S3Bucket) -> S3Bucket:
    """Archives go to a fresh bucket on the S3 server."""
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    return s3_server


@pytest.fixture
def s3_down(settings: Any) -> Iterator[None]:
    """Archives go to an S3 endpoint on 127.0.0.1 that refuses every connection."""
    sock = refusing_socket()
    try:
        use_s3_archives(
            settings,
            endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            bucket="unreachable",
        )
        yield
    finally:
        sock.close()


async def chatted_session(api: Any) -> str:
    """A session with one answered turn (the offline assistant): two messages."""
    session_id = await new_session(api)
    response = await send(api, session_id, QUESTION)
    assert response.status_code == 200
    assert await Message.objects.filter(session_id=session_id).acount() == 2
    return session_id


async def make_expired(session_id: str) -> None:
    await ChatSession.objects.filter(pk=session_id).aupdate(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def read_object(bucket: S3Bucket, archive: SessionArchive) -> tuple[bytes, dict[str, Any]]:
    """The archive's bytes straight from S3 (boto3, not our storage), and their JSON."""
    key = f"archives/{archive.key}"
    assert bucket.keys() == [key]  # one object, under the storage's location
    payload = bucket.read(key)
    return payload, json.loads(gzip.decompress(payload))


def logged_events(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if r.name == logger and isinstance(r.msg, dict)]


async def test_ending_a_session_writes_its_archive_to_s3(api, kb, s3_archives):
    session_id = await chatted_session(api)

    response = await api.delete(f"/api/session/{session_id}")

    assert response.status_code == 200 and response.json()["status"] == "ended"
    archive = await SessionArchive.objects.aget(session_id=session_id)
    payload, document = await sync_to_async(read_object)(s3_archives, archive)
    assert archive.reason == "ended" and archive.message_count == 2
    assert archive.size == len(payload)
    assert archive.sha256 == hashlib.sha256(payload).hexdigest()
    assert document["sessionId"] == session_id and document["status"] == "ended"
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["messages"][0]["content"] == QUESTION
    assert document["messages"][1]["content"]
    # Ended, not expired: the rows stay readable.
    assert await Message.objects.filter(session_id=session_id).acount() == 2


async def test_expired_session_is_archived_to_s3_then_deleted(api, kb, s3_archives):
    session_id = await chatted_session(api)
    await make_expired(session_id)
    keep = await new_session(api)

    assert await sync_to_async(expire_sessions)() == 1

    archive = await SessionArchive.objects.aget(session_id=session_id)
    payload, document = await sync_to_async(read_object)(s3_archives, archive)
    assert archive.reason == "expired" and archive.message_count == 2
    assert archive.size == len(payload)
    assert archive.sha256 == hashlib.sha256(payload).hexdigest()
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["messages"][0]["content"] == QUESTION
    assert not await ChatSession.objects.filter(pk=session_id).aexists()
    assert not await Message.objects.filter(session_id=session_id).aexists()
    assert await ChatSession.objects.filter(pk=keep).aexists()


async def test_expiry_keeps_the_rows_when_s3_is_down(api, kb, s3_down, caplog):
    caplog.set_level(logging.ERROR, logger="chat.lifecycle")
    session_id = await chatted_session(api)
    await make_expired(session_id)

    assert await sync_to_async(expire_sessions)() == 0

    assert await ChatSession.objects.filter(pk=session_id).aexists()
    assert await Message.objects.filter(session_id=session_id).acount() == 2
    assert not await SessionArchive.objects.filter(session_id=session_id).aexists()
    failures = [
        e for e in logged_events(caplog, "chat.lifecycle") if e["event"] == "archive_failed"
    ]
    assert [e["session_id"] for e in failures] == [session_id]


async def test_ending_a_session_while_s3_is_down_still_ends_it_and_keeps_the_rows(
    api, kb, s3_down, caplog
):
    caplog.set_level(logging.ERROR, logger="chat.sessions")
    session_id = await chatted_session(api)

    response = await api.delete(f"/api/session/{session_id}")

    assert response.status_code == 200
    assert response.json()["status"] == "ended" and response.json()["messageCount"] == 2
    failures = [e for e in logged_events(caplog, "chat.sessions") if e["event"] == "archive_failed"]
    assert [e["session_id"] for e in failures] == [session_id]
    assert not await SessionArchive.objects.filter(session_id=session_id).aexists()
    session = await ChatSession.objects.aget(pk=session_id)
    assert session.status == ChatSession.Status.ENDED and session.ended_at is not None
    assert await Message.objects.filter(session_id=session_id).acount() == 2


async def test_an_archive_that_failed_at_end_is_written_by_expiry_once_s3_is_back(
    api, kb, settings, s3_server
):
    sock = refusing_socket()
    try:
        use_s3_archives(
            settings, endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}", bucket="gone"
        )
        session_id = await chatted_session(api)
        assert (await api.delete(f"/api/session/{session_id}")).status_code == 200
    finally:
        sock.close()
    assert not await SessionArchive.objects.filter(session_id=session_id).aexists()

    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    await make_expired(session_id)
    assert await sync_to_async(expire_sessions)() == 1

    archive = await SessionArchive.objects.aget(session_id=session_id)
    payload, document = await sync_to_async(read_object)(s3_server, archive)
    assert archive.reason == "expired" and archive.sha256 == hashlib.sha256(payload).hexdigest()
    assert document["status"] == "ended" and len(document["messages"]) == 2
    assert not await ChatSession.objects.filter(pk=session_id).aexists()
