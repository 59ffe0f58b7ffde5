"""Live figures of the service in the terminal: ``manage.py monitor``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from rich.live import Live

from ops.monitoring import figures_view, gather_figures
from ops.verification import console_for, positive_seconds
from supportbot.metrics import MAX_WINDOW_MINUTES


def window_minutes(text: str) -> int:
    """An argparse type: whole minutes from 1 to the longest window the metrics keep."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_WINDOW_MINUTES:
        raise argparse.ArgumentTypeError(
            f"must be whole minutes from 1 to {MAX_WINDOW_MINUTES}, not {text!r}"
        )
    return value


class Command(BaseCommand):
    # A monitor must run while something is broken: system checks (some of which open the
    # database) would stop it with a traceback before its first frame.
    requires_system_checks: list[str] = []
    help = (
        "Show turns per minute, turn latency p95, errors, requests per minute, active sessions, "
        "hand-offs and model breakers, refreshed in place until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=positive_seconds,
            default=2.0,
            help="seconds between refreshes (default 2)",
        )
        parser.add_argument(
            "--window",
            type=window_minutes,
            default=5,
            help="minutes the figures cover (default 5)",
        )
        parser.add_argument(
            "--once", action="store_true", help="print one frame and exit (scripts, tests)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        console = console_for(self.stdout)
        window, interval = options["window"], options["interval"]
        if options["once"]:
            console.print(figures_view(gather_figures(window_minutes=window)))
            return
        try:
            frame = figures_view(gather_figures(window_minutes=window), interval=interval)
            with Live(frame, console=console, auto_refresh=False) as live:
                live.refresh()
                while True:
                    time.sleep(interval)
                    frame = figures_view(gather_figures(window_minutes=window), interval=interval)
                    live.update(frame, refresh=True)
        except KeyboardInterrupt:
            return  # Ctrl-C is how a monitor is meant to stop
