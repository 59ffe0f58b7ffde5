"""Settings of the fault suite's processes: the service's own (from the environment, as in
production), with the beat schedule shortened so that a test sees it run within seconds.

- ``resume-workflows`` and ``expire-sessions`` every second instead of every minute / 5 minutes;
- ``fault-probe``: a task name no worker knows, sent every second to a queue no worker reads
  (``PROBE_QUEUE``), so a test reads from the broker which beat process runs the schedule (the
  message's ``origin`` header names the sending process).
"""

from __future__ import annotations

from supportbot.settings import *  # noqa: F403
from supportbot.settings import CELERY_BEAT_SCHEDULE as _SERVICE_SCHEDULE

PROBE_QUEUE = "faults-probe"
PROBE_TASK = "faults.beat_probe"

CELERY_BEAT_SCHEDULE = {
    **_SERVICE_SCHEDULE,
    "resume-workflows": {**_SERVICE_SCHEDULE["resume-workflows"], "schedule": 1.0},
    "expire-sessions": {**_SERVICE_SCHEDULE["expire-sessions"], "schedule": 1.0},
    "fault-probe": {"task": PROBE_TASK, "schedule": 1.0, "options": {"queue": PROBE_QUEUE}},
}
