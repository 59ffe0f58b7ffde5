"""What the rate-limit page shows and does (``ops.views.rate_limits``): every limit's busy keys,
each with the client it belongs to, and the resets.

Stored counters (moving and sliding windows) come from ``supportbot.ratelimit``. The counted
limits, ``ip_concurrent_sessions`` and ``global_active_sessions``, store nothing: they are the
live sessions ``chat.sessions`` counts when a session is created, so they are counted here the
same way, in the database: one grouped query for the busiest clients, one for the service.

Sessions keep a keyed hash of their client's address (``ChatSession.client_key``), never the
address. A client's address is found again by hashing the addresses that the limits' own keys and
the recent refusals name; one no longer named anywhere shows as its hash label ``ip_…`` (the
label every key has with ``HASH_CLIENT_IPS``), which resets accept as well as an address.

Resetting a stored counter clears it. Resetting ``ip_concurrent_sessions`` ends the client's live
sessions through ``chat.sessions.session_end`` (archive, events and webhooks as when a customer
ends one), once staff have confirmed how many. ``global_active_sessions`` is not reset.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.admin.utils import quote
from django.db import DatabaseError
from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from chat.models import ChatSession
from chat.sessions import live_sessions, session_end
from ops.staff_api import PERM
from supportbot import ratelimit
from supportbot.clients import client_address, ip_fingerprint
from supportbot.errors import ApiError

log = structlog.get_logger("ops.rate_limits")

# Resetting a key lifts a limit from a client, and may end its conversations: an act on
# sessions. Django's own "Can change chat session" grants it; the sessions admin stays
# read-only whatever it says, so the permission means exactly this here.
RESET_PERMISSION = "chat.change_chatsession"
CONCURRENT, ACTIVE = "ip_concurrent_sessions", "global_active_sessions"
NOT_RESETTABLE = (
    "Counts every live session of the service; it is not reset, since that would end every "
    "customer's conversation. It frees up as sessions end or go idle."
)
HASH_LABEL = re.compile(r"ip_([0-9a-f]{20,64})")  # client_label() with HASH_CLIENT_IPS
MAX_KEY = 200
CONFIRM_SHOWN = 50  # sessions listed by the confirmation


@dataclass(frozen=True)
class Client:
    """Whom a key belongs to, for a support agent."""

    kind: str  # "ip", "session" or "global"
    label: str  # the address, its hash label, the session id, or "everyone"
    address_known: bool = True  # ip: the label is the address, not its hash
    live_sessions: int | None = None  # ip: its live sessions (None: not counted)
    user_id: str = ""  # the userId its newest session claims (clients choose it)
    status: str = ""  # session: active, idle or ended ("" when no session has the id)
    session_url: str = ""
    agent_url: str = ""


@dataclass(frozen=True)
class BusyKey:
    usage: ratelimit.KeyUsage
    client: Client
    anchor: str = ""

    @property
    def counted(self) -> bool:
        return self.usage.spec.counter == "count"

    @property
    def resettable(self) -> bool:
        return self.usage.spec.name != ACTIVE


@dataclass(frozen=True)
class Group:
    """The live sessions of one client (one ``client_key``)."""

    client_key: str
    live: int
    oldest: datetime
    user_id: str


@dataclass
class Page:
    keys: list[BusyKey]  # the busiest first, at most ``limit``
    storage_down: bool
    by_key: dict[tuple[str, str], BusyKey] = field(default_factory=dict)  # every busy key


def client_addresses(label: str) -> list[str]:
    """The spellings of the address an ``ip`` key names (none when it names no address): as
    written, which is how keys and sessions spell a client, and as a client address is keyed
    (``supportbot.clients``: an IPv6 client is its /64 network), which is how staff may type it."""
    try:
        if "/" in label:
            network = ipaddress.ip_network(label)  # strict: no host bits set
            return [label] if network.version == 6 and network.prefixlen == 64 else []
        return list(dict.fromkeys([label, client_address(str(ipaddress.ip_address(label)), "")]))
    except ValueError:
        return []


def client_sessions(label: str) -> Q | None:
    """The sessions of the client an ``ip`` key names (its address or hash label), or None when
    ``label`` names no client."""
    hashed = HASH_LABEL.fullmatch(label)
    if hashed:
        return Q(client_key__startswith=hashed.group(1))
    addresses = client_addresses(label)
    return Q(client_key__in=[ip_fingerprint(a) for a in addresses]) if addresses else None


def _groups(live: QuerySet[ChatSession], where: Q, limit: int | None) -> list[Group]:
    """Live sessions per client, the most first: one grouped query (the newest claimed userId
    is a correlated subquery on the client index)."""
    newest_user = (
        live.filter(client_key=OuterRef("client_key"))
        .exclude(user_id="")
        .order_by("-created_at")
        .values("user_id")[:1]
    )
    rows = (
        live.exclude(client_key="")
        .filter(where)
        .order_by()
        .values("client_key")
        .annotate(n=Count("pk"), oldest=Min("last_activity"), user=Subquery(newest_user))
        .order_by("-n", "client_key")
    )
    return [
        Group(row["client_key"], row["n"], row["oldest"], row["user"] or "")
        for row in (rows[:limit] if limit is not None else rows)
    ]


def _addresses(labels: Iterable[str]) -> dict[str, str]:
    """``client_key`` -> address, for the labels that are addresses."""
    found = {}
    for label in labels:
        for address in reversed(client_addresses(label)):  # the spelling as written wins
            found[ip_fingerprint(address)] = address
    return found


class _Clients:
    """The clients behind ``ip`` keys: their live sessions, and their addresses where known."""

    def __init__(self, live: QuerySet[ChatSession], labels: set[str], limit: int) -> None:
        self.addresses = _addresses(labels)
        self.groups = {group.client_key: group for group in _groups(live, Q(), limit)}
        missing = [
            where
            for label in labels
            if (where := client_sessions(label)) is not None and self.find(label) is None
        ]
        if missing:  # clients named by a key or a refusal but not among the busiest
            any_of = Q()
            for where in missing:
                any_of |= where
            self.groups.update((g.client_key, g) for g in _groups(live, any_of, None))

    def label(self, client_key: str) -> str:
        return self.addresses.get(client_key) or f"ip_{client_key[:20]}"

    def find(self, label: str) -> Group | None:
        hashed = HASH_LABEL.fullmatch(label)
        if hashed:
            prefix = hashed.group(1)
            return next((g for k, g in self.groups.items() if k.startswith(prefix)), None)
        found = (self.groups.get(ip_fingerprint(a)) for a in client_addresses(label))
        return next((group for group in found if group is not None), None)

    def describe(self, label: str) -> Client:
        group = self.find(label)
        return Client(
            "ip",
            label,
            address_known=bool(client_addresses(label)),
            live_sessions=group.live if group else 0,
            user_id=group.user_id if group else "",
        )


def _session_clients(ids: set[str], *, agent_view: bool, now: datetime) -> dict[str, Client]:
    """The sessions behind session keys (one query), linked to their admin page."""
    clients = {}
    for session in ChatSession.objects.filter(pk__in=ids).only(
        "id", "user_id", "status", "last_activity"
    ):
        clients[session.id] = Client(
            "session",
            session.id,
            user_id=session.user_id,
            status=session.current_status(now),
            session_url=reverse("admin:chat_chatsession_change", args=[quote(session.id)]),
            agent_url=reverse("ops:conversation", args=[session.id]) if agent_view else "",
        )
    return clients


def busy_keys(*, refusals: list[dict[str, Any]], user: Any, limit: int = 50) -> Page:
    """Every key using some of its limit now, the busiest first, each with its client; the
    clients of ``refusals`` (recent ``rate_limited`` events) are looked up too."""
    specs = ratelimit.configured_limits()
    try:
        stored, storage_down = ratelimit.busiest(None), False
    except ratelimit.StorageDown:
        stored, storage_down = [], True
    now = timezone.now()
    live = live_sessions(now=now)
    labels = {u.identifier for u in stored if u.spec.scope == "ip"}
    labels |= {str(e.get("key") or "") for e in refusals if e.get("scope") == "ip"}
    labels |= {str(e.get("client") or "") for e in refusals} - {""}
    clients = _Clients(live, labels, limit)
    idle = timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    usages = list(stored)
    for group in clients.groups.values():
        usages.append(_counted(specs[CONCURRENT], clients.label(group.client_key), group, idle))
    everyone = live.aggregate(n=Count("pk"), oldest=Min("last_activity"))
    if everyone["n"]:
        service = Group("", everyone["n"], everyone["oldest"], "")
        usages.append(_counted(specs[ACTIVE], ratelimit.GLOBAL, service, idle))
    sessions = _session_clients(
        {u.identifier for u in usages if u.spec.scope == "session"},
        agent_view=user.has_perm(PERM["view"]),
        now=now,
    )
    usages.sort(key=lambda u: (-u.share, -u.used, u.spec.name, u.identifier))
    keys = []
    for i, usage in enumerate(usages):
        if usage.spec.scope == "ip":
            client = clients.describe(usage.identifier)
        elif usage.spec.scope == "session":
            client = sessions.get(usage.identifier) or Client("session", usage.identifier)
        else:
            client = Client("global", "everyone")
        keys.append(BusyKey(usage, client, anchor=f"busy-{i}" if i < limit else ""))
    page = Page(keys[:limit], storage_down)
    page.by_key = {(k.usage.spec.name, k.usage.identifier): k for k in keys}
    return page


def _counted(
    spec: ratelimit.LimitSpec, label: str, group: Group, idle: timedelta
) -> ratelimit.KeyUsage:
    # A slot frees when a session ends or goes idle: the oldest activity goes idle first.
    frees = (group.oldest + idle).timestamp()
    return ratelimit.KeyUsage(spec, label, group.live, max(0, spec.amount - group.live), frees)


# --- resets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a reset did: ``level`` is a message level, or "confirm" (nothing done yet: the
    ``sessions`` listed would end)."""

    level: str
    message: str
    sessions: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0


def _error(message: str) -> Outcome:
    return Outcome("error", message)


def reset_limit(*, name: str, identifier: str, confirmed: str = "", by: str) -> Outcome:
    """Reset one key of a limit for staff member ``by``; ending sessions needs ``confirmed``,
    the number of sessions staff agreed to end (more live now than that: asked again)."""
    spec = ratelimit.configured_limits().get(name)
    identifier = identifier.strip()
    if spec is None:
        return _error(f"There is no rate limit named “{name[:MAX_KEY]}”; nothing was reset.")
    if not identifier:
        return _error(f"Give the key of {name} to reset (a session id, a client address or all).")
    if name == ACTIVE:
        return _error(f"{name} is not resettable: {NOT_RESETTABLE}")
    if name == CONCURRENT:
        return _end_client_sessions(identifier, confirmed, by)
    problem = _key_problem(spec, identifier)
    if problem:
        return _error(f"“{identifier[:MAX_KEY]}” is not a key of {name}: {problem}")
    try:
        used = ratelimit.reset_key(name, identifier)
    except ratelimit.StorageDown:
        return _error("The rate-limit storage cannot be reached; nothing was reset.")
    log.info("ratelimit_key_reset", limit=name, key=identifier, used=used, by=by)
    if used <= 0:
        return Outcome("warning", f"Reset {name} for {identifier}. It had nothing in use.")
    return Outcome(
        "success", f"Reset {name} for {identifier}. It had used {used} of {spec.amount}."
    )


def _key_problem(spec: ratelimit.LimitSpec, identifier: str) -> str:
    if len(identifier) > MAX_KEY or not identifier.isprintable() or " " in identifier:
        return f"keys are at most {MAX_KEY} printable characters, without spaces."
    if spec.scope == "global" and identifier != ratelimit.GLOBAL:
        return f"a limit of the whole service has the one key “{ratelimit.GLOBAL}”."
    if spec.scope == "ip" and identifier != "unknown" and client_sessions(identifier) is None:
        return "give a client address (an IPv6 client is its /64 network) or its ip_… label."
    return ""


def _end_client_sessions(identifier: str, confirmed: str, by: str) -> Outcome:
    where = client_sessions(identifier)
    if where is None:
        return _error(
            f"“{identifier[:MAX_KEY]}” is not a client of {CONCURRENT}: give its address (an IPv6 "
            "client is its /64 network) or its ip_… label as this page shows it; nothing was ended."
        )
    try:
        sessions = list(
            live_sessions(now=timezone.now())
            .filter(where)
            .order_by("created_at")
            .values_list("id", "user_id", "created_at", "last_activity")
        )
    except DatabaseError:
        log.warning("ratelimit_sessions_unreadable", key=identifier, exc_info=True)
        return _error("The database cannot be reached; nothing was ended.")
    if not sessions:
        return Outcome("warning", f"{identifier} has no live session now; nothing was ended.")
    # Staff confirmed ending this many: never end more than they saw (more went live: ask again).
    agreed = int(confirmed) if confirmed.isdecimal() and len(confirmed) < 10 else None
    if agreed is None or len(sessions) > agreed:
        shown = [
            {
                "id": session_id,
                "url": reverse("admin:chat_chatsession_change", args=[quote(session_id)]),
                "user_id": user_id,
                "created_at": created_at,
                "last_activity": last_activity,
            }
            for session_id, user_id, created_at, last_activity in sessions[:CONFIRM_SHOWN]
        ]
        again = "" if agreed is None else "More sessions went live since you confirmed. "
        return Outcome("confirm", again, shown, count=len(sessions))
    ids = [session_id for session_id, *_ in sessions]
    try:
        ended = _end_sessions(ids)
    except _EndFailed as failed:
        return _error(
            f"The database failed after {failed.ended} of {len(ids)} live sessions of "
            f"{identifier} were ended; the others are live still."
        )
    log.info("ratelimit_sessions_ended", limit=CONCURRENT, key=identifier, ended=ended, by=by)
    if not ended:
        return Outcome("warning", f"The live sessions of {identifier} ended meanwhile.")
    return Outcome(
        "success",
        f"Ended {_sessions(ended)} of {identifier} ({CONCURRENT}): "
        "this client can open new sessions again.",
        count=ended,
    )


class _EndFailed(Exception):
    def __init__(self, ended: int) -> None:
        super().__init__(ended)
        self.ended = ended


def _end_sessions(ids: list[str]) -> int:
    """End each session as its customer would (``session_end``: archive, hand-off, events);
    returns how many this ended. Each ends in its own transaction, as the API's DELETE does."""
    ended = 0
    for session_id in ids:
        try:
            session_end(session_id=session_id)
        except ApiError:  # it ended or expired since it was counted: nothing left to free
            continue
        except DatabaseError as exc:
            log.warning("ratelimit_sessions_end_failed", ended=ended, exc_info=True)
            raise _EndFailed(ended) from exc
        ended += 1
    return ended


def _sessions(n: int) -> str:
    return f"{n} live session{'' if n == 1 else 's'}"
