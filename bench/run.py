"""`make bench`: every benchmark under bench/, one after the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    "bench.rest_bench",
    "bench.search_bench",
    "bench.kb_bench",
    "bench.ws_bench",
    "bench.handoff_bench",
    "bench.pii_bench",
    "bench.content_bench",
    "bench.guard_bench",
    "bench.body_bench",
    "bench.health_bench",
    "bench.metrics_bench",
    "bench.dashboard_bench",
    "bench.archive_bench",
    "bench.first_token_bench",
    "bench.eval_bench",
]


def main() -> int:
    failed = 0
    for module in BENCHES:
        print(f"\n== {module}", flush=True)
        failed |= subprocess.run([sys.executable, "-m", module], cwd=ROOT).returncode
    return failed


if __name__ == "__main__":
    sys.exit(main())
