"""The subject-request pages in the admin: look up -> what is held -> download the export ->
erase behind the confirmation -> receipt; bad input answered with form errors (never a 500);
each step behind its permission; the identifier only ever in POST bodies, never in a URL; the
receipts' history read-only."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from chat.models import ChatSession
from ops.models import SubjectRequest
from ops.subjects import find_holdings, subject_from
from tests.chat.test_archive_s3 import s3_down, use_s3_archives  # noqa: F401
from tests.ops.subject_cast import (
    BY_EMAIL,
    BY_USER_ID,
    EMAIL,
    MARK,
    OTHER_USER_ID,
    USER_ID,
    other_person,
    person,
)

pytestmark = pytest.mark.django_db

PAGE = "/admin/ops/subjects/"
EXPORT = "/admin/ops/subjects/export"
ERASE = "/admin/ops/subjects/erase"


def staff(username: str, *, group: str | None = None, perms: tuple[str, ...] = ()) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def supervisor() -> Client:
    """A member of the group ``migrate`` makes: it holds both permissions."""
    return staff("sam", group="Supervisors")


def text_of(response) -> str:
    return response.content.decode()


def counts_on(page: str) -> dict[str, int]:
    """The counts table of a page: label -> count."""
    cells = r'<th scope="row">([^<]+)</th><td class="subj-count">(\d+)</td>'
    return {label: int(n) for label, n in re.findall(cells, page)}


def test_the_supervisors_group_holds_both_permissions():
    group = Group.objects.get(name="Supervisors")
    names = set(group.permissions.values_list("codename", flat=True))
    assert {"export_subject", "erase_subject", "view_subjectrequest"} <= names
    agents = Group.objects.get(name="Support agents")
    assert not agents.permissions.filter(codename__in=["export_subject", "erase_subject"]).exists()


def test_the_lookup_shows_what_is_held_with_links(supervisor):
    someone = person()
    other_person()

    response = supervisor.post(PAGE, {"email": EMAIL.upper(), "reference": "REQ-9"})

    assert response.status_code == 200
    page = text_of(response)
    counts = counts_on(page)
    assert counts["Messages"] == BY_EMAIL["messages"] and counts["Archives"] == BY_EMAIL["archives"]
    assert counts["Tickets"] == 1 and counts["Usage days"] == 0
    change = reverse("admin:chat_chatsession_change", args=[someone.live.pk.replace("_", "_5F")])
    assert f'href="{change}"' in page
    ticket_url = reverse("admin:tools_ticket_change", args=[someone.tickets[0].pk])
    assert f'href="{ticket_url}"' in page
    assert 'id="subj-export-submit"' in page and 'id="subj-erase-submit"' in page
    # The identifier is carried in hidden fields of POST forms, never in a link or an action.
    for action in re.findall(r'action="([^"]*)"', page):
        assert action in (PAGE, EXPORT, ERASE, "/admin/logout/"), action
    assert EMAIL.upper() not in " ".join(re.findall(r'href="([^"]*)"', page))
    assert f'name="email" value="{EMAIL.upper()}"' in page


def test_a_user_id_lookup_of_someone_unknown_says_nothing_is_held(supervisor):
    other_person()

    response = supervisor.post(PAGE, {"user_id": USER_ID})

    assert response.status_code == 200
    assert 'id="nothing-held"' in text_of(response)
    assert SubjectRequest.objects.count() == 0  # looking is not a request answered


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "Give the person&#x27;s userId or their e-mail address."),
        ({"user_id": "u1", "email": EMAIL}, "Give a userId or an e-mail address, not both."),
        ({"email": "jane at example"}, "Enter a valid e-mail address."),
        ({"user_id": "u" * 129}, "A userId has at most 128 characters (this one has 129)."),
        ({"user_id": "u\x00"}, "Null characters are not allowed."),
        ({"user_id": USER_ID, "reference": f"about {USER_ID}"}, "must not contain the person"),
        ({"user_id": USER_ID, "reference": "mail j@example.net"}, "holds personal data (email)"),
    ],
)
@pytest.mark.parametrize("url", [PAGE, EXPORT, ERASE])
def test_bad_input_gets_form_errors_and_changes_nothing(supervisor, url, form, error):
    person()

    response = supervisor.post(url, form)

    assert response.status_code == 400
    assert error in text_of(response)
    assert 'id="subject-lookup"' in text_of(response)
    assert SubjectRequest.objects.count() == 0
    assert find_holdings(subject_from(user_id=USER_ID)).counts() == BY_USER_ID


def test_the_export_downloads_as_json_and_records_a_receipt(supervisor):
    someone = person()

    response = supervisor.post(EXPORT, {"user_id": USER_ID, "reference": "REQ-10"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    receipt = SubjectRequest.objects.get()
    assert response["Content-Disposition"] == (
        f'attachment; filename="subject-export-{receipt.pk}.json"'
    )
    document = json.loads(response.content)
    assert document["receipt"] == receipt.pk
    assert document["sessions"][0]["sessionId"] == someone.live.pk
    assert MARK in document["sessions"][0]["messages"][0]["content"]
    assert receipt.kind == "export" and receipt.requested_by == "sam"
    assert receipt.reference == "REQ-10" and receipt.counts["archives"] == 2


def test_erasure_asks_for_the_identifier_again_then_erases_and_shows_the_receipt(supervisor):
    someone = person()
    other_person()
    carried = {"user_id": USER_ID, "email": "", "reference": "REQ-11"}

    first = supervisor.post(ERASE, carried)
    assert first.status_code == 200
    assert 'id="confirm-erase"' in text_of(first)
    assert counts_on(text_of(first))["Messages"] == BY_USER_ID["messages"]
    assert ChatSession.objects.filter(pk=someone.live.pk).exists()

    wrong = supervisor.post(ERASE, {**carried, "step": "confirm", "confirm": USER_ID + "x"})
    assert wrong.status_code == 400
    assert "Type the userId again, exactly as above" in text_of(wrong)
    assert ChatSession.objects.filter(pk=someone.live.pk).exists()
    assert SubjectRequest.objects.count() == 0

    done = supervisor.post(ERASE, {**carried, "step": "confirm", "confirm": f" {USER_ID} "})

    receipt = SubjectRequest.objects.get()
    assert done.status_code == 302
    assert done["Location"] == reverse("ops:subject_receipt", args=[receipt.pk])
    assert USER_ID not in done["Location"]
    assert receipt.kind == "erase" and receipt.completed and receipt.requested_by == "sam"
    assert find_holdings(subject_from(user_id=USER_ID)).counts() == dict.fromkeys(BY_USER_ID, 0)
    assert find_holdings(subject_from(user_id=OTHER_USER_ID)).counts() == BY_USER_ID

    page = supervisor.get(done["Location"])
    assert page.status_code == 200
    shown = text_of(page)
    assert "Erased: receipt" in shown and 'id="receipt-by">sam<' in shown
    assert counts_on(shown)["Messages"] == BY_USER_ID["messages"]
    assert counts_on(shown)["Archive objects deleted from storage"] == 2
    for secret in (USER_ID, MARK, someone.live.pk):
        assert secret not in shown


def test_an_address_is_confirmed_in_any_case(supervisor):
    person()
    carried = {"email": EMAIL, "step": "confirm", "confirm": EMAIL.lower()}

    done = supervisor.post(ERASE, carried)

    assert done.status_code == 302
    assert find_holdings(subject_from(email=EMAIL)).counts() == dict.fromkeys(BY_EMAIL, 0)


@pytest.mark.django_db(transaction=True)
def test_with_storage_down_the_page_says_so_and_nothing_is_erased(
    settings,
    _archives_in_tmp,
    s3_down,  # noqa: F811
):
    down = settings.STORAGES
    in_tmp = {"location": str(_archives_in_tmp)}
    backend = "django.core.files.storage.FileSystemStorage"
    settings.STORAGES = {**down, "archives": {"BACKEND": backend, "OPTIONS": in_tmp}}
    person()  # archived on the filesystem ...
    settings.STORAGES = down  # ... then read from an S3 that does not answer (no object found)
    client = staff("sam", group="Supervisors")

    response = client.post(
        ERASE, {"user_id": USER_ID, "step": "confirm", "confirm": USER_ID, "reference": "R-1"}
    )

    assert response.status_code == 503
    page = text_of(response)
    assert 'id="erase-incomplete"' in page and "Archive storage did not answer" in page
    assert "Try the erasure again" in page
    receipt = SubjectRequest.objects.get()
    assert not receipt.completed
    assert find_holdings(subject_from(user_id=USER_ID)).counts() == BY_USER_ID


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ({"perms": ()}, set()),
        ({"group": "Support agents"}, set()),
        ({"perms": ("ops.export_subject",)}, {PAGE, EXPORT}),
        ({"perms": ("ops.erase_subject",)}, {PAGE, ERASE}),
    ],
)
def test_each_step_needs_its_permission(who, allowed):
    person()
    client = staff("pat", **who)
    carried = {"user_id": USER_ID}

    assert client.get(PAGE).status_code == (200 if PAGE in allowed else 403)
    for url in (PAGE, EXPORT, ERASE):
        assert client.post(url, carried).status_code == (200 if url in allowed else 403), url
    assert SubjectRequest.objects.count() == (1 if EXPORT in allowed else 0)
    assert find_holdings(subject_from(user_id=USER_ID)).counts() == BY_USER_ID


def test_signed_out_visitors_are_sent_to_the_login_page():
    response = Client().post(PAGE, {"user_id": USER_ID})

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_wrong_methods_and_unknown_receipts_are_refused(supervisor):
    assert supervisor.get(EXPORT).status_code == 405
    assert supervisor.get(ERASE).status_code == 405
    assert supervisor.put(PAGE).status_code == 405
    assert supervisor.get("/admin/ops/subjects/receipts/999/").status_code == 404
    assert supervisor.get("/admin/ops/subjects/receipts/abc/").status_code == 404


def test_the_receipts_are_a_read_only_list_linked_from_the_index(supervisor):
    person()
    supervisor.post(EXPORT, {"user_id": USER_ID, "reference": "REQ-12"})
    receipt = SubjectRequest.objects.get()

    listing = supervisor.get(reverse("admin:ops_subjectrequest_changelist"))
    assert listing.status_code == 200
    assert "REQ-12" in text_of(listing) and 'id="new-subject-request"' in text_of(listing)
    detail = supervisor.get(reverse("admin:ops_subjectrequest_change", args=[receipt.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in text_of(detail)
    assert supervisor.get(reverse("admin:ops_subjectrequest_add")).status_code == 403
    delete = reverse("admin:ops_subjectrequest_delete", args=[receipt.pk])
    assert supervisor.post(delete, {"post": "yes"}).status_code == 403
    index = text_of(supervisor.get("/admin/"))
    assert f'href="{PAGE}"' in index and 'id="ops-subjects-link"' in index
    assert USER_ID not in text_of(listing)


def test_agents_see_no_link_to_subject_requests():
    agent = staff("ana", group="Support agents")

    index = text_of(agent.get("/admin/"))

    assert f'href="{PAGE}"' not in index
