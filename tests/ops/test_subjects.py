"""Subject requests (``ops.subjects``, ``ops.subject_export``): a person found by userId or by
e-mail address, everything held about them exported as one document and erased — archive
objects in storage first, then every row — with receipts that hold no identifier and no data.
On the filesystem and on S3 (moto's server), including S3 down in the middle: the erasure stops
before the database and a retry completes it. Afterwards nothing returns the person's data: not
the export, not the archive search, not the storage itself (read directly, not through our code).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.core import serializers
from django.core.files.storage import storages
from django.db.models.signals import pre_delete

from chat.archives import search_archives, write_archive
from chat.models import ChatSession, Message, ReviewItem, SessionArchive
from ops.models import SubjectRequest
from ops.subject_export import FORMAT, export_subject, subject_document
from ops.subjects import (
    ERASED_KINDS,
    ErasureIncomplete,
    SubjectError,
    clean_reference,
    erase_subject,
    find_holdings,
    subject_from,
)
from supportbot.models import UsageDay
from tests.chat.test_archive_s3 import s3_archives, s3_down, use_s3_archives  # noqa: F401
from tests.fakes.s3_server import S3Bucket
from tests.ops.subject_cast import (
    BY_EMAIL,
    BY_USER_ID,
    EMAIL,
    MARK,
    OTHER_EMAIL,
    OTHER_MARK,
    OTHER_USER_ID,
    USER_ID,
    other_person,
    person,
)
from tools.models import Ticket, WorkflowExecution

pytestmark = pytest.mark.django_db


def by_user_id() -> Any:
    return subject_from(user_id=USER_ID)


def by_email() -> Any:
    return subject_from(email=EMAIL)


def erased_counts(**held: int) -> dict[str, int]:
    return {kind: held.get(kind, 0) for kind in ERASED_KINDS}


def receipt_json(receipt: SubjectRequest) -> str:
    return serializers.serialize("json", [receipt])


def assert_nothing_of(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret.casefold() not in text.casefold(), secret


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({}, "", "Give the person's userId or their e-mail address."),
        ({"user_id": "  ", "email": ""}, "", "Give the person's userId or their e-mail address."),
        ({"user_id": "u1", "email": "a@example.com"}, "", "not both"),
        ({"user_id": "x" * 129}, "user_id", "at most 128 characters (this one has 129)"),
        ({"user_id": "bad\x00id"}, "user_id", "contains a NUL character"),
        ({"email": "not-an-address"}, "email", "Enter a valid e-mail address."),
        ({"email": "a@b"}, "email", "Enter a valid e-mail address."),
        ({"email": "x" * 250 + "@example.com"}, "email", "Enter a valid e-mail address."),
        ({"email": "jane\x00@example.com"}, "email", "Enter a valid e-mail address."),
    ],
)
def test_a_subject_is_exactly_one_valid_identifier(given, field, message):
    with pytest.raises(SubjectError) as raised:
        subject_from(**given)

    assert raised.value.field == field
    assert message in raised.value.message


def test_a_subject_keeps_its_value_out_of_its_repr():
    subject = subject_from(email=f"  {EMAIL} ")

    assert subject.value == EMAIL and subject.matched_by == "email"
    assert EMAIL not in repr(subject)
    assert subject_from(user_id="x" * 128).value == "x" * 128


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (f"DSAR for {EMAIL.lower()}", "must not contain the person's userId or address"),
        ("Reply to j.smith@example.net", "looks like it holds personal data (email)"),
        ("call +44 20 7946 0958", "looks like it holds personal data (phone)"),
        ("R" * 101, "at most 100 characters"),
        ("bad\x00ref", "contains a NUL character"),
    ],
)
def test_a_reference_holding_personal_data_is_refused(reference, message):
    with pytest.raises(SubjectError) as raised:
        clean_reference(reference, subject=by_email())

    assert raised.value.field == "reference"
    assert message in raised.value.message


def test_a_plain_reference_is_kept():
    assert clean_reference("  REQ-2024-117 ", subject=by_user_id()) == "REQ-2024-117"
    assert clean_reference("", subject=by_user_id()) == ""


# --- finding ------------------------------------------------------------------------------------


def test_a_user_id_finds_live_and_archived_sessions_and_everything_keyed_by_them():
    someone = person()
    other_person()

    held = find_holdings(by_user_id())

    assert held.counts() == BY_USER_ID
    assert held.session_ids == {someone.live.pk, someone.expired_id}
    assert {t.pk for t in held.tickets} == {t.pk for t in someone.tickets}


def test_an_address_finds_the_sessions_of_its_tickets_and_hand_offs_in_any_case():
    someone = person()
    other_person()

    for typed in (EMAIL, EMAIL.lower(), EMAIL.upper()):
        held = find_holdings(subject_from(email=typed))
        assert held.counts() == BY_EMAIL
        assert held.session_ids == {someone.live.pk}


def test_a_session_known_only_through_a_ticket_is_found_with_what_is_keyed_by_it():
    Ticket.objects.create(
        session_id="sess_gone",
        title="Old",
        description="x",
        user_email=EMAIL,
        estimated_resolution="2030-01-01T00:00:00Z",
    )
    ReviewItem.objects.create(session_id="sess_gone", kind="report", action="reported")

    held = find_holdings(by_email())

    assert held.session_ids == {"sess_gone"}
    assert held.counts()["review_items"] == 1 and held.counts()["sessions"] == 0


# --- export -------------------------------------------------------------------------------------


def test_the_export_holds_every_kind_of_data_and_records_a_receipt():
    someone = person()
    other_person()

    document = export_subject(subject=by_user_id(), requested_by="lead", reference="REQ-1")

    assert document["format"] == FORMAT and document["held"] is True
    assert document["subject"] == {"matchedBy": "userId", "value": USER_ID}
    (session,) = document["sessions"]
    assert session["sessionId"] == someone.live.pk and session["userId"] == USER_ID
    assert [m["content"] for m in session["messages"]] == [
        f"Where is my {MARK}?",
        f"Your {MARK} is on its way.",
    ]
    assert session["handoffs"][0]["contactEmail"] == EMAIL
    assert session["notes"][0]["text"] == f"Asked twice: {MARK}"
    assert session["drafts"][0]["content"] == f"Draft about {MARK}"
    assert session["ratings"][0]["comment"] == f"Thanks for {MARK}"
    assert session["answerVotes"][0]["vote"] == "up"
    archived = {a["sessionId"]: a for a in document["archives"]}
    assert set(archived) == {someone.live.pk, someone.expired_id}
    old = archived[someone.expired_id]["document"]
    assert [m["content"] for m in old["messages"]] == [f"My {MARK} again", "Let me check."]
    assert {t["title"] for t in document["tickets"]} == {f"Lost {MARK}", f"Second {MARK}"}
    assert all(len(t["updates"]) == 1 for t in document["tickets"])
    assert document["reviewItems"][0]["excerpt"] == f"My {MARK}, call me on [PHONE]"
    assert document["workflowExecutions"][0]["parameters"] == {"query": f"escalate {MARK}"}
    assert document["usageDays"][0]["turns"] == 3
    assert len(document["adminHistory"]) == 3
    assert OTHER_MARK not in json.dumps(document)

    receipt = SubjectRequest.objects.get(pk=document["receipt"])
    assert receipt.kind == "export" and receipt.matched_by == "userId" and receipt.completed
    assert receipt.requested_by == "lead" and receipt.reference == "REQ-1"
    assert receipt.counts == {
        **{k: v for k, v in BY_USER_ID.items() if k != "sessions"},
        "sessions": 1,
        "messages": 2,
        "archive_errors": 0,
    }
    assert_nothing_of(receipt_json(receipt), USER_ID, EMAIL, MARK, someone.live.pk)


def test_an_archive_that_is_missing_or_altered_is_listed_with_its_error(_archives_in_tmp):
    someone = person()
    live_archive, expired_archive = someone.archives
    (_archives_in_tmp / live_archive.key).unlink()
    (_archives_in_tmp / expired_archive.key).write_bytes(b"not the archive")

    document = export_subject(subject=by_user_id(), requested_by="lead")

    errors = {a["sessionId"]: a["error"]["state"] for a in document["archives"]}
    assert errors == {someone.live.pk: "missing", someone.expired_id: "altered"}
    assert all("document" not in a for a in document["archives"])
    assert document["sessions"][0]["messages"]  # the rest is exported all the same
    receipt = SubjectRequest.objects.get(pk=document["receipt"])
    assert receipt.counts["archives"] == 2 and receipt.counts["archive_errors"] == 2


def test_a_person_with_no_data_gets_an_empty_export_and_a_receipt_saying_so():
    other_person()

    document = export_subject(subject=by_email(), requested_by="lead")

    assert document["held"] is False
    for key in ("sessions", "archives", "tickets", "reviewItems", "usageDays", "adminHistory"):
        assert document[key] == []
    receipt = SubjectRequest.objects.get(pk=document["receipt"])
    assert receipt.note == "Nothing held." and receipt.completed
    assert set(receipt.counts.values()) == {0}


# --- erasure ------------------------------------------------------------------------------------


def test_erasure_removes_everything_held_and_nothing_of_anyone_else(_archives_in_tmp, caplog):
    caplog.set_level(logging.INFO)
    someone = person()
    other = other_person()
    kept_files = [a.key for a in other.archives]
    caplog.clear()

    receipt = erase_subject(subject=by_user_id(), requested_by="lead", reference="REQ-2")

    assert receipt.kind == "erase" and receipt.completed and receipt.note == ""
    assert receipt.counts == erased_counts(**BY_USER_ID, archive_objects=2)
    # Nothing returns the person's data any more: not a lookup, the export or archive search...
    assert find_holdings(by_user_id()).counts() == dict.fromkeys(BY_USER_ID, 0)
    document = subject_document(by_user_id())
    assert document["held"] is False and MARK not in json.dumps(document)
    assert not search_archives(USER_ID).exists()
    assert not search_archives(someone.live.pk).exists()
    assert not Ticket.objects.filter(title__contains=MARK).exists()
    assert not Message.objects.filter(content__contains=MARK).exists()
    assert not ReviewItem.objects.filter(excerpt__contains=MARK).exists()
    assert not WorkflowExecution.objects.filter(session_id=someone.expired_id).exists()
    assert not UsageDay.objects.filter(user_id=USER_ID).exists()
    # ...nor the storage, read as files; the other person's archives are still there.
    assert stored_files(_archives_in_tmp) == sorted(kept_files)
    assert find_holdings(subject_from(user_id=OTHER_USER_ID)).counts() == BY_USER_ID
    assert find_holdings(subject_from(email=OTHER_EMAIL)).counts() == BY_EMAIL
    # Receipt and logs: counts, never the identifier or the data.
    assert_nothing_of(receipt_json(receipt), USER_ID, MARK, someone.live.pk, someone.expired_id)
    logged = "\n".join(str(r.msg) for r in caplog.records)
    assert "subject_erased" in logged
    assert_nothing_of(logged, USER_ID, EMAIL, MARK, someone.live.pk, someone.expired_id)


def test_erasure_by_address_removes_what_the_address_finds():
    someone = person()

    receipt = erase_subject(subject=subject_from(email=EMAIL.upper()), requested_by="lead")

    assert receipt.counts == erased_counts(**BY_EMAIL, archive_objects=1)
    assert receipt.matched_by == "email"
    assert not ChatSession.objects.filter(pk=someone.live.pk).exists()
    assert find_holdings(by_email()).counts() == dict.fromkeys(BY_EMAIL, 0)
    # The expired conversation named no address: a userId lookup still finds it.
    assert find_holdings(by_user_id()).session_ids == {someone.expired_id}
    assert_nothing_of(receipt_json(receipt), EMAIL, MARK)


def test_erasing_a_person_with_no_data_records_a_zero_receipt():
    other_person()

    receipt = erase_subject(subject=by_user_id(), requested_by="lead")

    assert receipt.completed and receipt.note == "Nothing held."
    assert receipt.counts == erased_counts()
    assert find_holdings(subject_from(user_id=OTHER_USER_ID)).counts() == BY_USER_ID


def test_a_restored_session_is_erased_with_the_rest():
    from chat.archives import restore_archive

    someone = person()
    expired_archive = SessionArchive.objects.get(session_id=someone.expired_id)
    restored, created = restore_archive(expired_archive, by="lead")
    assert created

    receipt = erase_subject(subject=by_user_id(), requested_by="lead")

    assert receipt.counts["sessions"] == 2 and receipt.counts["messages"] == 4
    assert not ChatSession.objects.filter(pk=restored.pk).exists()


# --- on S3 --------------------------------------------------------------------------------------


def person_keys(bucket: S3Bucket, archives: list[SessionArchive]) -> list[str]:
    """The person's objects still in the bucket, listed with boto3 (not through our code)."""
    wanted = {f"archives/{a.key}" for a in archives}
    return sorted(wanted & set(bucket.keys()))


@pytest.mark.django_db(transaction=True)
def test_on_s3_the_export_reads_and_the_erasure_deletes_the_objects(s3_archives):  # noqa: F811
    someone = person()
    other = other_person()
    assert len(person_keys(s3_archives, someone.archives)) == 2

    document = export_subject(subject=by_user_id(), requested_by="lead")
    assert all("document" in a for a in document["archives"]), document["archives"]

    receipt = erase_subject(subject=by_user_id(), requested_by="lead")

    assert receipt.counts == erased_counts(**BY_USER_ID, archive_objects=2)
    assert person_keys(s3_archives, someone.archives) == []
    assert len(person_keys(s3_archives, other.archives)) == 2
    assert subject_document(by_user_id())["held"] is False
    assert not search_archives(USER_ID).exists()


@pytest.mark.django_db(transaction=True)
def test_with_s3_down_erasure_stops_before_the_database_and_a_retry_completes(
    settings,
    s3_server,
    s3_down,  # noqa: F811
):
    down = settings.STORAGES
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    someone = person()
    settings.STORAGES = down  # S3 stops answering
    assert type(storages["archives"]).__name__ == "S3Storage"

    with pytest.raises(ErasureIncomplete) as raised:
        erase_subject(subject=by_user_id(), requested_by="lead", reference="REQ-3")

    incomplete = raised.value.receipt
    assert not incomplete.completed and incomplete.reference == "REQ-3"
    assert "Archive storage did not answer" in incomplete.note
    assert "nothing in the database was erased" in incomplete.note
    assert incomplete.counts == erased_counts()
    assert_nothing_of(receipt_json(incomplete), USER_ID, MARK, someone.live.pk)
    # Not a row touched: everything is still found, the objects are all still there.
    assert find_holdings(by_user_id()).counts() == BY_USER_ID
    assert len(person_keys(s3_server, someone.archives)) == 2

    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    receipt = erase_subject(subject=by_user_id(), requested_by="lead", reference="REQ-3")

    assert receipt.completed and receipt.counts == erased_counts(**BY_USER_ID, archive_objects=2)
    assert person_keys(s3_server, someone.archives) == []
    assert find_holdings(by_user_id()).counts() == dict.fromkeys(BY_USER_ID, 0)
    assert list(SubjectRequest.objects.values_list("completed", flat=True)) == [True, False]


@pytest.mark.django_db(transaction=True)
def test_a_retry_after_some_objects_went_still_finds_what_only_they_named(
    settings,
    s3_server,
    s3_down,  # noqa: F811
):
    """The first object deleted, then storage stops: the expired session is named only by its
    archive record, which the first attempt kept, so the retry still erases its ticket."""
    down = settings.STORAGES
    use_s3_archives(settings, endpoint_url=s3_server.endpoint_url, bucket=s3_server.name)
    someone = person()
    up = settings.STORAGES
    expired_archive = SessionArchive.objects.get(session_id=someone.expired_id)
    s3_server.client().delete_object(Bucket=s3_server.name, Key=f"archives/{expired_archive.key}")
    settings.STORAGES = down

    with pytest.raises(ErasureIncomplete):
        erase_subject(subject=by_user_id(), requested_by="lead")
    assert Ticket.objects.filter(session_id=someone.expired_id).exists()

    settings.STORAGES = up
    receipt = erase_subject(subject=by_user_id(), requested_by="lead")

    assert receipt.completed and receipt.counts["tickets"] == 2
    assert not Ticket.objects.filter(session_id=someone.expired_id).exists()
    assert person_keys(s3_server, someone.archives) == []


def test_an_archive_written_while_erasing_is_deleted_too(_archives_in_tmp):
    """Expiry archiving one of the sessions while the erasure runs (here: as its transaction
    starts deleting) does not leave that archive behind."""
    someone = person()
    written: list[SessionArchive] = []

    def expiry_meanwhile(**kwargs: Any) -> None:
        if not written:
            archive = write_archive(session_id=someone.live.pk, reason="expired", fresh=True)
            written.append(archive)

    pre_delete.connect(expiry_meanwhile, sender=LogEntry, weak=False)
    try:
        receipt = erase_subject(subject=by_user_id(), requested_by="lead")
    finally:
        pre_delete.disconnect(expiry_meanwhile, sender=LogEntry)

    assert len(written) == 1
    assert receipt.counts["archives"] == 3 and receipt.counts["archive_objects"] == 3
    assert not SessionArchive.objects.exists()
    assert stored_files(_archives_in_tmp) == []
