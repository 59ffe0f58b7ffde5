"""``manage.py verify_archives``: re-reads archives from storage (the filesystem, in the test's own
folder), records each verdict, prints the counts and the bad keys, and exits 1 on a bad one."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat.archives import write_archive
from chat.models import SessionArchive
from tests.chat.archive_cast import conversation

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[int, str, str]:
    """The command's exit status (0, or the CommandError's), stdout and the error's message."""
    out = io.StringIO()
    try:
        call_command("verify_archives", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


def archives(count: int) -> list[SessionArchive]:
    """``count`` archives, checked longest ago in the order given."""
    written = [
        write_archive(session_id=conversation(user_id=f"cust-{n}").id, reason="ended")
        for n in range(count)
    ]
    now = timezone.now()
    for n, archive in enumerate(written):
        checked_at = now - timedelta(days=count - n)
        SessionArchive.objects.filter(pk=archive.pk).update(checked_at=checked_at)
        archive.checked_at = checked_at
    return written


def object_path(archive: SessionArchive) -> Path:
    return Path(storages["archives"].path(archive.key))


def damage(altered: SessionArchive, missing: SessionArchive) -> None:
    path = object_path(altered)
    path.write_bytes(path.read_bytes()[:-8])
    object_path(missing).unlink()


def test_all_intact_prints_the_counts_and_exits_0():
    archives(3)

    status, out, _ = run("--all")

    assert status == 0
    assert out == (
        "Checked 3 archives (every archive, filesystem storage): "
        "3 ok, 0 missing, 0 altered, 0 unreadable.\n"
    )
    assert set(SessionArchive.objects.values_list("integrity", flat=True)) == {"ok"}


def test_bad_archives_are_listed_by_key_and_state_and_exit_1():
    intact, altered, missing = archives(3)
    damage(altered, missing)

    status, out, error = run("--all")

    assert status == 1 and error == "2 archives are missing, altered or unreadable"
    assert out.splitlines() == [
        "Checked 3 archives (every archive, filesystem storage): "
        "1 ok, 1 missing, 1 altered, 0 unreadable.",
        f"  altered     {altered.key}",
        f"  missing     {missing.key}",
    ]
    states = dict(SessionArchive.objects.values_list("key", "integrity"))
    assert states == {intact.key: "ok", altered.key: "altered", missing.key: "missing"}


def test_json_report():
    _, altered, missing = archives(3)
    damage(altered, missing)

    status, out, _ = run("--all", "--json")

    assert status == 1
    assert json.loads(out) == {
        "ok": False,
        "backend": "filesystem",
        "sample": None,
        "checked": 3,
        "states": {"ok": 1, "missing": 1, "altered": 1, "unreadable": 0},
        "bad": [{"key": altered.key, "state": "altered"}, {"key": missing.key, "state": "missing"}],
    }


def test_a_sample_checks_those_checked_longest_ago(settings):
    oldest, older, recent = archives(3)
    object_path(recent).unlink()  # not in the sample: not found out yet

    status, out, _ = run("--sample", "2")

    assert status == 0
    assert out.startswith("Checked 2 archives (a sample of at most 2, filesystem storage): 2 ok")
    checked = dict(SessionArchive.objects.values_list("pk", "checked_at"))
    assert checked[recent.pk] == recent.checked_at
    assert all(checked[a.pk] != a.checked_at for a in (oldest, older))

    settings.ARCHIVE_VERIFY_SAMPLE = 1  # the default sample: the one checked longest ago now
    status, out, error = run("--json")

    assert status == 1 and error == "1 archive is missing, altered or unreadable"
    report: dict[str, Any] = json.loads(out)
    assert report["sample"] == 1 and report["bad"] == [{"key": recent.key, "state": "missing"}]


def test_no_archives_or_a_sample_of_nothing_says_so(settings):
    settings.ARCHIVE_VERIFY_SAMPLE = 50
    assert run() == (0, "No archives to check (a sample of at most 50, filesystem storage).\n", "")
    archives(1)
    settings.ARCHIVE_VERIFY_SAMPLE = 0

    assert run() == (0, "Nothing checked: ARCHIVE_VERIFY_SAMPLE is 0 (--all or --sample N).\n", "")
    assert SessionArchive.objects.get().checked_at is not None  # left as it was


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--sample", "0"], "must be at least 1, not 0"),
        (["--sample", "-3"], "must be at least 1, not -3"),
        (["--sample", "ten"], "not a whole number: 'ten'"),
        (["--all", "--sample", "5"], "not allowed with argument --all"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args, said):
    archives(1)
    before = SessionArchive.objects.get().checked_at

    with pytest.raises(CommandError, match=said):
        call_command("verify_archives", *args, stdout=io.StringIO(), stderr=io.StringIO())

    assert SessionArchive.objects.get().checked_at == before
