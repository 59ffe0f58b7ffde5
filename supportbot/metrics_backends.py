"""The two shared stores of the metrics (``supportbot.metrics_store`` picks one): Redis hashes,
or ``MetricPoint`` rows in the database. Both add a flush's fields to their minute, their hour and
the running total; both keep every process's breaker reports; customers' spend is a table
(``UsageDay``) in either case.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import redis
from django.conf import settings

MINUTE_KEEP_HOURS = 26  # a day of minutes, and a margin so a 24 h window at minute steps is whole
BREAKER_STALE_SECONDS = 120  # a process silent this long no longer speaks for its breakers
_REDIS_TIMEOUT_SECONDS = 0.5

Fields = dict[str, float]


@dataclass
class Usage:
    """What one customer (a ``userId``, or an API key) spent on one day."""

    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.turns += other.turns
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd


UsageKey = tuple[date, str, str]  # day, userId, API key id


@dataclass
class Batch:
    """A flush's worth of observations: fields per minute, and usage per customer and day."""

    minutes: dict[int, Fields] = field(default_factory=dict)
    usage: dict[UsageKey, Usage] = field(default_factory=dict)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def observations(self) -> int:
        """What a dropped batch loses, counted in fields (the unit it was recorded in)."""
        return sum(len(f) for f in self.minutes.values()) + len(self.usage)


# --- the stores --------------------------------------------------------------------------------


class Store(Protocol):
    backend: str

    def write(self, batch: Batch) -> None: ...

    def read(self, resolution: str, starts: list[int]) -> dict[int, Fields]: ...

    def totals(self) -> Fields: ...

    def breakers(self) -> list[dict[str, Any]]: ...

    def prune(self, now: float) -> None: ...

    def clear(self) -> None: ...


def _rollup(batch: Batch) -> tuple[dict[int, Fields], Fields]:
    """The batch's minutes summed into hours, and into one total."""
    hours: dict[int, Fields] = defaultdict(dict)
    total: Fields = {}
    for minute, fields in batch.minutes.items():
        hour = hours[minute // 60]
        for key, value in fields.items():
            hour[key] = hour.get(key, 0) + value
            total[key] = total.get(key, 0) + value
    return hours, total


def hour_keep_seconds() -> int:
    """How long an hourly bucket is kept (METRICS_RETENTION_DAYS and an hour)."""
    return int(float(getattr(settings, "METRICS_RETENTION_DAYS", 30)) * 86400) + 3600


class RedisStore:
    """Hashes shared by every process, each expiring with its retention."""

    backend = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )
        self._prefix = prefix

    def write(self, batch: Batch) -> None:
        if batch.usage:  # first: a database that fails fails the whole flush, counted once
            from django.db import connection

            from supportbot.db import write_transaction

            with write_transaction(), connection.cursor() as cursor:
                _write_usage(cursor, batch.usage)
        hours, total = _rollup(batch)
        pipe = self._client.pipeline(transaction=False)
        # HINCRBYFLOAT for every field: a field never changes type, and "3" reads back as 3.
        for minute, fields in batch.minutes.items():
            key = f"{self._prefix}:m:{minute}"
            for name, value in fields.items():
                if value:
                    pipe.hincrbyfloat(key, name, value)
            pipe.expire(key, MINUTE_KEEP_HOURS * 3600)
        keep = hour_keep_seconds()
        for hour, fields in hours.items():
            key = f"{self._prefix}:h:{hour}"
            for name, value in fields.items():
                if value:
                    pipe.hincrbyfloat(key, name, value)
            pipe.expire(key, keep)
        for name, value in total.items():
            if value:
                pipe.hincrbyfloat(f"{self._prefix}:t", name, value)
        for name, state in batch.breakers.items():
            pipe.hset(f"{self._prefix}:breakers", name, json.dumps(state))
        pipe.execute()

    def read(self, resolution: str, starts: list[int]) -> dict[int, Fields]:
        pipe = self._client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(f"{self._prefix}:{resolution}:{start}")
        replies = pipe.execute()
        return {start: _floats(raw) for start, raw in zip(starts, replies, strict=True) if raw}

    def totals(self) -> Fields:
        return _floats(self._client.hgetall(f"{self._prefix}:t"))

    def breakers(self) -> list[dict[str, Any]]:
        key = f"{self._prefix}:breakers"
        raw = self._client.hgetall(key)
        states, stale = _live_breakers((str(k), v) for k, v in raw.items())
        if stale:
            self._client.hdel(key, *stale)
        return states

    def prune(self, now: float) -> None:
        """Nothing to do: every hash expires on its own."""

    def clear(self) -> None:
        keys = list(self._client.scan_iter(match=f"{self._prefix}:*", count=500))
        if keys:
            self._client.delete(*keys)


class DatabaseStore:
    """``MetricPoint`` rows (``m`` minute, ``h`` hour, ``t`` total) in the default database."""

    backend = "database"

    def write(self, batch: Batch) -> None:
        from django.db import connection

        from supportbot.db import write_transaction
        from supportbot.models import MetricPoint

        hours, total = _rollup(batch)
        rows: list[tuple[str, int, str, float]] = []
        for minute, fields in batch.minutes.items():
            rows += [("m", minute, name, value) for name, value in fields.items() if value]
        for hour, fields in hours.items():
            rows += [("h", hour, name, value) for name, value in fields.items() if value]
        rows += [("t", 0, name, value) for name, value in total.items() if value]
        points = connection.ops.quote_name(MetricPoint._meta.db_table)
        # One upsert that adds: both SQLite (3.24+) and PostgreSQL speak ON CONFLICT ... DO UPDATE.
        add_point = (
            f"INSERT INTO {points} (resolution, start, name, value) VALUES (%s, %s, %s, %s) "  # noqa: S608 (table names are our models'; values are parameters)
            f"ON CONFLICT (resolution, start, name) DO UPDATE SET value = {points}.value + "
            "excluded.value"
        )
        with write_transaction(), connection.cursor() as cursor:
            if rows:
                cursor.executemany(add_point, rows)
            _write_usage(cursor, batch.usage)
            if batch.breakers:
                self._write_breakers(batch.breakers)

    @staticmethod
    def _write_breakers(states: Mapping[str, dict[str, Any]]) -> None:
        from supportbot.models import BreakerState

        for name, state in states.items():
            BreakerState.objects.update_or_create(name=name, defaults={"state": state})

    def read(self, resolution: str, starts: list[int]) -> dict[int, Fields]:
        from supportbot.models import MetricPoint

        if not starts:
            return {}
        wanted = set(starts)
        found: dict[int, Fields] = defaultdict(dict)
        rows = MetricPoint.objects.filter(
            resolution=resolution, start__gte=min(starts), start__lte=max(starts)
        ).values_list("start", "name", "value")
        for start, name, value in rows.iterator(chunk_size=5000):
            if start in wanted:
                found[start][name] = value
        return dict(found)

    def totals(self) -> Fields:
        from supportbot.models import MetricPoint

        return dict(
            MetricPoint.objects.filter(resolution="t", start=0).values_list("name", "value")
        )

    def breakers(self) -> list[dict[str, Any]]:
        from supportbot.models import BreakerState

        raw = [(row.name, row.state) for row in BreakerState.objects.all()]
        states, stale = _live_breakers(raw)
        if stale:
            BreakerState.objects.filter(name__in=stale).delete()
        return states

    def prune(self, now: float) -> None:
        from supportbot.models import MetricPoint, UsageDay

        minute_floor = int(now // 60) - MINUTE_KEEP_HOURS * 60
        hour_floor = int(now - hour_keep_seconds()) // 3600
        MetricPoint.objects.filter(resolution="m", start__lt=minute_floor).delete()
        MetricPoint.objects.filter(resolution="h", start__lt=hour_floor).delete()
        day_floor = datetime.fromtimestamp(now - hour_keep_seconds(), tz=UTC).date()
        UsageDay.objects.filter(day__lt=day_floor).delete()

    def clear(self) -> None:
        from supportbot.models import BreakerState, MetricPoint, UsageDay

        MetricPoint.objects.all().delete()
        UsageDay.objects.all().delete()
        BreakerState.objects.all().delete()


def _write_usage(cursor: Any, usage: Mapping[UsageKey, Usage]) -> None:
    """Add each customer's spend to their row of the day (``UsageDay``: always the database,
    also with Redis: it is a table staff read, not a series)."""
    if not usage:
        return
    from django.db import connection

    from supportbot.models import UsageDay

    table = connection.ops.quote_name(UsageDay._meta.db_table)
    add_usage = (
        f"INSERT INTO {table} (day, user_id, api_key, turns, prompt_tokens, "  # noqa: S608 (the table name is our model's; values are parameters)
        "completion_tokens, cost_usd) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (day, user_id, api_key) DO UPDATE SET "
        f"turns = {table}.turns + excluded.turns, "
        f"prompt_tokens = {table}.prompt_tokens + excluded.prompt_tokens, "
        f"completion_tokens = {table}.completion_tokens + excluded.completion_tokens, "
        f"cost_usd = {table}.cost_usd + excluded.cost_usd"
    )
    cursor.executemany(
        add_usage,
        [
            (day, user, key, u.turns, u.prompt_tokens, u.completion_tokens, u.cost_usd)
            for (day, user, key), u in usage.items()
        ],
    )


def _live_breakers(raw: Iterable[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    now = time.time()
    states: list[dict[str, Any]] = []
    stale: list[str] = []
    for name, value in raw:
        try:
            state = json.loads(value) if isinstance(value, str) else dict(value)
        except (ValueError, TypeError):
            stale.append(name)
            continue
        if now - float(state.get("at", 0)) > BREAKER_STALE_SECONDS:
            stale.append(name)
        else:
            states.append(state)
    return states, stale


def _floats(raw: Mapping[Any, Any]) -> Fields:
    # The client decodes responses: keys and values are str.
    return {str(key): float(value) for key, value in raw.items()}
