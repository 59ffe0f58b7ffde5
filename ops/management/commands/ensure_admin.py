"""Make sure staff can sign in to the admin on a fresh install, and say how."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create an 'admin' superuser with a random password when none exists; print how to sign in."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        password_file = settings.VAR_DIR / "admin-password"
        # The file as the person who ran ``make run`` finds it: relative to the project when
        # VAR_DIR is inside it (the default), else where VAR_DIR points.
        shown = (
            password_file.relative_to(settings.BASE_DIR)
            if password_file.is_relative_to(settings.BASE_DIR)
            else password_file
        )
        if user_model.objects.filter(is_superuser=True).exists():
            where = f" (first password in {shown})" if password_file.exists() else ""
            self.stdout.write(f"Admin: sign in at /admin/ with your superuser account{where}.")
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@localhost", password)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(
            f"Admin: sign in at /admin/ as 'admin' with password {password} "
            f"(saved in {shown}; to choose your own: manage.py changepassword admin)."
        )
