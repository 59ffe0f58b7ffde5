"""``manage.py ensure_admin`` (run by ``make run``): a first superuser with a random password,
and a sign-in hint that names where the password was saved."""

from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_a_fresh_install_gets_an_admin_and_is_told_where_its_password_is(settings, tmp_path):
    settings.VAR_DIR = tmp_path  # outside the project: the hint names the real file
    first = run()
    saved = tmp_path / "admin-password"
    password = saved.read_text().strip()
    assert f"as 'admin' with password {password} (saved in {saved};" in first
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert get_user_model().objects.get(username="admin").check_password(password)

    again = run()  # a superuser exists: nothing new, the same file named
    assert (
        again.strip()
        == f"Admin: sign in at /admin/ with your superuser account (first password in {saved})."
    )
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_inside_the_project_the_hint_is_relative(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    assert "(saved in var/admin-password;" in run()
