"""Running test code in several threads at the same moment (races on unique keys)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def at_once[T](fn: Callable[[], T], *, count: int = 4) -> list[T]:
    """``fn``'s results from ``count`` threads released together; each closes its connection."""
    results: list[T] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        try:
            barrier.wait()
            results.append(fn())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
