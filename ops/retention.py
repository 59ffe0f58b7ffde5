"""Retention: how long each kind of data is kept, and the job that deletes what has outlived it.

``POLICY`` is the one table: per kind of data its setting, its period in days (None: kept for
ever), what it covers in words, a count of what is due now and the deletion of one batch of it.
``apply_retention`` (Celery beat every hour, ``manage.py apply_retention``, the admin's "Apply
now") walks the table: batches of ``RETENTION_BATCH_SIZE``, each in its own short transaction,
until nothing is due or the run's time budget is spent; what went is recorded as a
``RetentionRun``, logged one line per kind and counted (``retention_deleted``).

Sessions are deleted only through expiry (``chat.lifecycle.expire_sessions``), which archives and
reads the archive back first; archives through ``chat.archives.delete_archive`` (object, then
row). Neither holds a transaction open around a storage call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from chat.archives import ArchiveError, delete_archive, release_restored
from chat.lifecycle import expire_sessions
from chat.models import ChatSession, ReviewItem, SessionArchive
from ops.models import RetentionRun
from supportbot import metrics, security
from supportbot.db import write_transaction
from supportbot.metrics_backends import hour_keep_seconds
from supportbot.models import MetricPoint, UsageDay
from tools.models import Ticket

log = structlog.get_logger("ops.retention")

# Beat runs every hour: a run that has not finished in ten minutes leaves the rest to the next.
RUN_BUDGET_SECONDS = 600.0
# "Apply now" in the admin runs inside the request: staff wait at most this long.
ADMIN_BUDGET_SECONDS = 30.0
MAX_ERRORS_PER_KIND = 20  # a run against dead storage says so, not once per archive

CLOSED_TICKETS = (Ticket.Status.RESOLVED, Ticket.Status.CLOSED, Ticket.Status.CANCELLED)


class UnknownKind(ValueError):
    """A kind of data the policy does not name."""


@dataclass
class Batch:
    """What one batch did: rows (or objects) deleted, rows looked at, errors met."""

    deleted: int = 0
    seen: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Kind:
    """One kind of data: ``count_due(now)`` and ``delete_batch(now, size, skip)``; ``skip``
    holds what failed earlier in the run, so a batch does not try it again."""

    name: str
    setting: str
    covers: str
    period: Callable[[], float | None]
    count_due: Callable[[datetime], int]
    delete_batch: Callable[[datetime, int, set[Any]], Batch]

    def period_days(self) -> float | None:
        return self.period()


def _cutoff(days: float | None, now: datetime) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _setting_days(name: str) -> Callable[[], float | None]:
    def period() -> float | None:
        value = getattr(settings, name, None)
        return None if value is None else float(value)

    return period


def _delete_rows(queryset: QuerySet[Any], size: int, order: str) -> Batch:
    """Delete up to ``size`` rows of ``queryset`` in one transaction (cascades included); the
    count is of the queryset's own model."""
    with write_transaction():
        pks = list(queryset.order_by(order).values_list("pk", flat=True)[:size])
        if not pks:
            return Batch()
        _, per_model = queryset.filter(pk__in=pks).delete()
    return Batch(deleted=per_model.get(queryset.model._meta.label, 0), seen=len(pks))


# --- sessions: expiry ---------------------------------------------------------------------------


def _sessions_period() -> float:
    return float(settings.SESSION_TTL_HOURS) / 24


def _sessions_due(now: datetime) -> QuerySet[ChatSession]:
    # The sessions expire_sessions takes: past their deadline, not restored, no retry pending.
    return ChatSession.objects.filter(expires_at__lte=now, restored_at__isnull=True).filter(
        Q(archive_retry_at__isnull=True) | Q(archive_retry_at__lte=now)
    )


def _count_sessions(now: datetime) -> int:
    return _sessions_due(now).count()


def _delete_sessions(now: datetime, size: int, skip: set[Any]) -> Batch:
    seen = _sessions_due(now)[:size].count()
    if not seen:
        return Batch()
    # Archives each one and reads it back before deleting it; one that fails stays and is
    # retried with backoff (archive_retry_at moves past ``now``, so it is not due again here).
    done = expire_sessions(now=now, batch=size)
    errors = []
    if done < seen:
        errors.append(
            {
                "kind": "sessions",
                "error": f"{seen - done} session(s) could not be archived: kept, and retried "
                "with backoff (archive_failures)",
            }
        )
    return Batch(deleted=done, seen=seen, errors=errors)


# --- archives -----------------------------------------------------------------------------------


def _archives_due(now: datetime) -> QuerySet[SessionArchive]:
    cutoff = _cutoff(settings.RETENTION_ARCHIVES_DAYS, now)
    if cutoff is None:
        return SessionArchive.objects.none()
    return SessionArchive.objects.filter(created_at__lt=cutoff)


def _count_archives(now: datetime) -> int:
    return _archives_due(now).count()


def _release_if_restored(session_id: str) -> None:
    """A restored session whose last archive went goes too: nothing would hold it any more."""
    restored = ChatSession.objects.filter(pk=session_id, restored_at__isnull=False).exists()
    if restored and not SessionArchive.objects.filter(session_id=session_id).exists():
        release_restored(session_id)
        log.info("retention_restored_released", session_id=session_id)


def _delete_archives(now: datetime, size: int, skip: set[Any]) -> Batch:
    archives = list(_archives_due(now).exclude(pk__in=skip).order_by("created_at", "pk")[:size])
    batch = Batch(seen=len(archives))
    for archive in archives:
        # One at a time, outside a transaction: the object goes first, then its row.
        try:
            delete_archive(archive)
        except ArchiveError as exc:
            skip.add(archive.pk)
            metrics.incr("archive_failures", reason="retention")
            log.warning("retention_archive_kept", key=archive.key, error=exc.message)
            batch.errors.append({"kind": "archives", "key": archive.key, "error": exc.message})
            # Storage that does not answer for one object rarely answers for the next: the
            # rest of the batch waits for the next run instead of a timeout each.
            batch.seen = archives.index(archive) + 1
            break
        batch.deleted += 1
        _release_if_restored(archive.session_id)
    return batch


# --- tickets ------------------------------------------------------------------------------------


def _tickets_due(now: datetime) -> QuerySet[Ticket]:
    cutoff = _cutoff(settings.RETENTION_TICKETS_DAYS, now)
    if cutoff is None:
        return Ticket.objects.none()
    return Ticket.objects.filter(status__in=CLOSED_TICKETS, updated_at__lt=cutoff)


def _count_tickets(now: datetime) -> int:
    return _tickets_due(now).count()


def _delete_tickets(now: datetime, size: int, skip: set[Any]) -> Batch:
    return _delete_rows(_tickets_due(now), size, "updated_at")  # their updates by cascade


# --- PII review copies --------------------------------------------------------------------------


def _pii_due(now: datetime) -> QuerySet[ReviewItem]:
    # Each copy's purge_after was set when it was recorded (the setting then); a period
    # shortened since applies to the copies already kept as well.
    due = Q(purge_after__lte=now)
    cutoff = _cutoff(settings.PII_REVIEW_RETENTION_DAYS, now)
    if cutoff is not None:
        due |= Q(created_at__lte=cutoff)
    return ReviewItem.objects.filter(encrypted_clear__isnull=False).filter(due)


def _count_pii(now: datetime) -> int:
    return _pii_due(now).count()


def _delete_pii(now: datetime, size: int, skip: set[Any]) -> Batch:
    due = _pii_due(now)
    with write_transaction():
        pks = list(due.order_by("pk").values_list("pk", flat=True)[:size])
        cleared = due.filter(pk__in=pks).update(encrypted_clear=None) if pks else 0
    return Batch(deleted=cleared, seen=len(pks))


# --- security events ----------------------------------------------------------------------------


def _decided_items(now: datetime) -> QuerySet[ReviewItem]:
    cutoff = _cutoff(settings.RETENTION_SECURITY_EVENTS_DAYS, now)
    if cutoff is None:
        return ReviewItem.objects.none()
    # Decided before the cutoff (an item decided without a time: created before it).
    return (
        ReviewItem.objects.exclude(status=ReviewItem.Status.OPEN)
        .filter(created_at__lt=cutoff)
        .filter(Q(reviewed_at__lt=cutoff) | Q(reviewed_at__isnull=True))
    )


def _count_security(now: datetime) -> int:
    cutoff = _cutoff(settings.RETENTION_SECURITY_EVENTS_DAYS, now)
    if cutoff is None:
        return 0
    return _decided_items(now).count() + security.count_before(cutoff.timestamp())


def _delete_security(now: datetime, size: int, skip: set[Any]) -> Batch:
    cutoff = _cutoff(settings.RETENTION_SECURITY_EVENTS_DAYS, now)
    if cutoff is None:
        return Batch()
    batch = _delete_rows(_decided_items(now), size, "created_at")
    if batch.seen < size:  # the last batch of items: the recent list (500 at most) goes too
        forgotten = security.forget_before(cutoff.timestamp())
        batch.deleted += forgotten
        batch.seen += forgotten
    return batch


# --- metrics ------------------------------------------------------------------------------------


def _metric_floors(now: datetime) -> tuple[int, Any]:
    """The first hour kept and the first usage day kept: the metrics store's own rule
    (``hour_keep_seconds``: METRICS_RETENTION_DAYS and an hour, so a whole window stays)."""
    oldest = now.timestamp() - hour_keep_seconds()
    return int(oldest) // 3600, datetime.fromtimestamp(oldest, tz=UTC).date()


def _metric_hours(now: datetime) -> QuerySet[MetricPoint]:
    return MetricPoint.objects.filter(resolution="h", start__lt=_metric_floors(now)[0])


def _usage_days(now: datetime) -> QuerySet[UsageDay]:
    return UsageDay.objects.filter(day__lt=_metric_floors(now)[1])


def _count_metrics(now: datetime) -> int:
    return _metric_hours(now).count() + _usage_days(now).count()


def _delete_metrics(now: datetime, size: int, skip: set[Any]) -> Batch:
    batch = _delete_rows(_metric_hours(now), size, "start")
    if batch.seen < size:
        days = _delete_rows(_usage_days(now), size - batch.seen, "day")
        batch.deleted += days.deleted
        batch.seen += days.seen
    return batch


# --- the policy ---------------------------------------------------------------------------------

POLICY: tuple[Kind, ...] = (
    Kind(
        name="sessions",
        setting="SESSION_TTL_HOURS",
        covers="Live sessions and their messages, hand-offs, notes, drafts and ratings, once "
        "they have been inactive or ended this long: archived and read back first, then "
        "deleted (expiry). One that cannot be archived stays and is retried; restored "
        "sessions stay until staff release them.",
        period=_sessions_period,
        count_due=_count_sessions,
        delete_batch=_delete_sessions,
    ),
    Kind(
        name="archives",
        setting="RETENTION_ARCHIVES_DAYS",
        covers="Archived conversations (the object in storage, then its record), counted from "
        "when they were archived; a session restored from one is released with it.",
        period=_setting_days("RETENTION_ARCHIVES_DAYS"),
        count_due=_count_archives,
        delete_batch=_delete_archives,
    ),
    Kind(
        name="tickets",
        setting="RETENTION_TICKETS_DAYS",
        covers="Tickets resolved, closed or cancelled, with their history, counted from their "
        "last update. Open tickets are never deleted.",
        period=_setting_days("RETENTION_TICKETS_DAYS"),
        count_due=_count_tickets,
        delete_batch=_delete_tickets,
    ),
    Kind(
        name="pii_review",
        setting="PII_REVIEW_RETENTION_DAYS",
        covers="The encrypted clear copies of PII detections kept for review, counted from "
        "when they were recorded. The review item itself (redacted) stays: see "
        "security_events.",
        period=_setting_days("PII_REVIEW_RETENTION_DAYS"),
        count_due=_count_pii,
        delete_batch=_delete_pii,
    ),
    Kind(
        name="security_events",
        setting="RETENTION_SECURITY_EVENTS_DAYS",
        covers="Decided review items (PII detections, content flags, user reports), counted "
        "from the decision, and the recent security events list. Open items are never "
        "deleted.",
        period=_setting_days("RETENTION_SECURITY_EVENTS_DAYS"),
        count_due=_count_security,
        delete_batch=_delete_security,
    ),
    Kind(
        name="metrics",
        setting="METRICS_RETENTION_DAYS",
        covers="Hourly metric buckets kept in the database and per-customer usage days. Minute "
        "buckets are kept 26 hours by the metrics store itself, running totals for ever "
        "(Prometheus counters never go back); with Redis the buckets are keys that expire "
        "on their own and are not counted here.",
        period=_setting_days("METRICS_RETENTION_DAYS"),
        count_due=_count_metrics,
        delete_batch=_delete_metrics,
    ),
)
KINDS = {kind.name: kind for kind in POLICY}


# --- applying it --------------------------------------------------------------------------------


@dataclass
class KindOutcome:
    """One kind in one run: what is due (dry run) or what went, and whether it finished."""

    kind: str
    setting: str
    period_days: float | None
    covers: str
    due: int | None = None
    deleted: int = 0
    finished: bool = True
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "setting": self.setting,
            "periodDays": self.period_days,
            "covers": self.covers,
            "due": self.due,
            "deleted": self.deleted,
            "finished": self.finished,
            "errors": self.errors,
        }


@dataclass
class RetentionResult:
    trigger: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    outcomes: list[KindOutcome] = field(default_factory=list)
    run_id: int | None = None

    @property
    def deleted(self) -> dict[str, int]:
        return {outcome.kind: outcome.deleted for outcome in self.outcomes}

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Errors, and notes of kinds left unfinished (``{"kind", "error" | "note", ...}``)."""
        return [error for outcome in self.outcomes for error in outcome.errors]

    @property
    def failed(self) -> bool:
        return any("error" in entry for entry in self.errors)

    def as_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "dryRun": self.dry_run,
            "runId": self.run_id,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "kinds": [outcome.as_json() for outcome in self.outcomes],
            "deleted": self.deleted,
            "errors": self.errors,
        }


def period_label(days: float | None) -> str:
    """A period as staff read it: "30 days", "1 day", "kept for ever"."""
    if days is None:
        return "kept for ever"
    if days < 1:
        return f"{days * 24:g} hours"
    return f"{days:g} day" + ("" if days == 1 else "s")


def select_kinds(names: Sequence[str] | None) -> list[Kind]:
    """The kinds named (all of them when None), in the policy's order; ``UnknownKind`` else."""
    if not names:
        return list(POLICY)
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise UnknownKind(
            f"No kind of data {', '.join(map(repr, unknown))}: the policy has {', '.join(KINDS)}."
        )
    return [kind for kind in POLICY if kind.name in names]


def _outcome(kind: Kind) -> KindOutcome:
    return KindOutcome(
        kind=kind.name, setting=kind.setting, period_days=kind.period_days(), covers=kind.covers
    )


def _apply_kind(kind: Kind, outcome: KindOutcome, *, now: datetime, deadline: float) -> None:
    """Delete what is due of one kind, batch after batch, until nothing is due, a batch only
    failed, or the run's time is up."""
    size = int(settings.RETENTION_BATCH_SIZE)
    skip: set[Any] = set()
    while True:
        if time.monotonic() >= deadline:
            outcome.finished = False
            outcome.errors.append(
                {"kind": kind.name, "note": "time budget spent: the rest goes at the next run"}
            )
            return
        batch = kind.delete_batch(now, size, skip)
        outcome.deleted += batch.deleted
        room = MAX_ERRORS_PER_KIND - len(outcome.errors)
        outcome.errors.extend(batch.errors[: max(room, 0)])
        if batch.errors and not batch.deleted:
            outcome.finished = False  # stuck (storage down): the next run tries again
            return
        if not batch.seen or (batch.seen < size and not batch.errors):
            return


def _run_kind(kind: Kind, *, dry_run: bool, now: datetime, deadline: float) -> KindOutcome:
    outcome = _outcome(kind)
    try:
        if dry_run:
            outcome.due = kind.count_due(now)
        elif outcome.period_days is not None:
            _apply_kind(kind, outcome, now=now, deadline=deadline)
    except Exception as exc:  # one kind failing (database away) must not stop the others
        log.exception("retention_failed", kind=kind.name)
        outcome.finished = False
        outcome.errors.append({"kind": kind.name, "error": f"failed: {type(exc).__name__}"})
    return outcome


def apply_retention(
    trigger: str,
    *,
    dry_run: bool = False,
    kinds: Sequence[str] | None = None,
    now: datetime | None = None,
    budget_seconds: float = RUN_BUDGET_SECONDS,
) -> RetentionResult:
    """Apply the policy (``kinds`` of it, or all): delete what is due, record the run and count
    it; with ``dry_run`` only count what is due, delete nothing and record nothing."""
    if trigger not in RetentionRun.Trigger.values:
        raise ValueError(f"Unknown trigger {trigger!r}.")
    selected = select_kinds(kinds)
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    result = RetentionResult(trigger=trigger, dry_run=dry_run, started_at=timezone.now())
    run = None if dry_run else RetentionRun.objects.create(trigger=trigger)
    for kind in selected:
        outcome = _run_kind(kind, dry_run=dry_run, now=now, deadline=deadline)
        result.outcomes.append(outcome)
        log.info(
            "retention_kind",
            kind=kind.name,
            setting=kind.setting,
            period_days=outcome.period_days,
            dry_run=dry_run,
            trigger=trigger,
            due=outcome.due,
            deleted=outcome.deleted,
            finished=outcome.finished,
            errors=len(outcome.errors),
        )
        if outcome.deleted:
            metrics.incr("retention_deleted", outcome.deleted, kind=kind.name)
    result.finished_at = timezone.now()
    if run is not None:
        run.finished_at = result.finished_at
        run.deleted = result.deleted
        run.errors = result.errors
        run.save(update_fields=["finished_at", "deleted", "errors"])
        result.run_id = run.pk
        result.started_at = run.started_at
    return result


def policy_rows(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """The policy as staff read it, with how many are due now (None where counting failed)."""
    now = now or timezone.now()
    rows = []
    for kind in POLICY:
        days = kind.period_days()
        try:
            due: int | None = kind.count_due(now)
        except Exception:
            log.warning("retention_count_failed", kind=kind.name, exc_info=True)
            due = None
        rows.append(
            {
                "kind": kind.name,
                "setting": kind.setting,
                "period_days": days,
                "period": period_label(days),
                "covers": kind.covers,
                "due": due,
            }
        )
    return rows
