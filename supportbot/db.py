"""Database helpers shared by the apps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, connections, transaction

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


def refresh_kept_connections() -> None:
    """Start a unit of work on a thread that keeps its connections between units.

    The WebSocket side's database work runs on one long-lived thread that keeps its connection
    (see ``ChatConsumer.dispatch``), where a request thread would close it after every request
    (and a pooled one go back to the pool, which checks it before lending it again). Here a
    connection that failed, or with ``CONN_HEALTH_CHECKS`` (set for PostgreSQL) one that no
    longer answers a ``SELECT 1``, is closed, so a database restart or failover costs a
    reconnect instead of an error.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        checked = conn.errors_occurred or getattr(conn, "health_check_enabled", False)
        if checked and not conn.is_usable():
            conn.close()
        else:
            conn.errors_occurred = False
