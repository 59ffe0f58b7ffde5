"""``manage.py evaluate``: score the configured model chain on the golden conversations of eval/.

By default the run happens in a scratch database (a temporary SQLite file with the knowledge base
imported from ``--kb``, default the bundled starter KB, rate limits off, no external ticketing),
so nothing the evaluation says or opens lands among real conversations. ``--in-place`` runs on
the configured database instead and deletes the sessions and tickets it made afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import override_settings

from chat.evaluation import PARTS, CaseError, load_cases, target_misses
from chat.evaluation_compare import compare_lines, score_lines
from chat.evaluation_run import CaseResult, forget, report, run_cases
from chat.llm.chain import get_chain

DEFAULT_CASES = Path(settings.BASE_DIR) / "eval"
STARTER_KB = Path(settings.BASE_DIR) / "tools" / "starter_kb"


class Command(BaseCommand):
    help = "Score the configured model chain on the golden conversations under eval/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="folder of *.yaml")
        parser.add_argument(
            "--part", action="append", choices=sorted(PARTS.values()), help="only this part"
        )
        parser.add_argument("--kind", action="append", help="only cases of this kind")
        parser.add_argument("--case", action="append", help="only the case with this id")
        parser.add_argument("--json", type=Path, help="write the whole run to this file")
        parser.add_argument("--compare", type=Path, help="a previous --json file to compare to")
        parser.add_argument(
            "--failures",
            action="append",
            choices=sorted(PARTS.values()),
            help="list the failures of this part (repeatable; default: the tune part only)",
        )
        parser.add_argument("--kb", type=Path, default=STARTER_KB, help="articles for scratch")
        parser.add_argument(
            "--in-place", action="store_true", help="use the configured database, not a scratch one"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cases = load_cases(options["cases"], options["part"])
        except CaseError as exc:
            raise CommandError(str(exc)) from exc
        cases = [
            c
            for c in cases
            if (not options["kind"] or c.kind in options["kind"])
            and (not options["case"] or c.id in options["case"])
        ]
        if not cases:
            raise CommandError("no case matches")
        if not options["in_place"]:
            self._in_scratch(options)
            return
        with override_settings(TICKETING_API_URL="", RATE_LIMITS_ENABLED=False):
            document = self._run(cases)
        self._report(document, options)

    def _run(self, cases: list[Any]) -> dict[str, Any]:
        chain = [link.provider.name for link in get_chain().links]

        def progress(result: CaseResult) -> None:
            failed = any(turn.get("failures") for turn in result.turns)
            self.stderr.write(f"{'x' if failed else '.'} {result.case.id}", ending="\n")

        results: list[CaseResult] = []
        try:
            results = asyncio.run(run_cases(cases, progress=progress))
        finally:
            forget(results)
        return report(results, chain=chain)

    def _report(self, document: dict[str, Any], options: dict[str, Any]) -> None:
        listed = set(options["failures"] or ["tune"])
        for line in score_lines(document, failures_of=listed):
            self.stdout.write(line)
        if options["compare"]:
            try:
                previous = json.loads(options["compare"].read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['compare']}: {exc}") from exc
            for line in compare_lines(previous, document, cases_of=listed):
                self.stdout.write(line)
        if options["json"]:
            options["json"].write_text(json.dumps(document, indent=1), encoding="utf-8")
            self.stdout.write(f"wrote {options['json']}")
        for part, table in document["scores"].items():
            for miss in target_misses(table):
                self.stdout.write(f"{part}: below target: {miss}")

    def _in_scratch(self, options: dict[str, Any]) -> None:
        """This command again, with --in-place, in a child process whose database is a fresh
        SQLite file holding only the knowledge base."""
        kb = options["kb"]
        if not kb.exists():
            raise CommandError(f"{kb} does not exist")
        with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as scratch:
            # Empty, not unset: a .env file must not fill them back in (load_dotenv keeps what
            # the environment has). The database is then VAR_DIR's SQLite file.
            env = os.environ | {
                "DATABASE_URL": "",
                "REDIS_URL": "",
                "VAR_DIR": scratch,
                "LOG_LEVEL": "WARNING",
                "TICKETING_API_URL": "",
                "RATE_LIMITS_ENABLED": "false",
            }
            manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
            for step in (
                ["migrate", "--noinput", "-v", "0", "--skip-checks"],
                ["loadkb", str(kb), "-v", "0"],
            ):
                done = subprocess.run([*manage, *step], env=env, check=False)  # noqa: S603
                if done.returncode:
                    raise CommandError(f"preparing the scratch database failed: {' '.join(step)}")
            rerun = [*manage, "evaluate", "--in-place", "--skip-checks", *_forwarded(options)]
            code = subprocess.run(rerun, env=env, check=False).returncode  # noqa: S603
        if code:
            raise CommandError("the evaluation failed")


def _forwarded(options: dict[str, Any]) -> list[str]:
    """The options of this run, as arguments for the scratch run."""
    argv = ["--cases", str(options["cases"].resolve())]
    for name in ("part", "kind", "case", "failures"):
        for value in options[name] or []:
            argv += [f"--{name}", value]
    for name in ("json", "compare"):
        if options[name]:
            argv += [f"--{name}", str(options[name].resolve())]
    return argv
