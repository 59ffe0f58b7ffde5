"""Create sessions for ``bench/ws_bench.py`` straight in the database (bulk, no HTTP).

    python -m bench.ws_seed COUNT   (same environment as the server: VAR_DIR, DATABASE_URL...)

Prints one session id per line. POST /api/session would do the same one at a time (and is
subject to the per-IP creation limit); the idle-connection benchmark needs thousands.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    count = int(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
    import django

    django.setup()
    from chat.models import ChatSession

    sessions = [ChatSession(metadata={"bench": "ws"}) for _ in range(count)]
    ChatSession.objects.bulk_create(sessions, batch_size=500)
    sys.stdout.write("".join(f"{session.id}\n" for session in sessions))


if __name__ == "__main__":
    main()
