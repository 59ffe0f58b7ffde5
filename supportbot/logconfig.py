"""Structured JSON logs (structlog) for our code and for the stdlib loggers of our libraries."""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

import structlog
from daphne.access import AccessLogGenerator
from structlog.typing import EventDict, Processor, WrappedLogger

# A session id is a bearer secret (supportbot.ids): logs keep a prefix to tell sessions apart
# and find one in the admin, never the whole id. Malformed short ids are no secret.
_SESSION_ID = re.compile(r"(sess_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]+")


def mask_session_ids(text: str) -> str:
    """``text`` with every session id cut to its first characters (``sess_AbCdEf***``)."""
    return _SESSION_ID.sub(r"\1***", text) if "sess_" in text else text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_session_ids(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def _mask_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Session ids masked in every field of every line (paths, query strings, tracebacks)."""
    return {key: _masked(value) for key, value in event.items()}


class ServerAccessLog(AccessLogGenerator):
    """daphne's access log, reduced to what our own does not log, as our JSON lines.

    Every request that reaches Django is logged once, by ``RequestContextMiddleware`` (status,
    path, latency, request id, session): daphne's NCSA line for it would be a second line per
    request. What Django never sees is logged here, in the same shape: static files (served by
    the ASGI static handler in front of Django) and WebSockets (one line when a socket opens or
    is refused, one when it closes). Session ids are masked by the JSON formatter.
    """

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        client = str(details.get("client") or "").rpartition(":")[0]
        if protocol == "http" and action == "complete":
            if _served_outside_django(str(details.get("path", ""))):
                _access.info(
                    "request",
                    method=details.get("method"),
                    path=details.get("path"),
                    status=details.get("status"),
                    latency_ms=round(float(details.get("time_taken") or 0.0) * 1000, 2),
                    client_ip=client,
                )
        elif protocol == "websocket" and action in ("connected", "rejected", "disconnected"):
            _access.info("websocket", action=action, path=details.get("path"), client_ip=client)


def _served_outside_django(path: str) -> bool:
    from django.conf import settings

    static = str(settings.STATIC_URL or "")
    return bool(static.startswith("/") and path.startswith(static))


_access = structlog.get_logger("supportbot.access")


def use_server_access_log() -> None:
    """daphne's command line builds its access log from the name it imported (after it loaded
    the application, which calls this); point that name at ours."""
    # Not at the top: settings import this module in every process, and daphne.cli imports
    # daphne.server, which installs Twisted's reactor; only the web server should pay for that.
    import daphne.cli

    daphne.cli.AccessLogGenerator = ServerAccessLog


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str) -> None:
    """Send every record, ours and Django's, to stderr as one JSON object per line."""
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.processors.format_exc_info,
                        _mask_event,
                        structlog.processors.JSONRenderer(),
                    ],
                    "foreign_pre_chain": _SHARED,
                }
            },
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
            "root": {"handlers": ["stderr"], "level": level},
            "loggers": {
                # Our access log replaces these; keep their warnings and errors only.
                "django.request": {"level": "ERROR"},
                "django.server": {"level": "WARNING"},
                "daphne": {"level": "WARNING"},
                "httpx": {"level": "WARNING"},
                "openai": {"level": "WARNING"},
            },
        }
    )
