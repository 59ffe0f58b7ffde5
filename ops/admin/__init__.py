"""Everything staff see in the admin site, for every app's models (DESIGN.md: ``ops`` owns it).

Django's autodiscovery imports ``ops.admin``; importing the modules below registers their
ModelAdmins. A model's admin URL follows its app label, not this package: the sessions are at
``/admin/chat/chatsession/``, the articles at ``/admin/tools/article/``, the queues under
``/admin/ops/``.
"""

from __future__ import annotations

from ops.admin import (
    alerts,
    allowlist,
    archives,
    handoffs,
    hours,
    knowledge,
    retention,
    review,
    sessions,
    subjects,
)

__all__ = [
    "alerts",
    "allowlist",
    "archives",
    "handoffs",
    "hours",
    "knowledge",
    "retention",
    "review",
    "sessions",
    "subjects",
]
