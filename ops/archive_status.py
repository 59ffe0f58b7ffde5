"""Where a conversation is, as every staff page that shows a session or an archive says it: live
in the database, ended (and archived, or still to be), restored from its archive for staff, or
only in an archive; with links between a session and its archives.

Lists ask for a page of rows at once (one query for the page, never one per row):
``states_for_sessions`` for the session list, ``sessions_in_database`` for the archive list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.admin.utils import quote
from django.urls import reverse

from chat.models import ChatSession, SessionArchive
from ops.transcripts import staff_time

Integrity = SessionArchive.Integrity
BAD_INTEGRITY = (Integrity.MISSING, Integrity.ALTERED, Integrity.UNREADABLE)
# How each state reads on a badge (the CSS class is ``archive-state-<state>``).
STATE_LABELS = {
    "live": "Live",
    "ended": "Ended, not archived yet",
    "archived": "Ended, archived",
    "restored": "Restored from archive (read-only)",
}


def archive_url(archive_id: int) -> str:
    return reverse("admin:chat_sessionarchive_change", args=[archive_id])


def session_admin_url(session_id: str) -> str:
    # quote(): the admin reads "_XX" in a URL's object id as an escape, and ids contain "_".
    return reverse("admin:chat_chatsession_change", args=[quote(session_id)])


@dataclass(frozen=True)
class ArchiveLink:
    """One archive of a session, as a link to its page."""

    pk: int
    key: str
    reason: str
    integrity: str

    @property
    def url(self) -> str:
        return archive_url(self.pk)

    @property
    def bad(self) -> bool:
        return self.integrity in BAD_INTEGRITY


@dataclass(frozen=True)
class SessionState:
    """A session in the database: its state and its archives (newest first)."""

    session_id: str
    state: str  # a key of STATE_LABELS
    archives: tuple[ArchiveLink, ...] = ()
    restored_by: str = ""
    restored_at: str = ""
    # Expiry could not archive it: "archive failing: N attempts, next try at …".
    failing: str = ""

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def restored_from(self) -> ArchiveLink | None:
        """The archive it was restored from: its newest (a session has one in practice; a
        second is written only when the first no longer read back intact)."""
        return self.archives[0] if self.state == "restored" and self.archives else None

    @property
    def release_url(self) -> str:
        return reverse("ops:archive_release", args=[self.session_id])


def _failing(session: ChatSession) -> str:
    if not session.archive_attempts:
        return ""
    attempts = session.archive_attempts
    text = f"archive failing: {attempts} attempt{'s' if attempts != 1 else ''}"
    if session.archive_retry_at is not None:
        text += f", next try at {staff_time(session.archive_retry_at)}"
    return text


def _state(session: ChatSession, archives: list[ArchiveLink]) -> SessionState:
    if session.restored_at is not None:
        state = "restored"
    elif session.status != ChatSession.Status.ENDED:
        state = "live"
    else:
        state = "archived" if archives else "ended"
    return SessionState(
        session_id=session.pk,
        state=state,
        archives=tuple(archives),
        restored_by=session.restored_by,
        restored_at=staff_time(session.restored_at),
        failing=_failing(session),
    )


def _archive_links(session_ids: Iterable[str]) -> dict[str, list[ArchiveLink]]:
    found: dict[str, list[ArchiveLink]] = defaultdict(list)
    rows = (
        SessionArchive.objects.filter(session_id__in=list(session_ids))
        .order_by("-created_at", "-pk")
        .values_list("session_id", "pk", "key", "reason", "integrity")
    )
    for session_id, pk, key, reason, integrity in rows:
        found[session_id].append(ArchiveLink(pk=pk, key=key, reason=reason, integrity=integrity))
    return found


def session_state(session: ChatSession) -> SessionState:
    """One session's state and archives (one query)."""
    return _state(session, _archive_links([session.pk]).get(session.pk, []))


def states_for_sessions(sessions: Iterable[ChatSession]) -> dict[str, SessionState]:
    """The states of a page of sessions, by id (one query for all their archives)."""
    sessions = list(sessions)
    links = _archive_links(s.pk for s in sessions)
    return {s.pk: _state(s, links.get(s.pk, [])) for s in sessions}


@dataclass(frozen=True)
class InDatabase:
    """An archived session whose rows are (back) in the database."""

    restored: bool
    status: str

    @property
    def label(self) -> str:
        if self.restored:
            return "restored"
        return "live" if self.status != ChatSession.Status.ENDED else "in the database"


def sessions_in_database(session_ids: Iterable[str]) -> dict[str, InDatabase]:
    """Which of these archived sessions have rows in the database (one query)."""
    rows = ChatSession.objects.filter(pk__in=set(session_ids)).values_list(
        "pk", "restored_at", "status"
    )
    return {pk: InDatabase(restored=at is not None, status=status) for pk, at, status in rows}


def archives_of(session_id: str) -> list[ArchiveLink]:
    """A session's archives, newest first: for a page about a session no longer in the
    database."""
    return _archive_links([session_id]).get(session_id, [])
