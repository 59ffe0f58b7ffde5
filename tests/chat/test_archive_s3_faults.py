"""Archives on S3 (moto's server over HTTP): written, verified, restored and deleted; and S3 that
fails while a session is archived (a bucket that refuses writes, a bucket that is gone, a server
that dies half way through an upload, a download that comes back different), after which the
session is kept, counted and retried, and nothing is recorded.

How the faults are made, all real to boto3:

- refused writes: moto enforces IAM when its ``/moto-api/reset-auth`` is set to 0 (moto does not
  evaluate bucket policies, but it does evaluate a user's policies): the archives' credentials
  belong to a user whose policy allows ``s3:*`` but denies ``s3:PutObject``, so every upload
  answers 403 AccessDenied while reads and deletes work;
- a gone bucket: the storage names a bucket that does not exist (404 NoSuchBucket);
- death mid-upload and altered downloads: ``tests/fakes/s3_faults.S3FaultProxy``, a real HTTP
  server in front of moto.

The settings tests build the ``archives`` storage from ``AWS_*`` variables with
``supportbot.env.env_archive_storage`` (what ``supportbot/settings.py`` calls), and once through
the settings module itself, loaded in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages

from chat.archives import (
    ArchiveError,
    check_archive,
    delete_archive,
    load_document,
    restore_archive,
    sha256,
    verify_archives,
    write_archive,
)
from chat.lifecycle import expire_sessions
from chat.models import ArchiveTicket, ChatSession, Message, SessionArchive
from supportbot.env import env_archive_storage
from tests.chat.archive_cast import (
    conversation,
    counted_failures,
    expire_now,
    message_rows,
    session_row,
)
from tests.chat.test_archive_s3 import use_s3_archives
from tests.fakes.s3_faults import S3FaultProxy
from tests.fakes.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Bucket

pytestmark = pytest.mark.django_db

Integrity = SessionArchive.Integrity
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def s3_archives(settings: Any, s3_server: S3Bucket) -> S3Bucket:
    """Archives go to a fresh bucket on the S3 server."""
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    return s3_server


@pytest.fixture
def failures(settings: Any) -> Iterator[Callable[[], dict[str, int]]]:
    """``archive_failures`` counted so far, by label."""
    yield from counted_failures(settings)


def stored(bucket: S3Bucket, archive: SessionArchive) -> bytes:
    """The archive's object straight from S3 (boto3, not our storage)."""
    return bucket.read(f"archives/{archive.key}")


def replace_object(bucket: S3Bucket, archive: SessionArchive, payload: bytes) -> None:
    bucket.client().put_object(Bucket=bucket.name, Key=f"archives/{archive.key}", Body=payload)


def assert_kept_and_counted(
    session: ChatSession, failures: Callable[[], dict[str, int]], messages: list[Any]
) -> None:
    """Expiry kept the session whole, for a retry with backoff, and counted the failure."""
    kept = ChatSession.objects.get(pk=session.pk)
    assert kept.archive_attempts == 1 and kept.archive_retry_at is not None
    assert message_rows(session.id) == messages
    assert not SessionArchive.objects.exists() and not ArchiveTicket.objects.exists()
    assert failures() == {"reason=expired": 1}


# --- the whole life of an archive on S3 --------------------------------------------------------


def test_an_archive_on_s3_is_written_verified_restored_and_deleted(s3_archives, failures):
    session = conversation(escalation="TKT-ESC42424")
    before = session_row(ChatSession.objects.get(pk=session.pk)), message_rows(session.id)

    archive = write_archive(session_id=session.id, reason="expired")

    payload = stored(s3_archives, archive)
    assert s3_archives.keys() == [f"archives/{archive.key}"]
    assert archive.backend == "s3" and archive.integrity == Integrity.OK
    assert archive.sha256 == sha256(payload) and archive.size == len(payload)
    assert archive.tickets.count() == 2
    assert check_archive(archive) == Integrity.OK
    ChatSession.objects.filter(pk=session.pk).delete()

    _, created = restore_archive(archive, by="alice")
    assert created is True
    assert (session_row(ChatSession.objects.get(pk=session.pk)), message_rows(session.id)) == before
    assert restore_archive(archive, by="bob")[1] is False

    delete_archive(archive)
    assert s3_archives.keys() == []
    assert not SessionArchive.objects.filter(pk=archive.pk).exists()
    assert failures() == {}


def test_altered_and_missing_objects_on_s3_are_found_and_never_restored(s3_archives, failures):
    archives = [
        write_archive(session_id=conversation(user_id=f"cust-{n}").id, reason="expired")
        for n in range(3)
    ]
    ChatSession.objects.all().delete()
    altered, missing, intact = archives
    payload = stored(s3_archives, altered)
    middle = len(payload) // 2
    replace_object(
        s3_archives,
        altered,
        payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1 :],
    )
    s3_archives.client().delete_object(Bucket=s3_archives.name, Key=f"archives/{missing.key}")

    report = verify_archives()

    assert (report.checked, report.ok, report.altered, report.missing) == (3, 1, 1, 1)
    assert sorted(report.bad or []) == sorted([altered.key, missing.key])
    for archive, state in ((altered, Integrity.ALTERED), (missing, Integrity.MISSING)):
        with pytest.raises(ArchiveError) as refused:
            restore_archive(archive, by="alice")
        assert refused.value.state == state
    assert list(ChatSession.objects.values_list("pk", flat=True)) == []
    assert load_document(intact)["sessionId"] == intact.session_id
    assert failures() == {"reason=altered": 1, "reason=missing": 1}

    delete_archive(missing)  # the object is gone already: the record goes too
    assert not SessionArchive.objects.filter(pk=missing.pk).exists()


# --- S3 failing while a session is archived ----------------------------------------------------


@pytest.fixture
def read_only_user(s3_server: S3Bucket) -> Iterator[tuple[str, str]]:
    """Credentials of an IAM user who may do anything on S3 but upload, with moto enforcing IAM
    for the test (and not after: other tests use credentials moto does not know)."""
    client = boto3.client(
        "iam",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    user = f"archiver-{uuid.uuid4().hex[:12]}"
    client.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
        ],
    }
    client.put_user_policy(
        UserName=user, PolicyName="no-uploads", PolicyDocument=json.dumps(policy)
    )
    key = client.create_access_key(UserName=user)["AccessKey"]
    enforce_iam(s3_server, True)
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        enforce_iam(s3_server, False)


def enforce_iam(bucket: S3Bucket, on: bool) -> None:
    """moto's own switch (``/moto-api/reset-auth``): check every request against IAM, or not."""
    with httpx.Client(trust_env=False, timeout=5) as client:
        response = client.post(
            f"{bucket.endpoint_url}/moto-api/reset-auth", content=b"0" if on else b"inf"
        )
    assert response.status_code == 200, response.text


def test_a_bucket_that_refuses_writes_keeps_the_session(
    settings, s3_server, read_only_user, failures
):
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    options = settings.STORAGES["archives"]["OPTIONS"]
    options["access_key"], options["secret_key"] = read_only_user
    settings.STORAGES = {**settings.STORAGES}  # a new storage with those credentials
    session = conversation()
    messages = message_rows(session.id)

    with pytest.raises(ClientError) as refused:
        write_archive(session_id=session.id, reason="ended")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    expire_now(session)
    assert expire_sessions() == 0

    assert_kept_and_counted(session, failures, messages)
    enforce_iam(s3_server, False)
    assert s3_server.keys() == []


def test_a_bucket_that_is_gone_keeps_the_session(settings, s3_server, failures):
    use_s3_archives(
        settings, endpoint_url=s3_server.endpoint_url, bucket=f"gone-{uuid.uuid4().hex}"
    )
    session = conversation()
    messages = message_rows(session.id)

    with pytest.raises(ClientError) as refused:
        write_archive(session_id=session.id, reason="ended")
    assert refused.value.response["Error"]["Code"] == "NoSuchBucket"
    expire_now(session)
    assert expire_sessions() == 0

    assert_kept_and_counted(session, failures, messages)


def test_a_server_that_dies_mid_upload_keeps_the_session(settings, s3_server, failures):
    session = conversation(messages=40)
    messages = message_rows(session.id)
    expire_now(session)
    with S3FaultProxy(s3_server.endpoint_url, die_on_put=True) as proxy:
        use_s3_archives(settings, endpoint_url=proxy.endpoint_url, bucket=s3_server.name)

        assert expire_sessions() == 0

    [(path, length, read)] = proxy.cut
    assert path.startswith(f"/{s3_server.name}/archives/") and read == length // 2 > 0
    assert_kept_and_counted(session, failures, messages)
    assert s3_server.keys() == []


@pytest.mark.parametrize(
    ("checksums", "state"),
    [(False, Integrity.ALTERED), (True, Integrity.UNREADABLE)],
    ids=["caught-by-our-sha256", "caught-by-boto3-checksum"],
)
def test_a_read_back_that_differs_leaves_no_row_and_no_object(
    settings, s3_server, checksums, state
):
    """The upload is stored intact, but what comes back differs by a byte: with S3's checksum
    headers boto3 notices (FlexibleChecksumError: "unreadable"); without them (stores that keep
    none) our sha256 does ("altered"). Either way nothing is recorded and the object goes."""
    session = conversation()
    with S3FaultProxy(s3_server.endpoint_url, corrupt_gets=True, checksums=checksums) as proxy:
        use_s3_archives(settings, endpoint_url=proxy.endpoint_url, bucket=s3_server.name)

        with pytest.raises(ArchiveError) as refused:
            write_archive(session_id=session.id, reason="ended")

    assert refused.value.state == state
    assert len(proxy.corrupted) == 1 and ("DELETE", proxy.corrupted[0]) in proxy.requests
    assert not SessionArchive.objects.exists() and not ArchiveTicket.objects.exists()
    assert s3_server.keys() == []
    assert Message.objects.filter(session=session).count() == 6


# --- the settings ------------------------------------------------------------------------------

# The settings module as a deployment loads it, and Django's storage handler on its STORAGES (the
# app registry is not needed for storage, and loading every app would take most of the time).
STORAGE_PROBE = """
import json
import supportbot.settings as configured
from django.conf import settings
settings.configure(STORAGES=configured.STORAGES)
from django.core.files.base import ContentFile
from django.core.files.storage import storages
storage = storages["archives"]
client = storage.connection.meta.client
key = storage.save("probe/settings.json.gz", ContentFile(b"written by the settings' storage"))
with storage.open(key, "rb") as handle:
    read = handle.read().decode()
print(json.dumps({
    "class": type(storage).__name__,
    "addressing": (client.meta.config.s3 or {}).get("addressing_style"),
    "region": client.meta.region_name,
    "key": key,
    "read": read,
}))
"""


def storage_from_settings(tmp_path: Path, **variables: str) -> dict[str, Any]:
    """The ``archives`` storage that supportbot/settings.py builds from these variables, in a
    process of its own: it saves an object and reads it back; what it reports."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(VAR_DIR=str(tmp_path), **variables)
    done = subprocess.run(
        [sys.executable, "-c", STORAGE_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


R2_STYLE = {"AWS_S3_REGION_NAME": "auto", "AWS_S3_ADDRESSING_STYLE": "path"}


def aws_variables(bucket: S3Bucket, **extra: str) -> dict[str, str]:
    return {
        "AWS_STORAGE_BUCKET_NAME": bucket.name,
        "AWS_S3_ENDPOINT_URL": bucket.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        **extra,
    }


@pytest.mark.parametrize(
    ("variables", "addressing", "region"),
    [(R2_STYLE, "path", "auto"), ({"AWS_S3_REGION_NAME": REGION}, None, REGION)],
    ids=["r2-path-style-region-auto", "aws-defaults"],
)
def test_the_storage_built_from_aws_variables_archives_to_s3(
    monkeypatch, settings, tmp_path, s3_server, variables, addressing, region
):
    """``supportbot.env.env_archive_storage``, what settings.py calls, on these variables."""
    monkeypatch.delenv("AWS_S3_ADDRESSING_STYLE", raising=False)
    for name, value in aws_variables(s3_server, **variables).items():
        monkeypatch.setenv(name, value)
    entry = env_archive_storage(s3_server.name, tmp_path)
    settings.STORAGES = {**settings.STORAGES, "archives": entry}

    storage: Any = storages["archives"]  # an S3Storage
    client = storage.connection.meta.client
    assert (client.meta.config.s3 or {}).get("addressing_style") == addressing
    assert client.meta.region_name == region
    archive = write_archive(session_id=conversation().id, reason="ended")

    assert archive.backend == "s3" and archive.integrity == Integrity.OK
    assert sha256(stored(s3_server, archive)) == archive.sha256
    head = s3_server.client().head_object(Bucket=s3_server.name, Key=f"archives/{archive.key}")
    assert head["ContentType"] == "application/gzip"  # served as the gzip file it is


def test_settings_py_builds_the_r2_style_storage_from_the_environment(tmp_path, s3_server):
    """The settings module itself, loaded in a process of its own with R2's variables."""
    found = storage_from_settings(tmp_path, **aws_variables(s3_server, **R2_STYLE))

    assert found["class"] == "S3Storage"
    assert (found["addressing"], found["region"]) == ("path", "auto")
    assert found["read"] == "written by the settings' storage"
    key = f"archives/{found['key']}"
    assert s3_server.keys() == [key]
    assert s3_server.read(key) == b"written by the settings' storage"


def test_an_unknown_addressing_style_is_refused_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_S3_ADDRESSING_STYLE", "diagonal")

    with pytest.raises(ImproperlyConfigured) as refused:
        env_archive_storage("archives", tmp_path)

    assert str(refused.value) == (
        "AWS_S3_ADDRESSING_STYLE must be path, virtual or auto, not 'diagonal'"
    )
