"""Where the shared metrics live, and how this process's numbers get there.

Recording (``supportbot.metrics``) only adds to this process's buffer: a lock and a few dict
updates, never I/O. A background thread (started by the first record, again after a fork)
flushes the buffer every ``METRICS_FLUSH_SECONDS`` into the shared store, where each field is
added three times: to its minute, to its hour and to the running total.

The store is Redis when ``REDIS_URL`` is set (hashes ``{prefix}:m:{minute}``, ``{prefix}:h:{hour}``
and ``{prefix}:t``, each expiring with its retention) and the database otherwise (the kernel's
own ``MetricPoint`` rows, added to with one upsert per field). What customers spend is always a
table (``UsageDay``), and each process's circuit breakers are reported with every flush. Minute
buckets are kept ``MINUTE_KEEP_HOURS``, hourly ones ``METRICS_RETENTION_DAYS``, totals for ever
(Prometheus counters must not go back).

A store that cannot be written loses that flush: its observations are counted
(``count|metrics_dropped``, written with the next flush that succeeds), a warning is logged at
most once per ``_WARN_EVERY_SECONDS``, and the store is left alone for ``_COOLDOWN_SECONDS``.
A process without a flusher (``METRICS_FLUSH_SECONDS=0``: tests, one-off commands) writes its
numbers itself before it reads.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import structlog
from django.conf import settings

from supportbot.metrics_backends import (
    BREAKER_STALE_SECONDS,
    Batch,
    DatabaseStore,
    Fields,
    RedisStore,
    Store,
    Usage,
    UsageKey,
)

log = structlog.get_logger("supportbot.metrics")

DEFAULT_PREFIX = "supportbot:metrics"
_COOLDOWN_SECONDS = 5.0
_WARN_EVERY_SECONDS = 60.0
_MAX_PENDING_FIELDS = 50_000  # a buffer that cannot be flushed stops growing here
_PRUNE_EVERY_SECONDS = 600.0
_DROPPED = "count|metrics_dropped|"
_BREAKER_STALE = BREAKER_STALE_SECONDS


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _ThreadBuffer:
    """One thread's observations. Its lock is taken by that thread for each record and by the
    flusher once per flush: never contended in practice, so a thread descheduled while it
    records holds up no other."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batch = Batch()
        self.thread = threading.current_thread()


class _Buffer:
    """Observations not yet in the store: one ``_ThreadBuffer`` per recording thread, which the
    flusher drains one after the other."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[_ThreadBuffer] = []
        self._registry_lock = threading.Lock()  # the list of buffers and the drop count
        self.dropped = 0  # observations lost since the last successful flush

    def _mine(self) -> _ThreadBuffer:
        mine: _ThreadBuffer | None = getattr(self._local, "buffer", None)
        if mine is None:
            mine = self._local.buffer = _ThreadBuffer()
            with self._registry_lock:
                self._all.append(mine)
        return mine

    def add(self, minute: int, fields: Mapping[str, float]) -> None:
        mine = self._mine()
        with mine.lock:
            bucket = mine.batch.minutes.get(minute)
            if bucket is None:
                bucket = mine.batch.minutes[minute] = {}
            elif len(bucket) >= _MAX_PENDING_FIELDS:
                self.lost(len(fields))
                return
            for key, value in fields.items():
                bucket[key] = bucket.get(key, 0) + value

    def add_usage(self, key: UsageKey, usage: Usage) -> None:
        mine = self._mine()
        with mine.lock:
            kept = mine.batch.usage.get(key)
            if kept is None:
                if len(mine.batch.usage) >= _MAX_PENDING_FIELDS:
                    self.lost(1)
                    return
                mine.batch.usage[key] = usage
            else:
                kept.add(usage)

    def take(self) -> tuple[Batch, int]:
        """Every thread's observations merged into one batch (threads gone are forgotten)."""
        with self._registry_lock:
            buffers = list(self._all)
            self._all = [b for b in buffers if b.thread.is_alive()]
            dropped, self.dropped = self.dropped, 0
        merged = Batch()
        for buffer in buffers:
            with buffer.lock:
                batch, buffer.batch = buffer.batch, Batch()
            _merge(merged, batch)
        return merged, dropped

    def lost(self, count: int) -> None:
        with self._registry_lock:
            self.dropped += count


def _merge(into: Batch, batch: Batch) -> None:
    for minute_, fields in batch.minutes.items():
        bucket = into.minutes.setdefault(minute_, {})
        for key, value in fields.items():
            bucket[key] = bucket.get(key, 0) + value
    for customer, usage in batch.usage.items():
        kept = into.usage.get(customer)
        if kept is None:
            into.usage[customer] = usage
        else:
            kept.add(usage)


# --- the store for the current settings, and the flusher -----------------------------------------

_store_lock = threading.Lock()
_store_key: tuple[str, str] | None = None
_store_obj: Store | None = None
_buffer = _Buffer()


def _forget_after_fork() -> None:
    # A forked child inherits the parent's unflushed numbers, which the parent still writes.
    global _buffer
    _buffer = _Buffer()


os.register_at_fork(after_in_child=_forget_after_fork)
_flush_lock = threading.Lock()  # one flush at a time: the flusher and a reader's own flush
_flusher_pid = 0
_flusher_wake = threading.Event()
_skip_until = 0.0
_warned_at = 0.0
_pruned_at = 0.0
_breaker_sources: list[Any] = []  # callables returning breaker snapshots (registered by owners)
_breakers_written: dict[str, tuple[str, float]] = {}


def store() -> Store:
    """The store for the current settings (re-made when a test overrides REDIS_URL or prefix)."""
    global _store_key, _store_obj
    key = (getattr(settings, "REDIS_URL", "") or "", _prefix())
    store = _store_obj
    if store is not None and key == _store_key:
        return store
    with _store_lock:
        if _store_obj is None or key != _store_key:
            _store_obj = RedisStore(key[0], key[1]) if key[0] else DatabaseStore()
            _store_key = key
        return _store_obj


def backend_name() -> str:
    """``redis`` or ``database``: where the shared numbers live."""
    return store().backend


def _prefix() -> str:
    return getattr(settings, "METRICS_PREFIX", "") or DEFAULT_PREFIX


def minute(now: float | None = None) -> int:
    """The minute (since the epoch) that ``now`` falls in."""
    return int((now if now is not None else time.time()) // 60)


def _flush_seconds() -> float:
    return float(getattr(settings, "METRICS_FLUSH_SECONDS", 2.0))


def _ensure_flusher() -> None:
    """Start this process's flusher (again after a fork: threads do not survive one)."""
    global _flusher_pid
    pid = os.getpid()
    if _flusher_pid == pid or _flush_seconds() <= 0:
        return
    with _store_lock:
        if _flusher_pid == pid:
            return
        _flusher_pid = pid
    threading.Thread(target=_flush_forever, name="metrics-flush", daemon=True).start()


def _flush_forever() -> None:
    pid = os.getpid()
    while _flusher_pid == pid:
        _flusher_wake.wait(max(0.05, _flush_seconds()))
        _flusher_wake.clear()
        try:
            flush()
        except Exception:  # the flusher outlives anything a flush can raise
            log.exception("metrics_flusher_failed")
        finally:
            _close_thread_connections()


def _close_thread_connections() -> None:
    # The flusher's own database connection goes back between flushes (a pooled one to the pool).
    try:
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            conn.close()
    except Exception:
        log.warning("metrics_connection_close_failed", exc_info=True)


def flush() -> bool:
    """Write this process's buffer to the shared store now; False when it was dropped."""
    global _skip_until, _pruned_at
    with _flush_lock:
        batch, dropped = _buffer.take()
        batch.breakers = _changed_breakers()
        if not batch.minutes and not batch.usage and not batch.breakers and not dropped:
            return True
        # What this batch loses if it cannot be written: its own observations, and those lost
        # before it that it was to report.
        at_stake = batch.observations() + dropped
        if dropped:
            bucket = batch.minutes.setdefault(minute(), {})
            bucket[_DROPPED] = bucket.get(_DROPPED, 0) + dropped
        if time.monotonic() < _skip_until:
            _buffer.lost(at_stake)
            return False
        target = store()
        try:
            target.write(batch)
        except Exception as exc:
            _skip_until = time.monotonic() + _COOLDOWN_SECONDS
            _buffer.lost(at_stake)
            _breakers_written.clear()  # say them again once the store is back
            _failed("record", exc)
            return False
        now = time.time()
        if now - _pruned_at > _PRUNE_EVERY_SECONDS:
            _pruned_at = now
            try:
                target.prune(now)
            except Exception as exc:
                _failed("prune", exc)
        return True


def _failed(operation: str, exc: BaseException) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= _WARN_EVERY_SECONDS or not _warned_at:
        _warned_at = now
        # The class name only: a driver's message may carry the URL with its password.
        log.warning(
            "metrics_store_unavailable",
            operation=operation,
            backend=store().backend,
            error=type(exc).__name__,
        )


@atexit.register
def _flush_at_exit() -> None:
    try:
        if _flusher_pid == os.getpid():  # only where a flusher ran: never in a test process
            flush()
    except Exception:
        log.warning("metrics_exit_flush_failed", exc_info=True)


def register_breakers(source: Any) -> None:
    """Report the snapshots ``source()`` returns (a list of ``CircuitBreaker.snapshot()`` dicts
    with a ``kind``) with every flush, so every process sees every process's breakers."""
    if source not in _breaker_sources:
        _breaker_sources.append(source)


def _changed_breakers() -> dict[str, dict[str, Any]]:
    """Breaker states to write: those that changed, and all of them every half stale period."""
    now = time.time()
    out: dict[str, dict[str, Any]] = {}
    process = _process_name()
    for source in list(_breaker_sources):
        try:
            snapshots = list(source())
        except Exception:
            log.warning("metrics_breaker_source_failed", exc_info=True)
            continue
        for snap in snapshots:
            name = f"{snap.get('kind', 'llm')}|{snap.get('name', '?')}|{process}"
            state = str(snap.get("state", "closed"))
            last = _breakers_written.get(name)
            if last is None or last[0] != state or now - last[1] > _BREAKER_STALE / 2:
                out[name] = {**snap, "process": process, "at": now}
                _breakers_written[name] = (state, now)
    return out


def off_the_loop[T](function: Callable[[], T]) -> T:
    """Run ``function`` here, or on a short-lived thread when this thread runs an event loop:
    the database store's queries are synchronous, and Django refuses them on a loop's thread.
    Async code should read through ``sync_to_async``; this keeps a direct call (a test, a
    consumer's slip) correct instead of failing, at the cost of blocking that loop briefly."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-read") as pool:
        return pool.submit(_closing(function)).result()


def _closing[T](function: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        try:
            return function()
        finally:
            _close_thread_connections()

    return run


def _flush_if_unattended() -> None:
    # A process without a flusher (METRICS_FLUSH_SECONDS=0: tests, one-off commands) writes its
    # numbers before it reads; with one, a read stays a read and sees this process's last
    # METRICS_FLUSH_SECONDS late, as it sees every other process's.
    if _flusher_pid != os.getpid():
        flush()


def read_buckets(resolution: str, starts: list[int]) -> dict[int, Fields]:
    """The stored buckets (``m`` minutes or ``h`` hours since the epoch) among ``starts``.
    Raises when the store cannot be read."""
    if resolution not in ("m", "h"):
        raise ValueError("resolution must be 'm' or 'h'")

    def read() -> dict[int, Fields]:
        _flush_if_unattended()
        return store().read(resolution, starts)

    return off_the_loop(read)


def read_totals() -> Fields:
    """Every field's total since the store began (what Prometheus counters report)."""

    def read() -> Fields:
        _flush_if_unattended()
        return store().totals()

    return off_the_loop(read)


def breaker_states() -> list[dict[str, Any]]:
    """The breakers every live process reported (``kind``, ``name``, ``state``, ``process``…)."""

    def read() -> list[dict[str, Any]]:
        _flush_if_unattended()
        return store().breakers()

    return off_the_loop(read)


def usage_rows(*, since: date, limit: int = 20) -> list[dict[str, Any]]:
    """What each customer spent since ``since`` (a day), most expensive first, then most tokens."""
    from django.db.models import F, Sum

    from supportbot.models import UsageDay

    def read() -> list[dict[str, Any]]:
        _flush_if_unattended()
        rows = (
            UsageDay.objects.filter(day__gte=since)
            .values("user_id", "api_key")
            .annotate(
                all_turns=Sum("turns"),
                all_prompt=Sum("prompt_tokens"),
                all_completion=Sum("completion_tokens"),
                all_cost=Sum("cost_usd"),
                all_tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
            )
            .order_by("-all_cost", "-all_tokens", "user_id")[:limit]
        )
        return [
            {
                "user_id": row["user_id"],
                "api_key": row["api_key"],
                "turns": row["all_turns"],
                "prompt_tokens": row["all_prompt"],
                "completion_tokens": row["all_completion"],
                "cost_usd": row["all_cost"],
            }
            for row in rows
        ]

    return off_the_loop(read)


def add(fields: Mapping[str, float]) -> None:
    """Add ``fields`` to the current minute of this process's buffer (never raises)."""
    try:
        _buffer.add(minute(), fields)
        _ensure_flusher()
    except Exception as exc:  # metrics must never break the caller
        log.warning("metrics_record_failed", error=type(exc).__name__)


def add_usage(key: UsageKey, usage: Usage) -> None:
    """Add a customer's spend to this process's buffer (never raises)."""
    try:
        _buffer.add_usage(key, usage)
        _ensure_flusher()
    except Exception as exc:
        log.warning("metrics_record_failed", error=type(exc).__name__)


def unregister_breakers(source: Any) -> None:
    """Stop reporting ``source``'s breakers (tests)."""
    if source in _breaker_sources:
        _breaker_sources.remove(source)


def clear() -> None:
    """Forget every number of the current store and this process's buffer (tests)."""
    global _skip_until
    _skip_until = 0.0
    _buffer.take()
    _breakers_written.clear()
    try:
        off_the_loop(store().clear)
    except Exception as exc:
        _failed("clear", exc)


def reset_cooldown() -> None:
    """Try the store again at the next flush, even within its cooldown (tests)."""
    global _skip_until
    _skip_until = 0.0
