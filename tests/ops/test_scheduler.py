"""Exactly one Celery beat (ops.scheduler, supportbot.celery.SingleBeatScheduler), and a broker
visibility timeout that no task's countdown reaches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.utils import timezone

from ops.models import SchedulerLease
from ops.scheduler import lease_release, lease_state, lease_take
from supportbot.celery import SingleBeatScheduler, app

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def lapse(name: str = "beat") -> None:
    past = timezone.now() - timedelta(seconds=1)
    SchedulerLease.objects.filter(name=name).update(expires_at=past)


def test_one_holder_at_a_time_until_its_lease_lapses() -> None:
    assert lease_take(holder="a", seconds=30)
    assert not lease_take(holder="b", seconds=30)
    assert lease_take(holder="a", seconds=30)  # renewed
    lapse()
    assert lease_take(holder="b", seconds=30)  # taken over
    assert not lease_take(holder="a", seconds=30)
    state = lease_state()
    assert state is not None and state.holder == "b" and state.live


def test_a_released_lease_is_taken_at_once() -> None:
    assert lease_take(holder="a", seconds=30)
    lease_release(holder="b")  # not the holder: nothing happens
    assert not lease_take(holder="b", seconds=30)
    lease_release(holder="a")
    assert lease_take(holder="b", seconds=30)


def make_scheduler() -> SingleBeatScheduler:
    """A beat with an empty schedule (this project's entries would be sent to the broker)."""
    bare = Celery("scheduler-test", set_as_current=False)
    bare.conf.beat_schedule = {}
    return SingleBeatScheduler(app=bare)


def test_a_standby_beat_runs_nothing_until_the_active_one_stops(settings) -> None:
    settings.BEAT_LEASE_SECONDS = 30
    active, standby = make_scheduler(), make_scheduler()
    assert active.tick() <= 10 and active.active
    assert standby.tick() == 10 and not standby.active
    active.close()  # a clean stop gives the lease up
    standby._checked = 0.0
    standby.tick()
    assert standby.active
    state = lease_state()
    assert state is not None and state.holder == standby.holder


def test_beat_takes_over_a_dead_beats_lease_once_it_lapses(settings) -> None:
    settings.BEAT_LEASE_SECONDS = 30
    dead, standby = make_scheduler(), make_scheduler()
    dead.tick()  # then SIGKILLed: it never renews nor releases
    standby.tick()
    assert not standby.active
    lapse()
    standby._checked = 0.0
    standby.tick()
    assert standby.active


def test_every_retried_task_stays_within_the_longest_countdown(settings) -> None:
    app.loader.import_default_modules()
    retried = {
        name: task
        for name, task in app.tasks.items()
        if not name.startswith("celery.") and tuple(getattr(task, "autoretry_for", None) or ())
    }
    assert {"chat.archive_session", "chat.summarize_session", "tools.embed_articles"} <= set(
        retried
    )
    for name, task in retried.items():
        longest = task.retry_backoff_max if task.retry_backoff else task.default_retry_delay
        assert longest <= settings.CELERY_LONGEST_COUNTDOWN_SECONDS, name


def test_a_redis_brokers_visibility_timeout_exceeds_countdown_and_run() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # read, never connected to
        "WORKFLOW_TIME_LIMIT_SECONDS": "900",
    }
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.CELERY_BROKER_TRANSPORT_OPTIONS, s.CELERY_LONGEST_COUNTDOWN_SECONDS]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True, text=True
    ).stdout
    options, countdown = json.loads(out.strip().splitlines()[-1])
    assert options["visibility_timeout"] > countdown + 900
