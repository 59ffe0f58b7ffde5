"""``manage.py export_subject`` and ``manage.py erase_subject``: the document to stdout or a file,
the counts, the confirmation (asked on a terminal, refused without one unless --yes), --dry-run
changing nothing, bad input as a clear error, and receipts recorded as "manage.py (NAME)"."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ops.models import SubjectRequest
from ops.subjects import find_holdings, subject_from
from tests.ops.subject_cast import BY_USER_ID, EMAIL, MARK, USER_ID, person

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    """Typed answers, on what looks like a terminal."""

    def isatty(self) -> bool:
        return True


def run(name: str, *args: str, **options: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def held() -> dict[str, int]:
    return find_holdings(subject_from(user_id=USER_ID)).counts()


def test_export_writes_the_document_to_stdout_and_records_a_receipt():
    someone = person()

    out, err = run("export_subject", "--user-id", USER_ID, "--reference", "REQ-20")

    document = json.loads(out)
    assert document["sessions"][0]["sessionId"] == someone.live.pk
    assert MARK in json.dumps(document)
    receipt = SubjectRequest.objects.get()
    assert document["receipt"] == receipt.pk
    assert receipt.requested_by == "manage.py" and receipt.reference == "REQ-20"
    assert f"Exported; receipt #{receipt.pk}." in err
    assert "Messages" in err and MARK not in err


def test_export_to_a_file_is_private_and_never_overwrites(tmp_path: Path):
    person()
    target = tmp_path / "export.json"

    out, _ = run("export_subject", "--email", EMAIL, "--output", str(target), "--by", "Lee")

    assert out == ""
    assert json.loads(target.read_text())["subject"] == {"matchedBy": "email", "value": EMAIL}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert SubjectRequest.objects.get().requested_by == "manage.py (Lee)"
    with pytest.raises(CommandError, match="exists; choose a new file"):
        run("export_subject", "--email", EMAIL, "--output", str(target))
    assert SubjectRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "one of the arguments --user-id --email is required"),
        (("--user-id", "a", "--email", EMAIL), "not allowed with argument"),
        (("--email", "nope"), "--email: Enter a valid e-mail address."),
        (("--user-id", "u" * 129), "--user-id: A userId has at most 128 characters"),
        (("--user-id", USER_ID, "--reference", f"for {USER_ID}"), "--reference: The reference"),
        (("--user-id", USER_ID, "--by", "x" * 101), "--by: a name of at most 100 characters"),
    ],
)
@pytest.mark.parametrize("command", ["export_subject", "erase_subject"])
def test_bad_input_is_a_clear_error_and_changes_nothing(command, args, message):
    person()

    with pytest.raises(CommandError, match=message):
        run(command, *args, *(["--yes"] if command == "erase_subject" else []))

    assert SubjectRequest.objects.count() == 0
    assert held() == BY_USER_ID


def test_a_dry_run_shows_the_counts_and_changes_nothing():
    person()

    out, _ = run("erase_subject", "--user-id", USER_ID, "--dry-run")

    assert "Held about this userId:" in out
    assert "Messages" in out and "Dry run: nothing erased, no receipt recorded." in out
    assert USER_ID not in out and MARK not in out
    assert held() == BY_USER_ID and SubjectRequest.objects.count() == 0


def test_without_a_terminal_and_without_yes_it_refuses():
    person()

    with pytest.raises(CommandError, match="no terminal to confirm on"):
        run("erase_subject", "--user-id", USER_ID, stdin=io.StringIO("erase\n"))

    assert held() == BY_USER_ID and SubjectRequest.objects.count() == 0


def test_on_a_terminal_it_erases_only_once_confirmed():
    person()

    with pytest.raises(CommandError, match="Not confirmed"):
        run("erase_subject", "--user-id", USER_ID, stdin=Terminal("yes\n"))
    assert held() == BY_USER_ID

    out, _ = run("erase_subject", "--user-id", USER_ID, "--by", "Lee", stdin=Terminal("erase\n"))

    assert "Type 'erase' to erase" in out
    receipt = SubjectRequest.objects.get()
    assert f"Erased; receipt #{receipt.pk}." in out
    assert receipt.requested_by == "manage.py (Lee)" and receipt.counts["messages"] == 2
    assert held() == dict.fromkeys(BY_USER_ID, 0)


def test_with_yes_it_erases_and_a_person_with_no_data_gets_a_zero_receipt():
    person()
    run("erase_subject", "--user-id", USER_ID, "--yes")
    assert held() == dict.fromkeys(BY_USER_ID, 0)

    out, _ = run("erase_subject", "--user-id", USER_ID, "--yes", "--reference", "REQ-21")

    assert "Nothing held about this userId." in out and "Nothing held." in out
    last = SubjectRequest.objects.order_by("-pk").first()
    assert last is not None and last.note == "Nothing held." and last.reference == "REQ-21"
    assert set(last.counts.values()) == {0}
