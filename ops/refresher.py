"""Slow probes kept fresh in the background: a ``Refresher`` runs one probe every period on a
daemon thread of its own and keeps its last answer, so that a reader (``GET /health``) never waits
for a probe, only reads the answer and its age.

Why a thread and not an asyncio task per event loop: the worker ping blocks (a task would need a
thread for it anyway), and an event loop does not last as long as the process — a sync caller
(Django's test client, a WSGI server, ``async_to_sync``) runs each request on a loop of its own
that closes after it, taking a task, and its first answer, with it. A thread lives as long as its
process. It is started by the first read, never at import, so management commands, workers and
beats never start one; a fork leaves the child without the thread, so a read in another process
(``os.getpid()``) starts a new one. Nothing the probe raises ends the thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("supportbot.health")

# A probe running this long past its own timeout is hung: its component is reported degraded.
HUNG_GRACE_SECONDS = 2.0
# A refresher nobody has read for this many periods stops probing until the next read, and an
# answer older than that (and a probe's time) is no longer reported as the current state.
IDLE_PERIODS = 3


@dataclass(frozen=True)
class Answer[T]:
    """A probe's result, when it arrived (``time.monotonic()``) and how long the probe took."""

    value: T
    at: float
    latency_ms: float

    def age(self) -> float:
        return time.monotonic() - self.at


class Refresher[T]:
    """Runs one slow probe every period on a daemon thread of its own (see the module's
    docstring); the thread probes while someone reads, and sleeps after ``IDLE_PERIODS`` periods
    without a read."""

    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[], T],
        period: Callable[[], float],
        timeout: float,
        current: Callable[[T], bool] = lambda value: True,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.name = name
        self.timeout = timeout  # the probe's own bound; past it (and a grace) it counts as hung
        self._probe = probe
        self._period = period
        self._current = current  # whether an answer is about what is asked now
        self._ready = ready  # whether there is anything to probe yet
        self._answer: Answer[T] | None = None
        self._running_since: float | None = None
        self._last_read = 0.0
        self._pid = 0  # the process whose thread runs; 0: none started
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        # Locks and events held by another thread at a fork stay held in the child forever.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._running_since = None  # that probe runs on in the parent, not here

    def read(self) -> tuple[Answer[T] | None, float]:
        """The last current answer (None before the first, or when too old) and how long the
        probe now running has run (0.0 when none is). Starts the thread if this process has none,
        and wakes it (it probes only if the answer is due)."""
        now = time.monotonic()
        self._last_read = now
        self._ensure_started()
        self._wake.set()
        answer, since = self._answer, self._running_since
        running = now - since if since is not None else 0.0
        if answer is None or not self._current(answer.value):
            return None, running
        if now - answer.at > IDLE_PERIODS * self._period() + self.timeout + HUNG_GRACE_SECONDS:
            return None, running  # from before an idle spell: the state now is unknown
        return answer, running

    def forget(self) -> None:
        """Drop the answer (tests; a changed configuration): the next read reports none."""
        self._answer = None
        self._wake.set()

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            thread = threading.Thread(target=self._run, name=f"health-{self.name}", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            try:
                self._wake.clear()  # a read from here on wakes the wait below
                delay = self._step()
            except Exception:  # never let the thread die: log, and try again shortly
                log.exception("health_refresher_failed", component=self.name)
                delay = 1.0
            if delay != 0.0:
                self._wake.wait(delay)

    def _step(self) -> float | None:
        """Probe if due; return how long to wait (None: until a read, 0.0: go on at once)."""
        period = float(self._period())
        now = time.monotonic()
        if not self._ready() or now - self._last_read > IDLE_PERIODS * period:
            return None
        answer = self._answer
        if answer is not None and self._current(answer.value) and now - answer.at < period:
            return period - (now - answer.at)
        started = time.monotonic()
        self._running_since = started
        try:
            value = self._probe()
        finally:
            self._running_since = None
        done = time.monotonic()
        self._answer = Answer(value, done, (done - started) * 1000)
        return 0.0
