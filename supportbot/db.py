"""Database helpers shared by the apps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

# SQLite has one writer at a time. Writers of this process queue on this lock and wake at
# once, instead of each spinning in SQLite's busy handler, which sleeps in growing steps of up
# to 100 ms; other processes (a Celery worker) still wait on busy_timeout.
_sqlite_writer = threading.RLock()


@contextmanager
def write_transaction() -> Iterator[None]:
    """``transaction.atomic()`` for a transaction that writes; fair and prompt on SQLite."""
    if connection.vendor == "sqlite":
        with _sqlite_writer, transaction.atomic():
            yield
    else:
        with transaction.atomic():
            yield
