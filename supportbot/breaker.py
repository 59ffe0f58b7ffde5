"""A circuit breaker, so a dead dependency is skipped instead of waited on: one per model link
(``chat.llm.chain``) and one per tool (``tools.registry``).

closed ──N consecutive failures──▶ open ──reset_seconds──▶ half_open ──probe ok──▶ closed
                                    ▲                          │
                                    └──────probe failed────────┘

While half-open exactly one call (the probe) is admitted at a time; everyone else is refused
until its verdict. The state changes lazily inside ``allow()``: there is no timer thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

logger = structlog.get_logger("supportbot.breaker")

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure breaker; safe to share between one event loop and threads."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        kind: str = "llm",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.kind = kind  # what guards: "llm" (a model link) or "tool"; prefixes the log events
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._consecutive_failures = 0
        self._opened_at: float | None = None  # on self._clock
        self._probe_in_flight = False
        self._total_failures = 0
        self._total_successes = 0

    @property
    def state(self) -> State:
        """The effective state (an open breaker whose time is up reports half_open)."""
        with self._lock:
            return self._effective_state()

    def allow(self) -> bool:
        """May a call go to this link now? In half-open, True admits the single probe."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open" and not self._reset_time_passed():
                return False
            if self._probe_in_flight:
                return False
            self._state = "half_open"
            self._probe_in_flight = True
        logger.info(f"{self.kind}.breaker.probe", name=self.name)
        return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker and forget earlier failures."""
        with self._lock:
            self._total_successes += 1
            self._consecutive_failures = 0
            self._probe_in_flight = False
            was = self._state
            self._state = "closed"
            self._opened_at = None
        if was != "closed":
            logger.info(f"{self.kind}.breaker.closed", name=self.name)

    def record_failure(self) -> None:
        """A call failed: open after the threshold, or re-open (restarting the timer) when the
        half-open probe failed."""
        with self._lock:
            self._total_failures += 1
            self._consecutive_failures += 1
            self._probe_in_flight = False
            opens = self._state == "half_open" or (
                self._state == "closed" and self._consecutive_failures >= self.failure_threshold
            )
            # A late failure of a call admitted before the breaker opened leaves the timer
            # alone: restarting it would keep a recovering link out longer than reset_seconds.
            if opens:
                self._state = "open"
                self._opened_at = self._clock()
            failures = self._consecutive_failures
        if opens:
            logger.warning(
                f"{self.kind}.breaker.opened",
                name=self.name,
                consecutive_failures=failures,
                reset_seconds=self.reset_seconds,
            )

    def release(self) -> None:
        """An admitted call ended without a verdict (the caller went away): free the probe
        slot so the breaker does not stay half-open with a probe nobody will finish."""
        with self._lock:
            self._probe_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        """The state as the ops pages show it (times in epoch milliseconds)."""
        with self._lock:
            opened_at = self._opened_at
            state = self._effective_state()
            snapshot: dict[str, Any] = {
                "name": self.name,
                "state": state,
                "consecutiveFailures": self._consecutive_failures,
                "openedAt": None,
                "retryAt": None,
                "totalFailures": self._total_failures,
                "totalSuccesses": self._total_successes,
            }
            now = self._clock()
        if opened_at is not None:
            # The clock is monotonic (or injected): translate its instants to wall time.
            epoch_now = time.time()
            snapshot["openedAt"] = round((epoch_now - (now - opened_at)) * 1000)
            snapshot["retryAt"] = round((epoch_now - (now - opened_at) + self.reset_seconds) * 1000)
        return snapshot

    def _effective_state(self) -> State:
        if self._state == "open" and self._reset_time_passed():
            return "half_open"
        return self._state

    def _reset_time_passed(self) -> bool:
        return self._opened_at is not None and self._clock() - self._opened_at >= self.reset_seconds
