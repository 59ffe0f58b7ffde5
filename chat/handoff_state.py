"""The values a hand-off's state is told in (to the customer by ``chat.wire.handoff_status``):
plain data, shared by ``chat.handoff`` which computes them and ``chat.wire`` which writes them."""

from __future__ import annotations

from dataclasses import dataclass

from chat.hours import Hours
from chat.models import Handoff
from chat.presence import Agent


@dataclass(frozen=True)
class Availability:
    """Whether a person can answer now: support hours and agents online."""

    hours: Hours
    agents: list[Agent]

    @property
    def humans_available(self) -> bool:
        return self.hours.open and bool(self.agents)


@dataclass(frozen=True)
class HandoffView:
    """Everything the customer is told about their hand-off."""

    session_id: str
    handoff: Handoff | None
    availability: Availability
    position: int | None
    typical_wait_seconds: int | None
    rating_requested: bool
    bot_paused: bool
