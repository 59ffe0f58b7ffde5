"""Django set up for a benchmark that only calls supportbot's code in-process (no server, no
database work). Importing any guard loads the ``chat.guards`` package, whose facade records
findings through the review queue's models, so even the Django-free leaves (PII detection, the
content filter) need the app registry."""

from __future__ import annotations

import os
import tempfile


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="bench-"))
    import django  # after the environment above: django.setup() reads it

    django.setup()
