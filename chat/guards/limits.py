"""A turn's use of the kernel's request limits (``supportbot.ratelimit``): what a turn takes
before it starts, what its model calls spend, and the global units of later rounds and tools."""

from __future__ import annotations

from supportbot import ratelimit
from supportbot.clients import client_label
from supportbot.ids import require_session_id


def limit_turn(*, session_id: str, client_ip: str, transport: str) -> None:
    """The rate limits of one chat turn (raises the refusal). A malformed session id is refused
    first (it would name a key of its own); the session is read right after."""
    sid = require_session_id(session_id)
    if not ratelimit.enabled():
        return
    client = client_label(client_ip)
    # One check: a refusal of any of them spends none of them (a client refused for its own
    # limits spends nothing of everyone's, and a refusal for everyone's nothing of its own).
    ratelimit.check(
        takes=(
            ("session_burst", sid),
            ("session_requests", sid),
            ("global_model_calls", ratelimit.GLOBAL),
        ),
        budgets=(("session_tokens", sid), ("ip_tokens", client)),
        session_id=sid,
        client_ip=client_ip,
    )


def spend_tokens(*, session_id: str, client_ip: str, tokens: int) -> None:
    """Count a model call's real usage against the session's and the client's budgets."""
    ratelimit.spend("session_tokens", session_id, tokens)
    ratelimit.spend("ip_tokens", client_label(client_ip), tokens)


def admit_model_round(*, session_id: str) -> None:
    """A later model round of a turn (after tools ran) takes a unit of the global model calls."""
    ratelimit.hit(("global_model_calls", ratelimit.GLOBAL), session_id=session_id)


def admit_tool_call(*, session_id: str) -> None:
    """Every tool execution takes a unit of the global tool executions (raises the refusal)."""
    ratelimit.hit(("global_tool_executions", ratelimit.GLOBAL), session_id=session_id)
