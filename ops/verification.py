"""Running checks and reporting them, for ``manage.py verify_deployment`` (``ops.deployment``
holds the checks): each check runs on a daemon thread with its own time limit, so a backend that
hangs gives "no answer within N s", never a hung command (the thread is abandoned; a daemon, it
does not hold the process at exit).

Nothing reported carries a secret: URLs lose their userinfo, and the settings' secret values
(keys, passwords) are masked wherever an exception message might repeat them.
"""

from __future__ import annotations

import argparse
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from rich.console import Console

Status = Literal["ok", "warn", "fail", "skipped"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skipped")
_SEVERITY: dict[Status, int] = {"skipped": 0, "ok": 1, "warn": 2, "fail": 3}

MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    """What a check found: its status, one line for the table, and longer notes if any."""

    status: Status
    detail: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One check: ``run(timeout)`` is called on its own thread and given ``timeout`` seconds.
    It is skipped when a check it ``requires`` failed."""

    name: str
    run: Callable[[float], Outcome]
    timeout: float
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    """One row of the report."""

    name: str
    status: Status
    ms: float
    detail: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "timeMs": round(self.ms, 1),
            "detail": self.detail,
            "notes": list(self.notes),
        }


# --- never print a secret ----------------------------------------------------------------------

_USERINFO_RE = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)=[^\s&;,]+"
)


def redact_url(url: str) -> str:
    """The URL with its userinfo (user and password) replaced by ``***``."""
    return _USERINFO_RE.sub("***@", url)


def _secret_values() -> set[str]:
    values: list[Any] = [
        settings.SECRET_KEY,
        getattr(settings, "LLM_API_KEY", ""),
        getattr(settings, "OPENAI_API_KEY", ""),
        getattr(settings, "TICKETING_API_KEY", ""),
        getattr(settings, "PII_REVIEW_ENCRYPTION_KEY", ""),
        settings.DATABASES.get("default", {}).get("PASSWORD", ""),
    ]
    archives = settings.STORAGES.get("archives", {})
    options = archives.get("OPTIONS", {}) if isinstance(archives, dict) else {}
    values += [options.get("access_key"), options.get("secret_key")]
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "RATE_LIMIT_STORAGE_URL", "DATABASE_URL"):
        try:
            values.append(urlsplit(str(getattr(settings, name, "") or "")).password)
        except ValueError:
            continue
    return {value for value in values if isinstance(value, str) and len(value) >= 4}


def scrub(text: str, *, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` on one line, without secrets: userinfo, ``password=``, the settings' secrets."""
    text = _USERINFO_RE.sub("***@", " ".join(str(text).split()))
    text = _SECRET_PARAM_RE.sub(lambda match: f"{match.group(1)}=***", text)
    for secret in sorted(_secret_values(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """``ClassName: message`` (scrubbed by the caller before it is shown)."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- running a check with a time limit -----------------------------------------------------------


class NoAnswer(TimeoutError):
    """A check (or any call) did not return within its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


def call_with_timeout[T](fn: Callable[[], T], timeout: float, *, name: str = "verify") -> T:
    """``fn()`` on a daemon thread; raises ``NoAnswer`` when it has not returned in ``timeout``
    seconds (the thread is left to finish on its own), or what ``fn`` raised."""
    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller, who decides what it means
            box.append((False, exc))
        finally:
            connections.close_all()  # this thread's connections (a pooled one goes back)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        raise NoAnswer(timeout)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def run_check(check: Check, *, timeout: float | None = None) -> CheckReport:
    """Run one check within its time limit (or ``timeout``) and report it."""
    limit = timeout or check.timeout
    started = time.perf_counter()
    try:
        outcome = call_with_timeout(partial(check.run, limit), limit, name=f"verify-{check.name}")
    except NoAnswer as exc:
        outcome = Outcome("fail", str(exc))
    except Exception as exc:
        outcome = Outcome("fail", describe_error(exc))
    return CheckReport(
        name=check.name,
        status=outcome.status,
        ms=(time.perf_counter() - started) * 1000,
        detail=scrub(outcome.detail),
        notes=tuple(scrub(note, limit=1000) for note in outcome.notes),
    )


def worst(statuses: Collection[Status]) -> Status:
    """The most severe status (fail > warn > ok > skipped)."""
    return max(statuses, key=_SEVERITY.__getitem__, default="ok")


def failures(reports: list[CheckReport], *, strict: bool = False) -> list[str]:
    """Names of the checks that fail the verification (with ``strict``, warnings too)."""
    failing: set[Status] = {"fail", "warn"} if strict else {"fail"}
    return [report.name for report in reports if report.status in failing]


def console_for(out: Any, *, width_when_piped: int = 120) -> Console:
    """A rich console writing to a command's ``stdout``: the terminal's width (and colours) on
    a terminal, else ``width_when_piped`` columns of plain text (files, pipes, tests)."""
    # Django's OutputWrapper appends a line ending to every write; rich writes whole frames and
    # cursor moves, so it gets the stream underneath.
    stream = getattr(out, "_out", out)
    is_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return Console(file=stream, width=None if is_terminal else width_when_piped, highlight=False)


def status_counts(reports: list[CheckReport]) -> dict[str, int]:
    """How many checks ended in each status, every status named."""
    counts = Counter(report.status for report in reports)
    return {status: counts[status] for status in STATUSES}


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value
