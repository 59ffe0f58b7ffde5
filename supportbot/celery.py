"""The Celery app. Embedded default: a filesystem broker under var/; with REDIS_URL, Redis.

Two things here keep background work moving whatever the broker does:

- ``SingleBeatScheduler``: beat runs as a process of its own (never ``worker --beat``, whose beat
  child outlives a killed worker), and however many are started exactly one runs the schedule
  (``ops.scheduler``: a lease in the database); the others stand by and take over when it lapses.
- Every worker runs the workflows' lease check itself, at start and every
  ``WORKFLOW_SWEEP_SECONDS``: an execution whose worker died, or that was never queued, is queued
  again by the product, not after the broker's visibility timeout, and with or without beat.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from datetime import timedelta
from typing import Any

import structlog
from celery import Celery
from celery.beat import Scheduler
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")

app = Celery("supportbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = structlog.get_logger("supportbot.celery")


class SingleBeatScheduler(Scheduler):
    """Celery's in-memory scheduler, run only while this beat holds the beat lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lease_seconds = float(settings.BEAT_LEASE_SECONDS)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.active = False
        self._checked = 0.0
        super().__init__(*args, **kwargs)

    def _hold(self) -> bool:
        # Not at the top: this module is loaded with the package (supportbot/__init__.py),
        # before Django's app registry is ready, and ops.scheduler imports models.
        from ops.scheduler import lease_take

        try:
            held = lease_take(holder=self.holder, seconds=self.lease_seconds)
        except Exception as exc:  # the database away: run nothing rather than twice
            log.warning("beat.lease_failed", error=type(exc).__name__)
            connection.close()  # the next tick connects afresh
            held = False
        if held != self.active:
            log.info("beat.active" if held else "beat.standby", holder=self.holder)
            if held:
                # Taking over: what fell due while another beat (or none) ran is due now.
                for entry in self.schedule.values():
                    entry.last_run_at = entry.default_now() - timedelta(days=1)
        self.active = held
        return held

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # Renewed every third of the lease, so one slow tick does not lose it.
        renew_every = self.lease_seconds / 3
        now = time.monotonic()
        if now - self._checked >= renew_every or not self.active:
            self._checked = now
            self._hold()
        if not self.active:
            return renew_every
        return min(float(super().tick(*args, **kwargs)), renew_every)

    def close(self) -> None:
        if self.active:
            # Not at the top: models are not importable when this module loads (see _hold).
            from ops.scheduler import lease_release

            try:
                lease_release(holder=self.holder)
            except Exception as exc:
                log.warning("beat.release_failed", error=type(exc).__name__)
        super().close()


_sweep_stop = threading.Event()


def _sweep_workflows() -> None:
    # Not at the top: models are not importable when this module loads (see _hold).
    from tools.workflows import resume_stale_workflows

    while not _sweep_stop.is_set():
        close_old_connections()
        try:
            queued = resume_stale_workflows()
        except Exception as exc:  # the database or broker away: try again next period
            log.warning("workflow.sweep_failed", error=type(exc).__name__)
        else:
            if queued:
                log.warning("workflow.sweep_requeued", count=queued)
        _sweep_stop.wait(float(settings.WORKFLOW_SWEEP_SECONDS))
    close_old_connections()


@worker_ready.connect
def _start_workflow_sweep(**_: Any) -> None:
    _sweep_stop.clear()
    threading.Thread(target=_sweep_workflows, name="workflow-sweep", daemon=True).start()


@worker_shutdown.connect
def _stop_workflow_sweep(**_: Any) -> None:
    _sweep_stop.set()
