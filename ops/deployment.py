"""The checks of a whole deployment, for ``manage.py verify_deployment``: the settings, Django's
system checks (deploy tag), the database, Redis, the cache, the channel layer, the Celery broker,
a worker and beat, each link of the model chain, archive storage, then the knowledge base and one
real turn of conversation (``ops.deployment_turn``). ``ops.verification`` runs them, each on its
own thread within its own time limit, and keeps secrets out of what they report.

Unlike ``/health`` (``ops.health``, whose functions are reused here where they fit), which a
load balancer calls every few seconds and which must answer at once, these checks may wait (a
worker ping of seconds, a real model's answer) and do real work (a probe object written to
archive storage, a turn run end to end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from functools import partial

import redis
from celery import current_app
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import caches
from django.core.checks import ERROR, WARNING, run_checks
from django.core.files.storage import Storage, storages
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from chat.llm.chain import Link, get_chain
from ops import health
from ops.deployment_turn import check_knowledge_base, check_turn_http, check_turn_local
from ops.verification import (
    Check,
    CheckReport,
    Outcome,
    Status,
    describe_error,
    redact_url,
    run_check,
    worst,
)

_FROM_HEALTH: dict[str, Status] = {
    "up": "ok",
    "degraded": "warn",
    "down": "fail",
    "disabled": "skipped",
}

# Each check's own time limit (seconds); ``--timeout`` replaces them all. A model's answer over
# the network, with the provider's retries, is the slowest thing here.
TIMEOUTS: dict[str, float] = {
    "settings": 5,
    "system-checks": 30,
    "database": 10,
    "redis": 5,
    "cache": 5,
    "channel-layer": 5,
    "celery-broker": 10,
    "celery-worker": 10,
    "celery-beat": 5,
    "model": 10,
    "archives": 15,
    "knowledge-base": 20,
    "turn": 90,
}


def _from_health(result: health.CheckResult, *, extra: str = "") -> Outcome:
    status, detail = result
    text = "; ".join(part for part in (detail or "", extra) if part)
    return Outcome(_FROM_HEALTH[status], text or "ok")


# --- the checks --------------------------------------------------------------------------------


def check_settings(timeout: float) -> Outcome:
    """DEBUG off where production backends are configured, SECRET_KEY set, ALLOWED_HOSTS sane."""
    found: list[tuple[Status, str]] = []
    production = [name for name in ("DATABASE_URL", "REDIS_URL") if getattr(settings, name, "")]
    if settings.DEBUG and production:
        found.append(("fail", f"DEBUG is on while {' and '.join(production)} is set"))
    elif settings.DEBUG:
        found.append(("warn", "DEBUG is on: right for local development only"))
    key = str(settings.SECRET_KEY or "")
    if not key:
        found.append(("fail", "SECRET_KEY is empty"))
    elif len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        found.append(("warn", "SECRET_KEY is short or predictable"))
    hosts = [str(host) for host in settings.ALLOWED_HOSTS]
    if not hosts and not settings.DEBUG:
        found.append(("fail", "ALLOWED_HOSTS is empty: every request is refused"))
    elif "*" in hosts:
        found.append(("warn", 'ALLOWED_HOSTS contains "*": any Host header is accepted'))
    # What is fine is said too, after the problems (a problem already names its setting).
    facts = (["DEBUG off"] if not settings.DEBUG else []) + (["SECRET_KEY set"] if key else [])
    facts.append(f"ALLOWED_HOSTS {', '.join(hosts) or '(none)'}")
    return Outcome(
        worst([status for status, _ in found]), "; ".join([text for _, text in found] + facts)
    )


def check_system(timeout: float) -> Outcome:
    """Django's system checks with the deploy tag (``check --deploy``), silenced ids left out."""
    messages = sorted(
        (
            message
            for message in run_checks(include_deployment_checks=True)
            if message.level >= WARNING and not message.is_silenced()
        ),
        key=lambda message: (-message.level, message.id or ""),
    )
    errors = [message for message in messages if message.level >= ERROR]
    warnings = [message for message in messages if message.level < ERROR]
    notes = tuple(f"{message.id or '-'}: {message.msg}" for message in messages)
    if not messages:
        return Outcome("ok", "no errors or warnings")
    counts = ", ".join(
        f"{len(group)} {word}{'s' if len(group) != 1 else ''}"
        for group, word in ((errors, "error"), (warnings, "warning"))
        if group
    )
    ids = ", ".join(message.id or "-" for message in errors + warnings)
    return Outcome("fail" if errors else "warn", f"{counts}: {ids}", notes)


def _database_label() -> str:
    database = settings.DATABASES["default"]
    vendor = connections["default"].vendor
    if vendor == "sqlite":
        return f"sqlite {database.get('NAME')}"
    host = database.get("HOST") or "localhost"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"{vendor} {database.get('NAME')} on {host}{port}"


def check_database(timeout: float) -> Outcome:
    """A query (``ops.health.check_database``), then whether every migration is applied."""
    where = _database_label()
    status, detail = health.check_database()
    if status != "up":
        return Outcome("fail", f"{where}: {detail}")
    connection = connections["default"]
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        connection.close()
    if plan:
        return Outcome(
            "fail", f"{where}: {len(plan)} migrations not applied (run manage.py migrate)"
        )
    return Outcome("ok", f"{where}: SELECT 1 answered, every migration applied")


def check_redis(timeout: float) -> Outcome:
    """PING each Redis the settings name (REDIS_URL, and RATE_LIMIT_STORAGE_URL when another)."""
    urls = {
        name: str(getattr(settings, name, "") or "")
        for name in ("REDIS_URL", "RATE_LIMIT_STORAGE_URL")
    }
    distinct = {name: url for name, url in urls.items() if url}
    if distinct.get("RATE_LIMIT_STORAGE_URL") == distinct.get("REDIS_URL"):
        distinct.pop("RATE_LIMIT_STORAGE_URL", None)
    if not distinct:
        return Outcome("skipped", "REDIS_URL not set (local memory and a filesystem broker)")
    wait = max(0.2, min(3.0, timeout * 0.8))
    found: list[tuple[Status, str]] = []
    for name, url in distinct.items():
        client = redis.Redis.from_url(url, socket_timeout=wait, socket_connect_timeout=wait)
        try:
            client.ping()
            version = client.info("server").get("redis_version", "?")
            found.append(("ok", f"{name} {redact_url(url)}: PONG (Redis {version})"))
        except (redis.RedisError, OSError) as exc:
            found.append(("fail", f"{name} {redact_url(url)}: {describe_error(exc)}"))
        finally:
            client.close()
    return Outcome(worst([status for status, _ in found]), "; ".join(text for _, text in found))


def check_cache(timeout: float) -> Outcome:
    """Write, read back and delete a key (``ops.health.check_cache``)."""
    backend = type(caches["default"]).__name__
    where = "local memory (this process only)" if "LocMem" in backend else backend
    return _from_health(health.check_cache(), extra=f"{where}: a key written, read and deleted")


def check_channel_layer(timeout: float) -> Outcome:
    """A message sent to a throwaway channel comes back (``ops.health.check_channel_layer``)."""

    async def probe() -> health.CheckResult:
        try:
            return await health.check_channel_layer()
        finally:
            # channels_redis pools belong to this short-lived loop: close them before it ends.
            close_pools = getattr(get_channel_layer(), "close_pools", None)
            if close_pools is not None:
                await close_pools()

    status, detail = asyncio.run(probe())
    backend = type(get_channel_layer()).__name__
    return _from_health((status, detail or f"{backend}: a message went there and back"))


def check_celery_broker(timeout: float) -> Outcome:
    """Connect to the broker and open a channel (the Redis transport PINGs there)."""
    url = redact_url(str(current_app.conf.broker_url or ""))
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout * 0.8
        )
        conn.default_channel  # noqa: B018  (opening the channel is the check)
    folder = (current_app.conf.broker_transport_options or {}).get("data_folder_in")
    return Outcome("ok", f"connected to {url}" + (f" ({folder})" if folder else ""))


def check_celery_worker(timeout: float) -> Outcome:
    """A worker answers a ping (unless tasks run eagerly in-process, where none is needed)."""
    if current_app.conf.task_always_eager:
        return Outcome("skipped", "tasks run eagerly in this process (CELERY_TASK_ALWAYS_EAGER)")
    # Half the time limit: the filesystem broker polls for the pongs once a second.
    wait = max(0.5, min(5.0, timeout / 2))
    replies = current_app.control.ping(timeout=wait, limit=1)
    if not replies:
        return Outcome(
            "fail",
            f"no worker answered a ping within {wait:g} s: archives, summaries and workflows "
            "wait in the queue",
        )
    return Outcome("ok", f"{', '.join(next(iter(reply)) for reply in replies)} answered")


def check_celery_beat(timeout: float) -> Outcome:
    """A beat holds the schedule's lease (``ops.health.check_beat``)."""
    status, detail = health.check_beat()
    return _from_health((status, detail or "a beat holds the schedule's lease"))


def check_model_link(timeout: float, *, link: Link, remote: int, asked: bool) -> Outcome:
    """One link of the chain: a real model answers ``check()`` (GET /models); the offline
    assistant is present but no model, a warning unless the settings ask for a real model."""
    provider = link.provider
    if provider.name == "offline":
        if remote:
            return Outcome("ok", "last link: knowledge-base answers when every model is down")
        if asked:
            return Outcome(
                "fail",
                "only the offline assistant answers, but a model is configured "
                "(LLM_BASE_URL without LLM_MODEL?)",
            )
        return Outcome(
            "warn",
            "offline assistant only: no language model configured (LLM_BASE_URL and "
            "LLM_MODEL, or OPENAI_API_KEY)",
        )

    async def probe() -> bool:
        try:
            return bool(await provider.check())
        finally:
            await provider.aclose()  # its client belongs to this short-lived loop

    where = f"{provider.model} at {redact_url(str(getattr(provider, 'base_url', '?')))}"
    if not asyncio.run(probe()):
        return Outcome("fail", f"{where}: unreachable or refused (GET /models failed)")
    return Outcome("ok", f"{where}: GET /models answered")


def _model_checks() -> list[Check]:
    try:
        links = list(get_chain().links)
    except Exception as exc:
        failure = Outcome("fail", f"the model chain cannot be built: {describe_error(exc)}")
        return [Check("model", lambda timeout: failure, TIMEOUTS["model"])]
    remote = sum(1 for link in links if link.provider.name != "offline")
    asked = bool(settings.LLM_BASE_URL or settings.OPENAI_API_KEY)
    return [
        Check(
            f"model:{link.provider.name}",
            partial(check_model_link, link=link, remote=remote, asked=asked),
            TIMEOUTS["model"],
        )
        for link in links
    ]


def _storage_label(storage: Storage) -> str:
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        endpoint = getattr(storage, "endpoint_url", None)
        return f"S3 bucket {bucket}" + (f" at {redact_url(str(endpoint))}" if endpoint else "")
    location = getattr(storage, "location", None)
    return f"{type(storage).__name__} {location}" if location else type(storage).__name__


def check_archives(timeout: float) -> Outcome:
    """Write a probe object to archive storage, read it back, delete it (/health's own probe)."""
    where = _storage_label(storages["archives"])
    try:
        status, detail = health.check_storage()
    except Exception as exc:
        return Outcome("fail", f"{where}: {describe_error(exc)}")
    if status != "up":
        return Outcome("fail", f"{where}: {detail}")
    return Outcome("ok", f"{where}: probe written, read back and deleted")


# --- all of them ---------------------------------------------------------------------------------


def deployment_checks(*, url: str | None = None) -> list[Check]:
    """Every check, in the order they run; ``url``: the turn goes over HTTP to that server."""
    turn = partial(check_turn_http, url) if url else check_turn_local
    checks = [
        Check("settings", check_settings, TIMEOUTS["settings"]),
        Check("system-checks", check_system, TIMEOUTS["system-checks"]),
        Check("database", check_database, TIMEOUTS["database"]),
        Check("redis", check_redis, TIMEOUTS["redis"]),
        Check("cache", check_cache, TIMEOUTS["cache"]),
        Check("channel-layer", check_channel_layer, TIMEOUTS["channel-layer"]),
        Check("celery-broker", check_celery_broker, TIMEOUTS["celery-broker"]),
        Check("celery-worker", check_celery_worker, TIMEOUTS["celery-worker"], ("celery-broker",)),
        Check("celery-beat", check_celery_beat, TIMEOUTS["celery-beat"], ("database",)),
        *_model_checks(),
        Check("archives", check_archives, TIMEOUTS["archives"]),
        Check("knowledge-base", check_knowledge_base, TIMEOUTS["knowledge-base"], ("database",)),
        Check("turn", turn, TIMEOUTS["turn"], () if url else ("database",)),
    ]
    return checks


def is_skipped(name: str, skip: Collection[str]) -> bool:
    """``--skip`` names a check, or a group of them (``model`` for every ``model:*``)."""
    return name in skip or name.split(":", 1)[0] in skip


def verify_deployment(
    *,
    url: str | None = None,
    timeout: float | None = None,
    skip: Collection[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[CheckReport]:
    """Run every check in order, each within its time limit (``timeout`` replaces them all);
    ``progress`` is told the name of each check before it runs."""
    reports: list[CheckReport] = []
    failed: set[str] = set()
    for check in deployment_checks(url=url):
        missing = [name for name in check.requires if name in failed]
        if is_skipped(check.name, skip):
            report = CheckReport(check.name, "skipped", 0.0, "skipped (--skip)")
        elif missing:
            report = CheckReport(
                check.name, "skipped", 0.0, f"skipped: {', '.join(missing)} failed"
            )
        else:
            if progress is not None:
                progress(check.name)
            report = run_check(check, timeout=timeout)
        if report.status == "fail":
            failed.add(check.name)
        reports.append(report)
    return reports
