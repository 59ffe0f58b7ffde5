"""The live figures of ``manage.py monitor``: turns, their latency and errors, requests, active
sessions, hand-offs and the model breakers, gathered into ``Figures`` and drawn with rich.

The numbers come from the shared metrics (``supportbot.metrics.snapshot``), the database and, for
the breakers, the states every serving process reports to the metrics store (this process's own
chain where the store keeps none). Each source is read within ``SOURCE_TIMEOUT`` on a thread of
its own; one that fails or hangs becomes a line under the frame's title, never a traceback, and
the other figures are still shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from chat.models import Handoff
from ops.health import active_session_count
from ops.verification import call_with_timeout, describe_error, redact_url, scrub
from supportbot import metrics

SOURCE_TIMEOUT = 5.0  # seconds a source (metrics, database, Redis) has to answer, per frame
_STATE_STYLES = {"closed": "green", "half_open": "yellow", "open": "bold red"}


@dataclass
class Figures:
    """One frame's numbers; ``None`` where a source could not be read (``problems`` says why)."""

    window_minutes: int
    taken_at: datetime
    metrics_backend: str = "?"
    metrics_read: bool = False  # the metrics store answered: the traffic figures are real
    turns: dict[str, Any] = field(default_factory=dict)  # count, errors, averageMs, p50/p95/p99
    requests_per_minute: float | None = None
    request_error_percent: float | None = None
    active_sessions: int | None = None
    handoffs_open: int | None = None
    handoffs_waiting: int | None = None
    breakers: list[dict[str, Any]] = field(default_factory=list)
    breakers_source: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def turns_per_minute(self) -> float:
        return round(int(self.turns.get("count", 0)) / self.window_minutes, 2)

    @property
    def turn_error_percent(self) -> float:
        count = int(self.turns.get("count", 0))
        return round(100.0 * int(self.turns.get("errors", 0)) / count, 1) if count else 0.0


def _read[T](figures: Figures, source: str, read: Callable[[], T]) -> T | None:
    """``read()`` within SOURCE_TIMEOUT; a failure is noted as a problem of ``source``."""
    try:
        return call_with_timeout(read, SOURCE_TIMEOUT, name=f"monitor-{source}")
    except Exception as exc:
        figures.problems.append(scrub(f"{source}: {describe_error(exc)}"))
        return None


def _ping_redis(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _database_figures() -> tuple[int, int, int]:
    """Active sessions, open hand-offs (not resolved), waiting hand-offs (no one has them)."""
    counts = Handoff.objects.aggregate(
        open=Count("pk", filter=~Q(status=Handoff.Status.RESOLVED)),
        waiting=Count("pk", filter=Q(status=Handoff.Status.WAITING)),
    )
    return active_session_count(), int(counts["open"]), int(counts["waiting"])


def _breaker_states() -> tuple[list[dict[str, Any]], str]:
    # Every serving process reports its breakers to the metrics store. The monitor's own chain is
    # never built: it serves nothing, and a built chain would report idle breakers as if it did.
    states = [state for state in metrics.breaker_states() if state.get("kind", "llm") == "llm"]
    return states, "reported by every serving process"


def _apply_snapshot(figures: Figures, snapshot: dict[str, Any]) -> None:
    figures.metrics_backend = str(snapshot.get("backend", "?"))
    if snapshot.get("available") is False:  # the store failed; snapshot() said zero instead
        figures.problems.append("metrics: the store could not be read")
        return
    figures.metrics_read = True
    figures.turns = dict(snapshot["turns"])
    figures.requests_per_minute = float(snapshot.get("requestsPerMinute", 0.0))
    figures.request_error_percent = float(snapshot.get("errorRatePercent", 0.0))


def gather_figures(*, window_minutes: int) -> Figures:
    """This moment's figures over the last ``window_minutes`` minutes."""
    figures = Figures(window_minutes=window_minutes, taken_at=timezone.now())
    redis_url = str(getattr(settings, "REDIS_URL", "") or "")
    if redis_url:
        _read(figures, f"redis {redact_url(redis_url)}", lambda: _ping_redis(redis_url))
    snapshot = _read(figures, "metrics", lambda: metrics.snapshot(window_minutes))
    if snapshot is not None:
        _apply_snapshot(figures, snapshot)
    counts = _read(figures, "database", _database_figures)
    if counts is not None:
        figures.active_sessions, figures.handoffs_open, figures.handoffs_waiting = counts
    breakers = _read(figures, "breakers", _breaker_states)
    if breakers is not None:
        figures.breakers, figures.breakers_source = breakers
    return figures


# --- drawing -------------------------------------------------------------------------------------


def _shown(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _traffic_table(figures: Figures) -> Table:
    turns = figures.turns
    read = figures.metrics_read
    table = Table(title=f"last {figures.window_minutes} min", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("", style="dim")
    count = int(turns.get("count", 0))
    table.add_row(
        "turns / min", _shown(figures.turns_per_minute if read else None), f"{count} turns"
    )
    p95 = float(turns.get("p95", 0.0)) if read else None
    table.add_row("turn latency p95", _shown(p95, " ms"), "")
    errors = int(turns.get("errors", 0)) if read else None
    table.add_row("turn errors", _shown(errors), f"{figures.turn_error_percent:g} % of turns")
    table.add_row("requests / min", _shown(figures.requests_per_minute), "HTTP")
    table.add_row("request errors", _shown(figures.request_error_percent, " %"), "HTTP 5xx")
    table.add_row("active sessions", _shown(figures.active_sessions), "")
    table.add_row("hand-offs open", _shown(figures.handoffs_open), "not resolved")
    table.add_row("hand-offs waiting", _shown(figures.handoffs_waiting), "for a person")
    return table


def _breaker_table(figures: Figures) -> Table | Text:
    if not figures.breakers:
        said = f"none reported ({figures.breakers_source})" if figures.breakers_source else "n/a"
        return Text(f"model breakers: {said}", style="dim")
    table = Table(title=f"model breakers ({figures.breakers_source})", title_justify="left")
    for column in ("link", "model", "state", "failures in a row", "process"):
        table.add_column(column)
    for state in figures.breakers:
        name = str(state.get("state", "?"))
        table.add_row(
            str(state.get("name", "?")),
            str(state.get("model", "")),
            Text(name, style=_STATE_STYLES.get(name, "")),
            str(state.get("consecutiveFailures", "")),
            str(state.get("process", "")),
        )
    return table


def figures_view(figures: Figures, *, interval: float | None = None) -> RenderableType:
    """The frame: a title, the problems (if any), the traffic figures and the breakers."""
    title = Text.assemble(
        ("supportbot monitor", "bold"),
        f"  {figures.taken_at:%Y-%m-%d %H:%M:%S %Z}  metrics: {figures.metrics_backend}",
    )
    parts: list[RenderableType] = [title]
    parts += [Text(f"! {problem}", style="bold red") for problem in figures.problems]
    parts += [_traffic_table(figures), _breaker_table(figures)]
    if interval is not None:
        parts.append(Text(f"every {interval:g} s; Ctrl-C to stop", style="dim"))
    return Group(*parts)
