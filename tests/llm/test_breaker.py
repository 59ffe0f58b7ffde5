"""The circuit breaker's state machine, driven by an injected clock."""

from __future__ import annotations

import threading
import time

import pytest

from supportbot.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("primary", failure_threshold=3, reset_seconds=30, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.allow() is False


def test_a_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.snapshot()["consecutiveFailures"] == 2


def test_refuses_until_reset_time_then_admits_exactly_one_probe(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(29.9)
    assert breaker.allow() is False
    clock.advance(0.1)
    assert breaker.state == "half_open"
    assert breaker.allow() is True
    assert breaker.allow() is False  # the probe is still in flight
    assert breaker.allow() is False


def test_successful_probe_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))
    assert breaker.snapshot()["openedAt"] is None


def test_failed_probe_reopens_and_restarts_the_timer(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.allow()
    breaker.record_failure()  # a single failure is enough in half-open
    assert breaker.state == "open"
    clock.advance(29)
    assert breaker.allow() is False  # 59 s after the first opening, 29 s after the probe
    clock.advance(1)
    assert breaker.allow() is True


def test_released_probe_lets_the_next_caller_probe(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.allow()
    assert breaker.allow() is False
    breaker.release()
    assert breaker.allow() is True


def test_snapshot_reports_times_in_epoch_milliseconds(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    assert breaker.snapshot() == {
        "name": "primary",
        "state": "closed",
        "consecutiveFailures": 0,
        "openedAt": None,
        "retryAt": None,
        "totalFailures": 0,
        "totalSuccesses": 0,
    }
    breaker.record_success()
    fail(breaker, 3)
    clock.advance(5)
    snapshot = breaker.snapshot()
    now_ms = time.time() * 1000
    assert snapshot["state"] == "open"
    assert snapshot["consecutiveFailures"] == 3
    assert snapshot["totalFailures"] == 3
    assert snapshot["totalSuccesses"] == 1
    assert abs(snapshot["openedAt"] - (now_ms - 5000)) < 1000
    assert snapshot["retryAt"] - snapshot["openedAt"] == 30_000


def test_only_one_thread_wins_the_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    start = threading.Barrier(16)
    admitted: list[bool] = []

    def contend() -> None:
        start.wait()
        admitted.append(breaker.allow())

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 1


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0, reset_seconds=1)
