"""The one settings module. Every value comes from the environment; unset = the embedded default.

Embedded default (no variables): SQLite in WAL mode under ``var/``, in-memory channel layer,
local-memory cache, filesystem archives, a filesystem Celery broker and the offline assistant.
Each production backend switches on when its variable is present (see README "Configuration").
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from dotenv import load_dotenv

from supportbot.branding import avatar_origin, brand_from_env
from supportbot.env import (
    env_archive_storage,
    env_bool,
    env_days,
    env_float,
    env_int,
    env_list,
    env_origins,
    env_prices,
    env_rules,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)

VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))
# It holds the database, the broker's messages, archives and the secret key: the owner's only.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
if VAR_DIR.stat().st_uid == os.getuid() and VAR_DIR.stat().st_mode & 0o077:
    VAR_DIR.chmod(0o700)


def _private_file(path: Path) -> Path:
    """``path``, created empty if missing, readable and writable by the owner only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


# --- core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is false")
    # Development only: keep one random key per checkout so admin sign-ins survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        # Written private (mkstemp: 0600) and complete, then linked into place: never readable
        # by others, and a second process starting at once reads the one key that won.
        fd, tmp = tempfile.mkstemp(dir=VAR_DIR)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return _private_file(path).read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
HTTPS = env_bool("HTTPS", False)
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "ninja",
    "supportbot",
    "tools",
    "chat",
    "ops",
]

MIDDLEWARE = [
    "supportbot.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Per-IP API limit and the X-RateLimit-* headers: before any other work of a request.
    "supportbot.middleware.RateLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Innermost, so that the error documents it makes still get every header above.
    "supportbot.middleware.ErrorShapeMiddleware",
]

ROOT_URLCONF = "supportbot.urls"
ASGI_APPLICATION = "supportbot.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------

# WAL lets readers run beside the single writer; IMMEDIATE transactions take the write lock up
# front so two writers queue on busy_timeout instead of failing with "database is locked".
_SQLITE_OPTIONS = {
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; "
        "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-20000;"
    ),
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        _db: dict[str, Any] = dict(dj_database_url.parse(DATABASE_URL))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "db.sqlite3")}

if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {**_SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
    _sqlite_file = Path(str(_db["NAME"] or ":memory:"))
    if _sqlite_file.parent.is_dir() and str(_sqlite_file) != ":memory:":
        # SQLite creates its file (and its -wal and -shm files, which copy the file's mode)
        # with the umask's mode, world-readable by default: create it private first.
        _private_file(_sqlite_file)
    # A file (not shared-cache memory, whose table locks ignore busy_timeout), one per test run.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Connections are pooled (psycopg_pool): ASGI requests run ORM work on short-lived threads,
    # so persistent per-thread connections would leak; the pool reuses them instead.
    # Connections are checked before use (the pool's check, or Django's when not pooled), so a
    # database restart costs one reconnect, not an error.
    _db["CONN_HEALTH_CHECKS"] = True
    if env_bool("DATABASE_POOL", True):
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env_int("DATABASE_POOL_SIZE", 20, minimum=1),
            "timeout": 10,
        }
else:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL or SQLite")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache, channel layer, Celery -------------------------------------------------------------


def _redis_url(name: str, value: str) -> str:
    """A Redis URL, refused at start-up when it cannot be one (not at the first request)."""
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(
            f"{name} must be a Redis URL (redis://, rediss:// or unix://), not {value!r}"
        )
    return value


REDIS_URL = _redis_url("REDIS_URL", env_str("REDIS_URL"))

if REDIS_URL:
    from supportbot.channel_layer import connection_options

    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "supportbot",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            # Our subclass: idle reads that outlast redis-py's default socket timeout, and
            # consumers that outlive a Redis outage (supportbot/channel_layer.py).
            "BACKEND": "supportbot.channel_layer.RedisChannelLayer",
            "CONFIG": {"hosts": [connection_options(REDIS_URL)], "prefix": "supportbot"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

(VAR_DIR / "celery").mkdir(exist_ok=True)
# The filesystem broker names a host only because kombu warns at every connection that has none.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://localhost/")
# The longest countdown of any retried task (chat.archive_session's retry_backoff_max; a test
# holds every task to it). The broker's visibility timeout is set from it below.
CELERY_LONGEST_COUNTDOWN_SECONDS = 600
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "queue"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "store_processed": False,
        # Broadcast (worker ping, remote control) files; the default is a folder in the CWD.
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "expire-sessions": {"task": "chat.expire_sessions", "schedule": 300.0},
    "resume-workflows": {"task": "tools.resume_stale_workflows", "schedule": 60.0},
    "purge-pii-clear-text": {"task": "chat.purge_pii_clear_text", "schedule": 3600.0},
    "evaluate-alerts": {"task": "ops.evaluate_alerts", "schedule": 60.0},
    "apply-retention": {"task": "ops.apply_retention", "schedule": 3600.0},
    "verify-archives": {"task": "chat.verify_archives", "schedule": 3600.0},
}
# One beat runs the schedule however many are started (ops.scheduler: a lease in the database,
# renewed every third of BEAT_LEASE_SECONDS; a standby takes over when it lapses).
CELERY_BEAT_SCHEDULER = "supportbot.celery:SingleBeatScheduler"
BEAT_LEASE_SECONDS = env_float("BEAT_LEASE_SECONDS", 30.0, minimum=1.0)

# --- storage ----------------------------------------------------------------------------------

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
# S3 or R2 (AWS_* variables, supportbot.env.env_archive_storage) or var/archives.
_archives = env_archive_storage(AWS_STORAGE_BUCKET_NAME, VAR_DIR / "archives")

STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "media")},
    },
    "archives": _archives,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The integrity job (beat, hourly) re-reads this many archives, those checked longest ago first;
# `manage.py verify_archives --all` and the archive browser check every one on demand.
ARCHIVE_VERIFY_SAMPLE = env_int("ARCHIVE_VERIFY_SAMPLE", 50, minimum=0)
# Expiry retries a session it could not archive after 1, 2, 4, … minutes, at most this long.
ARCHIVE_RETRY_MAX_SECONDS = env_float("ARCHIVE_RETRY_MAX_SECONDS", 3600.0, minimum=1.0)

# --- retention: days per kind of data (unset = kept for ever) ----------------------------------
# Live sessions and their messages go at expiry (SESSION_TTL_HOURS, archived first); PII review
# copies after PII_REVIEW_RETENTION_DAYS; metrics' hours after METRICS_RETENTION_DAYS (with the
# per-customer usage days). ops.retention applies these every hour, in batches.
RETENTION_ARCHIVES_DAYS = env_days("RETENTION_ARCHIVES_DAYS")
# Tickets that are resolved, closed or cancelled, counted from their last update.
RETENTION_TICKETS_DAYS = env_days("RETENTION_TICKETS_DAYS")
# Decided review items (PII detections, content flags, user reports) and recent security events.
RETENTION_SECURITY_EVENTS_DAYS = env_days("RETENTION_SECURITY_EVENTS_DAYS")
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 500, minimum=1)

# Uploads to the default storage (none of ours yet) are private like the archives.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- security ---------------------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the admin's own JS reads it; nothing of ours does
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^health$"]  # load balancers probe over plain HTTP
    SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# The assistant's name, colour, avatar and greeting (supportbot/branding.py).
_brand = brand_from_env()
SUPPORTBOT_BRAND_NAME, SUPPORTBOT_BRAND_COLOR = _brand.name, _brand.color
SUPPORTBOT_BRAND_AVATAR, SUPPORTBOT_BRAND_GREETING = _brand.avatar, _brand.greeting

# No inline scripts anywhere: every script is a file under static/.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", *avatar_origin(SUPPORTBOT_BRAND_AVATAR)],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
# The chat widget (chat/widget.py): sites that may frame it (none = this origin only), and the
# secret they sign a customer's userId with (none = identify is refused).
SUPPORTBOT_WIDGET_ORIGINS = env_origins("SUPPORTBOT_WIDGET_ORIGINS")
SUPPORTBOT_WIDGET_SECRET = env_str("SUPPORTBOT_WIDGET_SECRET")
SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE = env_int(
    "SUPPORTBOT_WIDGET_IDENTITY_MAX_AGE", 86_400, minimum=60
)
CORS_URLS_REGEX = r"^/(api/.*|health)$"
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Type",
    "X-RateLimit-Scope",
    "Retry-After",
]
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "x-request-id", "last-event-id"]

# Bodies over 64 KiB are refused (API.md): the middleware answers 413 from Content-Length, before
# the view reads the body (daphne has buffered it by then, up to MAX_REQUEST_BODY_BYTES below).
MAX_BODY_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
# The server's own cap (supportbot/server.py): a body over it is refused while it arrives, before
# the application sees it; between the two limits the application answers, with CORS headers.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024, minimum=MAX_BODY_BYTES)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- the assistant ----------------------------------------------------------------------------

LLM_BASE_URL = env_str("LLM_BASE_URL")
LLM_API_KEY = env_str("LLM_API_KEY")
LLM_MODEL = env_str("LLM_MODEL")
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 1024, minimum=16)
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.3)
LLM_CONNECT_TIMEOUT = env_float("LLM_CONNECT_TIMEOUT", 5.0)
LLM_FIRST_TOKEN_TIMEOUT = env_float("LLM_FIRST_TOKEN_TIMEOUT", 30.0)
LLM_INTER_TOKEN_TIMEOUT = env_float("LLM_INTER_TOKEN_TIMEOUT", 20.0)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0)
LLM_RETRY_BASE_DELAY = env_float("LLM_RETRY_BASE_DELAY", 0.5)
LLM_RETRY_MAX_DELAY = env_float("LLM_RETRY_MAX_DELAY", 8.0)
LLM_BREAKER_THRESHOLD = env_int("LLM_BREAKER_THRESHOLD", 5, minimum=1)
LLM_BREAKER_RESET_SECONDS = env_float("LLM_BREAKER_RESET_SECONDS", 30.0)
EMBEDDINGS_MODEL = env_str("EMBEDDINGS_MODEL")
# The offline assistant ends the chain unless operators prefer an error when models are down.
OFFLINE_FALLBACK = env_bool("OFFLINE_FALLBACK", True)

MAX_MESSAGE_CHARS = env_int("MAX_MESSAGE_CHARS", 4000, minimum=1)
# Hand-offs to people (chat/handoff.py): the model drafts replies for the agent holding a
# conversation; the inbox colours an item's wait against this target.
HANDOFF_DRAFTS_ENABLED = env_bool("HANDOFF_DRAFTS_ENABLED", True)
# A hand-off's summary is rewritten by the model (a Celery task) when one is configured.
HANDOFF_MODEL_SUMMARY = env_bool("HANDOFF_MODEL_SUMMARY", True)
HANDOFF_WAIT_TARGET_SECONDS = env_int("HANDOFF_WAIT_TARGET_SECONDS", 300, minimum=1)
SESSION_TTL_HOURS = env_float("SESSION_TTL_HOURS", 24.0, minimum=0.01)
SESSION_IDLE_MINUTES = env_float("SESSION_IDLE_MINUTES", 15.0, minimum=0.1)
# A turn holds its session's lease at most this long; a crashed worker's lease then lapses.
# A running turn holds its session by a lease renewed every third of this; a process that dies
# mid-turn frees the session when the lease lapses. A waiting turn gives up after TURN_WAIT_SECONDS.
TURN_LEASE_SECONDS = env_float("TURN_LEASE_SECONDS", 30.0, minimum=1.0)
TURN_WAIT_SECONDS = env_float("TURN_WAIT_SECONDS", 180.0, minimum=1.0)
# A connected client is warned this long before its session expires for inactivity.
SESSION_EXPIRY_WARNING_SECONDS = env_float("SESSION_EXPIRY_WARNING_SECONDS", 300.0, minimum=0.0)
MEMORY_SUMMARY_THRESHOLD = env_int("MEMORY_SUMMARY_THRESHOLD", 50, minimum=4)
MEMORY_KEEP_RECENT = env_int("MEMORY_KEEP_RECENT", 20, minimum=2)
MEMORY_CONTEXT_TOKENS = env_int("MEMORY_CONTEXT_TOKENS", 6000, minimum=256)
HEALTH_MODEL_CACHE_SECONDS = env_float("HEALTH_MODEL_CACHE_SECONDS", 60.0)
# /health pings a Celery worker this often, in the background (no request waits for a ping).
HEALTH_WORKER_CACHE_SECONDS = env_float("HEALTH_WORKER_CACHE_SECONDS", 10.0, minimum=1.0)

RATE_LIMITS_ENABLED = env_bool("RATE_LIMITS_ENABLED", True)
# The limits of API.md (supportbot.ratelimit). Request limits use a moving window; the token
# budgets a sliding-window counter (two counters per key instead of one entry per token).
RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE = env_int(
    "RATE_LIMIT_SESSION_REQUESTS_PER_MINUTE", 30, minimum=1
)
RATE_LIMIT_SESSION_BURST = env_int("RATE_LIMIT_SESSION_BURST", 10, minimum=1)
RATE_LIMIT_SESSION_BURST_SECONDS = env_int("RATE_LIMIT_SESSION_BURST_SECONDS", 10, minimum=1)
RATE_LIMIT_SESSION_TOKENS_PER_HOUR = env_int(
    "RATE_LIMIT_SESSION_TOKENS_PER_HOUR", 10_000, minimum=1
)
RATE_LIMIT_SESSION_WS_MESSAGES_PER_MINUTE = env_int(
    "RATE_LIMIT_SESSION_WS_MESSAGES_PER_MINUTE", 60, minimum=1
)
RATE_LIMIT_SESSION_VOICE_PER_MINUTE = env_int("RATE_LIMIT_SESSION_VOICE_PER_MINUTE", 20, minimum=1)
RATE_LIMIT_VOICE_MAX_SECONDS = env_float("RATE_LIMIT_VOICE_MAX_SECONDS", 30.0, minimum=1.0)
RATE_LIMIT_IP_CONCURRENT_SESSIONS = env_int("RATE_LIMIT_IP_CONCURRENT_SESSIONS", 5, minimum=1)
RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR = env_int(
    "RATE_LIMIT_IP_SESSION_CREATIONS_PER_HOUR", 10, minimum=1
)
RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE = env_int(
    "RATE_LIMIT_IP_API_REQUESTS_PER_MINUTE", 100, minimum=1
)
# An addition to API.md: the token budget also per client IP, so rotating session ids does not
# multiply it (default: five sessions' worth, the per-IP concurrent-session limit).
RATE_LIMIT_IP_TOKENS_PER_HOUR = env_int("RATE_LIMIT_IP_TOKENS_PER_HOUR", 50_000, minimum=1)
RATE_LIMIT_GLOBAL_ACTIVE_SESSIONS = env_int("RATE_LIMIT_GLOBAL_ACTIVE_SESSIONS", 1000, minimum=1)
RATE_LIMIT_GLOBAL_MODEL_CALLS_PER_MINUTE = env_int(
    "RATE_LIMIT_GLOBAL_MODEL_CALLS_PER_MINUTE", 10_000, minimum=1
)
RATE_LIMIT_GLOBAL_TOOL_EXECUTIONS_PER_MINUTE = env_int(
    "RATE_LIMIT_GLOBAL_TOOL_EXECUTIONS_PER_MINUTE", 1000, minimum=1
)
# Another Redis for the counters than REDIS_URL (unset: REDIS_URL's; neither: memory).
RATE_LIMIT_STORAGE_URL = _redis_url("RATE_LIMIT_STORAGE_URL", env_str("RATE_LIMIT_STORAGE_URL"))
# Redis unreachable: admit (fail open, with a warning and a metric) unless this is true.
RATE_LIMIT_FAIL_CLOSED = env_bool("RATE_LIMIT_FAIL_CLOSED", False)
# Open WebSockets (chat/guards/sockets.py): per session (staff watchers not counted) and per
# client address; one more is refused with an error frame and close code 4029.
WS_MAX_SOCKETS_PER_SESSION = env_int("WS_MAX_SOCKETS_PER_SESSION", 10, minimum=1)
WS_MAX_SOCKETS_PER_CLIENT = env_int("WS_MAX_SOCKETS_PER_CLIENT", 50, minimum=1)
# Client IPs in rate-limit keys, the security log and the admin are shown as keyed hashes.
HASH_CLIENT_IPS = env_bool("HASH_CLIENT_IPS", False)

# --- guards: PII and content filter -------------------------------------------------------------

# A Fernet key (base64, 32 bytes): when set, the clear text of a PII detection is kept encrypted
# for staff review and deleted after PII_REVIEW_RETENTION_DAYS; unset, it is never kept.
PII_REVIEW_ENCRYPTION_KEY = env_str("PII_REVIEW_ENCRYPTION_KEY")
PII_REVIEW_RETENTION_DAYS = env_float("PII_REVIEW_RETENTION_DAYS", 7.0, minimum=0.0)
CONTENT_FILTER_ENABLED = env_bool("CONTENT_FILTER_ENABLED", True)
PII_REDACTION_ENABLED = env_bool("PII_REDACTION_ENABLED", True)

# --- tools -------------------------------------------------------------------------------------

# A tool call: up to TOOL_MAX_ATTEMPTS attempts for transient failures, TOOL_RETRY_BASE_SECONDS
# then twice that between them (with jitter, capped); a breaker per tool opens after
# TOOL_BREAKER_THRESHOLD consecutive faults. The model may call tools for TOOL_MAX_ROUNDS rounds.
TOOL_MAX_ATTEMPTS = env_int("TOOL_MAX_ATTEMPTS", 3, minimum=1)
TOOL_RETRY_BASE_SECONDS = env_float("TOOL_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
TOOL_RETRY_MAX_SECONDS = env_float("TOOL_RETRY_MAX_SECONDS", 4.0, minimum=0.0)
TOOL_BREAKER_THRESHOLD = env_int("TOOL_BREAKER_THRESHOLD", 5, minimum=1)
TOOL_BREAKER_RESET_SECONDS = env_float("TOOL_BREAKER_RESET_SECONDS", 30.0, minimum=0.0)
TOOL_MAX_ROUNDS = env_int("TOOL_MAX_ROUNDS", 4, minimum=1)
# An external ticketing system behind the ticket tools (tools/ticketing.py); unset: our database.
TICKETING_API_URL = env_str("TICKETING_API_URL")
TICKETING_API_KEY = env_str("TICKETING_API_KEY")
TICKETING_TIMEOUT_SECONDS = env_float("TICKETING_TIMEOUT_SECONDS", 10.0, minimum=0.1)

# Workflows (tools.workflows): a step is tried WORKFLOW_STEP_ATTEMPTS times (backoff from
# WORKFLOW_RETRY_BASE_SECONDS, capped), an execution at most WORKFLOW_MAX_ATTEMPTS step attempts
# in all and WORKFLOW_TIME_LIMIT_SECONDS; its worker's lease lasts WORKFLOW_LEASE_SECONDS
# between steps (a dead worker's execution is picked up again after it).
WORKFLOW_STEP_ATTEMPTS = env_int("WORKFLOW_STEP_ATTEMPTS", 3, minimum=1)
WORKFLOW_MAX_ATTEMPTS = env_int("WORKFLOW_MAX_ATTEMPTS", 12, minimum=1)
WORKFLOW_RETRY_BASE_SECONDS = env_float("WORKFLOW_RETRY_BASE_SECONDS", 1.0)
WORKFLOW_RETRY_MAX_SECONDS = env_float("WORKFLOW_RETRY_MAX_SECONDS", 30.0)
WORKFLOW_TIME_LIMIT_SECONDS = env_float("WORKFLOW_TIME_LIMIT_SECONDS", 600.0, minimum=1.0)
WORKFLOW_LEASE_SECONDS = env_float("WORKFLOW_LEASE_SECONDS", 120.0, minimum=1.0)
# Every worker checks the leases this often (and at start): executions whose worker died, or that
# were never queued (broker down at submit), are queued again, with or without beat.
WORKFLOW_SWEEP_SECONDS = env_float("WORKFLOW_SWEEP_SECONDS", 30.0, minimum=0.5)

# A Redis (or SQS) broker hands a message that a worker holds unacknowledged (waiting for its
# countdown, or running) to another worker once the visibility timeout passes. It therefore
# exceeds the longest countdown plus the longest run (a workflow's time limit), so no task ever
# runs twice. A worker that dies is not waited for: its workflows are resumed by their lease.
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = int(
        CELERY_LONGEST_COUNTDOWN_SECONDS + WORKFLOW_TIME_LIMIT_SECONDS + 300
    )

# --- metrics and alerts -----------------------------------------------------------------------

# supportbot.metrics: each process flushes its numbers to the shared store (Redis with REDIS_URL,
# else the database) every METRICS_FLUSH_SECONDS; minutes are kept a day, hours this many days.
METRICS_FLUSH_SECONDS = env_float("METRICS_FLUSH_SECONDS", 2.0, minimum=0.0)
METRICS_RETENTION_DAYS = env_float("METRICS_RETENTION_DAYS", 35.0, minimum=1.0)
# The Redis key prefix of the shared metrics (several deployments may share one Redis).
METRICS_PREFIX = env_str("METRICS_PREFIX", "supportbot:metrics")
# USD per million prompt and completion tokens, by model name as the provider reports it (JSON in
# MODEL_PRICES replaces this table). List prices change: set your own. A model missing here is
# counted as "unpriced" tokens, never as free.
MODEL_PRICES = env_prices(
    "MODEL_PRICES",
    {
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1": (2.00, 8.00),
        "offline-assistant": (0.0, 0.0),
    },
)
# GET /metrics (Prometheus) and token access to GET /api/metrics: off while unset.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# ops.alerts, evaluated by beat every minute. JSON in ALERT_RULES changes parameters of these
# rules ({"latency_p95": {"threshold": 8000}, "block_spike": {"enabled": false}}). Windows are in
# minutes, thresholds in the rule's unit (%, ms, seconds, count); min_samples: below it the rule
# does not judge (and a firing alert resolves).
ALERT_RULES = env_rules(
    "ALERT_RULES",
    {
        "error_rate": {"threshold": 10.0, "window_minutes": 5, "min_samples": 5},
        "latency_p95": {"threshold": 20_000.0, "window_minutes": 5, "min_samples": 5},
        "fallback_rate": {"threshold": 50.0, "window_minutes": 15, "min_samples": 5},
        "models_down": {"severity": "critical"},
        "handoff_wait": {"threshold": 900.0},
        "ratelimit_spike": {"threshold": 50, "window_minutes": 5, "factor": 5.0},
        "block_spike": {"threshold": 20, "window_minutes": 5, "factor": 5.0},
        "queue_backlog": {"threshold": 100},
        "archive_failures": {"threshold": 1, "window_minutes": 15},
    },
)
# A firing alert is delivered again at most this often while it lasts.
ALERT_REPEAT_MINUTES = env_float("ALERT_REPEAT_MINUTES", 60.0, minimum=1.0)
# Deliveries besides the log and the admin banner: e-mail (Django's EMAIL_* settings) and a
# Slack-compatible incoming webhook.
ALERT_EMAILS = env_list("ALERT_EMAILS")
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
# Alert e-mail goes through Django's mailer (MAILERS), SMTP at EMAIL_HOST (unset: this machine's
# port 25, Django's own default), STARTTLS when EMAIL_USE_TLS (default true with a host).
_EMAIL_HOST = env_str("EMAIL_HOST")
_EMAIL_TLS = env_bool("EMAIL_USE_TLS", bool(_EMAIL_HOST))
MAILERS: dict[str, dict[str, object]] = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _EMAIL_HOST or "localhost",
            "port": env_int("EMAIL_PORT", 587 if _EMAIL_TLS else 25, minimum=1),
            "username": env_str("EMAIL_HOST_USER"),
            "password": env_str("EMAIL_HOST_PASSWORD"),
            "use_tls": _EMAIL_TLS,
            "timeout": 10,
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "supportbot@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- logging ----------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING_CONFIG = None  # configured once by supportbot.logconfig (structlog, JSON lines)

from supportbot.logconfig import configure_logging  # noqa: E402  (needs LOG_LEVEL above)

configure_logging(LOG_LEVEL)
