"""Django set up for a benchmark that only calls supportbot's code in-process (no server, no
database work). Importing any guard loads the ``chat.guards`` package, whose facade records
findings through the review queue's models, so even the Django-free leaves (PII detection, the
content filter) need the app registry."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    if "VAR_DIR" not in os.environ:
        scratch = tempfile.mkdtemp(prefix="bench-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        os.environ["VAR_DIR"] = scratch
    import django  # after the environment above: django.setup() reads it

    django.setup()
