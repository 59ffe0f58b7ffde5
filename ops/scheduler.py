"""Exactly one Celery beat: a lease in the database that the running beat renews.

Every way of running the product starts a beat beside its workers (``make run``, ``make worker``,
the README's production processes), so a deployment may have several; they share this lease and
only its holder runs the schedule. A beat that dies (even SIGKILLed) stops renewing, and a standby
takes over once ``BEAT_LEASE_SECONDS`` have passed. The database is the one store every mode has
(SQLite on the embedded default, PostgreSQL in production), so the same code serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ops.models import SchedulerLease

BEAT = "beat"


def lease_take(*, holder: str, seconds: float, name: str = BEAT) -> bool:
    """Take or renew the lease for ``holder``; False while another holder's lease runs."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    renewed = SchedulerLease.objects.filter(name=name, holder=holder, expires_at__gte=now).update(
        renewed_at=now, expires_at=until
    )
    if renewed:
        return True
    # Take it over from a lapsed holder (or our own lapsed lease); one UPDATE, so two standbys
    # cannot both win.
    taken = (
        SchedulerLease.objects.filter(name=name)
        .filter(Q(expires_at__lt=now) | Q(holder=holder))
        .update(holder=holder, acquired_at=now, renewed_at=now, expires_at=until)
    )
    if taken:
        return True
    try:
        with transaction.atomic():
            SchedulerLease.objects.create(
                name=name, holder=holder, acquired_at=now, renewed_at=now, expires_at=until
            )
    except IntegrityError:
        return False
    return True


def lease_release(*, holder: str, name: str = BEAT) -> None:
    """Give the lease up at a clean stop, so a standby takes over at once."""
    SchedulerLease.objects.filter(name=name, holder=holder).update(expires_at=timezone.now())


@dataclass(frozen=True)
class LeaseState:
    holder: str
    renewed_at: datetime
    expires_at: datetime

    @property
    def live(self) -> bool:
        return self.expires_at >= timezone.now()


def lease_state(name: str = BEAT) -> LeaseState | None:
    """The lease as last written (None: never taken)."""
    row = SchedulerLease.objects.filter(name=name).first()
    if row is None:
        return None
    return LeaseState(row.holder, row.renewed_at, row.expires_at)
